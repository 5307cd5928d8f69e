"""Lab fixtures: real builds of the demo product against the real package index."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.build import BuildReport, build_release
from release.config import ReleaseConfig, load_config
from release.demo import fixture as demo
from tests.conftest import index_problem, lab_skip

SYSROOT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dirac-release" / "sysroots"
)


@pytest.fixture(scope="session")
def aarch64_sysroot() -> Path:
    """An arm64 Debian with python3.11, made once per machine (debootstrap, ~25 s)."""
    if index_problem():
        lab_skip(str(index_problem()))
    if os.geteuid() != 0:
        lab_skip("the aarch64 sysroot needs root (debootstrap)")
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        lab_skip("debootstrap is not installed (apt-get install debootstrap)")
    if not shutil.which("qemu-aarch64-static"):
        lab_skip("qemu-user-static is not installed (apt-get install qemu-user-static)")
    from release.build.sysroot import prepare_sysroot

    return prepare_sysroot(SYSROOT_CACHE / "bookworm-arm64-python3.11")


@pytest.fixture(scope="session")
def lab_rootfs() -> Path:
    """The cached Debian rootfs of the lab hosts (debootstrap once per machine, ~40 s)."""
    from release.lab import ROOTFS_CACHE, lab_hosts_problem, prepare_rootfs

    problem = lab_hosts_problem()
    if problem:
        lab_skip(problem)
    return prepare_rootfs(ROOTFS_CACHE)


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    demo.prepare_repository(root / demo.REPO_NAME)
    (root / "release.toml").write_text(demo.demo_config_text())
    return root


@pytest.fixture(scope="session")
def demo_config(demo_workdir: Path) -> ReleaseConfig:
    return load_config(demo_workdir / "release.toml", environ={})


@pytest.fixture(scope="session")
def demo_build(demo_config: ReleaseConfig, aarch64_sysroot: Path) -> Iterator[BuildReport]:
    """The demo product built once for both platforms, smoke-tested on both."""
    previous = os.environ.get("DIRAC_RELEASE_AARCH64_SYSROOT")
    os.environ["DIRAC_RELEASE_AARCH64_SYSROOT"] = str(aarch64_sysroot)
    try:
        yield build_release(demo_config, version=demo.DEMO_TAG)
    finally:
        if previous is None:
            os.environ.pop("DIRAC_RELEASE_AARCH64_SYSROOT", None)
        else:
            os.environ["DIRAC_RELEASE_AARCH64_SYSROOT"] = previous
