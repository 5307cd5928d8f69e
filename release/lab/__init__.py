"""Real SSH test hosts on this machine: one network, mount, pid and uts namespace per host.

The package, by concern: `base` (constants, errors, running tools), `processes` (pids,
namespaces, mounts, exact kills, leftovers), `rootfs` (the cached Debian root), `hosts`
(`LabHost`, `LabNetwork`, `lab_hosts`), `prerequisites` (what the machine lacks), `cli`
(`dirac-release lab`).

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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from release.lab.base import (
        ARCH,
        PACKAGES,
        PREFIX,
        ROOTFS_CACHE,
        ROOTFS_NAME,
        SUBNET,
        SUITE,
        LabCommandError,
        LabError,
    )
    from release.lab.cli import main
    from release.lab.hosts import LabHost, LabNetwork, lab_hosts
    from release.lab.prerequisites import (
        LAB_TOOLS,
        install_lab_packages,
        lab_hosts_problem,
        missing_lab_packages,
    )
    from release.lab.processes import (
        Mount,
        cleanup_leftovers,
        mounts,
        mounts_under,
        netns_names,
        netns_pids,
        processes_in_pid_namespace,
    )
    from release.lab.rootfs import prepare_rootfs, rootfs_complete

# The lab's modules load on first use: `dirac-release` registers `lab` on every start and
# must not pay for them (see bench/cli_startup.py).
_HOME = {
    "ARCH": "base",
    "PACKAGES": "base",
    "PREFIX": "base",
    "ROOTFS_CACHE": "base",
    "ROOTFS_NAME": "base",
    "SUBNET": "base",
    "SUITE": "base",
    "LabCommandError": "base",
    "LabError": "base",
    "Mount": "processes",
    "cleanup_leftovers": "processes",
    "mounts": "processes",
    "mounts_under": "processes",
    "netns_names": "processes",
    "netns_pids": "processes",
    "processes_in_pid_namespace": "processes",
    "prepare_rootfs": "rootfs",
    "rootfs_complete": "rootfs",
    "LabHost": "hosts",
    "LabNetwork": "hosts",
    "lab_hosts": "hosts",
    "LAB_TOOLS": "prerequisites",
    "install_lab_packages": "prerequisites",
    "lab_hosts_problem": "prerequisites",
    "missing_lab_packages": "prerequisites",
    "main": "cli",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'release.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f"release.lab.{_HOME[name]}"), name)


__all__ = [
    "ARCH",
    "LAB_TOOLS",
    "PACKAGES",
    "PREFIX",
    "ROOTFS_CACHE",
    "ROOTFS_NAME",
    "SUBNET",
    "SUITE",
    "LabCommandError",
    "LabError",
    "LabHost",
    "LabNetwork",
    "Mount",
    "cleanup_leftovers",
    "install_lab_packages",
    "lab_hosts",
    "lab_hosts_problem",
    "main",
    "missing_lab_packages",
    "mounts",
    "mounts_under",
    "netns_names",
    "netns_pids",
    "prepare_rootfs",
    "processes_in_pid_namespace",
    "rootfs_complete",
]
