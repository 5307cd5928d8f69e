"""ci.yml's release-notes job executed step by step (tests/workflow_runner.py), as GitHub runs it.

The job checks out this project at its commit, installs it from the checkout, and asks the
local GitHub API (tests/github_fake.py) for the pull request's description. A pull request
with a valid notes block passes; one without fails its job naming the pull request; a push
does not run the job at all. The lint and tests jobs are not executed here: they are the
README's own commands (`nox -s lint`, `nox -s tests`), and the second is this very suite.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.github_fake import FakeGitHub
from tests.unit.test_notes import notes_body
from tests.workflow_runner import LocalRunner

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/ci.yml"
TOKEN = "ghp_ci-token-never-printed"  # noqa: S105 (a test value)
JOB = "release-notes"


def _runner(root: Path, github: FakeGitHub, event: str, pr: int | None) -> LocalRunner:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()  # fmt: skip
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    base_env["GITHUB_API_URL"] = github.url
    context = {"ref": f"refs/pull/{pr}/merge" if pr else "refs/heads/main",
               "ref_name": f"{pr}/merge" if pr else "main", "repository": "DIRACGrid/vodemo",
               "repository_owner": "DIRACGrid", "event_name": event, "token": TOKEN,
               "workflow": "ci", "sha": head,
               "event": {"pull_request": {"number": pr}} if pr else {}}  # fmt: skip
    return LocalRunner(workflow=WORKFLOW, root=root, repository=ROOT, github=context,
                       base_env=base_env, select=frozenset({JOB}))  # fmt: skip


def test_the_release_notes_job_of_a_pull_request(tmp_path: Path) -> None:
    with FakeGitHub(owner="DIRACGrid", name="vodemo", token=TOKEN) as github:
        github.add_pull(7, "Good", notes_body("*WMS", "FIX: the matcher"))
        github.add_pull(8, "No notes", "Just a description, no block.")
        good = _runner(tmp_path / "good", github, "pull_request", 7).run()
        bad = _runner(tmp_path / "bad", github, "pull_request", 8)
        bad.root = tmp_path / "good"  # the same runner machine: its Python is set up already
        failed_run = bad.run()
        push = _runner(tmp_path / "good", github, "push", None).run()

    assert good.jobs == {"lint": "not selected", "tests": "not selected", JOB: "success"}, [
        (s.name, s.output[-2000:]) for s in good.steps if s.returncode]  # fmt: skip
    checked = next(
        s for s in good.steps if s.name == "The pull request carries valid release notes"
    )
    assert "#7" in checked.output

    assert failed_run.jobs[JOB] == "failure"
    step = failed_run.failed_step()
    assert step is not None and step.name == "The pull request carries valid release notes"
    assert step.returncode == 1 and "#8" in step.output and "BEGINRELEASENOTES" in step.output

    assert push.jobs[JOB] == "skipped"  # `if: github.event_name == 'pull_request'`
    for run in (good, failed_run):
        assert TOKEN not in "".join(s.output for s in run.steps)
    # Only the external actions were stood in for.
    assert set(good.stand_ins) == {"actions/checkout", "actions/setup-python"}
