"""`release.apart`: work in a process of its own answers as if it ran here, errors included."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.apart import run_apart
from release.deflate import Deflate
from release.errors import BadInput, InfrastructureError
from release.image import oci
from tests.image_trees import DOC_TIME, make_rootfs

CHILD = "tests.apart_child"


def test_the_answer_comes_back() -> None:
    assert run_apart(CHILD, {"do": "double", "n": 21}, what="doubling", where="here") == {
        "twice": 42
    }


def test_a_release_error_comes_back_as_the_same_kind_with_its_fix() -> None:
    with pytest.raises(BadInput) as caught:
        run_apart(CHILD, {"do": "bad input"}, what="writing", where="here")
    assert (caught.value.message, caught.value.where, caught.value.fix) == (
        "the layer lists /etc twice", "entries", "list it once")  # fmt: skip
    with pytest.raises(BadInput, match=r"build\.jobs: not a number"):  # a subclass: its family
        run_apart(CHILD, {"do": "config"}, what="writing", where="here")


def test_a_crash_is_an_infrastructure_error_naming_what_failed() -> None:
    with pytest.raises(
        InfrastructureError, match=r"writing the layer failed: OSError: No space left on device$"
    ):
        run_apart(CHILD, {"do": "crash"}, what="writing the layer", where="here")


def test_a_layer_written_apart_has_the_same_bytes_and_index(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root", "aarch64")
    (root / "dev/initctl").unlink()  # a FIFO is refused in a layer
    entries = oci.tree_entries(root, add_dirs=("/cvmfs",))
    fast = Deflate("isal", 1)
    here = oci.write_layer(oci.BlobWriter(tmp_path / "a"), entries, mtime=DOC_TIME,
                           deflate=fast, tree=tmp_path / "a-tree")  # fmt: skip
    there = oci.write_layer_apart(oci.BlobWriter(tmp_path / "b"), entries, mtime=DOC_TIME,
                                  deflate=fast, tree=tmp_path / "b-tree")  # fmt: skip
    assert here == there
    blob = here.descriptor.digest.removeprefix("sha256:")
    assert (tmp_path / "a/blobs/sha256" / blob).read_bytes() == (
        tmp_path / "b/blobs/sha256" / blob).read_bytes()  # fmt: skip
    known_a, known_b = oci.load_index(tmp_path / "a-tree"), oci.load_index(tmp_path / "b-tree")
    release = "etc/os-release"
    st_b = (tmp_path / "b-tree" / release).stat()
    assert known_b(release, st_b) == known_a(release, (tmp_path / "a-tree" / release).stat())
    assert known_b(release, st_b) is not None
    # A file shrunk after it was listed: the child's failure comes back, named.
    victim = next(e for e in entries.items if e.kind == "file" and e.size > 10 and e.source)
    assert victim.source is not None
    victim.source.write_bytes(b"short")
    with pytest.raises(InfrastructureError, match="writing the image layer failed"):
        oci.write_layer_apart(oci.BlobWriter(tmp_path / "c"), entries, mtime=DOC_TIME,
                              deflate=fast, tree=tmp_path / "c-tree")  # fmt: skip
