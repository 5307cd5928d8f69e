"""An aarch64 root filesystem with the runtime Python, for emulated smoke tests on x86_64.

debootstrap's first stage (`--foreign`) only downloads and unpacks, so it needs no emulation;
unpacking the extra packages it fetched gives a Python that qemu-user runs with `-L sysroot`.
The mirror is debootstrap's own default: we never name a package host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from release.errors import BadInput, InfrastructureError

#: Debian suites whose default python3 is the runtime version.
SUITES = {"3.11": "bookworm", "3.13": "trixie"}
DEBIAN_ARCH = {"aarch64": "arm64", "x86_64": "amd64"}
TIMEOUT_S = 900


def prepare_sysroot(
    dest: Path, *, arch: str = "aarch64", python: str = "3.11", packages: tuple[str, ...] = ()
) -> Path:
    """Create dest (once; an existing complete sysroot is reused) and return it.

    `packages` are Debian packages unpacked with their dependencies (a base with
    python3-gfal2, python3-m2crypto...); the folder is complete once its interpreter exists.
    """
    interpreter = dest / "usr" / "bin" / f"python{python}"
    if interpreter.exists():
        return dest
    if python not in SUITES:
        raise BadInput(
            f"no Debian suite ships python{python} as its default",
            fix=f"use one of: {', '.join(SUITES)}",
        )
    if arch not in DEBIAN_ARCH:
        raise BadInput(f"unknown architecture {arch!r}", fix="choose aarch64 or x86_64")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise InfrastructureError("debootstrap is not installed", fix="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise BadInput("debootstrap needs root to unpack a root filesystem", fix="run as root")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        proc = subprocess.run(
            [debootstrap, f"--arch={DEBIAN_ARCH[arch]}", "--foreign", "--variant=minbase",
             f"--include={','.join((f'python{python}', *packages))}", SUITES[python], str(work)],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise InfrastructureError(
                f"debootstrap failed (exit {proc.returncode})",
                fix="\n".join(proc.stdout.splitlines()[-5:] + proc.stderr.splitlines()[-5:]),
            )
        for deb in sorted((work / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work)], check=True, timeout=TIMEOUT_S)
        if not (work / "usr" / "bin" / f"python{python}").exists():
            raise InfrastructureError(f"the {arch} root filesystem has no python{python}")
        work.rename(dest)
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"debootstrap did not finish within {TIMEOUT_S}s") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
