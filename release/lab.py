"""Real SSH test hosts on this machine: one network, mount, pid and uts namespace per host.

A lab run (`lab_hosts`) builds this, and takes all of it down again, also on errors and Ctrl-C:

    root namespace            (no interface on the lab network, only the overlay mounts)
    └─ netns <prefix>client   br0 10.77.0.1/24: the client end, where ssh/scp/rsync/ansible run
       ├─ veth v0 ── eth0 in netns <prefix>h-cctbdirac01   10.77.0.11
       └─ veth v1 ── eth0 in netns <prefix>h-cctbdirac02   10.77.0.12

Each host is `ip netns exec <host-ns> unshare --mount --pid --uts --fork --kill-child sh boot.sh`:
boot.sh (outside the guest) mounts proc, sysfs, /run, a private /dev with a new devpts, the bind
mounts, sets the hostname and execs `chroot <merged> /usr/local/sbin/lab-init`. lab-init is the
pid namespace's init: a tiny shell that creates fresh SSH host keys, starts `sshd -D -e` as its
child and waits (the shell's wait also reaps orphans, so a `runsvdir` started later over SSH runs
under it). SIGKILL to lab-init from the root pid namespace ends every process of the host.

The guest's root is an overlay: lowerdir is the cached Debian rootfs (`prepare_rootfs`, never
written), upperdir/workdir live in `<work>/<name>/`, the merged view is mounted in the root
namespace at `<work>/<name>/merged` (`LabHost.root`) so tests can look inside.

Reaching the hosts: the root namespace has no route to 10.77.0.0/24. Everything that talks to the
hosts runs inside the client namespace: `LabHost.ssh_command()` / `ssh_prefix()` already start
with `ip netns exec <client-ns>`; other tools use `LabNetwork.exec_prefix()` and, for names,
the file written by `LabNetwork.ssh_config()`.

Names are unique per run (`drlab-<pid>-<n>-...`: netns names and overlay mount sources), so
parallel runs never collide, and `cleanup_leftovers()` (called by every run) removes what runs
whose process is gone left behind. Hosts die with the Python thread that started them
(PR_SET_PDEATHSIG on unshare, which passes SIGKILL on to lab-init with --kill-child).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SUITE = "bookworm"
ARCH = "amd64"
PACKAGES = ("openssh-server", "python3", "rsync", "runit", "git", "redis-server")
# The name changes with PACKAGES so that a rootfs cached before a change is never reused.
ROOTFS_NAME = f"{SUITE}-{ARCH}-labhost-{len(PACKAGES)}"
#: Every netns and overlay mount of a run is named `drlab-<pid>-<n>-...`.
PREFIX = "drlab-"
SUBNET = "10.77.0"
CLIENT_ADDRESS = f"{SUBNET}.1"
FIRST_HOST_ADDRESS = 11
MAX_HOSTS = 200
GUEST_INIT = "/usr/local/sbin/lab-init"

DEBOOTSTRAP_TIMEOUT_S = 900
SSHD_WAIT_S = 20.0
STOP_WAIT_S = 10.0
COMMAND_TIMEOUT_S = 30

SSH_OPTIONS = (
    "BatchMode=yes",
    "IdentitiesOnly=yes",
    "StrictHostKeyChecking=no",
    "UserKnownHostsFile=/dev/null",
    "ControlMaster=no",
    "ControlPersist=no",
    "ConnectTimeout=5",
    "LogLevel=ERROR",
)
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LEFTOVER_RE = re.compile(rf"^{PREFIX}(\d+)-")
SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9_./+@-]+$")

_run_numbers = itertools.count()


#: Where the lab hosts' Debian root filesystem is cached (built once per machine).
ROOTFS_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dirac-release" / "rootfs"
)


class LabError(RuntimeError):
    """The lab could not be set up or taken down."""


class LabCommandError(subprocess.CalledProcessError):
    """A command on a lab host failed; the message carries the end of its output."""

    def __str__(self) -> str:
        text = super().__str__()
        for label, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                tail = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                text += f"\n--- {label} (end) ---\n" + "\n".join(tail.splitlines()[-20:])
        return text


# ---------------------------------------------------------------------------------------------
# Small helpers


def _tool(name: str) -> str | None:
    """The executable `name` on PATH or in the sbin folders (often not on a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _need(name: str) -> str:
    path = _tool(name)
    if path is None:
        raise LabError(f"{name} is not installed")
    return path


def _call(
    argv: Sequence[str], *, input: bytes | None = None, timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[bytes]:
    """subprocess.run(capture_output=True), except that Ctrl-C cannot fall between the start of
    the child and its pid being known: on any interruption the child is killed and reaped, so a
    command that creates something (a netns, a mount) never finishes after teardown."""
    with _signals_deferred():
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    with proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.kill()
            with _signals_deferred():
                proc.wait()
            raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Run a short local command; its stdout, or LabError with its stderr."""
    try:
        proc = _call(argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{shlex.join(argv)} did not finish within {timeout}s") from None
    stderr = proc.stderr.decode(errors="replace").strip()
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed ({proc.returncode}): {stderr}")
    return proc.stdout.decode(errors="replace")


def _ip(*args: str, check: bool = True) -> str:
    return _run([_need("ip"), *args], check=check)


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


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM wait until the block ends, then act as usual: set-up never
    loses track of a started process, teardown is never cut in half. Main thread only (Python
    runs signal handlers there); elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def defer(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, defer) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


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


def rootfs_complete(rootfs: Path) -> bool:
    """A rootfs is only ever renamed into place complete; these files tell it is one."""
    needed = (
        "usr/sbin/sshd",
        "usr/bin/python3",
        "usr/bin/rsync",
        "usr/bin/runsvdir",
        "usr/bin/git",
        "usr/bin/redis-server",
    )
    return all((rootfs / rel).is_file() for rel in needed)


def prepare_rootfs(cache_dir: Path) -> Path:
    """A Debian bookworm amd64 rootfs for lab hosts in cache_dir, made once (debootstrap).

    It is built in a temporary folder next to its final place and renamed there when complete,
    so a killed build never leaves a half rootfs. The mirror is debootstrap's built-in default.
    """
    dest = cache_dir / ROOTFS_NAME
    if rootfs_complete(dest):
        return dest
    if os.geteuid() != 0:
        raise LabError("building the lab rootfs needs root (debootstrap)")
    debootstrap = _need("debootstrap")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / f".{ROOTFS_NAME}.lock", DEBOOTSTRAP_TIMEOUT_S + 60):
        if rootfs_complete(dest):
            return dest
        # We hold the lock: any temporary folder left here is from a build that was killed.
        for stale in cache_dir.glob(f".{ROOTFS_NAME}-*"):
            if stale.is_dir():
                _remove_tree(stale)
        if dest.exists():
            _remove_tree(dest)
        work = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{ROOTFS_NAME}-"))
        try:
            argv = [debootstrap, f"--arch={ARCH}", "--variant=minbase",
                    f"--include={','.join(PACKAGES)}", SUITE, str(work)]  # fmt: skip
            returncode, output = _run_debootstrap(argv)
            if returncode != 0:
                log = "\n".join(output.splitlines()[-20:])
                raise LabError(f"debootstrap failed ({returncode}):\n{log}")
            if mounts_under(work):
                raise LabError(f"debootstrap left mounts under {work}")
            _finish_rootfs(work)
            if not rootfs_complete(work):
                raise LabError(
                    "debootstrap finished but the rootfs lacks sshd/python3/rsync/runit/git/redis-server"
                )
            work.rename(dest)
        finally:
            if work.exists():
                _remove_tree(work)
    return dest


def _run_debootstrap(argv: list[str]) -> tuple[int, str]:
    """Run debootstrap in its own process group; on timeout or Ctrl-C kill the whole group
    (dpkg and maintainer scripts included), so nothing writes into the folder we then delete."""
    with _signals_deferred():
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # stops when we are killed (the folder stays hidden)
        )
    with proc:
        try:
            output, _ = proc.communicate(timeout=DEBOOTSTRAP_TIMEOUT_S)
        except BaseException as exc:
            with _signals_deferred():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise LabError(f"debootstrap took more than {DEBOOTSTRAP_TIMEOUT_S}s") from None
            raise
    return proc.returncode, output.decode(errors="replace")


def _finish_rootfs(root: Path) -> None:
    """Make the fresh rootfs a neutral template: no host keys, no package cache, no services."""
    root.chmod(0o755)  # mkdtemp made it 0700: non-root users in the guest must traverse /
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    # Packages installed later in a guest must not try to start services (there is no
    # systemd; services run under runit).
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    for name, text in (("resolv.conf", ""), ("hostname", "localhost\n"), ("machine-id", "")):
        _write_guest(root, f"etc/{name}", text)


# ---------------------------------------------------------------------------------------------
# Hosts


@dataclass(eq=False)
class LabHost:
    """One running lab host. Reach it only from the client namespace (see the module doc)."""

    name: str
    address: str
    netns: str
    client_netns: str
    ssh_key: Path
    work: Path
    root: Path | None = None
    #: The processes we started, as (pid, start time): unshare, then the pid namespace's init.
    started: list[tuple[int, int | None]] = field(default_factory=list)
    #: The host's pid namespace ("pid:[inode]"), to find every process of the host.
    pid_namespace: str | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _console: IO[bytes] | None = field(default=None, repr=False)

    @property
    def console_log(self) -> Path:
        """lab-init's and sshd's output (sshd -e logs here)."""
        return self.work / "console.log"

    @property
    def pids(self) -> list[int]:
        """Pids we started: unshare, then the host's init (lab-init)."""
        return [pid for pid, _ in self.started]

    def processes(self) -> list[int]:
        """Every process now running in this host (root pid namespace numbers)."""
        return processes_in_pid_namespace(self.pid_namespace) if self.pid_namespace else []

    def ssh_options(self) -> list[str]:
        """The ssh client options (no config files are read: -F /dev/null)."""
        options = ["-F", "/dev/null", "-i", str(self.ssh_key)]
        for option in SSH_OPTIONS:
            options += ["-o", option]
        return options

    def ssh_prefix(self) -> list[str]:
        """argv up to `root@<address>`: `ip netns exec <client-ns> ssh <options>`."""
        return [_need("ip"), "netns", "exec", self.client_netns, "ssh", *self.ssh_options()]

    def ssh_command(self, command: str) -> list[str]:
        """argv running a shell command on this host, from the root namespace."""
        return [*self.ssh_prefix(), f"root@{self.address}", command]

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        input: bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a shell command on the host over SSH; LabCommandError when check and it fails."""
        argv = self.ssh_command(command)
        proc = _call(argv, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabCommandError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    # -- life cycle (used by LabNetwork) ------------------------------------------------------

    def _launch(self, boot_script: Path) -> None:
        with _signals_deferred():  # never a started host whose pid we did not record
            self._start_process(boot_script)

    def _start_process(self, boot_script: Path) -> None:
        self._console = self.console_log.open("ab")
        argv = [_need("ip"), "netns", "exec", self.netns,
                _need("unshare"), "--mount", "--pid", "--uts", "--fork", "--kill-child",
                "--propagation", "private", "/bin/sh", str(boot_script)]  # fmt: skip
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"},
            start_new_session=True,  # a terminal's Ctrl-C reaches us, never the hosts directly
            preexec_fn=_die_with_parent,  # only prctl: safe before exec
        )
        self.started.append((self._process.pid, _start_time(self._process.pid)))

    def _find_init(self, deadline: float) -> None:
        """Record the pid namespace's init (unshare's child) and the namespace itself."""
        if self._process is None:
            raise LabError(f"{self.name} was never launched")
        parent = self._process.pid
        while time.monotonic() < deadline and self._process.poll() is None:
            for pid in _all_pids():
                if _parent_pid(pid) == parent:
                    namespace = _namespace_of(pid, "pid")
                    if namespace and namespace != _namespace_of(parent, "pid"):
                        self.started.append((pid, _start_time(pid)))
                        self.pid_namespace = namespace
                        return
            time.sleep(0.01)
        raise LabError(f"{self.name}: the host did not start{self._console_tail()}")

    def _sshd_listening(self) -> bool:
        """Port 22 listens in the host's network namespace (read through its init's /proc)."""
        init = self.started[-1][0]
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{init}/net/{table}").read_text().splitlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if local.endswith(":0016") and state == "0A":
                        return True
        return False

    def _wait_ready(self, deadline: float) -> None:
        if self._process is None:
            raise LabError(f"{self.name} was never launched")
        last = ""
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LabError(f"{self.name}: the host exited ({self._process.returncode})"
                               f"{self._console_tail()}")  # fmt: skip
            if self._sshd_listening():
                proc = self.run("true", check=False, timeout=10)
                if proc.returncode == 0:
                    return
                last = proc.stderr.decode(errors="replace").strip()
            time.sleep(0.05)
        raise LabError(f"{self.name}: sshd did not answer within {SSHD_WAIT_S}s"
                       f"{': ' + last if last else ''}{self._console_tail()}")  # fmt: skip

    def _console_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.console_log.read_text(errors="replace").splitlines()[-15:]
            if lines:
                return "\n--- console.log (end) ---\n" + "\n".join(lines)
        return ""

    def _stop(self) -> list[str]:
        """Kill this host's processes (only those we started, by pid), bounded; problems."""
        problems = []
        if len(self.started) == 1 and self._process is not None and self._process.poll() is None:
            with contextlib.suppress(LabError):  # stopped early: look for the init once more
                self._find_init(time.monotonic() + 1.0)
        # SIGKILL to the init of a pid namespace ends every process in it; unshare, its parent,
        # then reaps it and exits. (Killing unshare first would leave the init to the machine's
        # pid 1 to reap, which can take seconds.)
        if len(self.started) > 1:
            _kill_exact(*self.started[1], signal.SIGKILL)
        elif self.started:  # the init was never seen: unshare passes SIGKILL on (--kill-child)
            _kill_exact(*self.started[0], signal.SIGKILL)
        if self._process is not None:
            try:
                self._process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                _kill_exact(*self.started[0], signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=STOP_WAIT_S)
        if not _wait_gone(self.started, STOP_WAIT_S):
            problems.append(f"{self.name}: processes {self.pids} still alive")
        deadline = time.monotonic() + STOP_WAIT_S
        while self.pid_namespace and self.processes():
            if time.monotonic() > deadline:
                problems.append(f"{self.name}: processes {self.processes()} still alive")
                break
            time.sleep(0.02)
        if self._console is not None:
            self._console.close()
        return problems


