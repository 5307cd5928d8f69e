"""vodemo-diracx-tasks: DiracX's task system for this bundle (Redis, scheduler, workers).

One supervised process (runit starts it) prepares the same state as vodemo-diracx, starts a
private Redis on the loopback (unless ``--redis-url``), the ``diracx-tasks`` scheduler and one
worker per task size, all as children that die with it. When any child ends, the others are
stopped and this process exits non-zero, so the supervisor restarts them together. Redis keeps
nothing on disk: the periodic tasks find their work in the databases, so a restart loses
nothing that matters.

The scheduler and the workers are forked from this process once it has imported DiracX's task
system (as ``gunicorn --preload`` does): four interpreters each importing it took about 2 s of
CPU apiece on every restart, which on a small host delays the DiracX server starting beside
them. Each child is named (``/proc/<pid>/comm``: ``dxscheduler``, ``dxworker-small``...) for
ps and for admins, since its command line is this process's.

With ``DIRACX_TASKS_DUMMY_JOB_EXECUTOR_ENABLED=true`` (the demo's setting) DiracX's own dummy
executor walks submitted jobs Received -> Waiting -> Matched -> Running -> Done: jobs reach a
final state without pilots or computing elements.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from vodemo.server import (
    DEFAULT_STATE,
    _child_env,
    _die_with_parent,
    _port_free,
    _say,
    _site_dir,
    prepare_state,
)

SIZES = ("small", "medium", "large")  # diracx-tasks' task sizes: each needs a worker
REDIS_START_TIMEOUT = 30
STOP_TIMEOUT = 10
POLL_S = 0.5

DEFAULT_CHECK_S = 1.0
# How often the executor looks again while the monitor's move to Waiting is not visible yet,
# and how many times (bounded: then the monitor's next round decides).
EXECUTOR_DELAY_S = 1.0
EXECUTOR_LOOKS = 30


def run_scheduler(check_interval: float) -> None:
    """diracx-tasks' scheduler, with the periodic tasks checked every `check_interval` seconds.

    DiracX's scheduler looks for due periodic tasks every 10 s, whatever their own interval:
    the dummy executor's monitor (every second in the demo) then starts a submitted job up to
    10 s late, which is most of what certification waits for. The scheduler takes the check
    interval as an argument but its command line does not: give it here.
    """
    from diracx.tasks import task_run
    from diracx.tasks.plumbing import scheduler

    base = scheduler.TaskScheduler

    class CheckingScheduler(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.setdefault("check_interval", check_interval)
            super().__init__(*args, **kwargs)

    scheduler.TaskScheduler = CheckingScheduler  # start_scheduler imports it when it runs
    sys.argv = ["diracx-tasks", "scheduler"]
    task_run.main()


def run_worker(args: list[str]) -> None:
    """A diracx-tasks worker whose dummy executor never acts on a job it cannot see Waiting.

    DiracX's dummy-executor monitor moves a Received job to Waiting and schedules the executor
    in the same database transaction, which commits only when the monitor returns. A worker
    that picks the executor up first still reads Received; the state machine then refuses
    Matched, Running and Done and records each as Received, the last one dated 5 s in the
    future. That future Received outlives every later attempt, so the job cycles
    Received -> Waiting -> Received for ever and certification waits for a final state in vain
    (seen in CI: one job in ~10, on a busy machine). Here the executor looks first: a job it
    sees Waiting is past the monitor's commit and is executed at once; a job still Received is
    looked at again a second later (bounded); a job in any other state is left alone.
    """
    from diracx.tasks import task_run

    make_executor_wait_for_waiting()
    sys.argv = ["diracx-tasks", *args]
    task_run.main()


def make_executor_wait_for_waiting() -> None:
    """Patch DiracX's DummyJobExecutorTask in this process (see run_worker for why)."""
    import functools
    import logging
    from datetime import UTC, datetime, timedelta

    from diracx.core.models import JobStatus, ScalarSearchOperator, ScalarSearchSpec
    from diracx.tasks.jobs import dummy_job_executor

    task = dummy_job_executor.DummyJobExecutorTask
    if getattr(task, "_vodemo_waits", False):
        return
    log = logging.getLogger("vodemo.tasks")
    execute = task.execute
    looks: dict[int, int] = {}

    def later() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=EXECUTOR_DELAY_S)

    # functools.wraps keeps execute's signature: DiracX injects its dependencies by it.
    @functools.wraps(execute)
    async def execute_when_waiting(self: object, **deps: object) -> int:
        job_id = int(self.job_id)  # type: ignore[attr-defined]
        spec = ScalarSearchSpec(
            parameter="JobID", operator=ScalarSearchOperator.EQUAL, value=job_id
        )
        _, rows = await deps["job_db"].search(["Status"], [spec], [])  # type: ignore[attr-defined]
        status = rows[0]["Status"] if rows else None
        if status == JobStatus.RECEIVED:
            looks[job_id] = looks.get(job_id, 0) + 1
            if looks[job_id] <= EXECUTOR_LOOKS:
                await type(self)(job_id=job_id).schedule(at_time=later())  # type: ignore[call-arg]
            else:
                log.warning("job %d still Received after %d looks: left to the monitor",
                            job_id, EXECUTOR_LOOKS)  # fmt: skip
            return job_id
        looks.pop(job_id, None)
        if status != JobStatus.WAITING:
            log.info("job %d is %s, not Waiting: nothing to execute", job_id, status)
            return job_id
        result: int = await execute(self, **deps)
        return result

    task.execute = execute_when_waiting  # type: ignore[attr-defined]
    task._vodemo_waits = True  # type: ignore[attr-defined]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(state: Path, port: int) -> subprocess.Popen[bytes]:
    """A private Redis on the loopback, as a child; wait (bounded) until it answers PING."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit(
            "vodemo-diracx-tasks: redis-server not found in PATH: install it "
            "(Debian: apt-get install redis-server) or give --redis-url"
        )
    if not _port_free("127.0.0.1", port):
        raise SystemExit(
            f"vodemo-diracx-tasks: the Redis port 127.0.0.1:{port} is in use (--redis-port)"
        )
    folder = state / "redis"
    folder.mkdir(mode=0o700, exist_ok=True)
    # preexec_fn is safe here: no thread has been started in this process.
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--daemonize", "no"],
        cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )  # fmt: skip
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vodemo-diracx-tasks: redis-server exited ({proc.returncode})")
        if _redis_answers(port):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"vodemo-diracx-tasks: Redis did not answer within {REDIS_START_TIMEOUT} s")


def preload() -> None:
    """Import what the scheduler and the workers run, once, before they are forked."""
    from diracx.tasks import task_run  # noqa: F401
    from diracx.tasks.plumbing import broker, scheduler, worker  # noqa: F401
    from diracx.tasks.plumbing.factory import load_task_registry

    load_task_registry()  # the task modules of every installed DiracX extension


class Forked:
    """A forked child seen through the part of Popen's interface the supervision loop uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.05)
        return code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


