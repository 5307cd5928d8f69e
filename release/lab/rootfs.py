"""The lab hosts' Debian root filesystem: built once per machine with debootstrap, under a
lock, into a temporary folder renamed into place when complete; never written afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from release.lab.base import (
    ARCH,
    DEBOOTSTRAP_TIMEOUT_S,
    PACKAGES,
    ROOTFS_NAME,
    SUITE,
    LabError,
    _need,
    _signals_deferred,
)
from release.lab.processes import _die_with_parent, _file_lock, _remove_tree, mounts_under


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
