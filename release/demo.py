"""The laptop demo: a real VO extension, a real git tag, real bundles, on one machine.

The product's source ships inside this package. The demo commits it into a fresh repository
with a fixed date, so every run makes the same commit, resolves the same lock (the index as it
was at that date) and hits the cache the second time.
"""

from __future__ import annotations

import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from release.errors import BadInput, CheckFailed

DEMO_TAG = "v1.0.0"
DEMO_DATE = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
REPO_NAME = "product-repo"
STAGES = ("version", "build", "publish", "deploy", "certify", "promote")
LAB_STAGES = STAGES[3:]
CERTIFICATION_HOSTS = ("cctbdirac01", "cctbdirac02")
PRODUCTION_HOSTS = ("diracprod01",)
REPOSITORY = "vodemo.egi.eu"
_IDENTITY = {"name": "VODemo Release Manager", "email": "release@vodemo.example.org"}


def _product_files() -> dict[str, bytes]:
    """The demo product's files, from the installed package or the checkout alike."""
    root = resources.files("release") / "resources" / "demo" / "product"
    files: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            else:
                files[rel] = child.read_bytes()

    walk(root, "")
    return files


def demo_config_text() -> str:
    return (resources.files("release") / "resources" / "demo" / "release.toml").read_text(
        encoding="utf-8"
    )


def with_lab_hosts(text: str, hosts: dict[str, dict[str, str]], ssh_key: Path) -> str:
    """The demo configuration with each environment's hosts set to running lab hosts.

    `hosts` maps environment → host name → address; the key is the lab's SSH key.
    """
    for env_name, addresses in hosts.items():
        header = f"[environments.{env_name}]\n"
        start = text.index(header) + len(header)
        end = text.find("\n[", start)
        end = len(text) if end < 0 else end + 1
        body = [
            line
            for line in text[start:end].splitlines()
            if not line.startswith(("hosts", "ssh_key"))
        ]
        listed = ", ".join(f'{name} = "{address}"' for name, address in addresses.items())
        body = [f"hosts = {{ {listed} }}", f'ssh_key = "{ssh_key}"', *body]
        gap = "\n\n" if end < len(text) else "\n"
        text = text[:start] + "\n".join(body).rstrip("\n") + gap + text[end:]
    return text


def prepare_repository(repo_dir: Path) -> str:
    """Create (or reuse, when identical) the demo repository and its tag; returns the commit."""
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import without a git executable
        from release.errors import InfrastructureError

        raise InfrastructureError(
            f"cannot use git: {exc}", fix="install git (apt-get install git)"
        ) from None

    files = _product_files()
    if (repo_dir / ".git").is_dir():
        try:
            repo = git.Repo(repo_dir)
            commit = repo.tags[DEMO_TAG].commit
            same = all(
                (commit.tree / path).data_stream.read() == data for path, data in files.items()
            ) and not repo.is_dirty(untracked_files=True)
            if same:
                return str(commit.hexsha)
        except (IndexError, KeyError, ValueError, git.GitError):
            pass
        shutil.rmtree(repo_dir)
    repo_dir.mkdir(parents=True)
    for rel, data in files.items():
        path = repo_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    repo = git.Repo.init(repo_dir, initial_branch="integration")
    with repo.config_writer() as writer:
        writer.set_value("user", "name", _IDENTITY["name"])
        writer.set_value("user", "email", _IDENTITY["email"])
    repo.index.add(sorted(files))
    actor = git.Actor(_IDENTITY["name"], _IDENTITY["email"])
    commit = repo.index.commit(
        f"VODemoDIRAC {DEMO_TAG}",
        author=actor,
        committer=actor,
        author_date=DEMO_DATE,
        commit_date=DEMO_DATE,
    )
    with repo.git.custom_environment(GIT_COMMITTER_DATE=DEMO_DATE.isoformat()):
        repo.git.tag("-a", DEMO_TAG, "-m", f"VODemoDIRAC {DEMO_TAG}")
    return str(commit.hexsha)


