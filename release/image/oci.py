"""A small writer (and reader) of OCI image layouts: one reproducible gzip layer per image.

The same inputs must give the same manifest digest, on any machine and on any day, so that
an image can be rebuilt and shown to be the one certified. Everything that could vary is
fixed here: entries sorted by path (parents first), one mtime for all of them (taken from the
inputs, like SOURCE_DATE_EPOCH), owner 0:0 without names, the ustar/pax format with no pax
times (a pax header appears only for a path longer than ustar holds), hardlinks written as
links to the first path of the same file, gzip with mtime 0 and no file name, and JSON with
sorted keys and no spaces. Device nodes, FIFOs and sockets are left out (a container
runtime brings /dev) and said so. The layout is what `umoci`, skopeo and apptainer read:
`oci-layout`, `index.json` and `blobs/sha256/<hex>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from release.deflate import Deflate
from release.errors import BadInput

LAYOUT_VERSION = "1.0.0"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
#: Docker's media types, which `docker save`/skopeo archives of older images still carry.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
#: Our platform names -> GOARCH, the names OCI uses (image-spec config.md).
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
#: The variant OCI gives 64-bit ARM (image-spec image-index.md: "arm64" "v8").
OCI_VARIANT = {"aarch64": "v8"}
_CHUNK = 1 << 20


def canonical(document: Mapping[str, Any]) -> bytes:
    """JSON as it is hashed: sorted keys, no spaces, UTF-8: the same document, the same bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Entry:
    """One entry of a layer: `name` relative (no leading '/'), `source` a file on disk, or
    None for a directory the build adds (a mount point, a bind target)."""

    name: str
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    mode: int
    source: Path | None = None
    link: str = ""
    size: int = 0


@dataclass
class Entries:
    """What goes into a layer, and what was left out of the tree (device nodes...)."""

    items: list[Entry] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(1 for e in self.items if e.kind in ("file", "hardlink"))

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.items if e.kind == "file")


def _sort_key(name: str) -> tuple[str, ...]:
    """Path components: a folder comes right before its content ('a' < 'a/b' < 'a-b')."""
    return tuple(name.split("/"))


