"""The demo product's task runner gives DiracX's scheduler its check interval.

DiracX's scheduler looks for due periodic tasks every 10 s unless told otherwise, and its
command line cannot tell it: the demo product's `run_scheduler` does, so certification's job
is picked up within a second. Checked in a child process against stand-in `diracx.tasks`
modules that record how the scheduler was built (the real DiracX is only in built bundles;
the lab tests run it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PRODUCT_SRC = (
    Path(__file__).resolve().parents[2] / "release" / "resources" / "demo" / "product" / "src"
)

FAKE_DIRACX = {
    # vodemo reads its version from its installed metadata.
    "vodemo_dirac-1.0.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: vodemo-dirac\nVersion: 1.0.0\n",
    "diracx/__init__.py": "",
    "diracx/tasks/__init__.py": "",
    "diracx/tasks/plumbing/__init__.py": "",
    "diracx/tasks/plumbing/scheduler/__init__.py": textwrap.dedent(
        """
        class TaskScheduler:
            def __init__(self, *, broker=None, check_interval=10.0, delayed_poll_interval=1.0):
                self.check_interval = check_interval
                self.delayed_poll_interval = delayed_poll_interval
        """
    ),
    # As the real one: the scheduler class is imported when the command runs.
    "diracx/tasks/task_run.py": textwrap.dedent(
        """
        import json, sys

        def main():
            from .plumbing.scheduler import TaskScheduler
            made = TaskScheduler(broker="redis")
            print(json.dumps({"argv": sys.argv, "check_interval": made.check_interval,
                              "delayed_poll_interval": made.delayed_poll_interval}))
        """
    ),
}


def _run(tmp_path: Path, interval: str) -> dict[str, object]:
    for rel, text in FAKE_DIRACX.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    code = (
        f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(PRODUCT_SRC)!r}]; "
        f"from vodemo.tasks import run_scheduler; run_scheduler({interval})"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    data: dict[str, object] = json.loads(proc.stdout)
    return data


@pytest.mark.parametrize("interval", ["1.0", "2.5"])
def test_the_scheduler_checks_at_the_given_interval(tmp_path: Path, interval: str) -> None:
    made = _run(tmp_path, interval)
    assert made["check_interval"] == float(interval)
    # Only the check interval is ours: the rest stays DiracX's default.
    assert made["delayed_poll_interval"] == 1.0
    assert made["argv"] == ["diracx-tasks", "scheduler"]
