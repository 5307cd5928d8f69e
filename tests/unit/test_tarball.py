"""Reproducible tarballs: the same tree gives the same bytes whatever the disk says."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from release.build.tarball import write_tarball

EPOCH = 1_795_521_600  # 2026-11-20T12:00:00Z


def make_tree(root: Path, *, order: list[str], mtime: int, umask_exec: bool) -> Path:
    """The same content, created in a different order with different times and modes."""
    content = {
        "bin/tool": b"#!/bin/sh\necho hi\n",
        "lib/pkg/__init__.py": b"x = 1\n",
        "lib/pkg/data.bin": bytes(range(256)) * 100,
        "diracosrc": b"export A=1\n",
        "lib/empty/.keep": b"",
    }
    for rel in order:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content[rel])
        os.utime(path, (mtime, mtime))
    (root / "bin/tool").chmod(0o775 if umask_exec else 0o700)
    (root / "lib/pkg/__init__.py").chmod(0o664 if umask_exec else 0o600)
    (root / "lib/pkg/link.py").symlink_to("__init__.py")
    return root


ORDER = ["bin/tool", "lib/pkg/__init__.py", "lib/pkg/data.bin", "diracosrc", "lib/empty/.keep"]


def test_same_tree_same_bytes(tmp_path: Path) -> None:
    first = make_tree(tmp_path / "a", order=ORDER, mtime=1_000_000, umask_exec=True)
    second = make_tree(
        tmp_path / "b", order=list(reversed(ORDER)), mtime=2_000_000, umask_exec=False
    )
    digest_a = write_tarball(first, "v1.0.0/Linux-x86_64", tmp_path / "a.tar.gz", EPOCH)
    digest_b = write_tarball(second, "v1.0.0/Linux-x86_64", tmp_path / "b.tar.gz", EPOCH)
    assert digest_a == digest_b
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def test_epoch_and_content_change_the_bytes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "a", order=ORDER, mtime=1, umask_exec=True)
    base = write_tarball(tree, "v1/Linux-x86_64", tmp_path / "1.tar.gz", EPOCH)
    assert write_tarball(tree, "v1/Linux-x86_64", tmp_path / "2.tar.gz", EPOCH + 1) != base
    (tree / "diracosrc").write_bytes(b"export A=2\n")
    assert write_tarball(tree, "v1/Linux-x86_64", tmp_path / "3.tar.gz", EPOCH) != base


def test_entries_are_normalised(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", order=ORDER, mtime=5, umask_exec=False)
    write_tarball(tree, "v9.0.0a29/Linux-aarch64", tmp_path / "t.tar.gz", EPOCH)
    with gzip.open(tmp_path / "t.tar.gz") as gz:
        header = (tmp_path / "t.tar.gz").read_bytes()[:10]
        assert int.from_bytes(header[4:8], "little") == EPOCH  # gzip MTIME field
        assert gz.read(1)  # valid gzip
    with tarfile.open(tmp_path / "t.tar.gz") as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names[:2] == ["v9.0.0a29", "v9.0.0a29/Linux-aarch64"]
    for index, name in enumerate(names[1:], start=1):
        assert name.rsplit("/", 1)[0] in names[:index], f"{name} comes before its folder"
    assert all(m.mtime == EPOCH and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    by_name = {m.name.split("/", 2)[-1]: m for m in members}
    assert by_name["bin/tool"].mode == 0o755
    assert by_name["lib/pkg/__init__.py"].mode == 0o644
    assert by_name["lib/pkg"].isdir() and by_name["lib/pkg"].mode == 0o755
    assert (
        by_name["lib/pkg/link.py"].issym() and by_name["lib/pkg/link.py"].linkname == "__init__.py"
    )
    assert "lib/empty/.keep" in by_name


def test_hardlinks_are_written_as_files(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a").write_bytes(b"same")
    os.link(tree / "a", tree / "b")
    write_tarball(tree, "v1/Linux-x86_64", tmp_path / "t.tar.gz", EPOCH)
    with tarfile.open(tmp_path / "t.tar.gz") as archive:
        kinds = {m.name.rsplit("/", 1)[-1]: m for m in archive.getmembers()}
        assert kinds["a"].isreg() and kinds["b"].isreg()
        extracted = archive.extractfile(kinds["b"])
        assert extracted is not None and extracted.read() == b"same"


@pytest.mark.parametrize("level", [1, 9])
def test_compression_level_is_deterministic(tmp_path: Path, level: int) -> None:
    tree = make_tree(tmp_path / "t", order=ORDER, mtime=1, umask_exec=True)
    one = write_tarball(tree, "p", tmp_path / "1.tgz", EPOCH, level)
    two = write_tarball(tree, "p", tmp_path / "2.tgz", EPOCH, level)
    assert one == two
