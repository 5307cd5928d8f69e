"""Reproducible tarballs: the same tree gives the same bytes, on any machine, at any time.

Sorted entries, every mtime set to SOURCE_DATE_EPOCH (the tag's commit time), owner 0:0 with
no names, modes reduced to 0755/0644, regular files only (hardlinks are written as files,
which CVMFS needs anyway), and a gzip header without a name or a wall-clock time.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from release.build.manifest import normal_mode


class _HashingWriter:
    """A file wrapper that hashes what is written, so the tarball is not read twice."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _entries(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, absolute path), directories before their content, sorted."""
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        rel = base.relative_to(root).as_posix()
        if rel != ".":
            entries.append((rel, base))
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            entries.append((name if rel == "." else f"{rel}/{name}", base / name))
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return entries


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tarball(root: Path, prefix: str, dest: Path, mtime: int, level: int = 6) -> str:
    """Pack `root` under `prefix/` into dest (.tar.gz); returns the sha256 of the bytes."""
    with dest.open("wb") as raw:
        hashing = _HashingWriter(raw)
        with (
            gzip.GzipFile(
                filename="", mode="wb", fileobj=hashing, compresslevel=level, mtime=mtime
            ) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as archive,
        ):
            for part in _prefix_dirs(prefix):
                archive.addfile(_info(part, tarfile.DIRTYPE, 0o755, mtime))
            for rel, path in _entries(root):
                name = f"{prefix}/{rel}"
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    info = _info(name, tarfile.SYMTYPE, 0o777, mtime)
                    info.linkname = os.readlink(path)
                    archive.addfile(info)
                elif stat.S_ISDIR(st.st_mode):
                    archive.addfile(_info(name, tarfile.DIRTYPE, 0o755, mtime))
                else:
                    info = _info(name, tarfile.REGTYPE, normal_mode(st.st_mode), mtime)
                    info.size = st.st_size
                    with path.open("rb") as handle:
                        archive.addfile(info, handle)
    return hashing.digest.hexdigest()


def _prefix_dirs(prefix: str) -> list[str]:
    parts = prefix.strip("/").split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
