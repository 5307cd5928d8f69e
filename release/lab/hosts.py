"""Lab hosts and their network: one set of namespaces per host, an overlay root, sshd, and a
client namespace from which ssh, rsync and Ansible reach them (see the package docstring)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from release.lab.base import (
    CLIENT_ADDRESS,
    FIRST_HOST_ADDRESS,
    GUEST_INIT,
    HOSTNAME_RE,
    MAX_HOSTS,
    PREFIX,
    SAFE_PATH_RE,
    SSH_OPTIONS,
    SSHD_WAIT_S,
    STOP_WAIT_S,
    SUBNET,
    LabCommandError,
    LabError,
    _call,
    _ip,
    _need,
    _run,
    _run_numbers,
    _signals_deferred,
)
from release.lab.processes import (
    _all_pids,
    _die_with_parent,
    _kill_exact,
    _kill_netns_processes,
    _namespace_of,
    _parent_pid,
    _remove_tree,
    _start_time,
    _unmount,
    _wait_gone,
    cleanup_leftovers,
    mounts_under,
    netns_names,
    processes_in_pid_namespace,
)
from release.lab.rootfs import _guest_path, _write_guest, rootfs_complete


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

    def __init__(self, work: Path, *, keep_disks: bool = False) -> None:
        super().__init__()
        #: Keep each host's disk (its overlay's upper layer) and the SSH key across runs in
        #: the same work folder: hosts that come back hold what was installed on them, as
        #: real certification hosts do after a reboot.
        self.keep_disks = keep_disks
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
        public = Path(f"{self.ssh_key}.pub")
        if not (self.keep_disks and self.ssh_key.is_file() and public.is_file()):
            self.ssh_key.unlink(missing_ok=True)
            public.unlink(missing_ok=True)
            _run([_need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "dirac-release-lab",
                  "-f", str(self.ssh_key)])  # fmt: skip
        public_key = public.read_text()

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
        upper, ovl_work, merged = host.work / "upper", host.work / "ovl-work", host.work / "merged"
        # A kept disk only fits the root filesystem it was written over.
        lower = host.work / "lower"
        kept = self.keep_disks and upper.is_dir() and lower.is_file() and (
            lower.read_text(encoding="utf-8") == str(rootfs))  # fmt: skip
        if host.work.exists():
            if kept:
                _remove_tree(ovl_work)  # the kernel's scratch space: never reused
            else:
                _remove_tree(host.work)
        for folder in (upper, ovl_work, merged):
            folder.mkdir(parents=True, exist_ok=True)
        lower.write_text(str(rootfs), encoding="utf-8")
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
    keep_disks: bool = False,
) -> Iterator[LabNetwork]:
    """Start one SSH host per name; yield them (a LabNetwork, i.e. a list of LabHost).

    binds: (host path, path inside, read_only) mounted into every host. Teardown runs on any
    exit (errors and Ctrl-C too) and removes every process, mount and namespace of the run.
    keep_disks: the hosts start from what a previous run in `work` left on their disks (and
    with the same SSH key); the disks stay for the next run. Addresses follow the order of
    `names`, so the same names find the same hosts at the same addresses.
    """
    _check_names(names)
    work = Path(os.path.abspath(work))
    rootfs = Path(os.path.abspath(rootfs))
    _check_paths(rootfs, work, binds)
    cleanup_leftovers()
    network = LabNetwork(work, keep_disks=keep_disks)
    try:
        network.start(names, rootfs, [(Path(os.path.abspath(s)), i, ro) for s, i, ro in binds])
        yield network
    finally:
        network.close()
