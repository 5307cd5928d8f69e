"""Reproducible tarballs: the same tree gives the same bytes, on any machine, at any time.

Sorted entries, every mtime set to SOURCE_DATE_EPOCH (the tag's commit time), owner 0:0 with
no names, modes reduced to 0755/0644, regular files only (hardlinks are written as files,
which CVMFS needs anyway), and gzip headers without a name or a wall-clock time.

The gzip stream is made of several members (RFC 1952 allows it; gzip, tar and Python read
them as one stream): the data of each file of MEMBER_MIN bytes or more is a member of its
own, everything else (headers, small files) runs in members between them. A large file's
member depends only on its bytes, the level and the deflate engine (`release.deflate`), so
it is kept in the build cache by content and reused by the next release, where the same
wheels install the same files: a rebuild compresses only what changed (the product itself,
the headers). A cached member is
used only when its gzip trailer (CRC-32 and length) matches the file read now.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from release.build.manifest import normal_mode
from release.deflate import Deflate, Engine


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


#: Files at least this large get a gzip member of their own, reusable across builds.
MEMBER_MIN = 64 * 1024
#: Part of the bundle cache key: a change here changes the bytes of every tarball.
FORMAT = "gnu-tar, gzip members per file >= 64 KiB"
_CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


def _gzip_header(level: int, mtime: int) -> bytes:
    """What Python's gzip writes without a file name: the level's XFL, OS 'unknown'."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", mtime) + bytes((xfl, 255))


class _Members:
    """The gzip stream: a running member for headers and small files, whole members between."""

    def __init__(self, out: _HashingWriter, deflate: Deflate, mtime: int) -> None:
        self.out, self.deflate_with, self.mtime = out, deflate, mtime
        self.offset = 0  # bytes of tar written, for the final padding
        self._reset()

    def _reset(self) -> None:
        self.deflate = self.deflate_with.raw()
        self.crc = self.size = 0
        self.open = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self.open:
            self.out.write(_gzip_header(self.deflate_with.effective_level, self.mtime))
            self.open = True
        self.crc = self.deflate_with.crc32(data, self.crc)
        self.size += len(data)
        self.offset += len(data)
        self.out.write(self.deflate.compress(data))

    def end(self) -> None:
        if self.open:
            self.out.write(
                self.deflate.flush() + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF)
            )
        self._reset()

    def whole(self, member: bytes, size: int) -> None:
        """A member holding `size` bytes of tar, its header time set to this tarball's."""
        self.end()
        self.out.write(member[:4] + struct.pack("<I", self.mtime) + member[8:])
        self.offset += size


def _compress_file(path: Path, how: Deflate) -> bytes:
    """The file as one gzip member (header time 0)."""
    deflate = how.raw()
    crc = size = 0
    body = io.BytesIO()
    body.write(_gzip_header(how.effective_level, 0))
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            crc = how.crc32(chunk, crc)
            size += len(chunk)
            body.write(deflate.compress(chunk))
    body.write(deflate.flush() + struct.pack("<II", crc, size & 0xFFFFFFFF))
    return body.getvalue()


def _file_crc(path: Path, how: Deflate) -> tuple[int, int]:
    """The file's CRC-32 and length as a gzip trailer records them (length modulo 2**32)."""
    crc = size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            crc = how.crc32(chunk, crc)
            size += len(chunk)
    return crc, size & 0xFFFFFFFF


