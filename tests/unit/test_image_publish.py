"""`image publish` on a directory stratum: both architectures of a VO's image in one verified
transaction, the `.multiarch` view, reruns, refusals, retention and ContainerRoot.

The images are built by the real `image build` from the synthetic Debian bases of
tests/image_trees.py (no debootstrap), so what is published is what a build writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cvmfs.backends.base import Owner
from cvmfs.backends.directory import DirectoryBackend
from release.cli import main
from release.config import ReleaseConfig, load_config
from release.errors import BadInput
from release.image.build import build_images
from release.image.publish import container_roots, publish_images
from release.publish import collect_garbage
from tests.image_trees import debian_base, image_site
from tests.publishing import du

CONFIG = """\
[products.DIRAC]
source = {{ index = "DIRAC" }}
repository = "dirac.egi.eu"

[build]
compression_level = 1

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"
keep = {keep}

[images.dteam]
base = {{ debian = "bookworm" }}
packages = ["python3"]
"""
REPO = "dirac.egi.eu"
OCI = {"x86_64": "amd64", "aarch64": "arm64"}


def _config(site: Path, keep: int = 5) -> ReleaseConfig:
    (site / "release.toml").write_text(CONFIG.format(keep=keep))
    return load_config(site / "release.toml", environ={})


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return image_site(tmp_path, isolated_env, monkeypatch, REPO)


def _build(config: ReleaseConfig, site: Path, version: str) -> None:
    build_images(config, version=version, out=site / "images")


def _containers(site: Path) -> Path:
    return site / "stratum" / REPO / "dirac" / "containers" / "dteam"


def _tags(site: Path) -> list[str]:
    return [t.name for t in DirectoryBackend(REPO, site / "stratum").tags()]


def test_both_architectures_are_published_in_one_transaction(site: Path) -> None:
    config = _config(site)
    _build(config, site, "v9.0.0")
    before = DirectoryBackend(REPO, site / "stratum").status().revision
    [result] = publish_images(config, version="v9.0.0", out=site / "images")
    assert result["status"] == "published" and result["tag"] == "image-dteam-v9.0.0"
    assert result["revision"] == (before or 0) + 1  # both arches and layouts: one revision
    assert "image-dteam-v9.0.0" in _tags(site)
    image = _containers(site) / "dteam:v9.0.0"
    assert (image / ".cvmfscatalog").is_file()
    for arch in ("x86_64", "aarch64"):
        tree = image / arch
        assert (tree / "etc/os-release").is_file() and (tree / "cvmfs").is_dir()
        assert os.readlink(tree / "lib64/ld.so") == "../usr/lib/ld.so"  # relative inside
        index = json.loads((image / "oci" / arch / "index.json").read_text())
        assert index["manifests"][0]["digest"] == result["digests"][arch]
        # The OCI name's folder (DIRAC#8454, unpacked.cern.ch) and uname -m's.
        for name in (OCI[arch], arch):
            link = _containers(site) / ".multiarch" / name / "dteam:v9.0.0"
            assert os.readlink(link) == f"../../dteam:v9.0.0/{arch}"
            assert link.resolve() == tree.resolve()
        root = result["container_root"][arch]
        assert root == f"/cvmfs/{REPO}/dirac/containers/dteam/.multiarch/{OCI[arch]}/dteam:v9.0.0"
    assert result["container_root_any"].endswith("/.multiarch/{arch}/dteam:v9.0.0")


def test_a_rerun_is_a_checked_no_op(site: Path) -> None:
    config = _config(site)
    _build(config, site, "v9.0.0")
    first = publish_images(config, version="v9.0.0", out=site / "images")[0]
    again = publish_images(config, version="v9.0.0", out=site / "images")[0]
    assert again["status"] == "already published" and again["revision"] == first["revision"]
    assert _tags(site).count("image-dteam-v9.0.0") == 1


@pytest.mark.parametrize("damage", ["remove", "repoint"])
def test_a_rerun_finds_a_damaged_multiarch_link(site: Path, damage: str) -> None:
    from release.errors import CheckFailed

    config = _config(site)
    _build(config, site, "v9.0.0")
    publish_images(config, version="v9.0.0", out=site / "images")
    link = _containers(site) / ".multiarch" / "aarch64" / "dteam:v9.0.0"
    os.remove(link)
    if damage == "repoint":
        os.symlink("../../dteam:v9.0.0/x86_64", link)  # the wrong architecture
    expected = "is missing" if damage == "remove" else "is -> ../../dteam:v9.0.0/x86_64"
    with pytest.raises(CheckFailed, match=rf"multiarch/aarch64/dteam:v9\.0\.0 {expected}"):
        publish_images(config, version="v9.0.0", out=site / "images")


def test_the_plan_changes_nothing(site: Path) -> None:
    config = _config(site)
    _build(config, site, "v9.0.0")
    [plan] = publish_images(config, version="v9.0.0", out=site / "images", plan=True)
    assert plan["status"] == "planned"
    assert any(".multiarch/x86_64 " in a or ".multiarch/x86_64/" in a for a in plan["actions"])
    assert not _containers(site).exists() and "image-dteam-v9.0.0" not in _tags(site)


def test_a_second_image_stores_only_the_changed_files(site: Path, isolated_env: Path) -> None:
    config = _config(site)
    big = os.urandom(400_000)
    for arch in ("x86_64", "aarch64"):
        base = isolated_env / "dirac-release" / "bases" / f"bookworm-{arch}-dirac"
        (base / "usr/lib").mkdir(parents=True, exist_ok=True)
        (base / "usr/lib/libbig.so").write_bytes(big)
    _build(config, site, "v9.0.0")
    publish_images(config, version="v9.0.0", out=site / "images")
    stored = du(site / "stratum")
    for arch in ("x86_64", "aarch64"):  # one "package" changes: a small file
        base = isolated_env / "dirac-release" / "bases" / f"bookworm-{arch}-dirac"
        (base / "usr/share/doc/python3/changelog").write_text("python3 (1.0-2) fixed\n")
    _build(config, site, "v9.0.1")
    [result] = publish_images(config, version="v9.0.1", out=site / "images")
    assert result["status"] == "published"
    added = du(site / "stratum") - stored
    # The trees are deduplicated against the published image; what the new image adds is its
    # changed files, its manifests and its OCI layout (whose layer blob is new by nature).
    layers = sum(
        du(site / "images/dteam/v9.0.1/oci" / arch / "blobs") for arch in ("x86_64", "aarch64")
    )
    trees = added - layers
    assert trees < 60_000, (added, layers)  # the 2 x 400 kB library is not stored again
    image = _containers(site)
    old = {(image / f"dteam:v9.0.0/{arch}/usr/lib/libbig.so").stat().st_ino
           for arch in ("x86_64", "aarch64")}  # fmt: skip
    for arch in ("x86_64", "aarch64"):
        assert (image / f"dteam:v9.0.1/{arch}/usr/lib/libbig.so").stat().st_ino in old


def test_the_same_tag_with_other_content_is_refused(site: Path, isolated_env: Path) -> None:
    config = _config(site)
    _build(config, site, "v9.0.0")
    publish_images(config, version="v9.0.0", out=site / "images")
    stored = du(site / "stratum")
    base = isolated_env / "dirac-release" / "bases" / "bookworm-x86_64-dirac"
    (base / "etc/motd").write_text("changed\n")
    _build(config, site, "v9.0.0")
    with pytest.raises(BadInput, match="other content"):
        publish_images(config, version="v9.0.0", out=site / "images")
    assert du(site / "stratum") == stored
    assert main(["--config", str(site / "release.toml"), "image", "publish", "--version",
                 "v9.0.0", "--out", str(site / "images")]) == 2  # fmt: skip


def test_a_missing_build_is_refused_with_the_command_that_builds_it(site: Path) -> None:
    config = _config(site)
    with pytest.raises(BadInput) as caught:
        publish_images(config, version="v9.0.0", out=site / "images")
    assert "dirac-release image build" in str(caught.value.fix)
    assert not _containers(site).exists()


def test_a_missing_architecture_is_refused(site: Path) -> None:
    config = _config(site)
    build_images(config, version="v9.0.0", arches=["x86_64"], out=site / "images")
    with pytest.raises(BadInput, match="aarch64") as caught:
        publish_images(config, version="v9.0.0", out=site / "images")
    assert "--arch aarch64" in str(caught.value.fix)
    assert not _containers(site).exists()


def test_an_unknown_vo_is_refused_with_a_suggestion(site: Path) -> None:
    config = _config(site)
    with pytest.raises(BadInput) as caught:
        publish_images(config, version="v9.0.0", vo="dteem", out=site / "images")
    assert "did you mean 'dteam'" in str(caught.value.fix)


def test_images_follow_the_retention_of_their_release(site: Path) -> None:
    config = _config(site, keep=1)
    backend = DirectoryBackend(REPO, site / "stratum")
    for version in ("v9.0.0", "v9.0.1"):
        _build(config, site, version)
        publish_images(config, version=version, out=site / "images")
        # A stand-in for the release folder retention works on.
        txn = backend.open("dirac", Owner.me(version), 5)
        (txn.staged / "dirac" / version).mkdir(parents=True)  # type: ignore[attr-defined]
        (txn.staged / "dirac" / version / "marker").write_text(version)  # type: ignore[attr-defined]
        txn.publish(None, f"release {version}", "")
    plan = collect_garbage(config, REPO, plan=True)
    assert plan["remove"] == ["v9.0.0"]
    assert sorted(plan["images"]) == [
        "dirac/containers/dteam/.multiarch/aarch64/dteam:v9.0.0",
        "dirac/containers/dteam/.multiarch/amd64/dteam:v9.0.0",
        "dirac/containers/dteam/.multiarch/arm64/dteam:v9.0.0",
        "dirac/containers/dteam/.multiarch/x86_64/dteam:v9.0.0",
        "dirac/containers/dteam/dteam:v9.0.0",
    ]
    assert (_containers(site) / "dteam:v9.0.0").is_dir()  # a plan removes nothing
    done = collect_garbage(config, REPO, plan=False)
    assert done["status"] == "removed"
    assert not (_containers(site) / "dteam:v9.0.0").exists()
    for arch in ("x86_64", "aarch64"):
        for name in (arch, OCI[arch]):
            gone = _containers(site) / ".multiarch" / name / "dteam:v9.0.0"
            assert not gone.exists() and not gone.is_symlink()  # no dangling link left
            kept = _containers(site) / ".multiarch" / name / "dteam:v9.0.1"
            assert kept.resolve() == (_containers(site) / "dteam:v9.0.1" / arch).resolve()
    # Republishing the removed image is refused, as for a release.
    with pytest.raises(BadInput, match="retention"):
        publish_images(config, version="v9.0.0", out=site / "images")


def test_container_root_is_printed_per_architecture(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(site)
    roots = container_roots(config, version="v9.0.0", vo="dteam")
    assert [r["arch"] for r in roots] == ["x86_64", "aarch64", "{arch}"]
    assert main(["--config", str(site / "release.toml"), "image", "container-root", "--vo",
                 "dteam", "--version", "v9.0.0", "--arch", "aarch64"]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == (
        f"/cvmfs/{REPO}/dirac/containers/dteam/.multiarch/arm64/dteam:v9.0.0"
    )


def test_the_cli_publishes_with_json(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(site)
    _build(config, site, "v9.0.0")
    capsys.readouterr()
    assert main(["--config", str(site / "release.toml"), "image", "publish", "--version",
                 "v9.0.0", "--out", str(site / "images"), "--json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    [publication] = data["publications"]
    assert publication["status"] == "published"
    assert set(publication["container_root"]) == {"x86_64", "aarch64"}
    assert main(["--config", str(site / "release.toml"), "image", "publish", "--version",
                 "v9.0.0", "--out", str(site / "images")]) == 0  # fmt: skip
    shown = capsys.readouterr().out
    assert "already published" in shown
    assert f"ContainerRoot (dteam, aarch64): /cvmfs/{REPO}/dirac/containers/dteam/" in shown


def test_an_image_is_published_through_cvmfs_server(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same layout through the cvmfs_server backend (the stand-in): ':' in the names, the
    lease's missing parent created first, the `.multiarch` folders made in the transaction."""
    from tests.unit.test_publish_server import STANDIN, cvmfs

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for arch in ("x86_64", "aarch64"):
        debian_base(isolated_env, arch)
    monkeypatch.setenv("CVMFS_STANDIN_STATE", str(tmp_path / "standin-state"))
    monkeypatch.setenv("CVMFS_STANDIN_MOUNT", str(tmp_path / "cvmfs"))
    monkeypatch.setenv("CVMFS_STANDIN_NODE", "stratum0")
    text = CONFIG.format(keep=5).replace('backend = "directory"\npath = "stratum"', (
        f'backend = "server"\ncvmfs_server = "{STANDIN}"\nmount_root = "{tmp_path}/cvmfs"\n'
        f'stratum_root = "{tmp_path}/standin-state"\nspool_root = "{tmp_path}/spool"\nwait = 1'))  # fmt: skip
    (tmp_path / "release.toml").write_text(text)
    assert cvmfs("mkfs", "-o", "root", REPO).returncode == 0
    config = load_config(tmp_path / "release.toml", environ={})
    _build(config, tmp_path, "v9.0.0")
    [result] = publish_images(config, version="v9.0.0", out=tmp_path / "images")
    assert result["status"] == "published" and result["backend"] == "server"
    mount = tmp_path / "cvmfs" / REPO / "dirac/containers/dteam"
    for arch in ("x86_64", "aarch64"):
        assert (mount / "dteam:v9.0.0" / arch / "etc/os-release").is_file()
        assert (mount / "dteam:v9.0.0/oci" / arch / "index.json").is_file()
        assert (
            os.readlink(mount / ".multiarch" / arch / "dteam:v9.0.0")
            == f"../../dteam:v9.0.0/{arch}"
        )
    again = publish_images(config, version="v9.0.0", out=tmp_path / "images")[0]
    assert again["status"] == "already published"