def add_release(repo_dir: Path, tag: str, *, days_after: int = 1) -> str:
    """Commit a new version of the demo product (its pyproject version only) and tag it.

    The date is fixed relative to the demo's, so the new tag resolves the same way each time.
    Tests and the upgrade benchmark use it to have an A and a B to upgrade between.
    """
    import git

    from release.version import parse_tag

    version = str(parse_tag(tag).version)
    repo = git.Repo(repo_dir)
    if tag in repo.tags:
        return str(repo.tags[tag].commit.hexsha)
    pyproject = repo_dir / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    old = next(line for line in text.splitlines() if line.startswith("version = "))
    pyproject.write_text(text.replace(old, f'version = "{version}"'), encoding="utf-8")
    repo.index.add(["pyproject.toml"])
    actor = git.Actor(_IDENTITY["name"], _IDENTITY["email"])
    date = DEMO_DATE + timedelta(days=days_after)
    commit = repo.index.commit(
        f"VODemoDIRAC {tag}", author=actor, committer=actor, author_date=date, commit_date=date
    )
    with repo.git.custom_environment(GIT_COMMITTER_DATE=date.isoformat()):
        repo.git.tag("-a", tag, "-m", f"VODemoDIRAC {tag}")
    return str(commit.hexsha)


def prepare_secrets(workdir: Path) -> Path:
    """The demo's secrets: a legacy-exchange key, and a vault holding it for the hosts.

    Made once (0600 files in a 0700 <workdir>/secrets) and reused; never printed. The plaintext
    of the vault goes to ansible-vault on its standard input and never touches the disk; the
    encrypted file is written beside the vault and renamed over it only once ansible-vault
    succeeded, so a failure leaves the previous vault (or none), never a readable secret.
    Returns the vault password file, which ansible-playbook reads through
    ANSIBLE_VAULT_PASSWORD_FILE.
    """
    import base64
    import json
    import os
    import secrets
    import subprocess

    from release.credentials import read_legacy_key_file, redact, remember
    from release.errors import InfrastructureError

    folder = workdir / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    key_file, password_file, vault = (
        folder / n for n in ("legacy-exchange.key", "vault-password", "secrets.yml")
    )

    def write(path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    if not key_file.is_file():
        write(key_file, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
    if not password_file.is_file():
        write(password_file, secrets.token_urlsafe(32) + "\n")
    remember(password_file.read_text(encoding="utf-8").strip())
    key = read_legacy_key_file(key_file, env_name="-", setting="demo")
    if vault.is_file() and vault.read_text(encoding="utf-8").startswith("$ANSIBLE_VAULT"):
        return password_file
    plain = {"dirac_server_secret_files": [
        {"path": "/opt/dirac/state/secrets/legacy-exchange.key", "content": key.get_secret_value() + "\n"}]}  # fmt: skip
    sealed = folder / f".secrets.yml.{os.getpid()}"
    tool = Path(sys.executable).parent / "ansible-vault"
    try:
        proc = subprocess.run(
            [str(tool) if tool.exists() else "ansible-vault", "encrypt", "--vault-password-file",
             str(password_file), "--output", str(sealed), "-"],
            input=json.dumps(plain), text=True, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not sealed.read_text(encoding="utf-8").startswith(
            "$ANSIBLE_VAULT"
        ):
            why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise InfrastructureError(
                f"ansible-vault could not encrypt the demo secrets: {redact(why)[:300]}",
                where=str(folder),
                fix="check that ansible-core is installed in this environment, then run again",
            )
        os.chmod(sealed, 0o600)
        os.replace(sealed, vault)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfrastructureError(
            f"ansible-vault could not encrypt the demo secrets: {type(exc).__name__}",
            where=str(folder),
            fix="check that ansible-core is installed in this environment, then run again",
        ) from None
    finally:
        sealed.unlink(missing_ok=True)
    return password_file


def _lab_stages(
    workdir: Path, until: str, as_json: bool, stages: list[dict[str, Any]], tag: str
) -> dict[str, Any]:
    """Deploy, certify and promote on lab hosts started for the demo and removed after it."""
    import json
    import os
    import subprocess

    from release.lab import ROOTFS_CACHE, ROOTFS_NAME, lab_hosts, prepare_rootfs, rootfs_complete

    say = _say(as_json)
    started = time.monotonic()
    password_file = prepare_secrets(workdir)
    if not rootfs_complete(ROOTFS_CACHE / ROOTFS_NAME):
        say(f"lab: building the hosts' Debian root filesystem once, in {ROOTFS_CACHE} "
            "(debootstrap, about a minute) ...")  # fmt: skip
    rootfs = prepare_rootfs(ROOTFS_CACHE)
    names = [*CERTIFICATION_HOSTS, *PRODUCTION_HOSTS]
    say(f"lab: starting {', '.join(names)} (network namespaces, sshd, runit) ...")
    stratum = workdir / "stratum" / REPOSITORY
    results: dict[str, Any] = {}
    with lab_hosts(
        names, rootfs, workdir / "lab", binds=[(stratum, f"/cvmfs/{REPOSITORY}", True)]
    ) as net:
        addresses = {host.name: host.address for host in net}
        config_path = workdir / "release.toml"
        config_path.write_text(
            with_lab_hosts(
                demo_config_text(),
                {"certification": {n: addresses[n] for n in CERTIFICATION_HOSTS},
                 "production": {n: addresses[n] for n in PRODUCTION_HOSTS}},
                net.ssh_key,
            ),
            encoding="utf-8",
        )  # fmt: skip
        stages.append({"stage": "lab", "result": ", ".join(f"{n} {a}" for n, a in addresses.items()),
                       "seconds": time.monotonic() - started})  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password_file)
        say(f"render, deploy, certify, promote: dirac-release run --from render --until {until} "
            f"--promote --install, inside the lab network ...")  # fmt: skip
        started = time.monotonic()
        # --json for the result; --progress so a person sees each host's steps meanwhile.
        argv = [*net.exec_prefix(), sys.executable, "-m", "release", "--config", str(config_path),
                "--json", *([] if as_json else ["--progress"]), "run", "--tag", tag,
                "--from", "render", "--until", until, "--promote", "--install"]  # fmt: skip
        proc = subprocess.run(
            argv, env=env, stdout=subprocess.PIPE, text=True, timeout=3600, check=False
        )
        data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        results["lab_run"] = data
        stages += _rows(data) if data else [
            {"stage": "run", "result": f"exit {proc.returncode}", "seconds": time.monotonic() - started}
        ]  # fmt: skip
        junit = workdir / "certification.junit.xml"
        if data and any(s["stage"] == "certify" and s["status"] == "done" for s in data["stages"]):
            _write_junit(config_path, junit, tag)
        if proc.returncode != 0:
            failed = next((s for s in data.get("stages", []) if s["status"] == "failed"), None)
            raise CheckFailed(
                f"the demo's {failed['stage'] if failed else 'lab'} stage failed (exit "
                f"{proc.returncode})" + (f": {failed['summary']}" if failed else ""),
                fix="see the messages above; run the demo again: it verifies what is done and "
                "continues from there",
            )
    # The hosts' overlay layers (installed versions, DiracX state: hundreds of MB) go with them.
    from release.lab import mounts_under

    if not mounts_under(workdir / "lab"):
        shutil.rmtree(workdir / "lab", ignore_errors=True)
    return results


def run_demo(
    *, workdir: Path, until: str = STAGES[-1], as_json: bool = False, tag: str = DEMO_TAG
) -> int:
    """The release pipeline on the demo product, stopping after `until`.

    Build and publish run here; render, deploy, certify and promote run as one
    `dirac-release run` inside the lab hosts' network. A rerun in the same folder verifies
    what the previous one finished and continues from there, as `run` does.
    """
    from release import gitinfo
    from release.config import load_config
    from release.pipeline.contract import Context
    from release.pipeline.runner import run_pipeline
    from release.publish import init_repository
    from release.version import parse_tag

    if until not in STAGES:
        raise BadInput(f"unknown stage {until!r}", fix=f"choose one of: {', '.join(STAGES)}")
    wanted = parse_tag(tag, where="--tag")
    if wanted.version.is_prerelease or wanted.version < parse_tag(DEMO_TAG).version:
        raise BadInput(
            f"--tag {tag}: the demo releases {DEMO_TAG} or a later final version",
            fix=f"e.g. --tag v1.0.1 (a new release of the demo product after {DEMO_TAG})",
        )
    tag = wanted.tag
    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "release.toml"
    config_path.write_text(demo_config_text(), encoding="utf-8")
    stages: list[dict[str, Any]] = []

    started = time.monotonic()
    prepare_repository(workdir / REPO_NAME)
    if tag != DEMO_TAG:
        add_release(workdir / REPO_NAME, tag)
    info = gitinfo.read_tag(workdir / REPO_NAME, tag)
    channels = ", ".join(str(channel) for channel in info.version.channels)
    stages.append(
        {
            "stage": "version",
            "result": f"{info.tag} at {info.commit[:12]} ({channels})",
            "seconds": time.monotonic() - started,
        }
    )
    result: dict[str, Any] = {"workdir": str(workdir), "tag": info.as_dict(), "stages": stages}
    if until != "version":
        config = load_config(config_path)
        init_repository(config, None)
        ctx = Context(config, "vodemo", info.version, live=not as_json, note=_say(as_json))
        run = run_pipeline(ctx, first="build", last="build" if until == "build" else "publish")
        stages += _rows(run.as_dict())
        result["pipeline"] = run.as_dict()
        if run.error is not None:
            _show(result, as_json)
            run.error.result_printed = as_json  # type: ignore[attr-defined]
            raise run.error
    problem = None
    if until in LAB_STAGES:
        problem = _lab_ready(as_json)
        if problem:
            asked = list(LAB_STAGES[: LAB_STAGES.index(until) + 1])
            for stage in asked:
                stages.append({"stage": stage, "result": f"NOT RUN: {problem}", "seconds": 0.0})
            result["not_run"] = {"stages": asked, "why": problem}
        else:
            result.update(_lab_stages(workdir, until, as_json, stages, tag))
    _show(result, as_json)
    if problem:
        # Stages nobody asked to skip did not run: that is not a successful demo.
        from release.errors import InfrastructureError

        error = InfrastructureError(
            f"the demo stopped after publish: {', '.join(result['not_run']['stages'])} "
            f"did not run: {problem}",
            fix="run it as root on a Debian-like machine (it installs the missing packages "
            "itself), or ask for less: dirac-release demo --until publish",
        )
        error.result_printed = as_json  # type: ignore[attr-defined]
        raise error
    return 0


def _write_junit(config_path: Path, path: Path, tag: str) -> None:
    """The certification's checks as JUnit, from the ledger (CI systems show these)."""
    from release.certify.report import write_junit
    from release.config import load_config

    config = load_config(config_path)
    records = config.ledger("vodemo", tag).records("certify")
    record = next((r for r in reversed(records) if r.get("environment") == "certification"), None)
    if record is not None:
        write_junit(record, path)


def _say(as_json: bool) -> Any:
    def say(text: str) -> None:
        if not as_json:
            print(text, file=sys.stderr, flush=True)

    return say


def _rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's table rows for the stages a pipeline run was asked to do."""
    return [
        {
            "stage": stage["stage"],
            "result": (
                f"{stage['summary']} (done before, verified)"
                if stage["status"] == "verified"
                else f"{stage['status'].upper()}: {stage['summary']}"
                if stage["status"] in ("failed", "not run")
                else stage["summary"]
            ),
            "seconds": stage["seconds"],
        }
        for stage in run["stages"]
        if stage["status"] != "skipped"
    ]


def _show(result: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, table

    result["outputs"] = _outputs(Path(result["workdir"]))
    if as_json:
        print_json(result)
        return
    table(
        "dirac-release demo",
        ["stage", "result", "seconds"],
        [[s["stage"], s["result"], f"{s['seconds']:.1f}"] for s in result["stages"]],
    )
    print("outputs:", file=sys.stderr)
    for what, where in result["outputs"].items():
        print(f"  {what:<14} {where}", file=sys.stderr)


def _lab_ready(as_json: bool) -> str | None:
    """None when lab hosts can run; installs their missing Debian packages when it can."""
    import os

    from release.lab import (
        LabError,
        install_lab_packages,
        lab_hosts_problem,
        missing_lab_packages,
    )

    problem = lab_hosts_problem()
    missing = missing_lab_packages()
    if problem and missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(
            f"lab hosts need {' '.join(missing)}: installing with apt-get (root, Debian-like)",
            file=sys.stderr,
            flush=True,
        )
        try:
            install_lab_packages(missing, echo=not as_json)
        except LabError as exc:
            return f"{problem} (installing them failed: {exc})"
        lab_hosts_problem.cache_clear()
        problem = lab_hosts_problem()
    return problem


def _outputs(workdir: Path) -> dict[str, str]:
    """Where a person finds what the demo made (only what exists)."""
    places = {
        "work folder": workdir,
        "configuration": workdir / "release.toml",
        "bundles": workdir / "dist",
        "stratum": workdir / "stratum" / REPOSITORY,
        "ledgers": workdir / "state",
        "rendered": workdir / "rendered",
        "certification": workdir / "certification.junit.xml",
    }
    return {what: str(path) for what, path in places.items() if path.exists()}
