"""Run a GitHub Actions workflow's own steps on this machine, as a runner would.

GitHub cannot be reached from here, so the workflow is executed locally: its jobs ordered by
`needs`, each job in a fresh workspace, every `run:` step executed by bash as GitHub runs it
(`bash --noprofile --norc -eo pipefail`), with the files and variables a runner gives a step
(GITHUB_OUTPUT, GITHUB_ENV, GITHUB_STEP_SUMMARY, GITHUB_WORKSPACE, GITHUB_REF, RUNNER_TEMP...)
and the `${{ }}` expressions the workflow uses evaluated (contexts github, inputs, env,
secrets, needs, steps; `||`, `==`, string literals, `always()`). An expression this evaluator
does not know is an error, never a silent empty string.

Only steps that `uses:` an external action are stood in for, each by name, modelled on what
the action documents: checkout (a clone of the repository at the ref), setup-python (a
virtual environment on this Python), upload-artifact / download-artifact (a folder per
artifact and run, with the least-common-ancestor rule for the paths; like the real ones they
keep neither links nor modes; with a `github-token`, download-artifact reads the run `run-id`,
as the real one reads another run's artifacts), attest-build-provenance (checks that its
subjects exist and records their digests), pypa/gh-action-pypi-publish (trusted publishing
needs the job's `id-token: write`; every file of packages-dir must be a wheel or an sdist
whose metadata names it; uploaded into a local folder standing for the index, where an
existing file of the same name is refused unless skip-existing, as PyPI and twine do).
Every stand-in used is listed in the result.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_TOKEN = re.compile(r"\s*(\|\||==|!=|&&|\(|\)|'(?:[^']|'')*'|[A-Za-z_][\w.-]*(?:\(\))?|\d+)")


class ExpressionError(Exception):
    pass


def _lookup(path: str, contexts: dict[str, Any]) -> Any:
    value: Any = contexts
    for part in path.split("."):
        if isinstance(value, dict):
            if part not in value and value is contexts:
                raise ExpressionError(f"unknown context {part!r} in {path!r}")
            value = value.get(part, "")
        else:
            return ""
    return value


def evaluate(text: str, contexts: dict[str, Any]) -> Any:
    """One expression (the inside of `${{ }}`, or an `if:`), as GitHub evaluates these forms."""
    tokens = [t for t in _TOKEN.findall(text) if t]
    if "".join(tokens).replace(" ", "") != text.replace(" ", "").replace("\n", ""):
        raise ExpressionError(f"cannot evaluate {text!r}")
    position = 0

    def atom() -> Any:
        nonlocal position
        item = tokens[position]
        position += 1
        if item == "(":
            value = disjunction()
            position += 1  # ')'
            return value
        if item.startswith("'"):
            return item[1:-1].replace("''", "'")
        if item in ("true", "false"):
            return item == "true"
        if item.isdigit():
            return int(item)
        if item == "always()":
            return True
        if item == "success()":
            return not contexts.get("_failed", False)
        if item == "failure()":
            return bool(contexts.get("_failed", False))
        if item.endswith("()"):
            raise ExpressionError(f"function {item} is not modelled")
        return _lookup(item, contexts)

    def comparison() -> Any:
        nonlocal position
        left = atom()
        if position < len(tokens) and tokens[position] in ("==", "!="):
            op = tokens[position]
            position += 1
            right = atom()
            same = str(left).lower() == str(right).lower()
            return same if op == "==" else not same
        return left

    def chain(operator: str, operand: Callable[[], Any]) -> Any:
        """Left to right, the value that decides, as GitHub's `&&` and `||` give it."""
        nonlocal position
        value = operand()
        while position < len(tokens) and tokens[position] == operator:
            position += 1
            right = operand()
            value = (value and right) if operator == "&&" else (value or right)
        return value

    def conjunction() -> Any:
        return chain("&&", comparison)

    def disjunction() -> Any:
        return chain("||", conjunction)

    result = disjunction()
    if position != len(tokens):
        raise ExpressionError(f"cannot evaluate {text!r}")
    return result


def substitute(text: Any, contexts: dict[str, Any]) -> Any:
    if not isinstance(text, str):
        return text

    def one(match: re.Match[str]) -> str:
        value = evaluate(match.group(1).strip(), contexts)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return _EXPR.sub(one, text)


@dataclass
class StepResult:
    job: str
    name: str
    kind: str  # run | stand-in
    returncode: int
    output: str = ""
    tolerated: bool = False  # failed under `continue-on-error: true`: the job goes on


@dataclass
class WorkflowRun:
    jobs: dict[str, str] = field(default_factory=dict)  # job -> success | failure | skipped
    steps: list[StepResult] = field(default_factory=list)
    stand_ins: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    attested: list[tuple[str, str]] = field(default_factory=list)
    summaries: dict[str, str] = field(default_factory=dict)

    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.returncode != 0 and not s.tolerated), None)