def tree_entries(root: Path, add_dirs: Iterable[str] = ()) -> Entries:
    """Every entry of the tree at `root`, sorted, plus the folders `add_dirs` (absolute paths
    inside the image) where the tree lacks them, with their parents.

    A folder to add that the tree has as something else (a link, a file) is refused: binding
    onto a link would bind wherever it points.
    """
    out = Entries()
    inodes: dict[str, tuple[int, int]] = {}  # name -> (device, inode) of multiply-linked files
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        keep = []
        for name in sorted([*dirnames, *filenames]):
            path = here / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                out.items.append(Entry(rel, "dir", mode))
                keep.append(name)
            elif stat.S_ISLNK(st.st_mode):
                out.items.append(Entry(rel, "symlink", 0o777, link=os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    inodes[rel] = (st.st_dev, st.st_ino)
                out.items.append(Entry(rel, "file", mode, source=path, size=st.st_size))
            else:
                out.left_out.append(rel)
        dirnames[:] = [d for d in dirnames if d in keep]
    kinds = {e.name: e.kind for e in out.items}
    for folder in add_dirs:
        parts = folder.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            if rel in kinds:
                if kinds[rel] != "dir":
                    raise BadInput(
                        f"the image needs the folder /{rel} (for {folder}), but its base has "
                        f"a {kinds[rel]} there",
                        where=str(root / rel),
                        fix="bind a folder the base does not hold as a link or file, or use a "
                        "base where it is a folder",
                    )
                continue
            kinds[rel] = "dir"
            out.items.append(Entry(rel, "dir", 0o755))
            out.added.append("/" + rel)
    out.items.sort(key=lambda e: _sort_key(e.name))
    # A file met again under another name becomes a hardlink to its first name in the
    # layer's order (a tar reader links to what it has already written).
    first: dict[tuple[int, int], str] = {}
    for index, entry in enumerate(out.items):
        key = inodes.get(entry.name)
        if key is None:
            continue
        if key in first:
            out.items[index] = Entry(entry.name, "hardlink", entry.mode, link=first[key])
        else:
            first[key] = entry.name
    return out


class _Hashing:
    """A write-only stream that hashes and counts what passes, then hands it on."""

    def __init__(self, raw: BinaryIO | None) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self.raw is not None:
            self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        if self.raw is not None:
            self.raw.flush()

    def tell(self) -> int:
        return self.size


def _tarinfo(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.name + ("/" if entry.kind == "dir" else ""))
    info.mtime = mtime  # an int: tarfile writes no pax time for it
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, entry.link
    elif entry.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, entry.link
    else:
        info.type, info.size = tarfile.REGTYPE, entry.size
    return info


class BlobWriter:
    """Writes blobs into `<layout>/blobs/sha256/`, each named by its own digest."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.folder = layout / "blobs" / "sha256"
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, media_type: str) -> Descriptor:
        digest = hashlib.sha256(data).hexdigest()
        path = self.folder / digest
        if not path.exists():
            path.write_bytes(data)
        return Descriptor(media_type, f"sha256:{digest}", len(data))

    def path(self, digest: str) -> Path:
        return self.folder / digest.removeprefix("sha256:")


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str  # the digest of the uncompressed tar, which the config lists


class _Tee:
    """A source file read for the tar stream whose bytes also go to the tree's copy, hashed on
    the way: each file of the base is read once for the layer, the tree and the tree's
    manifest (issue #16: read as few times as possible)."""

    def __init__(self, source: BinaryIO, copy: BinaryIO) -> None:
        self.source, self.copy = source, copy
        self.digest = hashlib.sha256()
        self.head: bytes | None = None

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if self.head is None:
            self.head = data[:HEAD]
        self.digest.update(data)
        self.copy.write(data)
        return data


#: The first bytes of a file an index keeps: enough for the ELF header check.
HEAD = 20
INDEX_SCHEMA = "dirac-release/tree-index/1"


def index_path(tree: Path) -> Path:
    """Where the file index of a written tree is kept: beside it, never inside (the tree is
    published as it is)."""
    return tree.with_name(f".{tree.name}.files.json")


def load_index(tree: Path) -> Callable[[str, os.stat_result], tuple[str, bytes] | None]:
    """What the build learnt of each file of `tree` as it wrote it, as `scan_tree`'s `known`:
    a file's digest is taken only while it is the very file written (same inode, same size);
    anything else is read again. A wrong claim cannot pass: the publisher hashes every file
    as it copies it and refuses the tree on any difference."""
    try:
        data = json.loads(index_path(tree).read_text(encoding="utf-8"))
        files: dict[str, list[Any]] = data["files"] if data.get("schema") == INDEX_SCHEMA else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        files = {}

    def known(rel: str, st: os.stat_result) -> tuple[str, bytes] | None:
        found = files.get(rel)
        if not found or found[0] != st.st_size or found[1] != st.st_ino:
            return None
        return str(found[2]), bytes.fromhex(found[3])

    return known


class TreeWriter:
    """Writes the tree a layer unpacks to, entry by entry in the layer's order, with what the
    layer records (mode, the one mtime, links); owners are the writer's, as an unpacker's
    are. Folders get their mode and time last, deepest first (their content changed them).
    """

    def __init__(self, root: Path, mtime: int) -> None:
        self.root, self.mtime = root, mtime
        self.dirs: list[tuple[Path, int]] = []
        #: path -> [size, inode, sha256, first bytes (hex)] of each file written
        self.index: dict[str, list[Any]] = {}
        root.mkdir(parents=True, exist_ok=True)

    def add(self, entry: Entry, data: BinaryIO | None = None) -> BinaryIO | None:
        """Make `entry`; for a file, returns the open copy when `data` is None (the caller
        streams its bytes into it, then calls `close_file`)."""
        path = self.root / entry.name
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
            self.dirs.append((path, entry.mode))
            return None
        if entry.kind == "symlink":
            os.symlink(entry.link, path)
        elif entry.kind == "hardlink":
            os.link(self.root / entry.link, path)
            if entry.link in self.index:
                self.index[entry.name] = self.index[entry.link]
        else:
            return path.open("wb")
        os.utime(path, (self.mtime, self.mtime), follow_symlinks=False)
        return None

    def close_file(self, entry: Entry, copy: BinaryIO, digest: str = "", head: bytes = b"") -> None:
        copy.close()
        path = self.root / entry.name
        st = path.stat()
        size = st.st_size
        if digest:
            self.index[entry.name] = [size, st.st_ino, digest, head.hex()]
        if size != entry.size:
            from release.errors import InfrastructureError

            raise InfrastructureError(
                f"{entry.source} changed while the image was built ({entry.size} bytes when "
                f"listed, {size} when read)",
                fix="leave the base alone while images are built from it, then build again",
            )
        path.chmod(entry.mode)
        os.utime(path, (self.mtime, self.mtime))

    def copy_file(self, entry: Entry, source: Path) -> None:
        """A file's bytes from its source, hashed as they are copied (for the index)."""
        path = self.root / entry.name
        with source.open("rb") as data, path.open("wb") as copy:
            tee = _Tee(data, copy)
            while tee.read(1 << 20):
                pass
            self.close_file(entry, copy, tee.digest.hexdigest(), tee.head or b"")

    def finish(self) -> None:
        for path, mode in reversed(self.dirs):
            path.chmod(mode)
            os.utime(path, (self.mtime, self.mtime))
        index = {"schema": INDEX_SCHEMA, "files": self.index}
        index_path(self.root).write_text(json.dumps(index, sort_keys=True), encoding="utf-8")


def write_tree(entries: Entries, dest: Path, mtime: int) -> None:
    """The tree of a layer written from its entries, without the layer: for a layer reused
    from an earlier build of the same base (its bytes are those entries, by the inputs key)."""
    writer = TreeWriter(dest, mtime)
    for entry in entries.items:
        if entry.kind == "file" and entry.source is not None:
            writer.copy_file(entry, entry.source)
        else:
            writer.add(entry)
    writer.finish()


def write_layer(
    blobs: BlobWriter, entries: Entries, *, mtime: int, deflate: Deflate, tree: Path | None = None
) -> Layer:
    """The tree as one gzip layer blob: the reproducible tar described above. With `tree`,
    the tree it unpacks to is written there at the same time, from the same reads."""
    writer = TreeWriter(tree, mtime) if tree is not None else None
    handle, temp = tempfile.mkstemp(dir=blobs.folder, prefix=".layer-")
    try:
        with os.fdopen(handle, "wb") as raw:
            packed = _Hashing(raw)
            # filename="" and mtime=0: a gzip header with no name and no time.
            with deflate.gzip_writer(packed) as gz:
                plain = _Hashing(gz)
                with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                                  encoding="utf-8") as tar:  # fmt: skip
                    for entry in entries.items:
                        info = _tarinfo(entry, mtime)
                        if entry.kind == "file" and entry.source is not None:
                            with entry.source.open("rb") as data:
                                copy = writer.add(entry) if writer is not None else None
                                if writer is None or copy is None:
                                    tar.addfile(info, data)
                                else:
                                    tee = _Tee(data, copy)
                                    tar.addfile(info, tee)
                                    writer.close_file(entry, copy, tee.digest.hexdigest(),
                                                      tee.head or b"")  # fmt: skip
                        else:
                            tar.addfile(info)
                            if writer is not None:
                                writer.add(entry)
        if writer is not None:
            writer.finish()
        digest = packed.digest.hexdigest()
        final = blobs.folder / digest
        os.replace(temp, final)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return Layer(Descriptor(MEDIA_LAYER_GZIP, f"sha256:{digest}", packed.size),
                 f"sha256:{plain.digest.hexdigest()}")  # fmt: skip


def write_layer_apart(
    blobs: BlobWriter, entries: Entries, *, mtime: int, deflate: Deflate, tree: Path | None
) -> Layer:
    """`write_layer` in a process of its own (`release.apart`), the same bytes."""
    from release.apart import run_apart

    request = {
        "layout": str(blobs.layout), "mtime": mtime, "engine": deflate.engine,
        "level": deflate.level, "tree": str(tree) if tree is not None else None,
        "entries": [[e.name, e.kind, e.mode, str(e.source) if e.source else None, e.link, e.size]
                    for e in entries.items],
    }  # fmt: skip
    answer = run_apart("release.image.oci", request, what="writing the image layer",
                       where=str(blobs.layout))  # fmt: skip
    return Layer(Descriptor(MEDIA_LAYER_GZIP, answer["digest"], answer["size"]), answer["diff_id"])


def _write_layer(request: dict[str, Any]) -> dict[str, Any]:
    entries = Entries(items=[
        Entry(name, kind, mode, Path(source) if source else None, link, size)
        for name, kind, mode, source, link, size in request["entries"]
    ])  # fmt: skip
    layer = write_layer(
        BlobWriter(Path(request["layout"])), entries, mtime=request["mtime"],
        deflate=Deflate(request["engine"], request["level"]),
        tree=Path(request["tree"]) if request["tree"] else None,
    )  # fmt: skip
    descriptor = layer.descriptor
    return {"digest": descriptor.digest, "size": descriptor.size, "diff_id": layer.diff_id}


@dataclass(frozen=True)
class Image:
    """One architecture's image in a layout: what the index points at."""

    arch: str
    manifest: Descriptor
    config: Descriptor
    layer: Layer


def image_config(
    arch: str, layer: Layer, *, created: int, env: list[str], labels: Mapping[str, str]
) -> dict[str, Any]:
    """The image config (image-spec config.md): platform, Env, Labels, the layer's diff_id."""
    document: dict[str, Any] = {
        "created": rfc3339(created),
        "architecture": OCI_ARCH[arch],
        "os": "linux",
        "config": {"Env": env, "Labels": dict(labels), "Cmd": ["/bin/sh"],
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": rfc3339(created), "created_by": "dirac-release image build"}],
    }  # fmt: skip
    if arch in OCI_VARIANT:
        document["variant"] = OCI_VARIANT[arch]
    return document


def write_image(
    layout: Path,
    *,
    arch: str,
    entries: Entries,
    mtime: int,
    env: list[str],
    labels: Mapping[str, str],
    ref: str,
    deflate: Deflate,
    tree: Path | None = None,
    layer: Layer | None = None,
    apart: bool = False,
) -> Image:
    """A whole OCI image layout at `layout` (a new folder) holding one image for `arch`.

    `tree`: also write the tree the layer unpacks to (see write_layer). `layer`: a layer
    whose blob is already in the layout (reused), so only config, manifest and index are new.
    `apart`: the layer and tree are written by a process of their own (`release.apart`),
    so the architectures a build makes at once run on as many cores.
    """
    layout.mkdir(parents=True, exist_ok=True)
    blobs = BlobWriter(layout)
    if layer is None and apart:
        layer = write_layer_apart(blobs, entries, mtime=mtime, deflate=deflate, tree=tree)
    elif layer is None:
        layer = write_layer(blobs, entries, mtime=mtime, deflate=deflate, tree=tree)
    elif tree is not None:
        write_tree(entries, tree, mtime)
    config = blobs.put(
        canonical(image_config(arch, layer, created=mtime, env=env, labels=labels)), MEDIA_CONFIG
    )
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.as_json(),
        "layers": [layer.descriptor.as_json()],
        "annotations": dict(labels),
    }
    manifest = blobs.put(canonical(manifest_doc), MEDIA_MANIFEST)
    platform = {"architecture": OCI_ARCH[arch], "os": "linux"}
    if arch in OCI_VARIANT:
        platform["variant"] = OCI_VARIANT[arch]
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{**manifest.as_json(), "platform": platform,
                       "annotations": {REF_NAME: ref}}],
    }  # fmt: skip
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": LAYOUT_VERSION}))
    (layout / "index.json").write_bytes(canonical(index))
    return Image(arch=arch, manifest=manifest, config=config, layer=layer)


def read_layout_image(layout: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(manifest, config, manifest digest) of the only image of a layout we wrote."""
    index = json.loads((layout / "index.json").read_bytes())
    descriptor = index["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / descriptor["digest"].removeprefix("sha256:")).read_bytes())
    config_digest = manifest["config"]["digest"].removeprefix("sha256:")
    config = json.loads((blobs / config_digest).read_bytes())
    return manifest, config, str(descriptor["digest"])


if __name__ == "__main__":
    from release.apart import serve

    serve(_write_layer)
