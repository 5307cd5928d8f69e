"""The lab's constants, its errors, and the small helpers that run its tools (ip, unshare,
ssh) with bounded time and readable failures."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from release.errors import InfrastructureError

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


class LabError(InfrastructureError):
    """The lab could not be set up or taken down: an infrastructure failure (exit 3) with a
    message for the person who runs it, as every typed error of the project."""


class LabCommandError(subprocess.CalledProcessError):
    """A command on a lab host failed; the message carries the end of its output."""

    def __str__(self) -> str:
        text = super().__str__()
        for label, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                tail = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                text += f"\n--- {label} (end) ---\n" + "\n".join(tail.splitlines()[-20:])
        return text


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
