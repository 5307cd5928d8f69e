"""Real builds of the demo VO extension: both architectures, reproducible, verified, cached."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from release.build import BuildReport, build_release
from release.build import manifest as mf
from release.build.layout import site_packages
from release.config import ReleaseConfig, load_config
from release.demo import fixture as demo
from release.errors import BadInput, CheckFailed

pytestmark = pytest.mark.lab


def cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "release", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
    )


def test_both_platforms_built_and_verified(demo_build: BuildReport) -> None:
    assert [b.platform for b in demo_build.bundles] == ["x86_64", "aarch64"]
    for bundle in demo_build.bundles:
        manifest = mf.read_manifest(bundle.tree)
        assert manifest is not None
        assert manifest["tag"] == "v1.0.0" and manifest["platform"] == bundle.platform
        assert mf.verify_tree(bundle.tree, manifest) == []
        # Compiled extensions are there, and every one is for this architecture.
        scan = mf.scan_tree(bundle.tree, bundle.platform)
        assert scan.elf_files >= 10
        assert scan.wrong_arch == []
        dists = {d["name"].lower().replace("_", "-"): d for d in manifest["distributions"]}
        assert dists["diracx-routers"]["version"] == "0.7.0"
        assert dists["vodemo-dirac"]["version"] == "1.0.0"
        assert any(bundle.platform in tag for tag in dists["pydantic-core"]["wheel_tags"])
        assert bundle.smoke == "passed", bundle.smoke_detail
    assert "qemu-user" in demo_build.bundles[1].smoke_detail
    sums = demo_build.version_dir / "SHA256SUMS"
    check = subprocess.run(
        ["sha256sum", "-c", sums.name], cwd=sums.parent, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 4


def test_lock_pins_every_distribution_with_hashes(demo_build: BuildReport) -> None:
    for bundle in demo_build.bundles:
        lock = (bundle.tree / ".dirac-release" / "requirements.lock").read_text()
        pinned = [
            line for line in lock.splitlines() if "==" in line and not line.startswith((" ", "#"))
        ]
        manifest = mf.read_manifest(bundle.tree)
        assert manifest is not None
        assert len(pinned) == len(manifest["distributions"])
        assert lock.count("--hash=sha256:") >= len(pinned)


def test_x86_64_bundle_runs_through_diracosrc(demo_build: BuildReport, tmp_path: Path) -> None:
    # From a copy: this machine's Python has a .pth hook that appends a CA to any certifi
    # bundle it loads, which would (rightly) invalidate the cached bundle for later tests.
    tree = tmp_path / "v1.0.0" / "Linux-x86_64"
    shutil.copytree(demo_build.bundles[0].tree, tree, symlinks=True)
    python_dir = str(Path(sys.executable).parent)
    proc = subprocess.run(
        ["bash", "-c", f"source {tree}/diracosrc && cd / && vodemo-info"],
        capture_output=True, text=True, env={"PATH": f"{python_dir}:/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["vodemo"] == "1.0.0" and info["machine"] == "x86_64"


def test_aarch64_entry_point_runs_under_qemu(
    demo_build: BuildReport, aarch64_sysroot: Path
) -> None:
    tree = demo_build.bundles[1].tree
    proc = subprocess.run(
        ["qemu-aarch64-static", "-L", str(aarch64_sysroot), str(aarch64_sysroot / "usr/bin/python3.11"),
         "-B", str(tree / "bin" / "vodemo-info")],
        capture_output=True, text=True, cwd="/", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["machine"] == "aarch64" and info["vodemo"] == "1.0.0"


def test_rebuild_reuses_the_finished_bundle(
    demo_build: BuildReport, demo_config: ReleaseConfig
) -> None:
    ledger = demo_config.ledger("vodemo", demo.DEMO_TAG)
    records_before = len(ledger.records("build"))
    again = build_release(demo_config, version=demo.DEMO_TAG)
    assert [b.cached for b in again.bundles] == [True, True]
    assert [b.tarball_sha256 for b in again.bundles] == [
        b.tarball_sha256 for b in demo_build.bundles
    ]
    assert [b.smoke for b in again.bundles] == ["passed", "passed"]  # remembered from the ledger
    assert len(ledger.records("build")) == records_before  # nothing built, nothing recorded


def test_two_builds_give_identical_bytes(
    demo_build: BuildReport, demo_workdir: Path, tmp_path: Path
) -> None:
    """A second build from scratch (own caches, own output) gives the same tarballs and locks."""
    config = load_config(
        demo_workdir / "release.toml",
        environ={"DIRAC_RELEASE_CACHE": str(tmp_path / "cache"), "DIRAC_RELEASE_OUT": str(tmp_path / "out"),
                 "DIRAC_RELEASE_STATE": str(tmp_path / "state")},
    )  # fmt: skip
    second = build_release(config, version=demo.DEMO_TAG)
    assert not any(b.cached for b in second.bundles)
    for one, two in zip(demo_build.bundles, second.bundles, strict=True):
        assert one.tarball.read_bytes() == two.tarball.read_bytes()
        assert one.manifest_sha256 == two.manifest_sha256
    assert (demo_build.version_dir / "SHA256SUMS").read_text() == (
        second.version_dir / "SHA256SUMS"
    ).read_text()


def test_mixed_tree_fails_the_elf_check(demo_build: BuildReport, tmp_path: Path) -> None:
    x86, arm = demo_build.bundles
    mixed = tmp_path / "Linux-x86_64"
    shutil.copytree(x86.tree, mixed, symlinks=True)
    foreign = next(p for p in (arm.tree / site_packages("3.11") / "pydantic_core").glob("*.so"))
    (mixed / "lib" / foreign.name).write_bytes(foreign.read_bytes())
    scan = mf.scan_tree(mixed, "x86_64")
    assert scan.wrong_arch == [(f"lib/{foreign.name}", "aarch64")]
    with pytest.raises(CheckFailed, match=f"lib/{foreign.name}: aarch64"):
        mf.raise_wrong_arch(scan, "x86_64", mixed)


def test_package_without_aarch64_wheel_is_refused(demo_workdir: Path, tmp_path: Path) -> None:
    config = tmp_path / "release.toml"
    text = demo.demo_config_text(source=str(demo_workdir / demo.REPO_NAME)).replace(
        'distribution = "vodemo-dirac"',
        'distribution = "vodemo-dirac"\nrequirements = ["intel-openmp==2023.1.0"]',
    )
    config.write_text(text)
    proc = cli(
        "build", "--config", str(config), "--version", "v1.0.0", "--out", str(tmp_path / "out")
    )
    assert proc.returncode == 2, proc.stderr
    assert "intel-openmp has no wheel for aarch64" in proc.stderr
    assert "DIRACOS2" in proc.stderr and "pin a version" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written, not even for x86_64


def test_tag_that_builds_another_version_is_refused(tmp_path: Path) -> None:
    import git

    repo_dir = tmp_path / "repo"
    demo.prepare_repository(repo_dir)
    repo = git.Repo(repo_dir)
    repo.git.tag("-a", "v1.0.0a2", "-m", "wrong: pyproject still says 1.0.0")
    (tmp_path / "release.toml").write_text(demo.demo_config_text(source="repo"))
    config = load_config(tmp_path / "release.toml", environ={})
    with pytest.raises(BadInput) as caught:
        build_release(config, version="v1.0.0a2")
    assert "builds version 1.0.0, not 1.0.0a2" in caught.value.message
    assert not (tmp_path / "dist").exists()


def test_killed_build_leaves_nothing_half_written(demo_workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        "DIRAC_RELEASE_CACHE": str(tmp_path / "cache"),
        "DIRAC_RELEASE_STATE": str(tmp_path / "state"),
    }
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "release", "build", "--config", str(demo_workdir / "release.toml"),
         "--version", "v1.0.0", "--out", str(out)],
        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            staged = list(out.glob(".staging-*/Linux-*/lib"))
            if staged:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the build finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its uv children, as a cancelled job
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert list(out.glob(".staging-*")), "the staging folder should be what the crash left"
    assert not (out / "v1.0.0").exists()  # nothing of the version is visible
    done = cli("build", "--config", str(demo_workdir / "release.toml"), "--version", "v1.0.0",
               "--out", str(out), "--json", **env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not list(out.glob(".staging-*"))  # the crashed build's leftovers were cleared
    assert (out / "v1.0.0" / "SHA256SUMS").is_file()


def test_pypi_gets_the_wheel_in_the_bundles_and_a_reproducible_sdist(
    demo_build: BuildReport, demo_config: ReleaseConfig
) -> None:
    import tarfile
    import zipfile

    from release.pypi import prepare_pypi

    first = prepare_pypi(demo_config, version=demo.DEMO_TAG)
    folder = Path(first["folder"])
    wheel, sdist = "vodemo_dirac-1.0.0-py3-none-any.whl", "vodemo_dirac-1.0.0.tar.gz"
    assert sorted(p.name for p in folder.iterdir()) == [wheel, sdist]
    assert first["wheel_in_bundles"] == ["aarch64", "x86_64"] and first["wheel_files"] > 0
    # The wheel's modules are, byte for byte, the ones installed in the x86_64 bundle.
    site = demo_build.bundles[0].tree / site_packages("3.11")
    with zipfile.ZipFile(folder / wheel) as archive:
        module = next(n for n in archive.namelist() if n.endswith("vodemo/__init__.py"))
        assert archive.read(module) == (site / module).read_bytes()
    with tarfile.open(folder / sdist) as archive:
        assert any(m.name == "vodemo_dirac-1.0.0/PKG-INFO" for m in archive.getmembers())
    # Made again (the sdist's cache emptied): the same bytes, as the PyPI upload needs for
    # a re-run that skips what is already there.
    shutil.rmtree(demo_config.resolve_path(demo_config.build.cache_dir) / "sdists")
    again = prepare_pypi(demo_config, version=demo.DEMO_TAG)
    assert again["files"] == first["files"]
    records = demo_config.ledger("vodemo", demo.DEMO_TAG).records("pypi")
    assert records[-1]["files"] == first["files"]
