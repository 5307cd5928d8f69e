"""The dirac_services Ansible module, run as Ansible runs it (a JSON arguments file).

Check mode writes nothing and reports the run-script diff; `status` reads the working folder
of a real running process. The full cycle (runit, restarts, waits) runs on the lab hosts in
tests/lab/test_ansible_hosts.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

MODULE = (
    Path(__file__).resolve().parents[2] / "ansible/roles/dirac_server/library/dirac_services.py"
)


def run_module(tmp_path: Path, args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    args_file = tmp_path / "args.json"
    args_file.write_text(
        json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check}})
    )
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_check_mode_reports_the_diff_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "dirac"
    script = root / "runit/Framework/Web/run"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\nexec old\n")
    services = [{"name": "Framework/Web", "run": "#!/bin/sh\nexec new\n"},
                {"name": "DiracX/diracx", "run": "#!/bin/sh\nexec diracx\n"}]  # fmt: skip
    # A runsvdir supervises the folder (a process of that name with the folder in its argv,
    # as _runsvdir_running looks for it): the services whose script changed are restarted.
    (root / "startup").mkdir()
    runsvdir = subprocess.Popen(["runsvdir", "-c", "import time; time.sleep(60)",
                                 str(root / "startup")], executable=sys.executable)  # fmt: skip
    try:
        result = run_module(tmp_path, {"action": "supervise", "root": str(root),
                                       "services": services}, check=True)  # fmt: skip
    finally:
        runsvdir.kill()
        runsvdir.wait()
    assert result["changed"] is True, result
    assert result["written"] == ["Framework/Web", "DiracX/diracx"]
    assert result["restarted"] == ["Framework/Web", "DiracX/diracx"] and result["started"] == []
    diffs = {d["after_header"]: d for d in result["diff"]}
    assert diffs[str(script)]["before"] == "#!/bin/sh\nexec old\n"
    assert diffs[str(script)]["after"] == "#!/bin/sh\nexec new\n"
    assert script.read_text() == "#!/bin/sh\nexec old\n"  # nothing written
    assert not (root / "runit/DiracX").exists() and not any((root / "startup").iterdir())


def test_check_mode_restarts_all_when_the_version_changed(tmp_path: Path) -> None:
    root = tmp_path / "dirac"
    run = "#!/bin/sh\nexec same\n"
    (root / "runit/Framework/Web").mkdir(parents=True)
    (root / "runit/Framework/Web/run").write_text(run)
    (root / "startup").mkdir()
    (root / "startup/Framework_Web").symlink_to(root / "runit/Framework/Web")
    services = [{"name": "Framework/Web", "run": run}]
    same = run_module(tmp_path, {"action": "supervise", "root": str(root), "services": services},
                      check=True)  # fmt: skip
    assert same["written"] == [] and same["linked"] == [] and same["restarted"] == []
    # No runsvdir supervises this folder, so one would be started: still a change.
    assert same["changed"] is True and same["started"] == ["Framework/Web"]
    # The runsvdir started here starts the services with what is in place: none is also
    # restarted (that would kill it while it starts), even when a restart is asked for.
    forced = run_module(tmp_path, {"action": "supervise", "root": str(root), "services": services,
                                   "restart": True}, check=True)  # fmt: skip
    assert forced["restarted"] == [] and forced["started"] == ["Framework/Web"]
    assert forced["diff"] == []


def test_supervise_needs_the_run_scripts(tmp_path: Path) -> None:
    result = run_module(tmp_path, {"action": "supervise", "root": str(tmp_path),
                                   "services": [{"name": "Framework/Web"}]}, check=True)  # fmt: skip
    assert result["failed"] is True
    assert "Framework/Web: action=supervise needs its run script" in result["msg"]


def test_status_fails_for_a_service_that_does_not_run_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without runit (no sv in PATH) the service has no status and no process.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run_module(tmp_path, {"action": "status", "root": str(tmp_path), "version": "v1.0.1",
                                   "services": [{"name": "Framework/Web"}]})  # fmt: skip
    assert result["failed"] is True
    assert result["names"] == ["Framework/Web"] and result["trees"] == [""]
    assert "Framework/Web does not run v1.0.1: its process runs in ''" in result["msg"]


def test_status_reads_the_working_folder_of_the_running_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "versions/v1.0.1/Linux-x86_64"
    tree.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "30"], cwd=tree)
    try:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        # sv's own output format for a running service ("run: <dir>: (pid N) Ss"), from a
        # program in PATH; the working folder is then read from the real process.
        sv = bin_dir / "sv"
        sv.write_text(f'#!/bin/sh\necho "run: $2: (pid {sleeper.pid}) 7s"\n')
        sv.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '')}")
        ok = run_module(tmp_path, {"action": "status", "root": str(tmp_path), "version": "v1.0.1",
                                   "services": [{"name": "Framework/Web"}]})  # fmt: skip
        wrong = run_module(tmp_path, {"action": "status", "root": str(tmp_path),
                                      "version": "v1.0.2", "services": [{"name": "Framework/Web"}]})  # fmt: skip
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ok.get("failed") is not True, ok
    assert ok["trees"] == [str(tree)] and ok["services"][0]["pid"] == sleeper.pid
    assert wrong["failed"] is True and f"its process runs in '{tree}'" in wrong["msg"]


class _Failed(Exception):
    pass


class _Module:
    def fail_json(self, msg: str, **_details: Any) -> None:
        raise _Failed(msg)


def _load_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dirac_services_under_test", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_restart_is_one_sv_call_and_retries_only_the_services_not_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One `sv restart` for all (their stops and starts overlap); a service runsvdir has not
    picked up yet is asked again alone, and one that never comes fails the task by name."""
    services = _load_module()
    calls: list[tuple[str, ...]] = []
    ready_after = {"/d/startup/A": 0, "/d/startup/B": 2}  # B is reachable from the third try

    def fake_sv(*args: str) -> tuple[int, str]:
        calls.append(args)
        lines, rc = [], 0
        for d in args[1:]:
            if ready_after.get(d, 99) < len(calls):
                lines.append(f"ok: run: {d}: (pid 42) 0s")
            else:
                lines.append(f"warning: {d}: unable to open supervise/ok: file does not exist")
                rc += 1
        return rc, "\n".join(lines)

    monkeypatch.setattr(services, "_sv", fake_sv)
    monkeypatch.setattr(services.time, "sleep", lambda _s: None)
    services._restart(_Module(), ["/d/startup/A", "/d/startup/B"])
    assert calls == [
        ("restart", "/d/startup/A", "/d/startup/B"),
        ("restart", "/d/startup/B"),
        ("restart", "/d/startup/B"),
    ]

    calls.clear()
    ready_after["/d/startup/C"] = 99
    with pytest.raises(_Failed, match=r"sv restart /d/startup/C failed 10 times"):
        services._restart(_Module(), ["/d/startup/A", "/d/startup/C"])
    assert calls[0] == ("restart", "/d/startup/A", "/d/startup/C")
    assert calls[1:] == [("restart", "/d/startup/C")] * (services.SV_TRIES - 1)