def test_the_ledger_and_the_report_show_the_image_digests(site: Path) -> None:
    from release.report import collect, html_page, markdown

    config = _config(site)
    _build(config, site, "v9.0.0")
    _build(config, site, "v9.0.0")  # unchanged: nothing new to record
    ledger = config.ledger("DIRAC", "v9.0.0")
    [built] = ledger.records("image build")
    digests = {i["arch"]: i["manifest_digest"] for i in built["images"]}
    assert sorted(digests) == ["aarch64", "x86_64"]
    assert all(d.startswith("sha256:") for d in digests.values())
    data = collect(config, "DIRAC", "v9.0.0")
    assert [(i["arch"], i["published"]) for i in data["images"]] == [
        ("aarch64", None),
        ("x86_64", None),
    ]
    publish_images(config, version="v9.0.0", out=site / "images")
    [published] = ledger.records("image publish")
    assert published["status"] == "published" and published["digests"] == digests
    data = collect(config, "DIRAC", "v9.0.0")
    for image in data["images"]:
        assert image["built"] == image["published"] == digests[image["arch"]]
        assert image["container_root"] == (
            f"/cvmfs/{REPO}/dirac/containers/dteam/.multiarch/{OCI[image['arch']]}/dteam:v9.0.0"
        )
    text = markdown(data)
    assert (f"| dteam | x86_64 | {digests['x86_64'][:19]} | {digests['x86_64'][:19]} "
            "| not certified |") in text  # fmt: skip
    assert "Container images" in html_page(data)


