"""The demo on real DIRAC: `dirac-release demo --product DIRAC`.

DIRAC 8.0.55 with its `server` extra, from the package index as it was at that release, on
a pinned base made here from Debian bookworm's packages (python3.11, gfal2 with its plugins,
M2Crypto, the MySQL client: what DIRACOS2 gives on the grid). The same commands a release
manager runs: the base is made, recorded and published to the demo repository; both
platforms are built on the record and smoke-tested on the base (x86_64 natively in a chroot,
aarch64 under qemu-user); the release is published beside its base; and the published
release is run the way a container on a worker node runs it: inside the published base,
/cvmfs bound, its diracosrc sourced alone.

The lab hosts run the demo product's services on their own root filesystem, not on this
base, so deploy, certify and promote are not part of this demo; asking for them is refused
rather than skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from release.errors import BadInput, CheckFailed, InfrastructureError

DIRAC_TAG = "v8.0.55"
#: The index as it was the day after DIRAC v8.0.55 was uploaded (2024-10-17).
INDEX_DATE = "2024-10-18T00:00:00Z"
BASE_NAME, BASE_VERSION = "bookworm", "12"
REPOSITORY = "dirac.demo"
STAGES = ("base", "build", "publish")
NOT_HERE = ("image", "deploy", "certify", "promote")

CONFIG = """\
# The DIRAC demo's configuration, written by `dirac-release demo --product DIRAC`.
[products.DIRAC]
source = {{ index = "DIRAC" }}
python = "3.11"
base = "{base}"
extras = ["server"]
# DIRAC 8.0 imports pkg_resources, which setuptools 81 no longer ships.
requirements = ["setuptools<81"]
exclude_newer = {date}
smoke_imports = ["DIRAC", "gfal2", "M2Crypto", "MySQLdb", "tornado"]
smoke_commands = ["dirac-version", "dirac-platform"]

[bases.{base}]
version = "{version}"
platforms.x86_64 = {{ path = "{x86_64}" }}
platforms.aarch64 = {{ path = "{aarch64}" }}

