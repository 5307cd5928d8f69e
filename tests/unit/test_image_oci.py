"""The OCI writer: a reproducible layer, and index/manifest/config as the image-spec says."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from release.deflate import Deflate
from release.errors import BadInput
from release.image import oci
from tests.image_trees import DOC_TIME, LONG, make_rootfs

DIGEST = {"type": "string", "pattern": "^sha256:[a-f0-9]{64}$"}
DESCRIPTOR = {
    "type": "object",
    "required": ["mediaType", "digest", "size"],
    "properties": {
        "mediaType": {"type": "string", "pattern": r"^[a-z]+/[a-zA-Z0-9.+-]+$"},
        "digest": DIGEST,
        "size": {"type": "integer", "minimum": 0},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "platform": {
            "type": "object",
            "required": ["architecture", "os"],
            "properties": {"architecture": {"enum": ["amd64", "arm64"]}, "os": {"const": "linux"},
                           "variant": {"type": "string"}},
        },
    },
}  # fmt: skip
# The rules of image-spec's schema/ (index, manifest, config, layout) that apply to us.
INDEX = {
    "type": "object",
    "required": ["schemaVersion", "manifests"],
    "properties": {
        "schemaVersion": {"const": 2},
        "mediaType": {"const": oci.MEDIA_INDEX},
        "manifests": {"type": "array", "minItems": 1,
                      "items": {**DESCRIPTOR, "required": ["mediaType", "digest", "size", "platform"]}},
    },
}  # fmt: skip
MANIFEST = {
    "type": "object",
    "required": ["schemaVersion", "config", "layers"],
    "properties": {
        "schemaVersion": {"const": 2},
        "mediaType": {"const": oci.MEDIA_MANIFEST},
        "config": {**DESCRIPTOR, "properties": {**DESCRIPTOR["properties"],  # type: ignore[dict-item]
                                                "mediaType": {"const": oci.MEDIA_CONFIG}}},
        "layers": {"type": "array", "minItems": 1, "items": DESCRIPTOR},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}  # fmt: skip
CONFIG = {
    "type": "object",
    "required": ["architecture", "os", "rootfs"],
    "properties": {
        "created": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
        "architecture": {"enum": ["amd64", "arm64"]},
        "os": {"const": "linux"},
        "config": {
            "type": "object",
            "properties": {
                "Env": {"type": "array", "items": {"type": "string", "pattern": "^[^=]+=.*$"}},
                "Labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "rootfs": {
            "type": "object",
            "required": ["type", "diff_ids"],
            "properties": {"type": {"const": "layers"},
                           "diff_ids": {"type": "array", "minItems": 1, "items": DIGEST}},
        },
    },
}  # fmt: skip
LAYOUT = {"type": "object", "required": ["imageLayoutVersion"],
          "properties": {"imageLayoutVersion": {"const": "1.0.0"}}}  # fmt: skip


FAST = Deflate("isal", 1)


def _image(tmp_path: Path, name: str, arch: str = "x86_64", root: Path | None = None,
           deflate: Deflate = FAST) -> tuple[Path, oci.Image]:  # fmt: skip
    root = root or make_rootfs(tmp_path / f"root-{name}", arch)
    entries = oci.tree_entries(root, add_dirs=("/cvmfs", "/etc/grid-security/certificates"))
    layout = tmp_path / f"layout-{name}"
    image = oci.write_image(layout, arch=arch, entries=entries, mtime=DOC_TIME,
                            env=["PATH=/usr/bin:/bin"], labels={"org.diracgrid.image.vo": "dteam"},
                            ref="v1.0.0", deflate=deflate)  # fmt: skip
    return layout, image


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def test_the_same_inputs_give_the_same_manifest_digest(tmp_path: Path) -> None:
    first_layout, first = _image(tmp_path, "a")
    root = make_rootfs(tmp_path / "root-b", "x86_64")
    os.utime(root / "etc/os-release", (5, 5))  # times on disk are not the image's
    second_layout, second = _image(tmp_path, "b", root=root)
    assert first.manifest.digest == second.manifest.digest
    assert (first_layout / "index.json").read_bytes() == (second_layout / "index.json").read_bytes()
    (root / "etc/os-release").write_text("ID=other\n")
    _, third = _image(tmp_path, "c", root=root)
    assert third.manifest.digest != first.manifest.digest


def test_every_blob_is_named_by_its_digest(tmp_path: Path) -> None:
    layout, image = _image(tmp_path, "a")
    blobs = sorted((layout / "blobs" / "sha256").iterdir())
    assert len(blobs) == 3
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    layer = _blob(layout, image.layer.descriptor.digest)
    assert len(layer) == image.layer.descriptor.size
    assert "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest() == image.layer.diff_id


def test_index_manifest_and_config_follow_the_image_spec(tmp_path: Path) -> None:
    layout, image = _image(tmp_path, "a", arch="aarch64")
    index = json.loads((layout / "index.json").read_bytes())
    jsonschema.validate(json.loads((layout / "oci-layout").read_bytes()), LAYOUT)
    jsonschema.validate(index, INDEX)
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]))
    jsonschema.validate(manifest, MANIFEST)
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    jsonschema.validate(config, CONFIG)
    assert index["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux",
                                                 "variant": "v8"}  # fmt: skip
    assert index["manifests"][0]["annotations"] == {oci.REF_NAME: "v1.0.0"}
    assert config["architecture"] == "arm64" and config["rootfs"]["diff_ids"] == [
        image.layer.diff_id
    ]
    assert config["config"]["Labels"] == {"org.diracgrid.image.vo": "dteam"}
    assert manifest["layers"][0]["mediaType"] == oci.MEDIA_LAYER_GZIP
    # Canonical JSON: what is hashed is sorted and without spaces.
    raw = _blob(layout, index["manifests"][0]["digest"])
    assert raw == oci.canonical(json.loads(raw))


def _members(layout: Path, image: oci.Image) -> list[tarfile.TarInfo]:
    data = gzip.decompress(_blob(layout, image.layer.descriptor.digest))
    with tarfile.open(fileobj=__import__("io").BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def test_the_layer_tar_is_reproducible_by_construction(tmp_path: Path) -> None:
    layout, image = _image(tmp_path, "a")
    raw = _blob(layout, image.layer.descriptor.digest)
    assert raw[:3] == b"\x1f\x8b\x08" and raw[3] & 0x08 == 0  # gzip, no file name
    assert raw[4:8] == b"\0\0\0\0"  # no gzip time
    members = _members(layout, image)
    names = [m.name.rstrip("/") for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == DOC_TIME
        assert not {"mtime", "atime", "ctime"} & set(member.pax_headers)
    by_name = {m.name.rstrip("/"): m for m in members}
    assert by_name[LONG].isfile() and by_name[LONG].pax_headers.get("path") == LONG
    assert by_name["usr/bin/a-python"].isfile()  # the first name of the file in layer order
    assert (
        by_name["usr/bin/python3"].islnk()
        and by_name["usr/bin/python3"].linkname == "usr/bin/a-python"
    )
    assert by_name["usr/bin/python3.11"].islnk()
    assert by_name["lib64/ld.so"].issym() and by_name["lib64/ld.so"].linkname == "/usr/lib/ld.so"
    assert by_name["usr/bin/su"].mode == 0o4755 and by_name["tmp"].mode == 0o1777
    assert "dev/initctl" not in by_name  # a FIFO: left out, the runtime brings /dev
    for added in ("cvmfs", "etc/grid-security", "etc/grid-security/certificates"):
        assert by_name[added].isdir() and by_name[added].mode == 0o755


def test_entries_say_what_was_left_out_and_added(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root", "x86_64")
    entries = oci.tree_entries(root, add_dirs=("/cvmfs", "/etc/grid-security/vomsdir"))
    assert entries.left_out == ["dev/initctl"]
    assert entries.added == ["/cvmfs", "/etc/grid-security", "/etc/grid-security/vomsdir"]


def test_a_bind_target_that_is_a_link_in_the_base_is_refused(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root", "x86_64")
    (root / "etc/grid-security").symlink_to("/elsewhere")
    with pytest.raises(BadInput, match="a symlink there"):
        oci.tree_entries(root, add_dirs=("/etc/grid-security/certificates",))


def _config_of(layout: Path) -> dict[str, Any]:
    _manifest, config, _digest = oci.read_layout_image(layout)
    return config


def test_deflate_engine_and_level_change_bytes_not_the_tree(tmp_path: Path) -> None:
    layout_1, one = _image(tmp_path, "a", deflate=Deflate("isal", 1))
    layout_9, nine = _image(tmp_path, "b", deflate=Deflate("zlib", 9))
    assert one.layer.descriptor.digest != nine.layer.descriptor.digest
    assert one.layer.diff_id == nine.layer.diff_id
    for layout, image in ((layout_1, one), (layout_9, nine)):
        with gzip.open(io.BytesIO(_blob(layout, image.layer.descriptor.digest))) as gz:
            plain = gz.read()
        assert f"sha256:{hashlib.sha256(plain).hexdigest()}" == image.layer.diff_id
    assert _config_of(layout_1) == _config_of(layout_9)
