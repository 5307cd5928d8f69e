"""`dirac-release demo --product DIRAC`: the pipeline on real DIRAC, run as a person would.

Needs root, debootstrap and qemu-user-static (the Debian base, shared with
tests/lab/test_dirac_on_debian_base.py through the machine's cache) and the package index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from release.demo.dirac import _problem
from tests.conftest import index_problem, lab_skip

pytestmark = pytest.mark.lab


def demo(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    return subprocess.run(
        [sys.executable, "-m", "release", "--json", "demo", "--product", "DIRAC",
         "--workdir", str(workdir), *args],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )  # fmt: skip


def test_the_dirac_demo_publishes_a_release_that_runs_from_cvmfs(tmp_path: Path) -> None:
    problem = index_problem() or _problem()
    if problem:
        lab_skip(problem)
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout)
    rows = {row["stage"]: row["result"] for row in result["stages"]}
    assert list(rows) == ["base", "base publish", "build", "publish", "run from cvmfs"]
    assert rows["base publish"].startswith("published: /cvmfs/dirac.demo/dirac/diracos/12")
    assert rows["publish"].startswith("published: /cvmfs/dirac.demo/dirac/v8.0.55")
    assert rows["run from cvmfs"].startswith("dirac-version 8.0.55 from /cvmfs/dirac.demo")
    assert "M2Crypto 0.38.0, tornado 5.1.1" in rows["run from cvmfs"]
    stratum = tmp_path / "stratum/dirac.demo/dirac"
    assert sorted(p.name for p in stratum.iterdir()) == ["diracos", "latest", "v8.0.55"]
    # Run again: everything done is verified, nothing is redone, the release still runs.
    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = {row["stage"]: row["result"] for row in json.loads(again.stdout)["stages"]}
    assert rows["base publish"].startswith("already published")
    assert (
        "(done before, verified)" in rows["build"] and "(done before, verified)" in rows["publish"]
    )
    assert rows["run from cvmfs"].startswith("dirac-version 8.0.55")
