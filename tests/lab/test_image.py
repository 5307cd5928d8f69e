"""A VO's image from the real Debian bases, both architectures: built, read by umoci,
unpacked, run (x86_64 natively, aarch64 under qemu-user) with /cvmfs bound, laid out for CVMFS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from release.cli import main
from tests.conftest import index_problem, lab_skip

pytestmark = pytest.mark.lab

CONFIG = """\
[products.DIRAC]
source = { index = "DIRAC" }

[images.dteam]
product = "DIRAC"
base = { debian = "bookworm" }
packages = ["python3.11", "python3-gfal2", "python3-m2crypto"]
env = { X509_CERT_DIR = "/etc/grid-security/certificates" }
"""
RC = 'export DTEAM_RELEASE="v9.0.0"\nexport PATH="/usr/bin:/bin"\n'
PROBE = (
    "python3 -c 'import os, platform, gfal2, M2Crypto; "
    'print(platform.machine(), os.environ["DTEAM_RELEASE"], os.environ["X509_CERT_DIR"])\''
)


@pytest.fixture(scope="module")
def debian_bases() -> dict[str, Path]:
    problem = index_problem()
    if problem:
        lab_skip(problem)
    if os.geteuid() != 0:
        lab_skip("the Debian base needs root (debootstrap)")
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        lab_skip("debootstrap is not installed (apt-get install debootstrap)")
    if not shutil.which("qemu-aarch64-static"):
        lab_skip("qemu-user-static is not installed (apt-get install qemu-user-static)")
    if not shutil.which("umoci"):
        lab_skip("umoci is not installed (apt-get install umoci)")
    from release.base.debian import cached_path, make_debian_base

    return {arch: make_debian_base(cached_path(arch), arch=arch) for arch in ("x86_64", "aarch64")}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def test_both_architectures_build_run_and_lay_out(
    debian_bases: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "release.toml"
    config.write_text(CONFIG)
    out = tmp_path / "images"
    common = ("--config", str(config))
    started = time.monotonic()
    code, built, err = _cli(capsys, *common, "image", "build", "--version", "v9.0.0",
                            "--out", str(out), "--json")  # fmt: skip
    seconds = time.monotonic() - started
    assert code == 0, err
    images = {image["arch"]: image for image in built["images"]}
    assert sorted(images) == ["aarch64", "x86_64"]
    said = [f"build of both architectures: {seconds:.1f} s"]
    for arch, image in images.items():
        said.append(
            f"{arch}: layer {image['layer_size'] / 1e6:.1f} MB, tree {image['bytes'] / 1e6:.1f} MB,"
            f" {image['files']} files, {image['seconds']:.1f} s, {image['manifest_digest']}"
        )
        assert image["status"] == "written" and image["files"] > 3000
        record = json.loads((Path(image["folder"]) / ".dirac-release/image.json").read_text())
        assert record["manifest_digest"] == image["manifest_digest"]
        # umoci, an independent reader, finds the image by its tag and agrees on the digest.
        layout = Path(image["layout"])
        stat = subprocess.run(["umoci", "stat", "--json", "--image", f"{layout}:v9.0.0"],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert stat.returncode == 0, stat.stderr
        index = json.loads((layout / "index.json").read_text())
        assert index["manifests"][0]["digest"] == image["manifest_digest"]
    # umoci unpacks the x86_64 image to the same tree as ours (ours adds image.json).
    bundle = tmp_path / "umoci-bundle"
    unpack = subprocess.run(["umoci", "unpack", "--rootless", "--image",
                             f"{images['x86_64']['layout']}:v9.0.0", str(bundle)],
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert unpack.returncode == 0, unpack.stderr

    def listing(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*")}

    ours = listing(Path(images["x86_64"]["folder"]))
    assert listing(bundle / "rootfs") == ours - {".dirac-release", ".dirac-release/image.json"}
    shutil.rmtree(bundle)

    # Run each tree, /cvmfs bound from a folder that plays the repository.
    cvmfs = tmp_path / "cvmfs"
    (cvmfs / "dteam.test").mkdir(parents=True)
    (cvmfs / "dteam.test" / "diracosrc").write_text(RC)
    code, checked, err = _cli(capsys, *common, "image", "check", "--version", "v9.0.0",
                              "--out", str(out), "--cvmfs", str(cvmfs),
                              "--source", "/cvmfs/dteam.test/diracosrc",
                              "--command", PROBE, "--json")  # fmt: skip
    assert code == 0, (err, checked)
    for result in checked["checks"]:
        steps = {step["name"]: step for step in result["steps"]}
        assert steps["uname -m"]["detail"] == result["arch"]
        assert "Debian GNU/Linux 12" in steps["/etc/os-release"]["detail"]
        run = steps[f"run {PROBE}"]
        assert run["detail"].endswith(f"{result['arch']} v9.0.0 /etc/grid-security/certificates")
    assert "qemu-user" in next(r["how"] for r in checked["checks"] if r["arch"] == "aarch64")

    # The same inputs again: found unchanged from the inputs alone, in about a second.
    started = time.monotonic()
    code, again, err = _cli(capsys, *common, "image", "build", "--version", "v9.0.0",
                            "--out", str(out), "--json")  # fmt: skip
    said.append(f"rerun with the same inputs: {time.monotonic() - started:.1f} s")
    assert code == 0, err
    for image in again["images"]:
        assert image["status"] == "unchanged"
        assert image["manifest_digest"] == images[image["arch"]]["manifest_digest"]
    # A second whole build (another output folder) gives the same digest: reproducible on
    # the real base. One architecture is enough for that; the unit tests cover both.
    code, other, err = _cli(capsys, *common, "image", "build", "--version", "v9.0.0", "--arch",
                            "x86_64", "--out", str(tmp_path / "again"), "--json")  # fmt: skip
    assert code == 0, err
    assert other["images"][0]["status"] == "written"
    assert other["images"][0]["manifest_digest"] == images["x86_64"]["manifest_digest"]
    shutil.rmtree(tmp_path / "again")

    # Laid out as CVMFS serves it, each architecture with its manifest.
    from release.build import manifest as mf
    from release.config import load_config
    from release.image.publishable import publishable

    staged = publishable(load_config(config, environ={}), version="v9.0.0", vo="dteam",
                         out=out, staging=tmp_path / "publish")  # fmt: skip
    for arch, one in staged.items():
        assert one.manifest["image"]["manifest_digest"] == images[arch]["manifest_digest"]
        assert mf.read_manifest(one.tree) == one.manifest
        assert "cvmfs/.dirac-release-keep" in {e["path"] for e in one.manifest["files"]}
    with capsys.disabled():  # the figures, for whoever runs it with -s
        print("\n" + "\n".join(said))


def test_packages_the_base_lacks_are_installed_for_both_architectures(
    debian_bases: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`packages` with one the base has not (jq): a base with it is made once per
    architecture by debootstrap (the Debian mirror, arm64 without emulation), the image holds
    it (dpkg status, the program for the right architecture) and it runs inside the image,
    aarch64 under qemu-user. A second image of another release reuses that base."""
    from cvmfs import elf
    from release.image.build import debian_tree
    from release.image.check import TreeRunner

    config = tmp_path / "release.toml"
    config.write_text(CONFIG.replace('"python3-m2crypto"]', '"python3-m2crypto", "jq"]'))
    common = ("--config", str(config))
    code, built, err = _cli(capsys, *common, "image", "build", "--version", "v9.0.0",
                            "--out", str(tmp_path / "images"), "--json")  # fmt: skip
    assert code == 0, err
    for image in built["images"]:
        arch, tree = image["arch"], Path(image["folder"])
        made = debian_tree(arch, ("python3.11", "jq"))
        assert made != debian_bases[arch] and made.name.startswith(f"bookworm-{arch}-dirac+")
        assert "Package: jq\n" in (tree / "var/lib/dpkg/status").read_text()
        with (tree / "usr/bin/jq").open("rb") as handle:
            header = elf.read_header(handle.read(20))
        assert header is not None and elf.matches(header, arch)
        runner = TreeRunner(tree, arch, tmp_path / "images")
        done = runner.run(["/usr/bin/jq", "-n", "[1, 2] | add"])
        assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr
    marks = {arch: (debian_tree(arch, ("python3.11", "jq")) / ".dirac-release-base").stat()
             for arch in debian_bases}  # fmt: skip
    started = time.monotonic()
    code, again, err = _cli(capsys, *common, "image", "build", "--version", "v9.0.1",
                            "--out", str(tmp_path / "images"), "--json")  # fmt: skip
    assert code == 0, err
    for arch, mark in marks.items():  # made once: this build used them as they were
        now = (debian_tree(arch, ("python3.11", "jq")) / ".dirac-release-base").stat()
        assert (now.st_ino, now.st_mtime_ns) == (mark.st_ino, mark.st_mtime_ns)
    assert {i["base_digest"] for i in again["images"]} == {
        i["base_digest"] for i in built["images"]}  # fmt: skip
    print(f"second image on the made bases: {time.monotonic() - started:.1f} s")
