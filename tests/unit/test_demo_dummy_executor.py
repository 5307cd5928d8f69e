"""The demo product's workers make DiracX's dummy executor wait until it can see its job Waiting.

DiracX's monitor schedules the executor before its own move to Waiting commits; an executor
that runs first makes the state machine record future-dated Received entries, and the job
then cycles for ever (CI saw certification wait 300 s for such a job). Checked in a child
process against stand-in `diracx` modules shaped as the real ones (the real DiracX is only in
built bundles; the lab tests run it, jobs and all).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PRODUCT_SRC = (
    Path(__file__).resolve().parents[2] / "release" / "resources" / "demo" / "product" / "src"
)

FAKE_DIRACX = {
    "vodemo_dirac-1.0.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: vodemo-dirac\nVersion: 1.0.0\n",
    "diracx/__init__.py": "",
    "diracx/core/__init__.py": "",
    "diracx/core/models.py": textwrap.dedent(
        """
        import dataclasses, enum

        class JobStatus(enum.StrEnum):
            RECEIVED = "Received"
            WAITING = "Waiting"
            RUNNING = "Running"
            DONE = "Done"

        class ScalarSearchOperator(enum.StrEnum):
            EQUAL = "eq"

        @dataclasses.dataclass
        class ScalarSearchSpec:
            parameter: str
            operator: ScalarSearchOperator
            value: object
        """
    ),
    "diracx/tasks/__init__.py": "",
    "diracx/tasks/jobs/__init__.py": "",
    # As the real module: string annotations, dependencies injected by execute's signature.
    "diracx/tasks/jobs/dummy_job_executor.py": textwrap.dedent(
        """
        from __future__ import annotations
        import dataclasses

        SCHEDULED = []
        EXECUTED = []

        class JobDB: ...
        class Config: ...

        @dataclasses.dataclass
        class DummyJobExecutorTask:
            job_id: int

            async def schedule(self, *, at_time=None, labels=None):
                SCHEDULED.append((self.job_id, at_time))
                return "task-id"

            async def execute(self, config: Config, job_db: JobDB, job_logging_db: JobDB,
                              task_queue_db: JobDB) -> int:
                EXECUTED.append(self.job_id)
                return self.job_id
        """
    ),
}

SCRIPT = textwrap.dedent(
    """
    import asyncio, inspect, json, sys
    from datetime import UTC, datetime
    from vodemo import tasks
    from diracx.tasks.jobs import dummy_job_executor as dje

    original = inspect.signature(dje.DummyJobExecutorTask.execute, eval_str=True)
    tasks.make_executor_wait_for_waiting()
    tasks.make_executor_wait_for_waiting()  # a second call patches nothing more
    patched = inspect.signature(dje.DummyJobExecutorTask.execute, eval_str=True)

    class FakeJobDB:
        def __init__(self, status):
            self.status, self.asked = status, []
        async def search(self, parameters, search, sorts):
            self.asked.append([parameters, [(s.parameter, str(s.operator), s.value) for s in search]])
            return 1, ([{"JobID": 7, "Status": self.status}] if self.status else [])

    def run(status, job_id=7):
        db = FakeJobDB(status)
        dje.SCHEDULED.clear(); dje.EXECUTED.clear()
        task = dje.DummyJobExecutorTask(job_id=job_id)
        before = datetime.now(UTC)
        returned = asyncio.run(task.execute(config=None, job_db=db, job_logging_db=None,
                                            task_queue_db=None))
        return {"returned": returned, "executed": list(dje.EXECUTED), "asked": db.asked,
                "scheduled": [[j, (at - before).total_seconds()] for j, at in dje.SCHEDULED]}

    out = {"same_signature": str(original) == str(patched),
           "received": run("Received"), "waiting": run("Waiting"), "done": run("Done"),
           "missing": run(None)}
    dje.SCHEDULED.clear()
    asyncio.run(dje.DummyJobExecutorTask(job_id=3).schedule())
    out["plain_schedule"] = [[j, at] for j, at in dje.SCHEDULED]
    # A job never seen Waiting is looked at a bounded number of times, then left to the monitor.
    looks = [len(run("Received", job_id=9)["scheduled"]) for _ in range(tasks.EXECUTOR_LOOKS + 2)]
    out["looks"] = looks
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One child process answers every test of this file."""
    tmp_path = tmp_path_factory.mktemp("fakediracx")
    for rel, text in FAKE_DIRACX.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    code = f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(PRODUCT_SRC)!r}]\n{SCRIPT}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_the_executor_acts_only_on_a_job_it_sees_waiting(out: dict[str, Any]) -> None:
    # DiracX injects the executor's dependencies by its signature: the patch keeps it.
    assert out["same_signature"] is True
    # Still Received (the monitor has not committed): not executed, looked at again ~1 s later.
    received = out["received"]
    assert received["executed"] == [] and received["returned"] == 7
    assert [j for j, _ in received["scheduled"]] == [7]
    assert 0.5 <= received["scheduled"][0][1] <= 5
    assert received["asked"] == [[["Status"], [["JobID", "eq", 7]]]]
    # Waiting: DiracX's own executor walks it.
    assert out["waiting"]["executed"] == [7] and out["waiting"]["scheduled"] == []
    # Already further on, or gone: nothing to do, nothing rescheduled.
    for state in ("done", "missing"):
        assert out[state]["executed"] == [] and out[state]["scheduled"] == [], state


def test_the_monitor_s_schedule_is_left_as_it_is(out: dict[str, Any]) -> None:
    # The executor starts as soon as DiracX runs it: it looks before it acts.
    assert out["plain_schedule"] == [[3, None]]


def test_looks_again_are_bounded(out: dict[str, Any]) -> None:
    looks = out["looks"]
    assert looks[:-2] == [1] * (len(looks) - 2)  # each look schedules one more...
    assert looks[-2:] == [0, 0]  # ...until the bound: then the monitor's next round decides
