"""`dirac-release demo`: the whole pipeline on one machine, as a user runs it (root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from release.build import BuildReport
from release.demo import fixture as demo
from release.lab import PREFIX, netns_names

pytestmark = pytest.mark.lab


def test_demo_runs_every_stage_on_lab_hosts(
    demo_build: BuildReport, demo_workdir: Path, lab_rootfs: Path, tmp_path: Path
) -> None:
    """The demo, stopped during deploy (SIGTERM, as a cancelled CI job is), then run again: the
    rerun verifies build and publish instead of redoing them and finishes every stage.

    SIGTERM rather than Ctrl-C: a process started in the background by a non-interactive
    shell ignores SIGINT, and so would this test's demo in such a CI."""
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env["DIRAC_RELEASE_CACHE"] = str(demo_workdir / ".cache")  # the session's build: a cache hit
    if os.environ.get("DIRAC_RELEASE_AARCH64_SYSROOT"):  # set by demo_build: the same smoke test
        env["DIRAC_RELEASE_AARCH64_SYSROOT"] = os.environ["DIRAC_RELEASE_AARCH64_SYSROOT"]
    argv = [sys.executable, "-m", "release", "demo", "--workdir", str(work)]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=env)  # fmt: skip
    seen: list[str] = []
    try:
        for line in first.stderr or ():  # the live progress a person sees
            seen.append(line)
            if line.startswith("TASK ["):  # Ansible is deploying to the hosts
                first.send_signal(signal.SIGTERM)
                break
        seen.append(first.communicate(timeout=600)[1] or "")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    text = "".join(seen)
    assert first.returncode == 143, text[-3000:]
    assert "terminated: nothing was moved into place" in text
    assert "lab: starting cctbdirac01, cctbdirac02, diracprod01" in text
    assert "deploy: " in text  # the pipeline said what it was doing
    # Its lab hosts are gone (other runs' labs may come and go meanwhile: only its own count).
    assert not [name for name in netns_names() if name.startswith(f"{PREFIX}{first.pid}-")]

    proc = subprocess.Popen([*argv[:3], "--json", *argv[3:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    stdout, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    result = json.loads(stdout)
    stages = {s["stage"]: s["result"] for s in result["stages"]}
    assert list(stages) == ["version", "build", "publish", "image", "lab", "render", "deploy",
                            "certify", "promote"]  # fmt: skip
    # Resumed: what the interrupted run finished is verified, not redone.
    assert stages["build"].endswith("(done before, verified)")
    assert stages["publish"].endswith("(done before, verified)")
    assert stages["image"].endswith("(done before, verified)")
    # The first run built and published the VO image (both architectures) before deploying.
    assert "containers/vodemo/.multiarch/{arch}/vodemo:v1.0.0" in text
    assert "vodemo aarch64: built in" in text and "vodemo x86_64: built in" in text
    assert stages["deploy"] == "cctbdirac01 v1.0.0 (installed), cctbdirac02 v1.0.0 (installed)"
    assert stages["certify"].startswith("passed:")
    assert "moved" in stages["promote"] and "diracprod01" in stages["promote"]
    assert result["lab_run"]["verdict"] == "complete"

    stratum = work / "stratum" / demo.REPOSITORY / demo.CVMFS_PREFIX
    assert os.readlink(stratum / "pro") == demo.DEMO_TAG
    ledger = json.loads((work / "state" / "vodemo" / demo.DEMO_TAG / "ledger.json").read_text())
    records = [r for r in ledger["records"] if r["stage"] != "pipeline"]
    assert [r["stage"] for r in records] == ["build", "publish", "image build", "image publish",
                                             "certify", "certify", "promote"]  # fmt: skip
    assert [r.get("environment") for r in records if r["stage"] == "certify"] == [
        "certification", "production"
    ]  # fmt: skip
    assert all(r["passed"] for r in records if r["stage"] in ("certify", "promote"))
    # The VO image of each architecture, as published, ran the release (x86_64 natively,
    # aarch64 under qemu-user): certified with the digests its build recorded.
    built = {i["arch"]: i["manifest_digest"] for r in records if r["stage"] == "image build"
             for i in r["images"]}  # fmt: skip
    certification = next(r for r in records if r["stage"] == "certify")
    assert certification["images"] == {"vodemo": built} and set(built) == {"x86_64", "aarch64"}
    ran = {c["name"]: c for c in certification["checks"] if c["group"] == "image"}
    assert set(ran) == {"image vodemo x86_64", "image vodemo aarch64"}
    for arch in ("x86_64", "aarch64"):
        check = ran[f"image vodemo {arch}"]
        assert check["result"] == "passed", check
        assert f'"machine": "{arch}"' in check["evidence"] and "bookworm" in check["evidence"]
    assert 'failures="0"' in (work / "certification.junit.xml").read_text()
    assert set(result["outputs"]) >= {"work folder", "ledgers", "certification", "stratum",
                                      "lab disks"}  # fmt: skip
    # The rendered inventory still points at a key that exists: the lab's disks and key stay
    # in the work folder for the next run, which finds the hosts at the same addresses.
    import yaml

    values = yaml.safe_load((work / "rendered" / "certification" / demo.DEMO_TAG / "inventory"
                             / "group_vars" / "all.yml").read_text())  # fmt: skip
    assert Path(values["ansible_ssh_private_key_file"]).is_file()
    assert (work / "lab" / "cctbdirac01" / "upper" / "opt" / "dirac").is_dir()
    key = (work / "secrets" / "legacy-exchange.key").read_text().strip()
    assert (work / "secrets" / "legacy-exchange.key").stat().st_mode & 0o777 == 0o600
    for output in (text, stdout, stderr, json.dumps(ledger)):
        assert key not in output and "eyJ" not in output
    assert not [name for name in netns_names() if name.startswith(f"{PREFIX}{proc.pid}-")]


def test_without_root_the_demo_runs_what_it_can_and_does_not_succeed(
    demo_build: BuildReport, demo_workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """As a user who is not root: version, build and publish run; the lab stages are named as
    not run, with why, and the exit code says the demo did not finish (3), not success."""
    from release.cli import main
    from release.lab import lab_hosts_problem

    for name in [n for n in os.environ if n.startswith("DIRAC_RELEASE_")]:
        if name != "DIRAC_RELEASE_AARCH64_SYSROOT":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DIRAC_RELEASE_CACHE", str(demo_workdir / ".cache"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    # No Debian bases on this user's machine: making them needs root.
    from release.base import debian

    monkeypatch.setattr(debian, "cached_path", lambda arch: tmp_path / "no-bases" / arch)
    lab_hosts_problem.cache_clear()
    try:
        code = main(["--json", "demo", "--workdir", str(tmp_path / "demo")])
    finally:
        lab_hosts_problem.cache_clear()
    out = capsys.readouterr()
    assert code == 3, out.err[-2000:]
    result = json.loads(out.out)  # one JSON document: the result, the error on stderr only
    assert "stages" in result, out.out[-2000:] + out.err[-2000:]
    stages = {s["stage"]: s["result"] for s in result["stages"]}
    assert list(stages) == ["version", "build", "publish", "image", "deploy", "certify",
                            "promote"]  # fmt: skip
    assert stages["publish"].startswith("published")
    for stage in ("image", "deploy", "certify", "promote"):
        assert stages[stage].startswith("NOT RUN: the Debian x86_64 base for the VO image is "
                                        "not made yet"), stages[stage]  # fmt: skip
        assert "debootstrap needs root" in stages[stage]
    assert result["not_run"]["stages"] == ["image", "deploy", "certify", "promote"]
    assert "--until publish" in out.err and "did not run" in out.err
    assert set(result["outputs"]) >= {"work folder", "bundles", "stratum", "ledgers"}
    # Asking for less is a success.
    lab_hosts_problem.cache_clear()
    assert main(["--json", "demo", "--workdir", str(tmp_path / "demo"), "--until", "publish"]) == 0
    lab_hosts_problem.cache_clear()
