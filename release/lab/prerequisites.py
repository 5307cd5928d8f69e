"""What the lab needs from the machine (root, Debian packages, tools), said plainly, and
installed with apt-get when the caller asks."""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from release.lab.base import PREFIX, LabError, _ip, _need, _run, _tool

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
