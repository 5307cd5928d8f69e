"""`image build` on synthetic bases: both architectures, reproducible, refusals write nothing."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from release.cli import main
from release.config import ReleaseConfig, load_config
from release.errors import BadInput
from release.image import oci
from release.image.build import IMAGE_JSON, build_images
from release.image.layers import Applier
from tests.image_trees import (
    DOC_TIME,
    debian_base,
    dir_info,
    el9_layers,
    file_info,
    layer_bytes,
    make_rootfs,
    oci_archive,
)

DEBIAN = """\
[products.DIRAC]
source = { index = "DIRAC" }

[build]
compression_level = 1

[images.dteam]
base = { debian = "bookworm" }
packages = ["python3"]
env = { X509_CERT_DIR = "/etc/grid-security/certificates" }
labels = { "eu.egi.dteam.contact" = "admin@example.org" }
"""


def _config(tmp_path: Path, text: str = DEBIAN) -> ReleaseConfig:
    path = tmp_path / "release.toml"
    path.write_text(text)
    return load_config(path, environ={})


@pytest.fixture
def bases(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for arch in ("x86_64", "aarch64"):
        debian_base(isolated_env, arch)
    return isolated_env


def test_both_architectures_are_built_and_unpacked(tmp_path: Path, bases: Path) -> None:
    builds = build_images(_config(tmp_path), version="v9.0.0", out=tmp_path / "out")
    assert [(b.arch, b.status) for b in builds] == [("x86_64", "written"), ("aarch64", "written")]
    for build in builds:
        assert build.folder == tmp_path / "out" / "dteam" / "v9.0.0" / build.arch
        assert build.layout == tmp_path / "out" / "dteam" / "v9.0.0" / "oci" / build.arch
        record = json.loads((build.folder / IMAGE_JSON).read_text())
        assert record["manifest_digest"] == build.manifest_digest
        assert (record["vo"], record["tag"], record["arch"], record["product"]) == (
            "dteam", "v9.0.0", build.arch, "DIRAC")  # fmt: skip
        assert record["oci_arch"] == oci.OCI_ARCH[build.arch]
        assert list((build.folder / "cvmfs").iterdir()) == []
        for bind in ("etc/grid-security/certificates", "etc/grid-security/vomsdir"):
            assert (build.folder / bind).is_dir()
        assert (build.folder / "usr/bin/python3").stat().st_ino == (
            build.folder / "usr/bin/python3.11").stat().st_ino  # fmt: skip
        assert os.readlink(build.folder / "lib64/ld.so") == "/usr/lib/ld.so"
        assert (build.folder / "usr/bin/su").stat().st_mode & 0o7777 == 0o4755
        assert (build.folder / "tmp").stat().st_mode & 0o7777 == 0o1777
        assert (build.folder / "proc").stat().st_mode & 0o7777 == 0o555
        assert int((build.folder / "etc/os-release").stat().st_mtime) == DOC_TIME
        assert build.left_out == ["dev/initctl"]
        _m, config, digest = oci.read_layout_image(build.layout)
        assert digest == build.manifest_digest
        labels = config["config"]["Labels"]
        assert labels["org.diracgrid.release.tag"] == "v9.0.0"
        assert labels["org.diracgrid.image.vo"] == "dteam"
        assert labels["eu.egi.dteam.contact"] == "admin@example.org"
        assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")
        assert "X509_CERT_DIR=/etc/grid-security/certificates" in config["config"]["Env"]
    assert builds[0].manifest_digest != builds[1].manifest_digest
    left = sorted(p.name for p in (tmp_path / "out" / "dteam" / "v9.0.0").glob(".*"))
    assert left == [".aarch64.files.json", ".x86_64.files.json"]  # the indexes, no staging


def test_a_rebuild_finds_the_same_digest_and_leaves_it(tmp_path: Path, bases: Path) -> None:
    config = _config(tmp_path)
    first = build_images(config, version="v9.0.0", arches=["x86_64"], out=tmp_path / "out")
    second = build_images(config, version="v9.0.0", arches=["x86_64"], out=tmp_path / "o2")
    assert first[0].manifest_digest == second[0].manifest_digest
    again = build_images(config, version="v9.0.0", arches=["x86_64"], out=tmp_path / "out")
    assert again[0].status == "unchanged" and again[0].manifest_digest == first[0].manifest_digest
    other = build_images(config, version="v9.0.1", arches=["x86_64"], out=tmp_path / "out")
    assert other[0].manifest_digest != first[0].manifest_digest  # the release is in the labels


def test_source_date_epoch_sets_the_time(tmp_path: Path, bases: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000000")
    build = build_images(_config(tmp_path), version="v9.0.0", arches=["x86_64"],
                         out=tmp_path / "out")[0]  # fmt: skip
    assert int((build.folder / "etc/os-release").stat().st_mtime) == 1600000000


def _nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


def test_an_unknown_vo_is_refused_with_a_suggestion(tmp_path: Path, bases: Path) -> None:
    with pytest.raises(BadInput) as caught:
        build_images(_config(tmp_path), version="v9.0.0", vo="dtaem", out=tmp_path / "out")
    assert "unknown VO 'dtaem'" in caught.value.render()
    assert "did you mean 'dteam'?" in caught.value.render()
    _nothing_written(tmp_path / "out")


def test_a_missing_architecture_of_the_base_is_refused(tmp_path: Path, isolated_env: Path) -> None:
    debian_base(isolated_env, "x86_64")
    with pytest.raises(BadInput) as caught:
        build_images(_config(tmp_path), version="v9.0.0", out=tmp_path / "out")
    assert "Debian bookworm base for aarch64 is not on this machine" in caught.value.render()
    _nothing_written(tmp_path / "out")


def test_a_base_of_the_wrong_architecture_is_refused(tmp_path: Path, isolated_env: Path) -> None:
    debian_base(isolated_env, "x86_64")
    debian_base(isolated_env, "aarch64", elf_arch="x86_64")
    with pytest.raises(BadInput, match=r"the aarch64 base .* holds x86_64 programs"):
        build_images(_config(tmp_path), version="v9.0.0", out=tmp_path / "out")
    _nothing_written(tmp_path / "out")


class FakeMaker:
    """make_debian_base's stand-in: a synthetic base with the packages asked for (the real
    one, debootstrap with the Debian mirror, is tests/lab/test_image.py's)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[Path, str, tuple[str, ...]]] = []
        self.fail = fail

    def __call__(self, dest: Path, *, arch: str, packages: tuple[str, ...] = ()) -> Path:
        self.calls.append((dest, arch, packages))
        if self.fail is not None:
            raise self.fail
        make_rootfs(dest, arch, packages=packages)
        (dest / ".dirac-release-base").write_text(",".join(packages) + "\n")
        return dest