class LabNetwork(list[LabHost]):
    """The hosts of one lab run (a list of LabHost) and the client namespace that reaches them."""

    def __init__(self, work: Path) -> None:
        super().__init__()
        self.prefix = f"{PREFIX}{os.getpid()}-{next(_run_numbers)}-"
        self.client_netns = f"{self.prefix}client"
        self.client_address = CLIENT_ADDRESS
        self.work = work
        self.ssh_key = work / "id_ed25519"
        #: Everything this run created, for teardown (in creation order).
        self.namespaces: list[str] = []
        self.mount_points: list[Path] = []

    def host(self, name: str) -> LabHost:
        for host in self:
            if host.name == name:
                return host
        raise KeyError(name)

    def exec_prefix(self) -> list[str]:
        """argv prefix running a command in the client namespace (where the hosts are reachable)."""
        return [_need("ip"), "netns", "exec", self.client_netns]

    def ssh_config(self, path: Path) -> Path:
        """Write an ssh_config naming every host. Use it inside the client namespace:
        `ip netns exec <client_netns> ssh -F <path> cctbdirac01 hostname`."""
        lines = [
            f"# Lab hosts of run {self.prefix.rstrip('-')} (release/lab.py).",
            f"# Only reachable from the network namespace {self.client_netns}: run clients",
            f"# as `ip netns exec {self.client_netns} ssh -F {path} <host>`.",
        ]
        for host in self:
            lines += [f"Host {host.name}", f"    HostName {host.address}"]
        lines += ["Host *", "    User root", f"    IdentityFile {self.ssh_key}"]
        lines += [f"    {option.replace('=', ' ', 1)}" for option in SSH_OPTIONS]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- set-up ---------------------------------------------------------------------------------

    def start(
        self, names: Sequence[str], rootfs: Path, binds: Sequence[tuple[Path, str, bool]]
    ) -> None:
        if mounts_under(self.work):
            raise LabError(f"{self.work} is in use by another lab run: give each run its own work")
        self.work.mkdir(parents=True, exist_ok=True)
        self.ssh_key.unlink(missing_ok=True)
        Path(f"{self.ssh_key}.pub").unlink(missing_ok=True)
        _run([_need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", self.prefix + "lab",
              "-f", str(self.ssh_key)])  # fmt: skip
        public_key = Path(f"{self.ssh_key}.pub").read_text()

        self._add_netns(self.client_netns)
        ns = ("-n", self.client_netns)
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "link", "add", "br0", "type", "bridge")
        _ip(*ns, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "br0")
        _ip(*ns, "link", "set", "br0", "up")

        for index, name in enumerate(names):
            host = LabHost(
                name=name,
                address=f"{SUBNET}.{FIRST_HOST_ADDRESS + index}",
                netns=f"{self.prefix}h-{name}",
                client_netns=self.client_netns,
                ssh_key=self.ssh_key,
                work=self.work / name,
            )
            self.append(host)
            self._add_netns(host.netns)
            # The veth is created inside the client namespace, its peer straight in the host's:
            # no interface of this network ever exists in the root namespace.
            _ip(*ns, "link", "add", f"v{index}", "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
            _ip(*ns, "link", "set", f"v{index}", "master", "br0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")

        hosts_file = "".join(
            ["127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n",
             f"{CLIENT_ADDRESS}\tlab-client\n"]
            + [f"{host.address}\t{host.name}\n" for host in self]
        )  # fmt: skip
        for host in self:
            boot = self._prepare_root(host, rootfs, binds, hosts_file, public_key)
            host._launch(boot)
        deadline = time.monotonic() + SSHD_WAIT_S
        for host in self:
            host._find_init(deadline)
        for host in self:
            host._wait_ready(deadline)

    def _add_netns(self, name: str) -> None:
        self.namespaces.append(name)  # recorded first: an interrupt right after still cleans up
        _ip("netns", "add", name)

    def _prepare_root(
        self,
        host: LabHost,
        rootfs: Path,
        binds: Sequence[tuple[Path, str, bool]],
        hosts_file: str,
        public_key: str,
    ) -> Path:
        """Mount the host's overlay, write its identity into it; return its boot script."""
        if mounts_under(host.work):
            raise LabError(f"{host.work} is in use by another lab run: give each run its own work")
        if host.work.exists():
            _remove_tree(host.work)
        upper, ovl_work, merged = host.work / "upper", host.work / "ovl-work", host.work / "merged"
        for folder in (upper, ovl_work, merged):
            folder.mkdir(parents=True)
        upper.chmod(0o755)  # the guest's / takes the upper folder's mode
        options = f"lowerdir={rootfs},upperdir={upper},workdir={ovl_work}"
        self.mount_points.append(merged)  # recorded first, as for namespaces
        _run([_need("mount"), "-t", "overlay", "-o", options, f"{self.prefix}{host.name}",
              str(merged)])  # fmt: skip
        host.root = merged

        _write_guest(merged, "etc/hostname", f"{host.name}\n")
        _write_guest(merged, "etc/hosts", hosts_file)
        # No DNS server: a lookup of an unknown name fails at once instead of waiting.
        _write_guest(merged, "etc/resolv.conf", "# lab host: names come from /etc/hosts\n")
        _write_guest(merged, "root/.ssh/authorized_keys", public_key, mode=0o600, dir_mode=0o700)
        _write_guest(merged, "etc/ssh/sshd_config.d/lab.conf",
                     "# lab host: many parallel connections (ansible forks)\n"
                     "MaxStartups 100:30:200\nMaxSessions 100\nUseDNS no\n")  # fmt: skip
        _write_guest(merged, GUEST_INIT.lstrip("/"), LAB_INIT, mode=0o755)

        bind_lines = []
        for source, inside, read_only in binds:
            target = _guest_path(merged, inside)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch(exist_ok=True)
            bind_lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
            if read_only:
                bind_lines.append(f"mount -o remount,bind,ro {shlex.quote(str(target))}")
        boot = host.work / "boot.sh"
        boot.write_text(
            BOOT_SCRIPT.format(
                merged=shlex.quote(str(merged)),
                binds="\n".join(bind_lines),
                hostname=host.name,
                init=GUEST_INIT,
            )
        )
        return boot

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Take everything of this run down: processes, mounts, namespaces. Idempotent."""
        problems: list[str] = []
        with _signals_deferred():
            for host in self:
                problems += host._stop()
            # Clients a caller left running in the client namespace would keep it alive.
            for netns in self.namespaces:
                problems += _kill_netns_processes(netns)
            for mount_point in reversed(self.mount_points):
                try:
                    _unmount(mount_point)
                except LabError as exc:
                    problems.append(str(exc))
            self.mount_points.clear()
            for netns in reversed(self.namespaces):
                if netns in netns_names():
                    _ip("netns", "del", netns, check=False)
                if netns in netns_names():
                    problems.append(f"could not delete netns {netns}")
            self.namespaces.clear()
        if problems:
            raise LabError("lab teardown incomplete:\n" + "\n".join(problems))


def _kill_netns_processes(netns: str) -> list[str]:
    """SIGKILL what still runs in one of our network namespaces; problems left."""
    pids = [(pid, _start_time(pid)) for pid in netns_pids(netns) if pid != os.getpid()]
    for pid, start in pids:
        _kill_exact(pid, start, signal.SIGKILL)
    if not _wait_gone(pids, STOP_WAIT_S):
        return [f"processes in {netns} survived SIGKILL: {[p for p, _ in pids]}"]
    return []


def _guest_path(root: Path, inside: str) -> Path:
    """root/inside, refusing '..' and symlinks on the way (they could point out of the guest)."""
    relative = Path(inside.lstrip("/"))
    if not inside.startswith("/") or ".." in relative.parts or not relative.parts:
        raise LabError(f"guest paths must be absolute, without '..': {inside!r}")
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            raise LabError(f"{inside!r} goes through a symlink in the guest ({current})")
    return current


def _write_guest(
    root: Path, inside: str, text: str, *, mode: int = 0o644, dir_mode: int = 0o755
) -> None:
    target = _guest_path(root, "/" + inside)
    if not target.parent.exists():
        target.parent.mkdir(parents=True)
        target.parent.chmod(dir_mode)
    target.unlink(missing_ok=True)
    target.write_text(text)
    target.chmod(mode)


#: Runs as pid 1 of the host's new pid namespace, before the chroot, with the host's own mount,
#: uts and network namespaces. Everything it mounts dies with the mount namespace.
BOOT_SCRIPT = """\
#!/bin/sh
set -eu
M={merged}
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs "$M/run"
mkdir -m 0755 "$M/run/sshd"
mount -t tmpfs -o mode=0755,nosuid,size=1m tmpfs "$M/dev"
mknod -m 666 "$M/dev/null" c 1 3
mknod -m 666 "$M/dev/zero" c 1 5
mknod -m 666 "$M/dev/full" c 1 7
mknod -m 666 "$M/dev/random" c 1 8
mknod -m 666 "$M/dev/urandom" c 1 9
mknod -m 666 "$M/dev/tty" c 5 0
mkdir "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/dev/shm"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"
{binds}
hostname {hostname}
exec chroot "$M" {init}
"""

#: The guest's init (pid 1 of the host), kept to a shell on purpose: it starts sshd and waits.
#: While it waits, dash reaps every child, also orphans re-parented to it, so processes started
#: over SSH and detached (e.g. `setsid runsvdir -P /etc/service </dev/null >/dev/null 2>&1 &`)
#: keep running after the session and leave no zombies. The host stops when sshd does.
LAB_INIT = """\
#!/bin/sh
# pid 1 of a dirac-release lab host (written by release/lab.py at every start)
ssh-keygen -A >/dev/null
/usr/sbin/sshd -D -e &
wait
echo "lab-init: sshd ended, the host stops" >&2
"""


# ---------------------------------------------------------------------------------------------
# Entry points


def _check_names(names: Sequence[str]) -> None:
    if not names:
        raise LabError("a lab needs at least one host name")
    if len(names) > MAX_HOSTS:
        raise LabError(f"at most {MAX_HOSTS} lab hosts")
    if len(set(names)) != len(names):
        raise LabError(f"host names must be unique: {list(names)}")
    for name in names:
        if not HOSTNAME_RE.match(name):
            raise LabError(f"{name!r} is not a valid host name (lowercase letters, digits, '-')")


def _check_paths(rootfs: Path, work: Path, binds: Sequence[tuple[Path, str, bool]]) -> None:
    if not rootfs_complete(rootfs):
        raise LabError(f"{rootfs} is not a complete lab rootfs (see prepare_rootfs)")
    for path in (rootfs, work):
        if not SAFE_PATH_RE.match(str(path.absolute())):
            raise LabError(f"{path}: overlay options cannot carry ',', ':' or spaces in paths")
    for source, inside, _ in binds:
        if not source.exists():
            raise LabError(f"bind source {source} does not exist")
        if not inside.startswith("/") or ".." in Path(inside).parts:
            raise LabError(f"bind target {inside!r} must be absolute, without '..'")


@contextlib.contextmanager
def lab_hosts(
    names: list[str],
    rootfs: Path,
    work: Path,
    *,
    binds: Sequence[tuple[Path, str, bool]] = (),
) -> Iterator[LabNetwork]:
    """Start one SSH host per name; yield them (a LabNetwork, i.e. a list of LabHost).

    binds: (host path, path inside, read_only) mounted into every host. Teardown runs on any
    exit (errors and Ctrl-C too) and removes every process, mount and namespace of the run.
    """
    _check_names(names)
    work = Path(os.path.abspath(work))
    rootfs = Path(os.path.abspath(rootfs))
    _check_paths(rootfs, work, binds)
    cleanup_leftovers()
    network = LabNetwork(work)
    try:
        network.start(names, rootfs, [(Path(os.path.abspath(s)), i, ro) for s, i, ro in binds])
        yield network
    finally:
        network.close()


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
LAB_TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "mount": "mount",
    "chroot": "coreutils",
    "debootstrap": "debootstrap",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def missing_lab_packages() -> list[str]:
    """The Debian packages whose commands lab hosts need and this machine lacks."""
    return sorted({package for tool, package in LAB_TOOLS.items() if _tool(tool) is None})


def install_lab_packages(packages: Sequence[str], *, echo: bool = True) -> None:
    """apt-get install `packages` (root on a Debian-like machine), its output shown live.

    The README's one command must set up what it can itself: a newcomer's first demo should not
    stop half-way because debootstrap is missing from an otherwise ready machine.
    """
    apt = _tool("apt-get")
    if apt is None or os.geteuid() != 0:
        raise LabError(f"cannot install {' '.join(packages)}: needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv, limit in (([apt, "update", "-q"], 600), ([apt, "install", "-y", "-q",
                         "--no-install-recommends", *packages], 1200)):  # fmt: skip
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # A silent, stuck apt-get must not hold the run forever: killed at its limit.
        timer = threading.Timer(limit, proc.kill)
        timer.start()
        try:
            for line in proc.stdout or ():
                if echo:
                    print(f"  apt-get: {line.rstrip()[:160]}", file=sys.stderr, flush=True)
            code = proc.wait()
        finally:
            timer.cancel()
        if code != 0:
            raise LabError(f"{shlex.join(argv)} failed (exit {code}); see its output above")


@functools.cache
def lab_hosts_problem() -> str | None:
    """Why lab hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab hosts need root (network namespaces, overlay mounts, chroot)"
    missing = missing_lab_packages()
    if missing:
        return f"lab hosts need these Debian packages: apt-get install -y {' '.join(missing)}"
    if "--kill-child" not in _run([_need("unshare"), "--help"], check=False):
        return "unshare is too old (no --kill-child; util-linux >= 2.32 needed)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay file system (modprobe overlay)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
        _ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    except LabError as exc:
        return f"cannot create network namespaces, bridges or veths here: {exc}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


# ---------------------------------------------------------------------------------------------
# For people: `python -m release.lab` (nox -s lab) keeps hosts up until Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Start lab hosts, print how to reach them, keep them until Ctrl-C, then take them down."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m release.lab",
        description="Start throwaway SSH lab hosts (root): one namespace set per host.",
    )
    parser.add_argument("names", nargs="*", default=["cctbdirac01", "cctbdirac02", "diracprod01"])
    parser.add_argument(
        "--work", type=Path, default=Path("lab"), help="folder for the hosts' files"
    )
    parser.add_argument(
        "--bind", action="append", default=[], metavar="SRC:DEST",
        help="bind-mount SRC read-only at DEST in every host, e.g. stratum/r:/cvmfs/r",
    )  # fmt: skip
    args = parser.parse_args(argv)
    problem = lab_hosts_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    binds = []
    for spec in args.bind:
        source, sep, inside = spec.partition(":")
        if not sep:
            print(f"error: --bind {spec!r}: expected SRC:DEST", file=sys.stderr)
            return 2
        binds.append((Path(source), inside, True))
    try:
        rootfs = prepare_rootfs(ROOTFS_CACHE)
        with lab_hosts(list(args.names), rootfs, args.work, binds=binds) as net:
            config = net.ssh_config(Path(args.work).absolute() / "ssh_config")
            client = " ".join(net.exec_prefix())
            for host in net:
                print(f"{host.name:<16} {host.address:<14} {client} ssh -F {config} {host.name}")
            print(f"Ansible and other clients run in the namespace: {client} <command>")
            print("Ctrl-C takes every host down.", flush=True)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print("lab hosts stopped; nothing is left behind")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