Child = subprocess.Popen[bytes] | Forked


def _set_name(name: str) -> None:
    """/proc/self/comm (15 bytes), which ps and top show for the process."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def fork(name: str, run: Callable[[], object]) -> Forked:
    """run() in a forked child named `name` that dies with this process; exits with its code."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Forked(pid)
    code = 1
    try:  # the child: never returns into the parent's code
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent()
        _set_name(name)
        run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stop(children: dict[str, Child]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vodemo-diracx-tasks", description="Run DiracX's task scheduler and workers."
    )
    parser.add_argument("--state", default=os.environ.get("VODEMO_STATE", DEFAULT_STATE),
                        help="the state vodemo-diracx uses (default: $VODEMO_STATE or %(default)s)")  # fmt: skip
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("VODEMO_REDIS_PORT", "6379")),
                        help="port of the private Redis on 127.0.0.1 (default: $VODEMO_REDIS_PORT or %(default)s)")  # fmt: skip
    parser.add_argument("--redis-url", default=os.environ.get("VODEMO_REDIS_URL", ""),
                        help="use this Redis instead of starting one")  # fmt: skip
    parser.add_argument("--max-concurrent-tasks", type=int, default=4)
    parser.add_argument("--scheduler-check", type=float,
                        default=float(os.environ.get("VODEMO_SCHEDULER_CHECK_SECONDS", DEFAULT_CHECK_S)),
                        help="seconds between the scheduler's looks for due periodic tasks "
                        "(default: $VODEMO_SCHEDULER_CHECK_SECONDS or %(default)s; DiracX's own: 10)")  # fmt: skip
    args = parser.parse_args(argv)

    state = Path(args.state).expanduser().absolute()
    settings = prepare_state(state)
    stop = {"signal": 0}

    def _on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    children: dict[str, Child] = {}
    redis_url = args.redis_url
    if not redis_url:
        children["redis"] = start_redis(state, args.redis_port)
        redis_url = f"redis://127.0.0.1:{args.redis_port}"
    if not 0.1 <= args.scheduler_check <= 600:
        raise SystemExit("vodemo-diracx-tasks: --scheduler-check must be 0.1 to 600 seconds")
    # The children's settings (databases, Redis) are this process's environment, set before
    # DiracX is imported so nothing reads them earlier.
    os.environ.update(_child_env({**settings, "DIRACX_TASKS_REDIS_URL": redis_url}))
    try:
        preload()
    except BaseException:
        _stop(children)
        raise
    children["scheduler"] = fork("dxscheduler", lambda: run_scheduler(args.scheduler_check))
    for size in SIZES:
        worker = ["worker", "--worker-size", size,
                  "--max-concurrent-tasks", str(args.max_concurrent_tasks)]  # fmt: skip
        children[f"{size} worker"] = fork(
            f"dxworker-{size}", functools.partial(run_worker, worker)
        )
    _say(f"task system up: Redis {redis_url.split('@')[-1]}, scheduler, workers {', '.join(SIZES)}")
    ended = ""
    while not stop["signal"] and not ended:
        ended = next(
            (f"{name} exited ({proc.returncode})" for name, proc in children.items()
             if proc.poll() is not None),
            "",
        )  # fmt: skip
        time.sleep(POLL_S)
    _stop(children)
    if ended:
        _say(f"{ended}: stopping the others (the supervisor restarts us)")
        return 1
    return 0
