"""Run an unpacked image tree the way SingularityCE would, and check what is inside.

apptainer cannot be installed here, but the unpacked tree is a plain root filesystem: a
private mount namespace (`unshare --mount`, with `-r` a user namespace when not root) binds
the given folder at the tree's /cvmfs, the host's /dev and /proc, a fresh /tmp, then
`chroot`s into the tree. x86_64 runs natively; aarch64 runs under qemu-user. Without
binfmt_misc (not mounted on this machine, and not ours to change) the kernel cannot start an
aarch64 program by itself, so qemu is put in the tree's fresh /tmp and every program is
started through it, one at a time: each step below is a single program, and a script's
`#!` interpreter is looked up and started the same way.

Checked inside: `uname -m` is the image's architecture, /etc/os-release is the declared OS,
/cvmfs shows the bound folder. Then, when asked, a file is sourced (a release's diracosrc
from the bound /cvmfs) and a command runs with the environment it set: that is the step the
certification adds once a release is published beside the image.
"""

from __future__ import annotations

import os
import platform as host_platform
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release.errors import BadInput, CheckFailed, InfrastructureError

TIMEOUT_S = 300
QEMU_IN_TREE = "/tmp/.dirac-release-qemu"  # noqa: S108 (a fresh tmpfs of our own namespace)
MARK = "@@dirac-release@@"

# Runs on the host side, in the private mount namespace: mounts, then chroot into the tree.
_ENTER = (
    "tree=$1 cvmfs=$2 qemu=$3 mount=$4 chroot=$5; shift 5; "
    '"$mount" --bind "$cvmfs" "$tree/cvmfs" && '
    '"$mount" --rbind /dev "$tree/dev" && "$mount" --rbind /proc "$tree/proc" && '
    '"$mount" -t tmpfs -o mode=1777 tmpfs "$tree/tmp" && '
    '{ [ -z "$qemu" ] || cp "$qemu" "$tree' + QEMU_IN_TREE + '"; } && '
    'exec "$chroot" "$tree" "$@"'
)

# Only shell built-ins (no program is started): source the file, print the environment it
# left, then where the command is and its first line (a '#!' to follow).
_SOURCE = (
    '. "$1" >&2 || exit 97; export -p; echo "' + MARK + '"; '
    'p=$(command -v "$2") || exit 98; echo "$p"; '
    'first=; IFS= read -r first < "$p" || true; printf "%s\\n" "$first"; '
    # `#!/usr/bin/env NAME`: env would start NAME itself, which under qemu-user without
    # binfmt_misc the kernel cannot; so NAME is looked up here, on the PATH the file set.
    'case "$first" in "#!"*/env\\ *) set -- $first; command -v "$2" || true;; esac'
)


@dataclass
class CheckStep:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class CheckResult:
    tree: Path
    arch: str
    how: str
    steps: list[CheckStep] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"tree": str(self.tree), "arch": self.arch, "how": self.how,
                "passed": self.passed, "steps": [s.as_dict() for s in self.steps]}  # fmt: skip


def _tool(name: str) -> str | None:
    """Found here, not by the child's PATH (a caller's may lack /usr/sbin), as the build's
    smoke test finds them."""
    from release.build.smoke import _sbin

    return shutil.which(name) or _sbin(name)


def _qemu(arch: str) -> str | None:
    from release.build.smoke import _qemu as smoke_qemu

    return smoke_qemu(arch)


def runner_problem(arch: str) -> str | None:
    """Why a tree of `arch` cannot be run here, or None."""
    for name in ("unshare", "mount", "chroot"):
        if _tool(name) is None:
            return f"{name} is not installed (apt-get install util-linux coreutils)"
    if arch != host_platform.machine() and _qemu(arch) is None:
        return f"qemu-user cannot run {arch} here (apt-get install qemu-user-static)"
    return None


