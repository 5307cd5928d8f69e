"""Pilot inputs kept by the git object they were read at, so a rebuild reads no git objects.

A full commit id, or the object a tag points at, names its content for ever: the `*.py` files
read there once can be reused by every later build (ten VOs cost ten repository reads, each
with its own `git cat-file` processes, otherwise). One file per entry holds each file's bytes
and git blob id; on the way out every file is hashed again the way git hashes a blob, so a
damaged or edited entry is ignored and the files are read from git again, never built into a
pilot. Nothing here decides *which* object to read: a moved tag points at
another object and simply misses.
"""

from __future__ import annotations

import base64
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


def _entry(root: Path, object_id: str, folder: str) -> Path:
    folder_key = hashlib.sha256(folder.encode()).hexdigest()[:16]
    return root / FOLDER / object_id / f"{folder_key}.json"


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
        kept = json.loads(_entry(root, object_id, folder).read_bytes())
        if kept.get("format") != _FORMAT or kept.get("folder") != folder:
            return None
        files: dict[str, bytes] = {}
        for name, item in kept["files"].items():
            data = base64.b64decode(item["data"], validate=True)
            if blob_id(data) != item["blob"]:
                return None
            files[name] = data
        return Entry(str(kept["commit"]), int(kept["commit_time"]), files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store(root: Path, object_id: str, folder: str, entry: Entry) -> None:
    """Keep what was read; a cache that cannot be written only costs the next build time."""
    kept = {
        "format": _FORMAT,
        "folder": folder,
        "commit": entry.commit,
        "commit_time": entry.commit_time,
        "files": {
            name: {"blob": blob_id(data), "data": base64.b64encode(data).decode("ascii")}
            for name, data in entry.files.items()
        },
    }
    try:
        _write(_entry(root, object_id, folder), json.dumps(kept, sort_keys=True).encode())
    except OSError:
        return
