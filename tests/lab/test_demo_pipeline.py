"""`dirac-release demo`: the whole pipeline on one machine, as a user runs it (root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from release import demo
from release.build import BuildReport
from release.lab import PREFIX, netns_names

pytestmark = pytest.mark.lab


def test_demo_runs_every_stage_on_lab_hosts(
    demo_build: BuildReport, demo_workdir: Path, lab_rootfs: Path, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env["DIRAC_RELEASE_CACHE"] = str(demo_workdir / ".cache")  # the session's build: a cache hit
    if os.environ.get("DIRAC_RELEASE_AARCH64_SYSROOT"):  # set by demo_build: the same smoke test
        env["DIRAC_RELEASE_AARCH64_SYSROOT"] = os.environ["DIRAC_RELEASE_AARCH64_SYSROOT"]
    proc = subprocess.run(
        [sys.executable, "-m", "release", "--json", "demo", "--workdir", str(work)],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    stages = {s["stage"]: s["result"] for s in result["stages"]}
    assert list(stages) == ["version", "build", "publish", "lab", "deploy", "certify", "promote"]
    assert stages["deploy"] == "cctbdirac01 v1.0.0 (installed), cctbdirac02 v1.0.0 (installed)"
    assert stages["certify"].startswith("passed:")
    assert "moved" in stages["promote"] and "diracprod01" in stages["promote"]
    assert result["certify"]["passed"] and result["promote"]["passed"]
    assert result["promote"]["certify"]["environment"] == "production"

    stratum = work / "stratum" / demo.REPOSITORY / "vodemo"
    assert os.readlink(stratum / "pro") == demo.DEMO_TAG
    ledger = json.loads((work / "state" / "vodemo" / demo.DEMO_TAG / "ledger.json").read_text())
    assert [r["stage"] for r in ledger["records"]] == [
        "build",
        "publish",
        "certify",
        "certify",
        "promote",
    ]
    assert 'failures="0"' in (work / "certification.junit.xml").read_text()
    key = (work / "secrets" / "legacy-exchange.key").read_text().strip()
    assert (work / "secrets" / "legacy-exchange.key").stat().st_mode & 0o777 == 0o600
    for text in (proc.stdout, proc.stderr, json.dumps(ledger)):
        assert key not in text and "eyJ" not in text
    # The lab hosts are gone: no namespace of a lab run is left (other modules' labs are
    # torn down with their module).
    assert not [name for name in netns_names() if name.startswith(PREFIX)]