def test_an_image_name_of_its_own(site: Path) -> None:
    (site / "release.toml").write_text(
        CONFIG.format(keep=5).replace("[images.dteam]\n", '[images.dteam]\nname = "el9-worker"\n')
    )
    config = load_config(site / "release.toml", environ={})
    _build(config, site, "v9.0.0")
    [result] = publish_images(config, version="v9.0.0", out=site / "images")
    assert result["image"] == "el9-worker"
    for arch in ("x86_64", "aarch64"):
        assert (_containers(site) / "el9-worker:v9.0.0" / arch / "etc").is_dir()
        link = _containers(site) / ".multiarch" / arch / "el9-worker:v9.0.0"
        assert os.readlink(link) == f"../../el9-worker:v9.0.0/{arch}"
        assert result["container_root"][arch] == (
            f"/cvmfs/{REPO}/dirac/containers/dteam/.multiarch/{OCI[arch]}/el9-worker:v9.0.0"
        )
    assert not (_containers(site) / "dteam:v9.0.0").exists()


@pytest.mark.parametrize("name", ["El9", "el9:latest", "a/b", "-x", "x-"])
def test_a_bad_image_name_is_refused_on_load(tmp_path: Path, name: str) -> None:
    from release.errors import ConfigError

    (tmp_path / "release.toml").write_text(
        CONFIG.format(keep=5).replace("[images.dteam]\n", f'[images.dteam]\nname = "{name}"\n')
    )
    with pytest.raises(ConfigError, match="is not a plain image name"):
        load_config(tmp_path / "release.toml", environ={})


