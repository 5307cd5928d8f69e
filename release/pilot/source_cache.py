"""Pilot inputs kept by the git object they were read at, so a rebuild reads no git objects.

A full commit id, or the object a tag points at, names its content for ever: the `*.py` files
read there once can be reused by every later build (ten VOs cost ten repository reads, each
with its own `git cat-file` processes, otherwise). An entry lists each file's git blob id and
the bytes are kept under that id; on the way out every file is hashed again the way git
hashes a blob, so a damaged or edited entry is ignored and the files are read from git again,
never built into a pilot. Nothing here decides *which* object to read: a moved tag points at
another object and simply misses.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Under the build's cache_dir.
FOLDER = "pilot-sources"
_FORMAT = 1


@dataclass(frozen=True)
class Entry:
    commit: str
    commit_time: int
    files: dict[str, bytes]


def blob_id(data: bytes) -> str:
    """git's id of a blob holding `data` (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _index(root: Path, object_id: str, folder: str) -> Path:
    folder_key = hashlib.sha256(folder.encode()).hexdigest()[:16]
    return root / FOLDER / object_id / f"{folder_key}.json"


def _blob(root: Path, blob: str) -> Path:
    return root / FOLDER / "blobs" / blob[:2] / blob[2:]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(root: Path, object_id: str, folder: str) -> Entry | None:
    """The files read at `object_id` in `folder`, if kept and intact."""
    try:
        index = json.loads(_index(root, object_id, folder).read_bytes())
        if index.get("format") != _FORMAT or index.get("folder") != folder:
            return None
        files: dict[str, bytes] = {}
        for name, blob in index["files"].items():
            data = _blob(root, blob).read_bytes()
            if blob_id(data) != blob:
                return None
            files[name] = data
        return Entry(str(index["commit"]), int(index["commit_time"]), files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store(root: Path, object_id: str, folder: str, entry: Entry) -> None:
    """Keep what was read; a cache that cannot be written only costs the next build time."""
    try:
        blobs = {}
        for name, data in entry.files.items():
            blob = blob_id(data)
            if not _blob(root, blob).exists():
                _write(_blob(root, blob), data)
            blobs[name] = blob
        index = {"format": _FORMAT, "folder": folder, "commit": entry.commit,
                 "commit_time": entry.commit_time, "files": blobs}  # fmt: skip
        _write(_index(root, object_id, folder), json.dumps(index, sort_keys=True).encode())
    except OSError:
        return
