"""Resume after a real kill: `dirac-release run` is SIGKILLed (its whole process group, as a
cancelled CI job or a lost machine ends it) at every stage boundary and inside the slowest
stages; each rerun continues, and no stage that had finished is done again.

The lab hosts belong to this test, not to the killed runs, so that what the killed runs did
to the hosts is still there for the reruns to verify, as it is on real certification hosts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from release.build import BuildReport
from release.config import load_config
from release.demo import fixture as demo
from release.lab import lab_hosts
from release.publish import init_repository

pytestmark = pytest.mark.lab

# (what the run has started when it is killed, a line of its live progress that shows it)
KILLS = [
    ("the boundary build | publish", lambda line, seen: line.startswith("publish: ")),
    ("the boundary publish | render", lambda line, seen: line.startswith("render: ")),
    ("the boundary render | deploy", lambda line, seen: line.startswith("deploy: ")),
    ("inside deploy (Ansible running)", lambda line, seen: "deploy: " in seen and "TASK [" in line),
    ("the boundary deploy | certify", lambda line, seen: line.startswith("certify: ")),
    ("the boundary certify | promote", lambda line, seen: line.startswith("promote: ")),
    ("inside promote (production upgrading)",
     lambda line, seen: "promote: " in seen and "TASK [" in line),
]  # fmt: skip


def _run(argv: list[str], env: dict[str, str], kill_when: object | None) -> tuple[int, str, str]:
    """One `run`; SIGKILL its process group at the first progress line `kill_when` accepts."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    seen = ""
    try:
        if kill_when is not None:
            for line in proc.stderr or ():
                seen += line
                if kill_when(line, seen):  # type: ignore[operator]
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
        stdout, stderr = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, stdout, seen + stderr


def test_a_kill_at_every_stage_boundary_is_resumed_without_redoing_finished_stages(
    demo_build: BuildReport, demo_workdir: Path, lab_rootfs: Path, tmp_path: Path
) -> None:
    work = tmp_path / "kills"
    work.mkdir()
    demo.prepare_repository(work / demo.REPO_NAME)
    config_path = work / "release.toml"
    config_path.write_text(demo.demo_config_text(), encoding="utf-8")
    password_file = demo.prepare_secrets(work)
    init_repository(load_config(config_path, environ={}), None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env["DIRAC_RELEASE_CACHE"] = str(demo_workdir / ".cache")  # the session's build: a cache hit
    if os.environ.get("DIRAC_RELEASE_AARCH64_SYSROOT"):
        env["DIRAC_RELEASE_AARCH64_SYSROOT"] = os.environ["DIRAC_RELEASE_AARCH64_SYSROOT"]
    env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password_file)
    names = [*demo.CERTIFICATION_HOSTS, *demo.PRODUCTION_HOSTS]
    stratum = work / "stratum" / demo.REPOSITORY
    with lab_hosts(names, lab_rootfs, work / "lab",
                   binds=[(stratum, f"/cvmfs/{demo.REPOSITORY}", True)]) as net:  # fmt: skip
        addresses = {host.name: host.address for host in net}
        config_path.write_text(demo.demo_config_text(
            hosts={"certification": {n: addresses[n] for n in demo.CERTIFICATION_HOSTS},
                   "production": {n: addresses[n] for n in demo.PRODUCTION_HOSTS}},
            ssh_key=net.ssh_key), encoding="utf-8")  # fmt: skip
        command = [sys.executable, "-m", "release", "--config", str(config_path), "--json",
                   "--progress", "run", "--tag", demo.DEMO_TAG, "--promote", "--install"]  # fmt: skip
        # The build needs the package index, which the lab network cannot reach: the runs that
        # are killed before render runs from the machine's own network, as the demo does.
        argv = [*net.exec_prefix(), *command]
        for index, (where, kill_when) in enumerate(KILLS):
            code, _, stderr = _run(command if index < 2 else argv, env, kill_when)
            assert code == -signal.SIGKILL, f"not killed at {where}: exit {code}\n{stderr[-3000:]}"
        code, stdout, stderr = _run(argv, env, None)
        assert code == 0, stderr[-4000:]
        finished = json.loads(stdout)
        again_code, again, again_err = _run(argv, env, None)

    statuses = {s["stage"]: s["status"] for s in finished["stages"]}
    assert finished["verdict"] == "complete"
    # Only promote, killed inside, was left to do; everything before it verifies.
    assert statuses == {"build": "verified", "publish": "verified", "image": "verified", "render": "verified",
                        "deploy": "verified", "certify": "verified", "promote": "done"}  # fmt: skip
    assert again_code == 0, again_err[-3000:]
    rerun = json.loads(again)
    assert rerun["verdict"] == "nothing to do: every stage asked for was already done and verifies"
    assert {s["status"] for s in rerun["stages"]} == {"verified"}

    # Each stage that finished did so exactly once over the eight runs (the ledgers say so).
    config = load_config(config_path, environ={})
    records = config.ledger("vodemo", demo.DEMO_TAG).records()
    done = [r["stage"] for r in records if r["stage"] != "pipeline"]
    assert done == ["build", "publish", "certify", "certify", "promote"], done
    assert [r["environment"] for r in records if r["stage"] == "certify"] == [
        "certification", "production"]  # fmt: skip
    deployed = [r for r in config.ledger("vodemo", "environments").records("deploy")
                if r.get("environment") == "certification"]  # fmt: skip
    assert len(deployed) == 1 and deployed[0]["version"] == demo.DEMO_TAG
    # Only the two runs that were not killed recorded a pipeline run.
    assert [r["verdict"] for r in records if r["stage"] == "pipeline"] == [
        "complete", rerun["verdict"]]  # fmt: skip
    assert os.readlink(stratum / demo.CVMFS_PREFIX / "pro") == demo.DEMO_TAG
