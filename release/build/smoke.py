"""Import smoke tests: does the bundle's code load on its own architecture?

The x86_64 bundle runs natively when this machine's Python has the runtime's version; the
aarch64 bundle runs under qemu-user when an aarch64 root filesystem with that Python is given
(DIRAC_RELEASE_AARCH64_SYSROOT). Where neither is possible the test is reported as skipped,
never as passed.
"""

from __future__ import annotations

import os
import platform as host_platform
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from release.build.layout import site_packages
from release.config import overrides
from release.errors import CheckFailed

SYSROOT_ENV = "DIRAC_RELEASE_AARCH64_SYSROOT"
TIMEOUT_S = 300


@dataclass(frozen=True)
class BaseAtHand:
    """A base present on this machine, to run the bundle on (see run_smoke)."""

    label: str
    root: Path
    layout: str  # "prefix" | "rootfs"


# Runs the base's interpreter natively inside the base, in a private mount namespace that
# ends with the process: the bundle appears at /mnt (nothing is written into the base).
_CHROOT = (
    'tree=$1 root=$2 chroot=$3 mount=$4; shift 4; "$mount" --bind "$tree" "$root/mnt" && '
    '"$mount" --rbind /dev "$root/dev" && "$mount" -t proc proc "$root/proc" && '
    'exec "$chroot" "$root" "$@"'
)


def _sbin(name: str) -> str | None:
    for folder in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if Path(folder, name).is_file():
            return f"{folder}/{name}"
    return None


def _qemu(arch: str) -> str | None:
    return shutil.which(f"qemu-{arch}-static") or shutil.which(f"qemu-{arch}")


def _base_command(
    arch: str, python: str, base: BaseAtHand, tree: Path
) -> tuple[list[str] | None, str, Path]:
    """How to run `python` of the base for `arch`, and where the bundle is seen from there."""
    native = arch == host_platform.machine()
    if base.layout == "prefix":  # DIRACOS2: a relocatable prefix that uses the system's libc
        interpreter = str(base.root / "bin" / f"python{python}")
        if native:
            return [interpreter, "-I", "-B"], f"natively on base {base.label}", tree
        sysroot, qemu = overrides.get(SYSROOT_ENV), _qemu(arch)
        if not sysroot or not qemu:
            why = f"set {SYSROOT_ENV}" if not sysroot else "install qemu-user-static"
            return None, f"cannot run the {arch} base {base.label} here ({why})", tree
        return ([qemu, "-L", sysroot, interpreter, "-I", "-B"],
                f"qemu-user on base {base.label}", tree)  # fmt: skip
    inside = f"/usr/bin/python{python}"
    # Found here, not by the child's PATH (a caller's may lack /usr/sbin).
    unshare = shutil.which("unshare") or _sbin("unshare")
    chroot, mount = (
        shutil.which("chroot") or _sbin("chroot"),
        shutil.which("mount") or _sbin("mount"),
    )
    if native and os.geteuid() == 0 and unshare and chroot and mount:
        for folder in ("mnt", "dev", "proc"):
            (base.root / folder).mkdir(exist_ok=True)
        command = [unshare, "--mount", "--propagation", "private", "sh", "-c", _CHROOT, "sh",
                   str(tree), str(base.root), chroot, mount, inside, "-I", "-B"]  # fmt: skip
        return command, f"natively in base {base.label} (chroot)", Path("/mnt")
    qemu = _qemu(arch)
    if qemu is None:
        return None, "qemu-user is not installed (apt-get install qemu-user-static)", tree
    # qemu-user looks every path up in the base first: its libraries, gfal2's plugins.
    how = f"qemu-user on base {base.label}" + (" (not root: no chroot)" if native else "")
    return [qemu, "-L", str(base.root), str(base.root) + inside, "-I", "-B"], how, tree


@dataclass(frozen=True)
class SmokeResult:
    status: str  # "passed" | "skipped"
    detail: str


def _command(arch: str, python: str) -> tuple[list[str] | None, str]:
    if arch == host_platform.machine():
        if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
            return [sys.executable, "-I", "-B"], "native"
        found = shutil.which(f"python{python}")
        if found:
            return [found, "-I", "-B"], "native"
        return None, f"no python{python} on this machine"
    if arch == "aarch64":
        sysroot = overrides.get(SYSROOT_ENV)
        qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
        if not sysroot:
            return None, f"set {SYSROOT_ENV} to an aarch64 root filesystem with python{python}"
        if not qemu:
            return None, "qemu-user is not installed (apt-get install qemu-user-static)"
        interpreter = Path(sysroot) / "usr" / "bin" / f"python{python}"
        if not interpreter.exists():
            return None, f"{interpreter} does not exist"
        return [qemu, "-L", sysroot, str(interpreter), "-I", "-B"], f"qemu-user with {interpreter}"
    return None, f"cannot run {arch} code here"


def run_smoke(
    tree: Path,
    arch: str,
    python: str,
    modules: list[str],
    base: BaseAtHand | None = None,
    commands: tuple[str, ...] = (),
) -> SmokeResult:
    """Import `modules` from the bundle with the bundle's Python, on its own architecture,
    then run `commands` (entry points of the bundle, with their arguments).

    A bundle built on a base runs on that base's interpreter, with what the base provides.
    """
    seen = tree
    if base is not None:
        command, how, seen = _base_command(arch, python, base, tree)
    else:
        command, how = _command(arch, python)
    if command is None or not (modules or commands):
        return SmokeResult("skipped", how if command is None else "nothing to import")
    site = seen / site_packages(python)
    code = (
        "import site, sys; sys.path.insert(0, sys.argv[1]); site.addsitedir(sys.argv[1]); "
        "import importlib; [importlib.import_module(m) for m in sys.argv[2:]]"
    )
    runs = [("import", [*command, "-c", code, str(site), *modules])] if modules else []
    for line in commands:
        name, *args = shlex.split(line)
        runs.append((name, [*command, str(seen / "bin" / name), *args]))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    said = []
    for what, argv in runs:
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False,
                cwd="/",
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise CheckFailed(
                f"smoke test of the {arch} bundle ({what}) timed out after {TIMEOUT_S}s"
            ) from None
        if proc.returncode != 0:
            raise CheckFailed(
                f"smoke test of the {arch} bundle failed ({what}, {how}); nothing was written",
                fix="\n".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-8:]),
            )
        if what != "import":
            first = (proc.stdout.strip().splitlines() or [""])[0][:80]
            said.append(f"{what}: {first}" if first else what)
    detail = f"imported {', '.join(modules)}" if modules else ""
    if said:
        detail += ("; " if detail else "") + "ran " + "; ".join(said)
    return SmokeResult("passed", f"{detail} ({how})")


def top_level_modules(site: Path, distribution: str) -> list[str]:
    """Import names a distribution provides, from its RECORD (packages and top-level modules)."""
    from packaging.utils import canonicalize_name

    wanted = canonicalize_name(distribution)
    for info in site.glob("*.dist-info"):
        if canonicalize_name(info.name.removesuffix(".dist-info").rsplit("-", 1)[0]) != wanted:
            continue
        names: set[str] = set()
        for line in (info / "RECORD").read_text(encoding="utf-8").splitlines():
            path = line.split(",")[0]
            first = path.split("/")[0]
            if "/" not in path:
                if first.endswith(".py"):
                    names.add(first.removesuffix(".py"))
            elif path.endswith((".py", ".so")) and not first.endswith((".dist-info", ".data")):
                names.add(first)
        return sorted(n for n in names if n.isidentifier() and n not in {"bin", "tests"})
    return []
