"""`dirac-release lab` (and `python -m release.lab`): start lab hosts and keep them until
Ctrl-C, say what the machine lacks for them, clean what dead runs left.

Only argparse is imported at start: `dirac-release` registers this command on every start, and
the lab's own modules are imported when a lab command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_HOSTS = ["cctbdirac01", "cctbdirac02", "diracprod01"]
EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 3
ACTIONS = ("up", "check", "clean")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The lab's actions, on a parser of its own or on the `lab` subcommand of dirac-release."""
    actions = parser.add_subparsers(dest="lab_action", metavar="ACTION")
    up = actions.add_parser(
        "up", help="start hosts and keep them until Ctrl-C (root)",
        description="Start throwaway SSH lab hosts (root): one namespace set per host.",
    )  # fmt: skip
    up.add_argument("names", nargs="*", default=DEFAULT_HOSTS, help="host names")
    up.add_argument("--work", type=Path, default=Path("lab"), help="folder for the hosts' files")
    up.add_argument(
        "--bind", action="append", default=[], metavar="SRC:DEST",
        help="bind-mount SRC read-only at DEST in every host, e.g. stratum/r:/cvmfs/r",
    )  # fmt: skip
    up.add_argument(
        "--keep-disks", action="store_true",
        help="start from (and keep) the hosts' disks and SSH key in --work, e.g. the demo's "
        "hosts: --work dirac-release-demo/lab cctbdirac01 cctbdirac02 diracprod01",
    )  # fmt: skip
    actions.add_parser("check", help="say what this machine lacks for lab hosts (exit 0: nothing)")
    actions.add_parser("clean", help="remove what lab runs whose process is gone left behind")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `lab` subcommand on another program's subcommands, its handler stored as `handler`.

    For a command line without its own way of adding subcommands; dirac-release's adds `lab`
    with its common options and calls `add_arguments`.
    """
    lab = subparsers.add_parser(
        "lab", help="start throwaway SSH lab hosts, check or clean them (root)",
        description=__doc__,
    )  # fmt: skip
    add_arguments(lab)
    lab.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Carry out the chosen lab action; exit codes as the rest of dirac-release."""
    action = getattr(args, "lab_action", None) or "up"
    if action == "check":
        return _check()
    if action == "clean":
        return _clean()
    return _up(
        list(getattr(args, "names", DEFAULT_HOSTS)),
        getattr(args, "work", Path("lab")),
        getattr(args, "bind", []),
        keep_disks=bool(getattr(args, "keep_disks", False)),
    )


def _check() -> int:
    from release.lab.prerequisites import lab_hosts_problem, missing_lab_packages

    problem = lab_hosts_problem()
    missing = missing_lab_packages()
    if problem is None:
        print("lab hosts can run here: root, and every tool they need is installed")
        return 0
    print(f"lab hosts cannot run here: {problem}", file=sys.stderr)
    if missing:
        print(f"install: apt-get install -y {' '.join(missing)}", file=sys.stderr)
    return EXIT_INFRASTRUCTURE


def _clean() -> int:
    from release.lab.processes import cleanup_leftovers

    removed = cleanup_leftovers()
    for line in removed:
        print(f"removed {line}")
    print("nothing was left behind" if not removed else f"{len(removed)} leftover(s) removed")
    return 0


def _binds(specs: Sequence[str]) -> list[tuple[Path, str, bool]] | None:
    binds = []
    for spec in specs:
        source, sep, inside = spec.partition(":")
        if not sep or not source or not inside.startswith("/"):
            print(f"error: --bind {spec!r}: expected SRC:DEST with DEST an absolute path inside "
                  "the hosts, e.g. --bind stratum/r:/cvmfs/r", file=sys.stderr)  # fmt: skip
            return None
        binds.append((Path(source), inside, True))
    return binds


def _up(
    names: list[str], work: Path, bind_specs: Sequence[str], *, keep_disks: bool = False
) -> int:
    """Start lab hosts, print how to reach them, keep them until Ctrl-C, then take them down."""
    import contextlib
    import signal
    import threading

    binds = _binds(bind_specs)
    if binds is None:
        return EXIT_BAD_INPUT
    from release.lab.base import ROOTFS_CACHE, LabError
    from release.lab.hosts import lab_hosts
    from release.lab.prerequisites import lab_hosts_problem
    from release.lab.rootfs import prepare_rootfs

    problem = lab_hosts_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        rootfs = prepare_rootfs(ROOTFS_CACHE)
        with lab_hosts(names, rootfs, work, binds=binds, keep_disks=keep_disks) as net:
            config = net.ssh_config(Path(work).absolute() / "ssh_config")
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
        return EXIT_INFRASTRUCTURE
    print("lab hosts stopped; " + (f"their disks stay in {work}" if keep_disks
                                    else "nothing is left behind"))  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m release.lab [up|check|clean]`; with no action, `up`.

    Before the actions existed this took host names and options directly (`python -m release.lab
    cctbdirac01 --work w`); such a command line still means `up`.
    """
    parser = argparse.ArgumentParser(prog="python -m release.lab", description=__doc__)
    add_arguments(parser)
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] not in {*ACTIONS, "-h", "--help"}:
        words.insert(0, "up")
    args = parser.parse_args(words)
    return run(args)