class TreeRunner:
    """Starts programs inside one unpacked tree, /cvmfs bound from `cvmfs`."""

    def __init__(
        self, tree: Path, arch: str, cvmfs: Path, env: dict[str, str] | None = None
    ) -> None:
        problem = runner_problem(arch)
        if problem:
            raise InfrastructureError(f"cannot run the {arch} image here: {problem}")
        for mount_point in ("cvmfs", "dev", "proc", "tmp"):
            if not (tree / mount_point).is_dir() or (tree / mount_point).is_symlink():
                raise BadInput(f"{tree} has no /{mount_point} folder to mount on",
                               where=str(tree), fix="rebuild it with dirac-release image build")  # fmt: skip
        self.tree, self.arch, self.cvmfs = tree, arch, cvmfs
        #: The image's own environment (its config's Env), as a container runtime sets it.
        self.env = env or {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                           "LC_ALL": "C.UTF-8"}  # fmt: skip
        self.native = arch == host_platform.machine()
        self.qemu = "" if self.native else str(_qemu(arch))
        self.how = "natively" if self.native else f"under qemu-user ({Path(self.qemu).name})"
        unshare = str(_tool("unshare"))
        root = os.geteuid() == 0
        self.how += ", chroot as root" if root else ", unshare -r (user namespace)"
        self.prefix = [unshare, *([] if root else ["-r"]), "--mount", "--propagation", "private",
                       "sh", "-c", _ENTER, "sh", str(tree), str(cvmfs), self.qemu,
                       str(_tool("mount")), str(_tool("chroot"))]  # fmt: skip

    def run(self, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Start one program of the tree (a path inside it) with its arguments."""
        inner = argv if self.native else [QEMU_IN_TREE, *argv]
        base_env = {"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", **self.env}  # noqa: S108
        try:
            return subprocess.run(
                [*self.prefix, *inner], capture_output=True, text=True, errors="replace",
                env=env if env is not None else base_env, timeout=timeout, check=False, cwd="/",
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{shlex.join(argv)} in the {self.arch} image did not finish "
                              f"within {timeout:.0f}s") from None  # fmt: skip


def _os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


def _parse_exports(text: str) -> dict[str, str]:
    """`export -p` of dash or bash: `export NAME='value'` (bash: `declare -x NAME="value"`)."""
    env: dict[str, str] = {}
    words = shlex.split(text)
    for index, word in enumerate(words):
        if word in ("export", "-x") and index + 1 < len(words):
            name, sep, value = words[index + 1].partition("=")
            if name.isidentifier() and sep:
                env[name] = value
    return env


def _source_and_run(runner: TreeRunner, source: str, command: str) -> CheckStep:
    """Source `source` inside the tree, then run `command` with the environment it set."""
    argv = shlex.split(command)
    if not argv:
        raise BadInput("the command to run is empty", fix="give e.g. --command 'dirac-info'")
    # bash, as a site sources a release (`bash -c 'source .../diracosrc && ...'`): a file
    # sourced by a POSIX sh cannot know its own path. Else sh, told the folder as
    # dirac-release's diracosrc documents (DIRAC_RELEASE_PREFIX).
    if (runner.tree / "usr/bin/bash").is_file() or (runner.tree / "bin/bash").is_file():
        shell = ["/bin/bash", "-c", _SOURCE, "bash"]
    else:
        folder = source.rpartition("/")[0] or "/"
        shell = ["/bin/sh", "-c", f"DIRAC_RELEASE_PREFIX={shlex.quote(folder)}; {_SOURCE}", "sh"]
    first = runner.run([*shell, source, argv[0]])
    if first.returncode != 0 or MARK not in first.stdout:
        said = {97: f"sourcing {source} failed", 98: f"{argv[0]} is not on the PATH it set"}
        why = said.get(first.returncode, f"exit {first.returncode}")
        tail = "\n".join((first.stderr.strip() or first.stdout.strip()).splitlines()[-6:])
        return CheckStep(f"source {source}", False, f"{why}: {tail}".rstrip(": "))
    exports, _, rest = first.stdout.partition(MARK + "\n")
    env = _parse_exports(exports)
    where, _, line = rest.partition("\n")
    line = line.rstrip("\n")
    line, _, found = line.partition("\n")
    program = [where]
    if line.startswith("#!"):  # what the kernel would do; done here for qemu-user
        interpreter = line[2:].strip().split(None, 1)
        if found.strip() and interpreter and Path(interpreter[0]).name == "env":
            interpreter = [found.strip()]  # env's own lookup, done on the sourced PATH
        program = [*interpreter, where] if interpreter else program
    done = runner.run([*program, *argv[1:]], env=env)
    output = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode != 0:
        tail = "\n".join((done.stderr.strip() or done.stdout.strip()).splitlines()[-8:])
        return CheckStep(f"run {command}", False, f"exit {done.returncode}: {tail}")
    shown = " ".join(" ".join(output).split())  # a JSON document shown on one line
    return CheckStep(f"run {command}", True, f"after sourcing {source}: "
                     + (shown[:200] if shown else "(no output)"))  # fmt: skip


def check_tree(
    tree: Path,
    arch: str,
    *,
    cvmfs: Path | None = None,
    os_id: str | None = None,
    source: str | None = None,
    command: str | None = None,
    env: dict[str, str] | None = None,
) -> CheckResult:
    """Run the checks in `tree` (an unpacked image); a failing step makes the result fail.

    `os_id` is the declared OS (the ID of /etc/os-release, e.g. "debian"); `source` and
    `env` is the image's environment (its config's Env). `source` and
    `command` go together: the file sourced inside (e.g. /cvmfs/<repo>/<prefix>/<tag>/
    Linux-<arch>/diracosrc) and the command run after it.
    """
    if (source is None) != (command is None):
        raise BadInput("give both the file to source and the command to run, or neither",
                       fix="e.g. --source /cvmfs/dirac.egi.eu/dirac/v9.0.0/Linux-x86_64/"
                       "diracosrc --command 'dirac-version'")  # fmt: skip
    made = None
    if cvmfs is None:
        made = Path(tempfile.mkdtemp(prefix="dirac-release-cvmfs-"))
        (made / ".dirac-release-bound").write_text("bound\n", encoding="utf-8")
        cvmfs = made
    try:
        runner = TreeRunner(tree, arch, cvmfs, env)
        result = CheckResult(tree=tree, arch=arch, how=runner.how)
        uname = runner.run(["/bin/uname", "-m"])
        machine = uname.stdout.strip()
        result.steps.append(CheckStep(
            "uname -m", uname.returncode == 0 and machine == arch,
            machine if uname.returncode == 0 else f"exit {uname.returncode}: "
            + uname.stderr.strip()[-300:]))  # fmt: skip
        release = runner.run(["/bin/cat", "/etc/os-release"])
        values = _os_release(release.stdout)
        pretty = values.get("PRETTY_NAME", values.get("ID", "?"))
        ok = release.returncode == 0 and (os_id is None or values.get("ID") == os_id)
        result.steps.append(CheckStep(
            "/etc/os-release", ok, pretty + ("" if ok or os_id is None
                                              else f" (declared: {os_id})")))  # fmt: skip
        listing = runner.run(["/bin/ls", "-A", "/cvmfs"])
        seen = sorted(listing.stdout.split())
        expected = sorted(p.name for p in cvmfs.iterdir())
        result.steps.append(CheckStep(
            "/cvmfs bound", listing.returncode == 0 and seen == expected,
            f"{len(seen)} entr{'y' if len(seen) == 1 else 'ies'} of {cvmfs}"))  # fmt: skip
        if source is not None and command is not None:
            result.steps.append(_source_and_run(runner, source, command))
        return result
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def check_images(
    builds: list[dict[str, Any]],
    *,
    cvmfs: Path | None = None,
    source: str | None = None,
    command: str | None = None,
) -> list[CheckResult]:
    """Check built trees (image.json records): `{arch}` in source is the tree's architecture."""
    from release.image.oci import read_layout_image

    results = []
    for build in builds:
        arch = str(build["arch"])
        try:
            _manifest, config, _digest = read_layout_image(Path(build["layout"]))
            lines = (config.get("config") or {}).get("Env") or []
        except (OSError, ValueError, KeyError, IndexError):
            lines = []  # a tree without its layout: the default environment
        env = dict(line.split("=", 1) for line in lines if "=" in line) or None
        os_id = "debian" if str(build.get("base", "")).startswith("debian:") else None
        results.append(check_tree(
            Path(build["folder"]), arch, cvmfs=cvmfs, os_id=os_id,
            source=source.replace("{arch}", arch) if source else None, command=command,
            env=env))  # fmt: skip
    return results