[repositories."{repository}"]
backend = "directory"
path = "stratum"
prefix = "dirac"
links = ["latest"]
"""

INSIDE = (
    "source /mnt/dirac/{tag}/Linux-x86_64/diracosrc && dirac-version && "
    "python3.11 -c 'import DIRAC, gfal2, M2Crypto, MySQLdb, tornado; "
    'print(gfal2.get_version(), M2Crypto.version, tornado.version)\' && echo "$DIRAC_RELEASE_BASE_PREFIX"'
)


def _problem() -> str | None:
    """What this machine lacks to make the Debian base, or None."""
    if os.geteuid() != 0:
        return "the Debian base is made with debootstrap and run in a chroot: run as root"
    missing = [
        package
        for package, found in (
            ("debootstrap", shutil.which("debootstrap") or Path("/usr/sbin/debootstrap").exists()),
            ("qemu-user-static", shutil.which("qemu-aarch64-static")),
            ("util-linux", shutil.which("unshare")),
        )
        if not found
    ]
    if missing:
        return f"missing {' '.join(missing)} (apt-get install {' '.join(missing)})"
    return None


#: The container a worker node runs, modelled: the base is the root, read-only as on CVMFS,
#: the repository at /mnt (read-only), a private /tmp, /dev and /proc of the running system.
_CONTAINER = (
    'mount -o bind,ro "$2" "$2" && mount -o bind,ro "$1" "$2/mnt" && '
    'mount -t tmpfs tmpfs "$2/tmp" && mount --rbind /dev "$2/dev" && '
    'mount -t proc proc "$2/proc" && exec chroot "$2" /bin/bash -c "$3"'
)


def run_in_base(rootfs: Path, repository: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` in bash inside the published root filesystem `rootfs`, `repository` at /mnt,
    in a mount namespace that ends with it (root; x86_64 runs natively)."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _CONTAINER, "sh",
         str(repository), str(rootfs), script],
        capture_output=True, text=True, timeout=300, check=False, cwd="/",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
    )  # fmt: skip


def _run_from_cvmfs(stratum: Path, tag: str) -> str:
    """The published release, run inside the published base with the repository bound."""
    rootfs = stratum / f"dirac/diracos/{BASE_VERSION}/Linux-x86_64"
    proc = run_in_base(rootfs, stratum, INSIDE.format(tag=tag))
    lines = proc.stdout.split("\n")
    if proc.returncode != 0 or len(lines) < 3:
        raise CheckFailed(
            f"{tag} as published did not run inside its published base: "
            + (proc.stderr.strip()[-600:] or f"exit {proc.returncode}"),
            fix="see the message; the bundles and the base are in the work folder's stratum",
        )
    gfal2, m2crypto, tornado = lines[1].split()
    return (
        f"dirac-version {lines[0]} from /cvmfs/{REPOSITORY}/dirac/{tag}/Linux-x86_64 inside "
        f"base {BASE_NAME} {BASE_VERSION} ({lines[2]}): gfal2 {gfal2}, M2Crypto {m2crypto}, "
        f"tornado {tornado}"
    )


def run_dirac_demo(
    *, workdir: Path, until: str, as_json: bool, say: Any, rows: Any
) -> dict[str, Any]:
    """Base, build, publish and a run from CVMFS, as rows of the demo's table (`rows` makes
    them of a pipeline run's stages)."""
    from release.base.debian import cached_path, make_debian_base
    from release.base.publish import publish_base
    from release.base.record import inspect_and_record
    from release.config import load_config
    from release.pipeline.contract import Context
    from release.pipeline.runner import run_pipeline
    from release.publish import init_repository
    from release.version import parse_version_arg

    if until in NOT_HERE:
        raise BadInput(
            f"--until {until}: the DIRAC demo ends after publish and a run from CVMFS",
            fix="the lab hosts run the demo product, not DIRAC on its base: use --until "
            "publish (the default for DIRAC), or the demo product for deploy, certify, promote",
        )
    if until not in STAGES:
        raise BadInput(
            f"unknown stage {until!r} for DIRAC", fix=f"choose one of: {', '.join(STAGES)}"
        )
    problem = _problem()
    if problem:
        raise InfrastructureError(f"the DIRAC demo cannot run here: {problem}")
    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {arch: cached_path(arch) for arch in ("x86_64", "aarch64")}
    config_path = workdir / "release.toml"
    config_path.write_text(
        CONFIG.format(base=BASE_NAME, version=BASE_VERSION, date=INDEX_DATE,
                      repository=REPOSITORY, **{a: str(p) for a, p in paths.items()}),
        encoding="utf-8",
    )  # fmt: skip
    stages: list[dict[str, Any]] = []
    result: dict[str, Any] = {"workdir": str(workdir), "product": "DIRAC", "stages": stages}

    started = time.monotonic()
    for arch, path in paths.items():
        if not (path / ".dirac-release-base").is_file():
            say(f"base: making the Debian bookworm {arch} base once, in {path} (debootstrap"
                + (", arm64 unpacked without emulation" if arch == "aarch64" else "")
                + "; a few minutes) ...")  # fmt: skip
        make_debian_base(path, arch=arch)
    config = load_config(config_path)
    record, platforms = inspect_and_record(config, BASE_NAME, list(paths))
    provided = ", ".join(f"{p['platform']} {p['distributions']} distributions" for p in platforms)
    stages.append({"stage": "base", "result": f"{BASE_NAME} {BASE_VERSION} recorded in "
                   f"{record.name} ({provided})", "seconds": time.monotonic() - started})  # fmt: skip
    init_repository(config, None)
    started = time.monotonic()
    say(f"base: publishing {BASE_NAME} {BASE_VERSION} to {REPOSITORY} ...")
    base = publish_base(config, BASE_NAME, list(paths))
    stages.append({"stage": "base publish", "result": f"{base['status']}: /cvmfs/{REPOSITORY}/"
                   f"{base['version_dir']} (revision {base['revision']})",
                   "seconds": time.monotonic() - started})  # fmt: skip
    result["base"] = base
    for note in base["notes"]:
        say(f"base publish: {note}")
    if until == "base":
        return result

    ctx = Context(config, "DIRAC", parse_version_arg(DIRAC_TAG), live=not as_json, note=say)
    run = run_pipeline(ctx, first="build", last=until)
    stages += rows(run.as_dict())
    result["pipeline"] = run.as_dict()
    if run.error is not None:
        result["error"] = run.error
        return result
    if until == "publish":
        started = time.monotonic()
        say("run from CVMFS: the published release inside the published base ...")
        stages.append({"stage": "run from cvmfs",
                       "result": _run_from_cvmfs(workdir / "stratum" / REPOSITORY, DIRAC_TAG),
                       "seconds": time.monotonic() - started})  # fmt: skip
    return result
