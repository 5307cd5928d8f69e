"""release.yml executed step by step on this machine (tests/workflow_runner.py), on the demo.

The workflow is called as a product repository calls it (`workflow_call`, its own
release.toml, this toolkit pinned by path) for a pushed tag: plan, build, publish to the demo's
directory stratum, the GitHub release against the local GitHub API (tests/github_fake.py),
then deploy, certify and promote on lab hosts; the self-hosted jobs run inside the lab
network, as a runner at the site would. A legacy tag stops in the plan job: nothing is built.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from release.demo.fixture import (
    CERTIFICATION_HOSTS,
    CVMFS_PREFIX,
    DEMO_TAG,
    PRODUCTION_HOSTS,
    REPOSITORY,
    demo_config_text,
    prepare_repository,
    prepare_secrets,
)
from tests.conftest import lab_skip
from tests.github_fake import FakeGitHub
from tests.workflow_runner import LocalRunner, WorkflowRun

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/release.yml"
TOKEN = "ghp_workflow-token-never-printed"  # noqa: S105 (a test value)
VAULT = "the vault password of the test"


def _runner(site: Path, tag: str, github: FakeGitHub, commit: str, prefix: object) -> LocalRunner:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    base_env.update({"GITHUB_API_URL": github.url, "HOME": os.environ.get("HOME", "/root")})
    return LocalRunner(
        workflow=WORKFLOW,
        root=site / "runner",
        repository=site / "product-repo",
        github={"ref": f"refs/tags/{tag}", "ref_name": tag, "repository": "DIRACGrid/vodemo",
                "repository_owner": "DIRACGrid", "event_name": "push", "token": TOKEN,
                "workflow": "release", "sha": commit},
        inputs={"version": "", "product": "", "config": str(site / "release.toml"),
                "toolkit": str(ROOT), "first-install": True, "resume-run": ""},
        run_id="101",
        artifact_store=site / "artifacts",
        package_index=site / "pypi-index",
        secrets={"ANSIBLE_VAULT_PASSWORD": VAULT},
        base_env=base_env,
        prefix=prefix,  # type: ignore[arg-type]
        on_step=lambda text: print(text, flush=True),
    )  # fmt: skip


def _shown(run: WorkflowRun) -> str:
    failed = run.failed_step()
    return json.dumps(run.jobs) + ("" if failed is None else f"\n{failed.job}/{failed.name}:\n"
                                   + failed.output[-8000:])  # fmt: skip


def test_a_tag_runs_the_whole_release_workflow(tmp_path: Path) -> None:
    from release.lab import ROOTFS_CACHE, lab_hosts, lab_hosts_problem, prepare_rootfs

    problem = lab_hosts_problem()
    if problem:
        lab_skip(problem)
    site = tmp_path / "site"
    site.mkdir()
    commit = prepare_repository(site / "product-repo")
    password_file = prepare_secrets(site)
    # The secrets' vault is made for the demo's password: the workflow gets that one.
    vault_password = password_file.read_text().strip()
    stratum = site / "stratum" / REPOSITORY
    # The CVMFS repository exists before any release (an admin made it): the demo's stratum.
    from release.config import load_config
    from release.publish import init_repository

    (site / "release.toml").write_text(demo_config_text())
    init_repository(load_config(site / "release.toml"), None)
    rootfs = prepare_rootfs(ROOTFS_CACHE)
    names = [*CERTIFICATION_HOSTS, *PRODUCTION_HOSTS]
    with (
        FakeGitHub(owner="DIRACGrid", name="vodemo", token=TOKEN) as github,
        lab_hosts(names, rootfs, site / "lab", binds=[(stratum, f"/cvmfs/{REPOSITORY}", True)])
        as net,
    ):  # fmt: skip
        addresses = {host.name: host.address for host in net}
        (site / "release.toml").write_text(demo_config_text(
            hosts={"certification": {n: addresses[n] for n in CERTIFICATION_HOSTS},
                   "production": {n: addresses[n] for n in PRODUCTION_HOSTS}},
            ssh_key=net.ssh_key))  # fmt: skip

        def prefix(_name: str, job: dict[str, object]) -> list[str]:
            runs_on = job["runs-on"]
            return net.exec_prefix() if "self-hosted" in runs_on else []  # type: ignore[operator]

        runner = _runner(site, DEMO_TAG, github, commit, prefix)
        runner.secrets["ANSIBLE_VAULT_PASSWORD"] = vault_password
        run = runner.run()
        assert set(run.jobs.values()) == {"success"}, _shown(run)
        assert list(run.jobs) == ["plan", "build", "publish", "github-release", "pypi", "deploy",
                                  "certify", "promote"]  # fmt: skip
        # Only the external actions were stood in for, each by name.
        assert set(run.stand_ins) == {"actions/checkout", "actions/setup-python",
                                      "actions/upload-artifact", "actions/download-artifact",
                                      "actions/attest-build-provenance",
                                      "pypa/gh-action-pypi-publish"}  # fmt: skip
        # PyPI got the wheel installed in the bundles and an sdist of the tag's commit.
        uploaded = sorted(p.name for p in (site / "pypi-index").iterdir())
        assert uploaded == ["vodemo_dirac-1.0.0-py3-none-any.whl", "vodemo_dirac-1.0.0.tar.gz"]
        assert run.outputs["plan"]["tag"] == DEMO_TAG and run.outputs["plan"]["final"] == "true"
        assert run.outputs["plan"]["cvmfs_repository"] == REPOSITORY
        assert sorted(name for name, _ in run.attested) == [
            f"vodemo-{DEMO_TAG}-Linux-aarch64.tar.gz", f"vodemo-{DEMO_TAG}-Linux-x86_64.tar.gz"]  # fmt: skip
        uploads = len([r for r in github.requests if r[0].startswith("/uploads")])
        tags = json.loads((site / "stratum/.dirac-release" / REPOSITORY / "tags.json").read_text())

        # The release started again by hand (workflow_dispatch, on the branch, with the
        # version and the first run's ID): what is done is found done, nothing is made twice.
        again = _runner(site, DEMO_TAG, github, commit, prefix)
        again.github.update(ref="refs/heads/integration", ref_name="integration",
                            event_name="workflow_dispatch")  # fmt: skip
        again.inputs.update({"version": DEMO_TAG, "resume-run": "101", "first-install": False})
        again.root, again.run_id = site / "runner-again", "102"
        again.secrets["ANSIBLE_VAULT_PASSWORD"] = vault_password
        rerun = again.run()
        assert set(rerun.jobs.values()) == {"success"}, _shown(rerun)
        said = {f"{s.job}/{s.name}": s.output for s in rerun.steps}
        # The first run's build was fetched, checked and verified: nothing was built again.
        build = said["build/Build (an earlier run's build is verified, not redone)"]
        assert re.search(r"build\s.*verified", build), build
        ledger = json.loads((site / "runner-again/jobs/build/workspace/state/vodemo" / DEMO_TAG
                             / "ledger.json").read_text())  # fmt: skip
        assert len([r for r in ledger["records"] if r["stage"] == "build"]) == 1
        assert "already published" in said["publish/Publish"]
        assert (
            said["pypi/pypa/gh-action-pypi-publish@81e9d935c883d0b210363ab89cf05f3894778450"].count(
                "Skipping"
            )
            == 2
        )
        assert "already published" in said["github-release/Create or update the GitHub release"]
        assert len([r for r in github.requests if r[0].startswith("/uploads")]) == uploads
        now = json.loads((site / "stratum/.dirac-release" / REPOSITORY / "tags.json").read_text())
        assert now == tags  # no new CVMFS revision, no new named tag
        run.steps += rerun.steps
    # Published, released on GitHub, certified and promoted.
    assert (stratum / CVMFS_PREFIX / DEMO_TAG / "Linux-x86_64/diracosrc").is_file()
    # The VO's pilot files went out with the release and moved with pro, where the wrapper looks.
    assert os.readlink(stratum / CVMFS_PREFIX / "pilot") == f"{DEMO_TAG}/pilot/vodemo"
    assert (stratum / CVMFS_PREFIX / "pilot" / "pilot.json").is_file()
    assert os.readlink(stratum / CVMFS_PREFIX / "pro") == DEMO_TAG
    (release,) = github.releases.values()
    assert (
        release["draft"] is False and len(release["assets"]) == 6
    )  # 2 tarballs, 2 manifests, SBOM, sums
    ledger = json.loads((site / "runner/jobs/certify/workspace/state/vodemo" / DEMO_TAG
                         / "ledger.json").read_text())  # fmt: skip
    certified = [r for r in ledger["records"] if r["stage"] == "certify"]
    assert certified and certified[-1]["environment"] == "certification"
    logs = "".join(step.output for step in run.steps)
    for secret in (TOKEN, vault_password):
        assert secret not in logs


def test_a_legacy_tag_stops_at_the_plan(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    commit = prepare_repository(site / "product-repo")
    import subprocess

    subprocess.run(["git", "-C", str(site / "product-repo"), "-c", "user.name=t", "-c",
                    "user.email=t@example.org", "tag", "-a", "v7r3p38", "-m", "legacy"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    (site / "release.toml").write_text(demo_config_text())
    with FakeGitHub(owner="DIRACGrid", name="vodemo", token=TOKEN) as github:
        run = _runner(site, "v7r3p38", github, commit, lambda _n, _j: []).run()
    assert run.jobs["plan"] == "failure"
    assert {run.jobs[j] for j in run.jobs if j != "plan"} == {"skipped"}
    failed = run.failed_step()
    assert failed is not None and failed.name == "Check the tag"
    assert "legacy DIRAC tag" in failed.output
    assert not (site / "runner/jobs/build").exists() and not github.requests
    shutil.rmtree(site / "runner")
