"""Reproducible tarballs: the same tree gives the same bytes whatever the disk says."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from release.build.tarball import write_tarball
from release.deflate import Deflate, Engine

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


@pytest.mark.parametrize(("engine", "level"), [("isal", 1), ("isal", 9), ("zlib", 1), ("zlib", 9)])
def test_compression_level_is_deterministic(tmp_path: Path, engine: Engine, level: int) -> None:
    tree = make_tree(tmp_path / "t", order=ORDER, mtime=1, umask_exec=True)
    one = write_tarball(tree, "p", tmp_path / "1.tgz", EPOCH, level, engine=engine)
    two = write_tarball(tree, "p", tmp_path / "2.tgz", EPOCH, level, engine=engine)
    assert one == two


def test_engines_differ_in_bytes_not_in_what_unpacks(tmp_path: Path) -> None:
    """ISA-L and zlib write other gzip bytes of the same tar stream; a cached member is
    kept per engine, so one never ends up in the other's tarball."""
    tree = big_tree(tmp_path / "t")
    cache = tmp_path / "members"
    fast = write_tarball(tree, "p", tmp_path / "isal.tgz", EPOCH, 3, engine="isal", cache=cache)
    slow = write_tarball(tree, "p", tmp_path / "zlib.tgz", EPOCH, 3, engine="zlib", cache=cache)
    assert fast != slow
    with gzip.open(tmp_path / "isal.tgz") as one, gzip.open(tmp_path / "zlib.tgz") as two:
        assert one.read() == two.read()
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [Deflate("isal", 3).key, Deflate("zlib", 3).key]
    )
    assert Deflate("isal", 9).effective_level == 3


def big_tree(root: Path) -> Path:
    """Small files, and two files large enough for members of their own (one twice)."""
    make_tree(root, order=ORDER, mtime=1, umask_exec=True)
    (root / "lib/big.so").write_bytes(os.urandom(200_000))
    (root / "lib/pkg/table.py").write_bytes(b"row = 1\n" * 20_000)
    os.link(root / "lib/big.so", root / "lib/big-copy.so")
    return root


def test_the_tar_stream_is_what_tarfile_writes(tmp_path: Path) -> None:
    """The hand-made stream (headers, padding, end blocks, record) equals tarfile's own."""
    import io
    import stat

    from release.build.manifest import normal_mode
    from release.build.tarball import _entries, _info, _prefix_dirs

    tree = big_tree(tmp_path / "t")
    write_tarball(tree, "v1/Linux-x86_64", tmp_path / "ours.tar.gz", EPOCH)
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w|", format=tarfile.GNU_FORMAT) as archive:
        for part in _prefix_dirs("v1/Linux-x86_64"):
            archive.addfile(_info(part, tarfile.DIRTYPE, 0o755, EPOCH))
        for rel, path in _entries(tree):
            st = path.lstat()
            name = f"v1/Linux-x86_64/{rel}"
            if stat.S_ISLNK(st.st_mode):
                info = _info(name, tarfile.SYMTYPE, 0o777, EPOCH)
                info.linkname = os.readlink(path)
                archive.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                archive.addfile(_info(name, tarfile.DIRTYPE, 0o755, EPOCH))
            else:
                info = _info(name, tarfile.REGTYPE, normal_mode(st.st_mode), EPOCH)
                info.size = st.st_size
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
    with gzip.open(tmp_path / "ours.tar.gz") as gz:
        assert gz.read() == expected.getvalue()


def test_cached_members_change_no_byte_and_are_reused(tmp_path: Path) -> None:
    import subprocess

    tree = big_tree(tmp_path / "t")
    cache = tmp_path / "members"
    plain = write_tarball(tree, "v1/Linux-x86_64", tmp_path / "plain.tgz", EPOCH, 3)
    cold = write_tarball(tree, "v1/Linux-x86_64", tmp_path / "cold.tgz", EPOCH, 3, cache=cache)
    stored = sorted(cache.rglob("*.gz"))
    assert len(stored) == 2  # big.so (twice in the tree, once in the cache) and table.py
    warm = write_tarball(tree, "v1/Linux-x86_64", tmp_path / "warm.tgz", EPOCH, 3, cache=cache)
    assert plain == cold == warm
    assert (tmp_path / "plain.tgz").read_bytes() == (tmp_path / "warm.tgz").read_bytes()
    # The next release: another prefix and time, the same large files, the same members.
    times = [p.stat().st_mtime_ns for p in stored]
    write_tarball(tree, "v2/Linux-x86_64", tmp_path / "v2.tgz", EPOCH + 86400, 3, cache=cache)
    assert [p.stat().st_mtime_ns for p in stored] == times  # read, not written again
    # Several members, one stream for gzip and tar themselves.
    assert subprocess.run(["gzip", "-t", str(tmp_path / "v2.tgz")], check=False).returncode == 0
    listing = subprocess.run(["tar", "-tzvf", str(tmp_path / "v2.tgz")], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "v2/Linux-x86_64/lib/big-copy.so" in listing
    with tarfile.open(tmp_path / "v2.tgz") as archive:
        member = archive.extractfile("v2/Linux-x86_64/lib/big.so")
        assert member is not None and member.read() == (tree / "lib/big.so").read_bytes()
    header = (tmp_path / "v2.tgz").read_bytes()
    assert header.count(b"\x1f\x8b\x08\x00" + (EPOCH + 86400).to_bytes(4, "little")) >= 3


def test_a_cached_member_that_does_not_match_the_file_is_not_used(tmp_path: Path) -> None:
    tree = big_tree(tmp_path / "t")
    cache = tmp_path / "members"
    sums = {"lib/pkg/table.py": "ab" * 32}  # what the manifest would say, here made up
    first = write_tarball(tree, "v1/L", tmp_path / "1.tgz", EPOCH, 3, cache=cache, sha256=sums)
    [stored] = list(cache.rglob(f"{'ab' * 32}.gz"))
    # The same digest now names other bytes (a damaged cache, a wrong entry): the trailer
    # (CRC-32 and length) does not match the file, so the member is made again.
    (tree / "lib/pkg/table.py").write_bytes(b"row = 2\n" * 20_000)
    second = write_tarball(tree, "v1/L", tmp_path / "2.tgz", EPOCH, 3, cache=cache, sha256=sums)
    assert second != first
    with tarfile.open(tmp_path / "2.tgz") as archive:
        member = archive.extractfile("v1/L/lib/pkg/table.py")
        assert member is not None and member.read() == b"row = 2\n" * 20_000
    assert write_tarball(tree, "v1/L", tmp_path / "3.tgz", EPOCH, 3) == second
    assert stored.exists()