class _Clock:
    """Virtual time for the module's waits: sleeping advances it, nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _services_at(clock: _Clock, starts: dict[str, list[tuple[float, int]]]) -> Any:
    """A fake `sv status`: each service runs as the pid of the latest (start time, pid)."""

    def fake_sv(*args: str) -> tuple[int, str]:
        path = args[1]
        runs = [(t, pid) for t, pid in starts[path] if t <= clock.now]
        if not runs:
            return 0, f"down: {path}: 1s"
        t, pid = runs[-1]
        return 0, f"run: {path}: (pid {pid}) {int(clock.now - t)}s"

    return fake_sv


def test_uptime_and_health_are_waited_for_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wait is the longer of the two, not their sum; a health answer counts for the
    process that gave it only; each bound fails the task naming the service."""
    services, clock = _load_module(), _Clock()
    monkeypatch.setattr(services.time, "monotonic", lambda: clock.now)
    monkeypatch.setattr(services.time, "sleep", clock.sleep)
    starts = {"/s/Web": [(0.0, 10)], "/s/Worker": [(0.0, 20)]}
    monkeypatch.setattr(services, "_sv", _services_at(clock, starts))
    asked: list[float] = []

    def health(_url: str) -> tuple[bool, str]:
        asked.append(clock.now)
        return (clock.now >= 1.5, "200 ok" if clock.now >= 1.5 else "503 starting")

    monkeypatch.setattr(services, "_health", health)
    dirs, urls = {"Web": "/s/Web", "Worker": "/s/Worker"}, {"Web": "http://h/health"}
    status, answers = services._wait_ready(_Module(), dirs, urls, 2, 30, 30)
    # Healthy at 1.5 s and up for 2 s at 2.0 s: ready at 2.0 s (in turn it was 3.5 s or more).
    assert clock.now == 2.0 and answers == {"Web": "200 ok"}
    assert status["Web"] == "run: /s/Web: (pid 10) 2s"
    assert len([t for t in asked if t >= 1.5]) == 1  # asked once healthy, then trusted

    # Web restarts after its health answer: the new process must answer again.
    clock.now, asked[:] = 0.0, []
    starts["/s/Web"] = [(0.0, 10), (1.7, 11)]
    status, _ = services._wait_ready(_Module(), dirs, urls, 2, 30, 30)
    assert status["Web"] == "run: /s/Web: (pid 11) 2s" and clock.now == 4.0
    assert [t for t in asked if t >= 1.5][:2] == [1.5, 2.0]  # pid 10's answer, then pid 11's

    # Never healthy, or never steadily up: each bound fails by name.
    clock.now = 0.0
    monkeypatch.setattr(services, "_health", lambda _url: (False, "503 starting"))
    with pytest.raises(_Failed, match=r"Web: http://h/health did not answer 200 within 5 s "
                       r"\(last: 503 starting\)"):  # fmt: skip
        services._wait_ready(_Module(), dirs, urls, 2, 30, 5)
    assert clock.now == 5.0
    clock.now = 0.0
    starts["/s/Worker"] = [(float(t), 100 + t) for t in range(0, 60)]  # restarts every second
    with pytest.raises(_Failed, match=r"Worker is not running steadily after 4 s"):
        services._wait_ready(_Module(), dirs, {}, 2, 4, 30)
