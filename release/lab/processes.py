"""Processes, namespaces and mounts of lab runs: found through /proc, ended exactly (pid and
start time, so a reused pid is never hit), and what dead runs left behind cleaned up."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from release.lab.base import LEFTOVER_RE, STOP_WAIT_S, LabError, _call, _ip, _need


def _unescape_mount_path(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo (the fields used here)."""

    mount_point: Path
    fstype: str
    source: str


def mounts() -> list[Mount]:
    """The mounts of this process's mount namespace."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fields, extra = head.split(), tail.split()
        if len(fields) >= 5 and len(extra) >= 2:
            found.append(Mount(Path(_unescape_mount_path(fields[4])), extra[0], extra[1]))
    return found


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or under path, deepest first."""
    path = Path(os.path.abspath(path))
    inside = [m.mount_point for m in mounts() if m.mount_point.is_relative_to(path)]
    return sorted(set(inside), key=lambda p: len(p.parts), reverse=True)


def _unmount(mount_point: Path) -> None:
    """Unmount, lazily when it is busy; already gone is fine."""
    umount = _need("umount")
    for _ in range(5):
        if mount_point not in {m.mount_point for m in mounts()}:
            return
        if _call([umount, str(mount_point)]).returncode:
            _call([umount, "-l", str(mount_point)])
    if mount_point in {m.mount_point for m in mounts()}:
        raise LabError(f"could not unmount {mount_point}")


def _remove_tree(path: Path) -> None:
    """Delete a folder we made, after unmounting anything mounted inside it (never crosses)."""
    for mount_point in mounts_under(path):
        _unmount(mount_point)
    if mounts_under(path):
        raise LabError(f"refusing to delete {path}: something is still mounted inside")
    shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: tells a process from a later one with the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _namespace_of(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def processes_in_pid_namespace(namespace: str) -> list[int]:
    """Pids (as the root pid namespace numbers them) of processes in that pid namespace."""
    return [pid for pid in _all_pids() if _namespace_of(pid, "pid") == namespace]


def netns_names() -> list[str]:
    """The named network namespaces (`ip netns list`)."""
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    """Processes in a named network namespace (`ip netns pids`)."""
    out = _ip("netns", "pids", netns, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def _kill_exact(pid: int, start_time: int | None, sig: signal.Signals) -> None:
    """Signal pid only if it is still the process we recorded (same start time)."""
    if start_time is None or _start_time(pid) != start_time:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _running(pid: int, start_time: int | None) -> bool:
    """pid is still the recorded process and not a zombie (our own zombies are reaped here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    if start_time is None or int(stat[19]) != start_time:
        return False
    if stat[0] == "Z":
        if int(stat[1]) == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _wait_gone(pids: Iterable[tuple[int, int | None]], timeout: float) -> bool:
    """Wait (bounded) until none of the (pid, start time) pairs is running."""
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending:
        pending = [(p, s) for p, s in pending if _running(p, s)]
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started us ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    try:
        with FileLock(path, timeout=timeout):
            yield
    except Timeout:
        raise LabError(f"{path} stayed locked for {timeout}s") from None


# ---------------------------------------------------------------------------------------------
# The cached root filesystem


def _kill_netns_processes(netns: str) -> list[str]:
    """SIGKILL what still runs in one of our network namespaces; problems left."""
    pids = [(pid, _start_time(pid)) for pid in netns_pids(netns) if pid != os.getpid()]
    for pid, start in pids:
        _kill_exact(pid, start, signal.SIGKILL)
    if not _wait_gone(pids, STOP_WAIT_S):
        return [f"processes in {netns} survived SIGKILL: {[p for p, _ in pids]}"]
    return []


def cleanup_leftovers() -> list[str]:
    """Remove the namespaces and mounts of earlier runs whose process is gone; what was removed."""
    removed = []
    for netns in netns_names():
        match = LEFTOVER_RE.match(netns)
        if match and not _pid_alive(int(match.group(1))):
            _kill_netns_processes(netns)
            removed.append(f"netns {netns}")
    for mount in mounts():
        match = LEFTOVER_RE.match(mount.source)
        if match and mount.fstype == "overlay" and not _pid_alive(int(match.group(1))):
            _unmount(mount.mount_point)
            removed.append(f"mount {mount.mount_point}")
    for netns in netns_names():
        match = LEFTOVER_RE.match(netns)
        if match and not _pid_alive(int(match.group(1))):
            _ip("netns", "del", netns, check=False)
    return removed


# The commands lab hosts run on the controller, and the Debian package of each.