def _file_member(path: Path, sha256: str | None, how: Deflate, cache: Path | None) -> bytes:
    """A large file's member: from the cache when its trailer matches the file, else made."""
    where = None
    if cache is not None and not sha256:
        with path.open("rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    if cache is not None and sha256:
        # The engine's version is in the key: another one may compress the same bytes
        # differently, and a member it made must not change what this machine's build writes.
        where = cache / how.key / sha256[:2] / f"{sha256}.gz"
        try:
            member = where.read_bytes()
        except OSError:
            member = b""
        if len(member) >= 18 and struct.unpack("<II", member[-8:]) == _file_crc(path, how):
            return member
    member = _compress_file(path, how)
    if where is not None:
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=where.parent, prefix=".member-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(member)
            os.replace(tmp, where)
        except OSError:
            pass  # a cache that cannot be written only costs the next build the compression
    return member


def write_tarball(
    root: Path,
    prefix: str,
    dest: Path,
    mtime: int,
    level: int = 6,
    *,
    engine: Engine = "isal",
    cache: Path | None = None,
    sha256: dict[str, str] | None = None,
) -> str:
    """Pack `root` under `prefix/` into dest (.tar.gz); returns the sha256 of the bytes.

    `cache` keeps the large files' gzip members between builds; `sha256` (relative path ->
    digest, the manifest's) names them there without hashing the files again.
    """
    sha256 = sha256 or {}
    encoding = tarfile.ENCODING

    with dest.open("wb") as raw:
        hashing = _HashingWriter(raw)
        how = Deflate(engine, level)
        stream = _Members(hashing, how, mtime)

        def header(info: tarfile.TarInfo) -> None:
            stream.write(info.tobuf(tarfile.GNU_FORMAT, encoding, "surrogateescape"))

        for part in _prefix_dirs(prefix):
            header(_info(part, tarfile.DIRTYPE, 0o755, mtime))
        for rel, path in _entries(root):
            name = f"{prefix}/{rel}"
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                info = _info(name, tarfile.SYMTYPE, 0o777, mtime)
                info.linkname = os.readlink(path)
                header(info)
            elif stat.S_ISDIR(st.st_mode):
                header(_info(name, tarfile.DIRTYPE, 0o755, mtime))
            else:
                info = _info(name, tarfile.REGTYPE, normal_mode(st.st_mode), mtime)
                info.size = st.st_size
                header(info)
                if st.st_size >= MEMBER_MIN:
                    member = _file_member(path, sha256.get(rel), how, cache)
                    if struct.unpack("<I", member[-4:])[0] != st.st_size & 0xFFFFFFFF:
                        raise OSError(f"{path} changed while it was packed")
                    stream.whole(member, st.st_size)
                else:
                    with path.open("rb") as handle:
                        data = handle.read()
                    if len(data) != st.st_size:
                        raise OSError(f"{path} changed while it was packed")
                    stream.write(data)
                if st.st_size % _BLOCK:
                    stream.write(bytes(_BLOCK - st.st_size % _BLOCK))
        # The end of the archive as tarfile writes it: two zero blocks, then a whole record.
        stream.write(bytes(2 * _BLOCK))
        if stream.offset % _RECORD:
            stream.write(bytes(_RECORD - stream.offset % _RECORD))
        stream.end()
    return hashing.digest.hexdigest()


def _prefix_dirs(prefix: str) -> list[str]:
    parts = prefix.strip("/").split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def write_tarball_apart(
    root: Path,
    prefix: str,
    dest: Path,
    mtime: int,
    level: int,
    *,
    engine: Engine = "isal",
    cache: Path | None = None,
    sha256: dict[str, str] | None = None,
) -> str:
    """`write_tarball` in a process of its own, so two platforms pack at once
    (`release.apart`: packing holds the GIL); returns the sha256 of the bytes."""
    from release.apart import run_apart

    request = {"root": str(root), "prefix": prefix, "dest": str(dest), "mtime": mtime,
               "level": level, "engine": engine, "cache": str(cache) if cache else None,
               "sha256": sha256 or {}}  # fmt: skip
    digest = run_apart("release.build.tarball", request, what=f"packing {dest.name}",
                       where=str(root))  # fmt: skip
    return str(digest)


def _write(request: dict[str, Any]) -> str:
    return write_tarball(
        Path(request["root"]), request["prefix"], Path(request["dest"]), request["mtime"],
        request["level"], engine=request["engine"],
        cache=Path(request["cache"]) if request["cache"] else None, sha256=request["sha256"],
    )  # fmt: skip


if __name__ == "__main__":
    from release.apart import serve

    serve(_write)