def test_a_package_missing_from_the_base_is_installed_by_a_base_made_with_it(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from release.base import debian

    standard = debian_base(isolated_env, "x86_64", packages=("openssl",))
    maker = FakeMaker()
    monkeypatch.setattr(debian, "make_debian_base", maker)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    [first] = build_images(_config(tmp_path), version="v9.0.0", arches=["x86_64"],
                           out=tmp_path / "out")  # fmt: skip
    [(made, arch, packages)] = maker.calls
    # Made once, beside this machine's base, named by the packages it adds; the standard
    # packages of the base and the missing one.
    assert arch == "x86_64" and made.parent == standard.parent
    assert made.name.startswith("bookworm-x86_64-dirac+") and "python3" in packages
    assert set(debian.PACKAGES) <= set(packages)
    status = (first.folder / "var/lib/dpkg/status").read_text()
    assert "Package: python3\n" in status
    assert first.base_digest != _status_digest(standard)
    # A later build (another release) finds it made: offline, no second debootstrap.
    [second] = build_images(_config(tmp_path), version="v9.0.1", arches=["x86_64"],
                            out=tmp_path / "out")  # fmt: skip
    assert len(maker.calls) == 1 and second.base_digest == first.base_digest


def test_a_missing_package_needs_root_once_and_nothing_is_written(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from release.base import debian

    debian_base(isolated_env, "x86_64", packages=("openssl",))
    maker = FakeMaker()
    monkeypatch.setattr(debian, "make_debian_base", maker)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BadInput) as caught:
        build_images(_config(tmp_path), version="v9.0.0", arches=["x86_64"], out=tmp_path / "out")
    text = caught.value.render()
    assert "lacks the package(s) python3" in text and "needs root (debootstrap)" in text
    assert "run the image build once as root" in text
    assert maker.calls == []
    _nothing_written(tmp_path / "out")


def test_a_base_that_cannot_be_made_says_which_packages(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from release.base import debian
    from release.errors import InfrastructureError

    debian_base(isolated_env, "x86_64", packages=("openssl",))
    monkeypatch.setattr(debian, "make_debian_base",
                        FakeMaker(InfrastructureError("debootstrap failed (exit 1)")))  # fmt: skip
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(InfrastructureError) as caught:
        build_images(_config(tmp_path), version="v9.0.0", arches=["x86_64"], out=tmp_path / "out")
    assert "making the x86_64 base with python3 for images.dteam.packages failed: " \
        "debootstrap failed (exit 1)" in caught.value.render()  # fmt: skip
    _nothing_written(tmp_path / "out")


def _status_digest(tree: Path) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256((tree / "var/lib/dpkg/status").read_bytes()).hexdigest()


OCI = """\
[products.DIRAC]
source = { index = "DIRAC" }

[build]
compression_level = 1

[images.lhcb]
base.oci = { x86_64 = "el9-x86_64.tar", aarch64 = "el9-aarch64.tar" }
binds = ["/etc/grid-security/certificates"]
"""


def test_an_oci_archive_base_is_flattened_layer_by_layer(
    tmp_path: Path, isolated_env: Path
) -> None:
    oci_archive(tmp_path / "el9-x86_64.tar", architecture="amd64", layers=el9_layers("x86_64"))
    oci_archive(tmp_path / "el9-aarch64.tar", architecture="arm64", layers=el9_layers("aarch64"))
    builds = build_images(_config(tmp_path, OCI), version="v9.0.0", out=tmp_path / "out")
    for build in builds:
        tree = build.folder
        assert "AlmaLinux" in (tree / "etc/os-release").read_text()
        assert not (tree / "etc/old.conf").exists()  # the whiteout removed it
        assert (tree / "etc/new.conf").read_text() == "new\n"
        assert list((tree / "var/cache").iterdir()) == []  # the opaque whiteout emptied it
        assert build.base == f"oci-archive:el9-{build.arch}.tar"
        assert build.base_digest.startswith("sha256:")
        assert build.created == 1714521600  # the archive's config `created`
    again = build_images(_config(tmp_path, OCI), version="v9.0.0", out=tmp_path / "o2")
    assert [b.manifest_digest for b in again] == [b.manifest_digest for b in builds]


def test_an_archive_for_the_wrong_architecture_is_refused(
    tmp_path: Path, isolated_env: Path
) -> None:
    oci_archive(tmp_path / "el9-x86_64.tar", architecture="arm64", layers=el9_layers("aarch64"))
    oci_archive(tmp_path / "el9-aarch64.tar", architecture="arm64", layers=el9_layers("aarch64"))
    with pytest.raises(BadInput) as caught:
        build_images(_config(tmp_path, OCI), version="v9.0.0", out=tmp_path / "out")
    text = caught.value.render()
    assert (
        "is an image for 'arm64', not for x86_64" in text and "images.lhcb.base.oci.x86_64" in text
    )
    _nothing_written(tmp_path / "out")


def test_an_architecture_the_archives_lack_is_refused(tmp_path: Path, isolated_env: Path) -> None:
    text = OCI.replace(', aarch64 = "el9-aarch64.tar"', "")
    oci_archive(tmp_path / "el9-x86_64.tar", architecture="amd64", layers=el9_layers("x86_64"))
    with pytest.raises(BadInput, match="has no aarch64 image"):
        build_images(_config(tmp_path, text), version="v9.0.0", arches=["aarch64"],
                     out=tmp_path / "out")  # fmt: skip
    _nothing_written(tmp_path / "out")


def _sym(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _dev(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([file_info("/etc/passwd")], "leaves the image's root"),
        ([dir_info("etc"), file_info("etc/../../x")], "leaves the image's root"),
        ([_dev("dev/null")], "device node"),
        ([_sym("etc", "/"), file_info("etc/passwd")], "not a folder"),
    ],
)
def test_a_bad_layer_is_refused_and_nothing_is_written(
    tmp_path: Path, isolated_env: Path, members: list[tarfile.TarInfo], words: str
) -> None:
    bad = layer_bytes(members, {m.name: b"x\n" for m in members if m.isreg()})
    oci_archive(
        tmp_path / "el9-x86_64.tar", architecture="amd64", layers=[*el9_layers("x86_64"), bad]
    )
    oci_archive(tmp_path / "el9-aarch64.tar", architecture="arm64", layers=el9_layers("aarch64"))
    with pytest.raises(BadInput, match=words):
        build_images(_config(tmp_path, OCI), version="v9.0.0", out=tmp_path / "out")
    _nothing_written(tmp_path / "out")


def test_the_applier_never_writes_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = layer_bytes([_sym("etc", str(outside)), file_info("etc/passwd")], {"etc/passwd": b"x"})
    with pytest.raises(BadInput):
        Applier(tmp_path / "tree", "test").apply(__import__("io").BytesIO(layer))
    assert list(outside.iterdir()) == []


def test_the_cli_builds_with_json_and_refuses_with_exit_2(
    tmp_path: Path, bases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _config(tmp_path)
    config = str(tmp_path / "release.toml")
    out = str(tmp_path / "out")
    assert main(["--config", config, "image", "build", "--version", "v9.0.0", "--arch",
                 "x86_64", "--out", out, "--json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert [i["arch"] for i in data["images"]] == ["x86_64"]
    assert data["images"][0]["manifest_digest"].startswith("sha256:")
    assert main(["--config", config, "image", "build", "--vo", "dtaem", "--version", "v9.0.0",
                 "--out", str(tmp_path / "o2")]) == 2  # fmt: skip
    assert "did you mean 'dteam'" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_publishable_gives_each_architecture_a_tree_and_its_manifest(
    tmp_path: Path, bases: Path
) -> None:
    from cvmfs import manifest_rules
    from release.build import manifest as mf
    from release.image.publishable import publishable

    config = _config(tmp_path)
    builds = build_images(config, version="v9.0.0", out=tmp_path / "out")
    staged = publishable(config, version="v9.0.0", vo="dteam", out=tmp_path / "out",
                         staging=tmp_path / "pub")  # fmt: skip
    assert sorted(staged) == ["aarch64", "x86_64"]
    for build in builds:
        one = staged[build.arch]
        assert one.tree == tmp_path / "pub" / build.arch and one.layout == build.layout
        manifest_rules.validate("test", one.manifest)
        assert one.manifest["product"] == "image-dteam" and one.manifest["platform"] == build.arch
        assert one.manifest["image"]["manifest_digest"] == build.manifest_digest
        assert mf.read_manifest(one.tree) == one.manifest
        assert mf.verify_tree(one.tree, one.manifest) == []
        paths = {entry["path"]: entry for entry in one.manifest["files"]}
        assert paths["lib64/ld.so"]["link"] == "../usr/lib/ld.so"  # relative inside the tree
        assert "cvmfs/.dirac-release-keep" in paths  # the empty mount point is kept
        assert ".dirac-release/image.json" in paths
        assert (
            build.folder / "usr/bin/su"
        ).stat().st_mode & 0o7777 == 0o4755  # never written through


def test_a_rerun_with_the_same_inputs_reads_no_file_and_a_change_is_seen(
    tmp_path: Path, bases: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import release.image.oci as oci_module

    config = _config(tmp_path)
    out = tmp_path / "out"
    first = build_images(config, version="v9.0.0", arches=["x86_64"], out=out)[0]
    record = json.loads((first.folder / IMAGE_JSON).read_text())
    assert record["inputs"].startswith("sha256:") and record["files"] == first.files

    def no_layer(*args: object, **kwargs: object) -> None:
        raise AssertionError("the layer was written again")

    write_layer = oci_module.write_layer
    monkeypatch.setattr(oci_module, "write_layer", no_layer)
    again = build_images(config, version="v9.0.0", arches=["x86_64"], out=out)[0]
    assert again.status == "unchanged" and again.as_dict() | {"seconds": 0} == first.as_dict() | {
        "seconds": 0, "status": "unchanged"}  # fmt: skip
    monkeypatch.setattr(oci_module, "write_layer", write_layer)  # (not undo(): XDG_CACHE_HOME)
    # The same size and mtime, other content: ctime moved, so the image is built again.
    env = bases / "dirac-release/bases/bookworm-x86_64-dirac/etc/os-release"
    stat = env.stat()
    env.write_text(env.read_text().replace("12", "13"))
    os.utime(env, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = build_images(config, version="v9.0.0", arches=["x86_64"], out=out)[0]
    assert changed.status == "replaced" and changed.manifest_digest != first.manifest_digest
    assert "13" in (changed.folder / "etc/os-release").read_text()


def test_the_same_bytes_from_a_copied_base_only_update_the_record(
    tmp_path: Path, bases: Path
) -> None:
    import shutil
    import subprocess

    config = _config(tmp_path)
    out = tmp_path / "out"
    first = build_images(config, version="v9.0.0", arches=["x86_64"], out=out)[0]
    base = bases / "dirac-release/bases/bookworm-x86_64-dirac"
    subprocess.run(["cp", "-a", str(base), str(tmp_path / "copy")], check=True)  # hardlinks kept
    shutil.rmtree(base)
    (tmp_path / "copy").rename(base)  # new inodes and ctimes, the same content and mtimes
    again = build_images(config, version="v9.0.0", arches=["x86_64"], out=out)[0]
    assert again.status == "unchanged" and again.manifest_digest == first.manifest_digest
    record = json.loads((first.folder / IMAGE_JSON).read_text())
    assert record["inputs"] == again.inputs != first.inputs


def test_a_multi_platform_archive_gives_each_architecture_its_image(
    tmp_path: Path, isolated_env: Path
) -> None:
    """One archive for both: the index's platform picks the image (skopeo --all writes such)."""
    both = tmp_path / "el9.tar"
    blobs: dict[str, bytes] = {}
    descriptors = []
    for arch, goarch in (("x86_64", "amd64"), ("aarch64", "arm64")):
        single = tmp_path / f"single-{arch}.tar"
        oci_archive(single, architecture=goarch, layers=el9_layers(arch))
        with tarfile.open(single) as tar:
            index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
            for member in tar.getmembers():
                if member.name.startswith("blobs/"):
                    blobs[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
        descriptors.append({**index["manifests"][0],
                            "platform": {"architecture": goarch, "os": "linux"}})  # fmt: skip
    index_bytes = json.dumps({"schemaVersion": 2, "manifests": descriptors}).encode()
    with tarfile.open(both, "w") as tar:
        for name, data in {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                           "index.json": index_bytes, **blobs}.items():  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    text = OCI.replace('x86_64 = "el9-x86_64.tar", aarch64 = "el9-aarch64.tar"',
                       'x86_64 = "el9.tar", aarch64 = "el9.tar"')  # fmt: skip
    builds = build_images(_config(tmp_path, text), version="v9.0.0", out=tmp_path / "out",
                          arches=["aarch64", "x86_64", "aarch64"])  # fmt: skip
    assert [b.arch for b in builds] == ["aarch64", "x86_64"]
    assert builds[0].base_digest != builds[1].base_digest
    assert builds[0].base_digest == descriptors[1]["digest"]


def test_check_without_a_built_image_says_how_to_build_it(
    tmp_path: Path, bases: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _config(tmp_path)
    code = main(["--config", str(tmp_path / "release.toml"), "image", "check", "--version",
                 "v9.0.0", "--out", str(tmp_path / "none")])  # fmt: skip
    assert code == 2
    assert "dirac-release image build --version v9.0.0" in capsys.readouterr().err


def test_packages_with_an_oci_archive_base_are_refused(tmp_path: Path, isolated_env: Path) -> None:
    oci_archive(tmp_path / "el9-x86_64.tar", architecture="amd64", layers=el9_layers("x86_64"))
    oci_archive(tmp_path / "el9-aarch64.tar", architecture="arm64", layers=el9_layers("aarch64"))
    with pytest.raises(BadInput, match="not against an OCI archive"):
        build_images(_config(tmp_path, OCI + 'packages = ["openssl"]\n'), version="v9.0.0",
                     out=tmp_path / "out")  # fmt: skip
    _nothing_written(tmp_path / "out")


def _listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below root: type, mode, size, content hash, link target, mtime, inode
    group (which names share a file)."""
    import hashlib
    import stat

    found: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            found[rel] = ("link", os.readlink(path), int(st.st_mtime))
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ("dir", stat.S_IMODE(st.st_mode), int(st.st_mtime))
        else:
            first = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 else rel
            found[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size,
                          hashlib.sha256(path.read_bytes()).hexdigest(), int(st.st_mtime),
                          first)  # fmt: skip
    return found


def test_the_tree_written_with_the_layer_is_the_layer_unpacked(tmp_path: Path, bases: Path) -> None:
    """The tree is written from the same reads as the layer, not unpacked from it afterwards:
    it must be, entry by entry, what an unpacker makes of the layer (ours, as for archives)."""
    import gzip

    [build] = build_images(_config(tmp_path), version="v9.0.0", arches=["x86_64"],
                           out=tmp_path / "out")  # fmt: skip
    blob = build.layout / "blobs" / "sha256" / build.layer_digest.removeprefix("sha256:")
    applier = Applier(tmp_path / "unpacked", str(blob))
    with blob.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as plain:
        applier.apply(plain)  # type: ignore[arg-type]
    applier.finish()
    written = _listing(build.folder)
    for record in (".dirac-release/image.json", ".dirac-release"):
        del written[record]  # the record, written beside the layer's tree
    unpacked = _listing(tmp_path / "unpacked")
    assert written == unpacked
    # The awkward entries are there: set-uid, hardlinks, absolute link, a read-only folder.
    assert written["usr/bin/su"][1] == 0o4755
    assert written["usr/bin/python3"][-1] == written["usr/bin/a-python"][-1] == "usr/bin/a-python"
    assert written["proc"][1] == 0o555


def test_a_new_release_reuses_the_layer_of_the_last_one(tmp_path: Path, bases: Path) -> None:
    """Same base, another tag: the layer's bytes are the same (the tag is only in the config
    and manifest), so its blob is taken from the earlier release, hashed first, not gzipped
    again; the tree is written from the base. A blob edited since is never reused."""
    config = _config(tmp_path)
    [first] = build_images(config, version="v9.0.0", arches=["x86_64"], out=tmp_path / "out")
    [second] = build_images(config, version="v9.0.1", arches=["x86_64"], out=tmp_path / "out")
    assert (first.layer_from, second.layer_from) == ("", "v9.0.0")
    assert second.layer_digest == first.layer_digest and second.diff_id == first.diff_id
    assert second.manifest_digest != first.manifest_digest
    blob = "blobs/sha256/" + first.layer_digest.removeprefix("sha256:")
    assert (first.layout / blob).stat().st_ino == (second.layout / blob).stat().st_ino
    mine, theirs = _listing(first.folder), _listing(second.folder)
    for listing in (mine, theirs):
        del listing[".dirac-release/image.json"]
    assert mine == theirs
    # Edited in place (same size): hashed before it is taken, so not reused; the build then
    # writes its own layer, with the right digest.
    data = bytearray((first.layout / blob).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (second.layout / blob).unlink()
    (first.layout / blob).write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "out" / "dteam" / "v9.0.1")
    [third] = build_images(config, version="v9.0.1", arches=["x86_64"], out=tmp_path / "out")
    assert third.layer_from == "" and third.layer_digest == first.layer_digest
    assert third.manifest_digest == second.manifest_digest
