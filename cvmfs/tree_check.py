"""One check of a bundle tree against its manifest, shared by `--plan` and the real publish.

Every file is opened without following links and without blocking, and must be a regular
file of the listed size and mode whose content hashes to the listed sha256 and, when it is an
ELF object, was built for the bundle's architecture; every link must read as listed; nothing
may stand in the tree that the manifest does not list. The real publish runs the very same
loop and writes each file into its staging area as it reads it (one read per file), so what
the plan refuses, the publish refuses too.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cvmfs import elf
from cvmfs.manifest_rules import MANIFEST_REL, RESERVED_NAMES
from cvmfs.safe_fs import DIR_FLAGS, DirHandles, NotSafe, kind_of

#: The platform of a tree that holds no code for one architecture (a base's installers):
#: its files are checked like any other, but no ELF machine is expected of them.
ANY_ARCH = "any"
CHUNK = 1 << 20


class Sink(Protocol):
    """Where a checked tree is written as it is read (the directory backend's staging)."""

    def file(self, rel: str, executable: bool, sha256: str) -> Callable[[bytes], object] | None:
        """A writer for this file's bytes, or None when the content is already stored."""
        ...

    def done(self, rel: str, executable: bool, sha256: str, ok: bool) -> None:
        """The file was read completely; `ok` says whether it matched its manifest entry."""
        ...

    def link(self, rel: str, target: str) -> None: ...


def _normal_mode(mode: int) -> str:
    return "755" if mode & 0o111 else "644"


def _read(
    fd: int, entry: dict[str, Any], arch: str, write: Callable[[bytes], object] | None
) -> list[str]:
    digest = hashlib.sha256()
    first = True
    problems: list[str] = []
    with os.fdopen(fd, "rb", closefd=False) as handle:
        while chunk := handle.read(CHUNK):
            if first:
                first = False
                header = elf.read_header(chunk[:20])
                if header is not None and arch != ANY_ARCH and not elf.matches(header, arch):
                    problems.append(
                        f"{entry['path']}: an ELF object for {header.machine_name}, not {arch}"
                    )
            digest.update(chunk)
            if write is not None:
                write(chunk)
    if digest.hexdigest() != entry["sha256"]:
        problems.append(
            f"{entry['path']}: content differs from the manifest (sha256 "
            f"{digest.hexdigest()[:16]}..., listed {entry['sha256'][:16]}...)"
        )
    return problems


def _check_file(src: DirHandles, entry: dict[str, Any], arch: str, sink: Sink | None) -> list[str]:
    rel = entry["path"]
    fd, st = src.open_regular(rel)
    try:
        if st.st_size != entry["size"]:
            return [f"{rel}: {st.st_size} bytes, the manifest lists {entry['size']}"]
        if _normal_mode(st.st_mode) != entry["mode"]:
            return [f"{rel}: mode {stat.S_IMODE(st.st_mode):o}, the manifest lists {entry['mode']}"]
        executable = entry["mode"] == "755"
        write = sink.file(rel, executable, entry["sha256"]) if sink is not None else None
        problems = _read(fd, entry, arch, write)
        if sink is not None:
            sink.done(rel, executable, entry["sha256"], not problems)
        return problems
    finally:
        os.close(fd)


def unlisted(tree: Path, listed: set[str]) -> list[str]:
    """What stands in the tree without being listed (never following a link to find it)."""
    found: list[str] = []

    def walk(dir_fd: int, prefix: str) -> None:
        with os.scandir(dir_fd) as entries:
            children = sorted(entries, key=lambda e: e.name)
        for child in children:
            rel = f"{prefix}{child.name}"
            if child.is_dir(follow_symlinks=False):
                if rel in listed:
                    found.append(f"{rel}: a directory, the manifest lists a file or link")
                    continue
                sub = os.open(child.name, DIR_FLAGS, dir_fd=dir_fd)
                try:
                    walk(sub, f"{rel}/")
                finally:
                    os.close(sub)
            elif rel not in listed and rel != MANIFEST_REL:
                what = kind_of(child.stat(follow_symlinks=False).st_mode)
                found.append(f"{rel}: {what} not in the manifest")
            elif child.name in RESERVED_NAMES:
                found.append(f"{rel}: a name the publisher writes itself")

    root = os.open(str(tree), DIR_FLAGS)
    try:
        walk(root, "")
    finally:
        os.close(root)
    return found


def check_tree(
    tree: Path, manifest: dict[str, Any], arch: str, sink: Sink | None = None
) -> list[str]:
    """Every problem of `tree` against `manifest` (empty when it matches), optionally copying."""
    problems: list[str] = []
    try:
        src = DirHandles(tree)
    except NotSafe as exc:
        return [f"{tree}: {exc.what}"]
    with src:
        for entry in manifest["files"]:
            try:
                if "link" in entry:
                    target = src.readlink(entry["path"])
                    if target != entry["link"]:
                        problems.append(
                            f"{entry['path']}: links to {target!r}, the manifest lists "
                            f"{entry['link']!r}"
                        )
                    elif sink is not None:
                        sink.link(entry["path"], target)
                    continue
                problems.extend(_check_file(src, entry, arch, sink))
            except NotSafe as exc:
                problems.append(f"{exc.rel}: {exc.what}")
    problems.extend(unlisted(tree, {entry["path"] for entry in manifest["files"]}))
    return problems


def metadata_problems(tree: Path, manifest: dict[str, Any], limit: int = 5) -> list[str]:
    """A fast look at a published tree: every listed entry exists with its type, size, mode and
    link target (one lstat each, no reading). What a rerun checks before it answers "already
    published": damage that changes a file's size, type or mode is caught in well under a
    second; the full content check (sha256) is `verify_published`.
    """
    problems: list[str] = []
    base = os.fspath(tree) + "/"  # string joins: a Path per entry costs more than its lstat
    for entry in manifest.get("files", []):
        rel = entry["path"]
        try:
            st = os.lstat(base + rel)
        except OSError:
            problems.append(f"{rel}: missing")
        else:
            if "link" in entry:
                if not stat.S_ISLNK(st.st_mode) or os.readlink(base + rel) != entry["link"]:
                    problems.append(f"{rel}: not the link the manifest lists")
            elif not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
            elif st.st_size != entry["size"] or _normal_mode(st.st_mode) != entry["mode"]:
                problems.append(f"{rel}: differs from the manifest (size or mode)")
        if len(problems) >= limit:
            break
    return problems


def content_problems(tree: Path, entries: list[dict[str, Any]], limit: int = 5) -> list[str]:
    """Each listed file against its entry, content (sha256) included, read as `check_tree`
    reads it (no link followed), nothing copied."""
    problems: list[str] = []
    try:
        src = DirHandles(tree)
    except NotSafe as exc:
        return [f"{tree}: {exc.what}"]
    with src:
        for entry in entries:
            try:
                problems.extend(_check_file(src, entry, ANY_ARCH, None))
            except NotSafe as exc:
                problems.append(f"{exc.rel}: {exc.what}")
            if len(problems) >= limit:
                break
    return problems
