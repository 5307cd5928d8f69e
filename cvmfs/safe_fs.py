"""File access that never follows a link and never blocks on a special file.

A bundle is input from outside: any of its names may be a symlink, a FIFO or a device that
stands where the manifest promises a regular file. Every read and every write of the
publisher therefore goes through directory handles opened component by component with
O_NOFOLLOW, so a link (however it is chained) is never traversed, and files are opened with
O_NONBLOCK and checked with fstat before a byte is read, so a FIFO cannot hang the publisher
while it holds the repository's lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import OrderedDict
from pathlib import Path

from cvmfs.errors import BadInput

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Directory handles kept open per tree: enough for the locality of a sorted manifest.
MAX_OPEN_DIRS = 64


def kind_of(mode: int) -> str:
    """A person's word for what stands at a path."""
    kinds = (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((word for test, word in kinds if test(mode)), "a special file")


class NotSafe(Exception):
    """A path could not be opened without following a link or reading a special file."""

    def __init__(self, rel: str, what: str) -> None:
        super().__init__(f"{rel}: {what}")
        self.rel = rel
        self.what = what


class DirHandles:
    """Open directories of one tree by relative path, never through a symlink.

    With `create`, missing directories are made (mode 0755) as they are walked; a name that
    exists but is not a real directory is refused, so nothing is ever written through a link.
    """

    def __init__(self, root: Path | str, *, create: bool = False) -> None:
        self.root = str(root)
        self.create = create
        self._open: OrderedDict[str, int] = OrderedDict()
        try:
            self._root_fd = os.open(self.root, DIR_FLAGS)
        except OSError as exc:
            raise NotSafe(".", _why(exc, "the tree's root")) from None

    def __enter__(self) -> DirHandles:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def fd(self, rel_dir: str) -> int:
        """A handle on the directory `rel_dir` ("" for the root)."""
        if not rel_dir:
            return self._root_fd
        found = self._open.get(rel_dir)
        if found is not None:
            self._open.move_to_end(rel_dir)
            return found
        parent, _, name = rel_dir.rpartition("/")
        parent_fd = self.fd(parent)
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not self.create:
                raise NotSafe(rel_dir, "missing") from None
            # Made meanwhile by another thread is fine: it is opened (no-follow) just below.
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent_fd)
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
            except OSError as exc:
                raise NotSafe(rel_dir, _why(exc, "a directory")) from None
        except OSError as exc:
            raise NotSafe(rel_dir, _why(exc, "a directory", parent_fd, name)) from None
        self._open[rel_dir] = fd
        if len(self._open) > MAX_OPEN_DIRS:
            _old, old_fd = self._open.popitem(last=False)
            os.close(old_fd)
        return fd

    def split(self, rel: str) -> tuple[int, str]:
        """(handle of the parent directory, last name) for a relative path."""
        parent, _, name = rel.rpartition("/")
        return self.fd(parent), name

    def open_regular(self, rel: str) -> tuple[int, os.stat_result]:
        """Open a regular file for reading (no-follow, non-blocking); refuse anything else."""
        dir_fd, name = self.split(rel)
        return open_regular_at(dir_fd, name, rel)

    def readlink(self, rel: str) -> str:
        dir_fd, name = self.split(rel)
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except OSError as exc:
            raise NotSafe(rel, _why(exc, "a symlink")) from None
        if not stat.S_ISLNK(st.st_mode):
            raise NotSafe(rel, f"is {kind_of(st.st_mode)}, the manifest lists a symlink")
        return os.readlink(name, dir_fd=dir_fd)


def _why(exc: OSError, wanted: str, dir_fd: int | None = None, name: str | None = None) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and dir_fd is not None and name is not None:
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except OSError:
            return f"not {wanted}"
        return f"is {kind_of(st.st_mode)}, not {wanted} (links are never followed)"
    if exc.errno == errno.ELOOP:
        return f"is a symlink, not {wanted} (links are never followed)"
    if exc.errno == errno.ENOENT:
        return "missing"
    return exc.strerror or str(exc)


def open_regular_at(dir_fd: int | None, name: str, rel: str) -> tuple[int, os.stat_result]:
    """The one way a bundle's file is opened: no-follow, non-blocking, checked by fstat."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise NotSafe(rel, _why(exc, "a regular file")) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotSafe(rel, f"is {kind_of(st.st_mode)}, not a regular file")
    os.set_blocking(fd, True)
    return fd, st


def read_small(path: Path, *, limit: int, what: str, fix: str | None = None) -> bytes | None:
    """A bounded read of a small regular file (manifest, SHA256SUMS); None when missing.

    Anything else standing there (a link, a FIFO, a directory, a file too large) is bad input.
    """
    try:
        fd, st = open_regular_at(None, str(path), str(path))
    except NotSafe as exc:
        if exc.what == "missing":
            return None
        raise BadInput(f"{what} {exc.what}", where=str(path), fix=fix) from None
    try:
        if st.st_size > limit:
            raise BadInput(
                f"{what} is {st.st_size} bytes, more than the {limit} a valid one can have",
                where=str(path),
                fix=fix,
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


def check_no_link_on_path(root: Path, rel: str) -> None:
    """Refuse when any existing component of root/rel is a symlink (before a rename into it)."""
    current = root
    for part in [p for p in rel.split("/") if p]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise BadInput(
                f"/{rel} passes through the symlink {current.relative_to(root)} in the repository",
                where=str(root),
                fix="a publication never writes through a link; remove or rename that link first",
            )