def test_the_tree_manifest_takes_the_digests_the_build_took(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishing does not hash the built tree again to list it: the build hashed each file
    as it wrote it (its index beside the tree); only what the index does not hold is read."""
    from cvmfs import bundle_contract
    from release.image.publishable import publishable

    config = _config(site)
    _build(config, site, "v9.0.0")
    # Laid out by a process per architecture (build.jobs 2) or here (1): the same manifests.
    apart = publishable(config, version="v9.0.0", vo="dteam", out=site / "images",
                        staging=site / "apart")  # fmt: skip
    text = (site / "release.toml").read_text().replace("compression_level = 1",
                                                       "compression_level = 1\njobs = 1")  # fmt: skip
    (site / "release.toml").write_text(text)
    config = load_config(site / "release.toml", environ={})
    here = publishable(config, version="v9.0.0", vo="dteam", out=site / "images",
                       staging=site / "here")  # fmt: skip
    assert {a: i.manifest for a, i in apart.items()} == {a: i.manifest for a, i in here.items()}
    hashed: list[str] = []
    real = bundle_contract._hash

    def spy(path: Path | str) -> tuple[str, bytes]:
        hashed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(bundle_contract, "_hash", spy)
    [result] = publish_images(config, version="v9.0.0", out=site / "images")
    assert result["status"] == "published"
    staged = {p.rsplit("/.publish/", 1)[1] for p in hashed if "/.publish/" in p}
    trees = {p for p in staged if not p.startswith("oci/")}
    # Only what was not written with the layer: the image's own record (written after) and
    # the markers that keep empty folders (written by the layout for publishing).
    assert {"aarch64/.dirac-release/image.json", "x86_64/.dirac-release/image.json"} <= trees
    odd = [
        p for p in trees if not p.endswith(("/.dirac-release/image.json", "/.dirac-release-keep"))
    ]
    assert not odd, odd
    # The OCI layouts: the blobs are named by their digest; only index.json and oci-layout.
    assert sorted(p for p in staged if p.startswith("oci/")) == sorted(
        f"oci/{arch}/{name}" for arch in ("x86_64", "aarch64") for name in ("index.json", "oci-layout"))  # fmt: skip
    assert "x86_64/etc/os-release" not in trees


def test_a_built_file_changed_in_place_is_refused_with_nothing_published(site: Path) -> None:
    """The index names a file by inode and size: an edit that keeps both is not seen when the
    manifest is made, but the publisher reads every byte and refuses the image whole."""
    config = _config(site)
    _build(config, site, "v9.0.0")
    built = site / "images/dteam/v9.0.0/aarch64/etc/os-release"
    data = built.read_bytes()
    built.chmod(0o644)
    with built.open("r+b") as handle:  # the same inode, the same size
        handle.write(data[:-2] + b"X\n")
    with pytest.raises(BadInput, match=r"etc/os-release: content differs from the manifest"):
        publish_images(config, version="v9.0.0", out=site / "images")
    assert not _containers(site).exists() and "image-dteam-v9.0.0" not in _tags(site)
