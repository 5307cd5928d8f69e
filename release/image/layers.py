"""Applying an OCI layer to a folder, refusing what could write outside it or surprise a site.

Used twice: to flatten a given OCI image archive (a site's EL9 image) into the base tree the
VO image starts from, and to unpack our own layer into the plain tree SingularityCE runs. A
layer is data from elsewhere, so every entry is judged before anything is written for it:

- a path that is absolute or holds '..' is refused (it would land outside the tree);
- a device node, FIFO or socket is refused (a container runtime brings /dev; a device file
  on CVMFS is never meant);
- no entry is written through a link: a parent that is a symlink in the tree so far is
  refused, so `etc -> /` followed by `etc/passwd` cannot reach the host;
- a hardlink must name an entry already inside the tree;
- whiteouts (`.wh.<name>`, `.wh..wh..opq`) remove what lower layers put there (image-spec
  layer.md), and are never written themselves.

Every file, folder and link gets the layer's mtime; owners are not kept (the unpacked tree
is served read-only by CVMFS and run by whoever starts the job).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from release.errors import BadInput

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_FIX = (
    "use an image whose layers hold only relative paths, folders, files and links (as "
    "`docker build`, buildah and umoci write them); re-export it with skopeo copy"
)


def _clean_name(raw: str, where: str) -> str:
    """The entry's path relative to the tree root, or BadInput."""
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    pure = PurePosixPath(name)
    if raw.startswith("/") or ".." in pure.parts or "\x00" in raw:
        raise BadInput(f"a layer holds the path {raw!r}, which leaves the image's root",
                       where=where, fix=_FIX)  # fmt: skip
    return "" if name in ("", ".") else pure.as_posix()


class Applier:
    """Applies layers, in order, to one folder."""

    def __init__(self, root: Path, where: str) -> None:
        self.root = root
        self.where = where
        self._real_dirs: set[str] = {""}
        self._dirs: dict[str, int] = {}  # folder -> mode, set after its content is written
        self.mtime = 0
        root.mkdir(parents=True, exist_ok=True)

    def _parent_ok(self, rel: str) -> Path:
        """The parent folder of `rel` on disk, made when missing; never through a link."""
        parent = str(PurePosixPath(rel).parent)
        parent = "" if parent == "." else parent
        if parent in self._real_dirs:
            return self.root / parent
        current = ""
        for part in parent.split("/"):
            current = f"{current}/{part}" if current else part
            if current in self._real_dirs:
                continue
            path = self.root / current
            try:
                st = path.lstat()
            except FileNotFoundError:
                path.mkdir()
                path.chmod(0o755)
                self._dirs.setdefault(current, 0o755)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise BadInput(
                        f"a layer writes {rel!r} through {current!r}, which is not a folder "
                        "(a link or a file) in the image",
                        where=self.where,
                        fix=_FIX,
                    )
            self._real_dirs.add(current)
        return self.root / parent

    def _remove(self, path: Path) -> None:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)
        rel = path.relative_to(self.root).as_posix()
        self._real_dirs = {d for d in self._real_dirs if d != rel and not d.startswith(rel + "/")}
        self._dirs = {d: m for d, m in self._dirs.items()
                      if d != rel and not d.startswith(rel + "/")}  # fmt: skip

    def apply(self, stream: IO[bytes]) -> int:
        """Apply one layer (a tar stream, gzip or not); the number of entries written."""
        written = 0
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                rel = _clean_name(member.name, self.where)
                base = PurePosixPath(rel).name
                if (
                    member.isdev()
                    or member.isfifo()
                    or not (member.isdir() or member.isreg() or member.issym() or member.islnk())
                ):
                    raise BadInput(
                        f"a layer holds {member.name!r}, a device node, FIFO or other special file",
                        where=self.where,
                        fix=_FIX,
                    )
                if not rel:
                    continue  # the root itself
                parent = self._parent_ok(rel)
                if base == OPAQUE:
                    for child in list(parent.iterdir()):
                        self._remove(child)
                    continue
                if base.startswith(WHITEOUT):
                    target = parent / base[len(WHITEOUT) :]
                    if os.path.lexists(target):
                        self._remove(target)
                    continue
                path = self.root / rel
                self.mtime = max(self.mtime, int(member.mtime))
                if member.isdir():
                    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
                        self._remove(path)
                    path.mkdir(exist_ok=True)
                    self._real_dirs.add(rel)
                    self._dirs[rel] = member.mode & 0o7777
                    written += 1
                    continue
                if os.path.lexists(path):
                    self._remove(path)
                if member.issym():
                    os.symlink(member.linkname, path)
                elif member.islnk():
                    target_rel = _clean_name(member.linkname, self.where)
                    self._parent_ok(target_rel)
                    target = self.root / target_rel
                    if not target_rel or target.is_symlink() or not target.is_file():
                        raise BadInput(
                            f"a layer's hardlink {member.name!r} -> {member.linkname!r} does "
                            "not name a file already in the image",
                            where=self.where,
                            fix=_FIX,
                        )
                    os.link(target, path)
                else:
                    source = tar.extractfile(member)
                    with path.open("wb") as out:
                        if source is not None:
                            shutil.copyfileobj(source, out, 1 << 20)
                    path.chmod(member.mode & 0o7777)
                os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
                written += 1
        return written

    def finish(self) -> None:
        """Folder modes and times last (writing their content changed them), deepest first."""
        for rel in sorted(self._dirs, key=lambda d: d.count("/"), reverse=True):
            path = self.root / rel
            if path.is_dir() and not path.is_symlink():
                path.chmod(self._dirs[rel])
                os.utime(path, (self.mtime, self.mtime))
