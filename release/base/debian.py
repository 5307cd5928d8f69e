"""A real base from Debian's packages: bookworm with python3.11, gfal2 and M2Crypto.

DIRACOS2 cannot be downloaded on every machine, Debian's archive can: its bookworm packages
carry real compiled gfal2 (with its file, http and xrootd plugins), M2Crypto 0.38 and the
MySQL client for amd64 and arm64. debootstrap's first stage unpacks them without running
anything, so an arm64 base is made on x86_64 without emulation. Three things make the
unpacked tree a base that `base inspect` reads like any other:

- dpkg's status lists each unpacked package (as `dpkg --unpack` would), so the exact Python
  version is known;
- Debian's python3-gfal2 ships its module without Python metadata: a dist-info naming the
  distribution it is (gfal2-python, at the package's upstream version) is written for it;
- what DIRACOS2 carries beyond Debian is installed into usr/local (tornado 5.1.1 for DIRAC
  8.0's server extra, built without its optional C speedups, so one wheel fits both
  architectures).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from release.build.sysroot import DEBIAN_ARCH, prepare_sysroot
from release.build.uvtool import run_uv, uv_env
from release.errors import InfrastructureError

PACKAGES = (
    "python3",
    "python3-gfal2",
    "gfal2-plugin-file",
    "gfal2-plugin-http",
    "gfal2-plugin-xrootd",
    "python3-m2crypto",
    "python3-mysqldb",
)
#: Debian packages whose module has no Python metadata, and the distribution each one is.
NO_METADATA = {"python3-gfal2": "gfal2-python"}
#: Pure-Python distributions DIRACOS2 has and Debian has not, with the build settings that
#: keep them pure (TORNADO_EXTENSION=0 leaves out tornado's optional speedups).
EXTRAS = {"tornado==5.1.1": {"TORNADO_EXTENSION": "0"}}
DONE_MARK = ".dirac-release-base"


def cached_path(arch: str) -> Path:
    """Where this machine keeps its Debian base for `arch` (the demo, the lab tests and the
    benchmark share it: about 0.3 GB each, made once)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dirac-release" / "bases" / f"bookworm-{arch}-dirac"


def _deb_fields(deb: Path) -> dict[str, str]:
    out = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def _upstream(version: str) -> str:
    """1:1.12.0-1+b2 gives 1.12.0: no epoch, no Debian revision."""
    return version.split(":")[-1].rsplit("-", 1)[0]


def make_debian_base(
    dest: Path, *, arch: str, python: str = "3.11", packages: tuple[str, ...] = PACKAGES
) -> Path:
    """Create the base at dest (once; a finished one is reused) and return it."""
    if (dest / DONE_MARK).is_file():
        return dest
    if arch not in DEBIAN_ARCH:
        raise InfrastructureError(f"no Debian architecture for {arch}")
    staging = dest.with_name(f".{dest.name}.making-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        prepare_sysroot(staging, arch=arch, python=python, packages=packages)
        archives = sorted((staging / "var/cache/apt/archives").glob("*.deb"))
        stanzas, versions = [], {}
        for deb in archives:
            fields = _deb_fields(deb)
            versions[fields["Package"]] = fields["Version"]
            stanzas.append(
                f"Package: {fields['Package']}\nStatus: install ok unpacked\n"
                f"Architecture: {fields.get('Architecture', '')}\nVersion: {fields['Version']}\n"
            )
        status = staging / "var/lib/dpkg/status"
        status.parent.mkdir(parents=True, exist_ok=True)
        status.write_text("\n".join(stanzas), encoding="utf-8")
        site = staging / "usr/lib/python3/dist-packages"
        for package, distribution in NO_METADATA.items():
            if package in versions:
                version = _upstream(versions[package])
                info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
                info.mkdir(parents=True, exist_ok=True)
                (info / "METADATA").write_text(
                    f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n",
                    encoding="utf-8",
                )
                (info / "INSTALLER").write_text(f"dpkg ({package} {versions[package]})\n")
        local = staging / f"usr/local/lib/python{python}/dist-packages"
        for requirement, settings in EXTRAS.items():
            env = {**uv_env(), **settings}
            run_uv(
                ["pip", "install", "--no-config", "--quiet", "--no-deps", "--target", str(local),
                 "--python-platform", f"{arch}-manylinux_2_28", "--python-version", python,
                 "--no-binary", requirement.split("==")[0],
                 "--refresh-package", requirement.split("==")[0], requirement],
                cwd=staging, env=env, what=f"installing {requirement} into the {arch} base",
            )  # fmt: skip
        compiled = sorted(str(p.relative_to(local)) for p in local.rglob("*.so"))
        if compiled:
            raise InfrastructureError(
                f"the extras of the {arch} base hold compiled code: {', '.join(compiled[:3])}"
            )
        shutil.rmtree(staging / "var/cache/apt/archives", ignore_errors=True)
        (staging / DONE_MARK).write_text(",".join(packages) + "\n", encoding="utf-8")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