def load_workflow(path: Path) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def job_order(jobs: dict[str, Any]) -> list[str]:
    """Jobs with every job after the ones it needs (in file order among equals)."""
    order: list[str] = []
    while len(order) < len(jobs):
        ready = [
            name for name, job in jobs.items() if name not in order
            and all(n in order for n in ([job["needs"]] if isinstance(job.get("needs"), str)
                                         else job.get("needs", [])))
        ]  # fmt: skip
        if not ready:
            raise ExpressionError("the jobs' needs form a cycle")
        order.append(ready[0])
    return order


def _artifact_root(patterns: list[str], workspace: Path) -> tuple[Path, list[Path]]:
    """upload-artifact's rule: the files matched, and their least common ancestor as root."""
    files: list[Path] = []
    for pattern in patterns:
        for match in sorted(glob.glob(str(workspace / pattern), recursive=True)):
            path = Path(match)
            files += (
                [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
            )
    roots = [Path(p.strip()) for p in patterns]
    if len(roots) == 1 and (workspace / roots[0]).is_dir():
        return workspace / roots[0], files
    common = os.path.commonpath([str(workspace / r.parent if "*" in r.name else workspace / r)
                                 for r in roots]) if roots else str(workspace)  # fmt: skip
    base = Path(common)
    if base.is_file():
        base = base.parent
    return base, files


@dataclass
class LocalRunner:
    workflow: Path
    root: Path
    repository: Path  # the git repository the workflow's checkout clones
    github: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    base_env: dict[str, str] = field(default_factory=dict)
    #: This run's ID (github.run_id), and where every run's artifacts are kept.
    run_id: str = "1"
    artifact_store: Path | None = None
    #: The folder standing for PyPI (pypa/gh-action-pypi-publish uploads there).
    package_index: Path | None = None
    #: Only these jobs are executed (None: all); the others end as "not selected".
    select: frozenset[str] | None = None
    #: Command prefix for a job (e.g. the lab network's namespace for self-hosted jobs).
    prefix: Callable[[str, dict[str, Any]], list[str]] = lambda _name, _job: []
    on_step: Callable[[str], None] = lambda _text: None

    def run(self) -> WorkflowRun:
        wf = load_workflow(self.workflow)
        result = WorkflowRun()
        needs_ctx: dict[str, Any] = {}
        for name in job_order(wf["jobs"]):
            job = wf["jobs"][name]
            needed = [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", [])
            if self.select is not None and name not in self.select:
                result.jobs[name] = "not selected"
                continue
            if any(result.jobs.get(n) != "success" for n in needed):
                result.jobs[name] = "skipped"
                continue
            contexts = self._contexts(wf, needs_ctx, {})
            if "if" in job and not evaluate(str(job["if"]), contexts):
                result.jobs[name] = "skipped"
                continue
            outputs, ok = self._run_job(name, job, wf, needs_ctx, result)
            result.jobs[name] = "success" if ok else "failure"
            needs_ctx[name] = {"outputs": outputs, "result": result.jobs[name]}
            result.outputs[name] = outputs
        return result

    def _contexts(self, wf: dict[str, Any], needs: dict[str, Any], env: dict[str, str],
                  steps: dict[str, Any] | None = None, runner: dict[str, str] | None = None,
                  failed: bool = False) -> dict[str, Any]:  # fmt: skip
        return {"github": self.github, "inputs": self.inputs, "secrets": self.secrets,
                "needs": needs, "env": env, "steps": steps or {}, "runner": runner or {},
                "vars": {}, "_failed": failed}  # fmt: skip

    def _run_job(self, name: str, job: dict[str, Any], wf: dict[str, Any],
                 needs: dict[str, Any], result: WorkflowRun) -> tuple[dict[str, str], bool]:  # fmt: skip
        workspace = self.root / "jobs" / name / "workspace"
        temp = self.root / "jobs" / name / "temp"
        for folder in (workspace, temp):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        github = {**self.github, "workspace": str(workspace), "job": name, "run_id": self.run_id}
        runner = {"temp": str(temp), "os": "Linux", "arch": "X64"}
        saved, self.github = self.github, github
        try:
            env: dict[str, str] = {}
            for key, value in (wf.get("env") or {}).items():
                env[key] = str(substitute(value, self._contexts(wf, needs, env, runner=runner)))
            for key, value in (job.get("env") or {}).items():
                env[key] = str(substitute(value, self._contexts(wf, needs, env, runner=runner)))
            steps: dict[str, Any] = {}
            failed = False
            for index, step in enumerate(job["steps"]):
                contexts = self._contexts(wf, needs, env, steps, runner, failed)
                condition = step.get("if")
                if failed and not (condition and evaluate(str(condition), contexts)):
                    continue
                if condition and not evaluate(str(condition), contexts):
                    continue
                label = step.get("name") or step.get("uses") or f"step {index + 1}"
                self.on_step(f"{name}: {label}")
                step_env = {**env, **{k: str(substitute(v, contexts))
                                      for k, v in (step.get("env") or {}).items()}}  # fmt: skip
                if "uses" in step:
                    code, out = self._stand_in(step, workspace, contexts, result, job)
                    kind, outputs = "stand-in", {}
                else:
                    code, out, outputs, more_env, summary = self._run_step(
                        name, job, step, step_env, workspace, temp
                    )
                    kind = "run"
                    env.update(more_env)
                    if summary:
                        result.summaries[f"{name}/{label}"] = summary
                tolerated = code != 0 and bool(step.get("continue-on-error"))
                if "id" in step:
                    outcome = "success" if code == 0 else "failure"
                    steps[step["id"]] = {"outputs": outputs, "outcome": outcome,
                                         "conclusion": "success" if tolerated else outcome}  # fmt: skip
                result.steps.append(StepResult(name, label, kind, code, out, tolerated))
                failed = failed or (code != 0 and not tolerated)
            contexts = self._contexts(wf, needs, env, steps, runner, failed)
            outputs = {
                k: str(substitute(v, contexts)) for k, v in (job.get("outputs") or {}).items()
            }
            return outputs, not failed
        finally:
            self.github = saved

    def _run_step(self, name: str, job: dict[str, Any], step: dict[str, Any], env: dict[str, str],
                  workspace: Path, temp: Path) -> tuple[int, str, dict[str, str], dict[str, str], str]:  # fmt: skip
        files = {key: temp / f"{key.lower()}.{len(os.listdir(temp))}"
                 for key in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")}  # fmt: skip
        for path in files.values():
            path.write_text("")
        script = temp / f"step-{len(os.listdir(temp))}.sh"
        contexts = self._contexts({}, {}, env)
        if _EXPR.search(step["run"]):
            # The workflow keeps templates out of scripts (a test asserts it); evaluated anyway.
            script.write_text(str(substitute(step["run"], {**contexts, "github": self.github})))
        else:
            script.write_text(step["run"])
        full_env = {
            **self.base_env,
            **env,
            **{key: str(path) for key, path in files.items()},
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_REF": str(self.github["ref"]),
            "GITHUB_REF_NAME": str(self.github["ref_name"]),
            "GITHUB_REPOSITORY": str(self.github["repository"]),
            "GITHUB_EVENT_NAME": str(self.github["event_name"]),
            "GITHUB_SHA": str(self.github.get("sha", "")),
            "GITHUB_JOB": name,
            "GITHUB_RUN_ID": self.run_id,
            "RUNNER_TEMP": str(temp),
        }
        path = self.root / "python/bin"
        if path.is_dir():
            full_env["PATH"] = f"{path}:{full_env.get('PATH', os.defpath)}"
        command = [*self.prefix(name, job), "bash", "--noprofile", "--norc", "-eo", "pipefail",
                   str(script)]  # fmt: skip
        proc = subprocess.run(command, cwd=workspace, env=full_env, capture_output=True,
                              text=True, timeout=3600, check=False)  # fmt: skip
        outputs = _key_values(files["GITHUB_OUTPUT"].read_text())
        more_env = _key_values(files["GITHUB_ENV"].read_text())
        summary = files["GITHUB_STEP_SUMMARY"].read_text()
        return proc.returncode, proc.stdout + proc.stderr, outputs, more_env, summary

    def _stand_in(self, step: dict[str, Any], workspace: Path, contexts: dict[str, Any],
                  result: WorkflowRun, job: dict[str, Any]) -> tuple[int, str]:  # fmt: skip
        action = str(step["uses"]).split("@", 1)[0]
        given = {k: substitute(v, contexts) for k, v in (step.get("with") or {}).items()}
        result.stand_ins[action] = result.stand_ins.get(action, 0) + 1
        store = self.artifact_store or self.root / "artifacts"
        artifacts = store / self.run_id
        if action == "actions/checkout":
            shutil.rmtree(workspace)
            proc = subprocess.run(["git", "clone", "-q", str(self.repository), str(workspace)],
                                  capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
            if proc.returncode == 0:
                # The real action checks out github.sha (for a pull request, its merge commit).
                wanted = self.github.get("sha") or str(self.github["ref"]).removeprefix(
                    "refs/tags/"
                )
                proc = subprocess.run(["git", "-C", str(workspace), "checkout", "-q", str(wanted)],
                                      capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            return proc.returncode, proc.stdout + proc.stderr
        if action == "actions/setup-python":
            # A virtual environment that also sees this interpreter's packages (a runner's
            # cache, in effect): installing the toolkit then builds only the toolkit.
            venv = self.root / "python"
            if not (venv / "bin/python").exists():
                import sysconfig

                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                               capture_output=True, timeout=300)  # fmt: skip
                site = Path(subprocess.run(
                    [str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    check=True, capture_output=True, text=True, timeout=60).stdout.strip())  # fmt: skip
                (site / "_runner_parent.pth").write_text(sysconfig.get_path("purelib") + "\n")
            return 0, f"python {given.get('python-version')} at {venv}"
        if action == "actions/upload-artifact":
            patterns = [p for p in str(given["path"]).splitlines() if p.strip()]
            base, files = _artifact_root(patterns, workspace)
            if not files and given.get("if-no-files-found", "warn") == "error":
                return 1, f"no files found for {patterns}"
            dest = artifacts / str(given["name"])
            if dest.exists():
                return 1, f"an artifact named {given['name']} exists already"
            for path in files:
                target = dest / path.relative_to(base)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)  # neither links nor modes, like the real one
            return 0, f"{len(files)} files"
        if action == "actions/download-artifact":
            # Only with a token does the action look beyond this run (action.yml: run-id).
            run_id = (
                str(given.get("run-id") or self.run_id)
                if given.get("github-token")
                else self.run_id
            )
            source = store / run_id / str(given["name"])
            if not source.is_dir():
                return 1, f"Unable to download artifact(s): Artifact '{given['name']}' not found"
            dest = workspace / str(given.get("path") or ".")
            shutil.copytree(source, dest, dirs_exist_ok=True)
            return 0, f"into {dest}"
        if action == "actions/attest-build-provenance":
            subjects = sorted(glob.glob(str(workspace / str(given["subject-path"]))))
            if not subjects:
                return 1, f"no subject matches {given['subject-path']}"
            for subject in subjects:
                digest = hashlib.sha256(Path(subject).read_bytes()).hexdigest()
                result.attested.append((Path(subject).name, digest))
            return 0, f"{len(subjects)} subjects"
        if action == "pypa/gh-action-pypi-publish":
            return self._pypi_upload(given, workspace, job)
        return 1, f"no stand-in for {action}"

    def _pypi_upload(self, given: dict[str, Any], workspace: Path,
                     job: dict[str, Any]) -> tuple[int, str]:  # fmt: skip
        """What the action does with trusted publishing: twine upload of packages-dir/*."""
        import tarfile
        import zipfile
        from email.parser import HeaderParser

        if (job.get("permissions") or {}).get("id-token") != "write" and not given.get("password"):
            return 1, "Trusted publishing exchange failure: OpenID Connect token retrieval failed"
        if self.package_index is None:
            return 1, "no package index stands in for PyPI in this run"
        folder = workspace / str(given.get("packages-dir") or "dist")
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        if not files:
            return 1, f"no distributions in {folder}"
        said = []
        for path in files:
            meta = b""
            if path.suffix == ".whl":
                with zipfile.ZipFile(path) as archive:
                    meta = next((archive.read(n) for n in archive.namelist()
                                 if n.endswith(".dist-info/METADATA")), b"")  # fmt: skip
            elif path.name.endswith(".tar.gz"):
                with tarfile.open(path) as archive:
                    member = next((m for m in archive.getmembers()
                                   if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")), None)  # fmt: skip
                    handle = archive.extractfile(member) if member else None
                    meta = handle.read() if handle else b""
            else:
                return 1, f"InvalidDistribution: Unknown distribution format: '{path.name}'"
            parsed = HeaderParser().parsestr(meta.decode("utf-8", errors="replace"))
            if not parsed.get("Name") or not parsed.get("Version"):
                return 1, f"InvalidDistribution: {path.name}: Metadata is missing required fields"
            target = self.package_index / path.name
            if target.exists():
                if str(given.get("skip-existing")).lower() == "true":
                    said.append(f"Skipping {path.name} because it appears to already exist")
                    continue
                return 1, f"HTTPError: 400 Bad Request: File already exists ('{path.name}')"
            self.package_index.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            said.append(f"Uploading {path.name} (sha256 {digest})")
        return 0, "\n".join(said)


def _key_values(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIM` blocks."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if "<<" in line and "=" not in line.split("<<", 1)[0]:
            key, delimiter = line.split("<<", 1)
            block = []
            index += 1
            while index < len(lines) and lines[index] != delimiter:
                block.append(lines[index])
                index += 1
            values[key] = "\n".join(block)
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
        index += 1
    return values
