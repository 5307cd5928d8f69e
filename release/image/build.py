"""One VO's image per architecture: an OCI layout, and the plain tree SingularityCE runs.

For each architecture asked for, everything is checked before anything is written: the base
exists for that architecture (and its programs are of that architecture), a given OCI
archive's config says that architecture, the packages the VO needs are installed in it. Only
then is each image built in a staging folder, and only when every one of them was built
(a given archive's layers are judged while they are read) are they renamed into place:

    <out>/images/<vo>/<tag>/oci/<arch>/   the OCI image layout (oci-layout, index.json, blobs/)
    <out>/images/<vo>/<tag>/<arch>/       the layer unpacked: the root filesystem a container
                                          runs from, with an empty /cvmfs, the bind targets,
                                          and /.dirac-release/image.json saying what it is

DIRAC is not in the image: the container sees the release through the bound /cvmfs, as
DIRAC's SingularityComputingElement always binds it; image.json records which release the
image was built (and is certified) for. The same inputs give the same manifest digest, so a
rebuild that finds the same image in place leaves it alone (`unchanged`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.deflate import Deflate
from release.errors import BadInput
from release.image import oci

if TYPE_CHECKING:
    import tarfile

    from release.config import ReleaseConfig
    from release.config.images import ImageSettings
    from release.image.archive import ArchiveImage
    from release.progress import Progress

DEFAULT_FOLDER = "images"
SCHEMA = "dirac-release/image/v1"
META_DIR = ".dirac-release"
IMAGE_JSON = f"{META_DIR}/image.json"
#: Folders every image has, empty when its base lacks them: /cvmfs for the release, and the
#: mount points a container runtime mounts over (a read-only tree cannot get them later).
MOUNT_POINTS = ("/cvmfs", "/dev", "/mnt", "/proc", "/run", "/sys", "/tmp")  # noqa: S108
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Changes whenever the writer would write other bytes for the same inputs (it is part of
#: the inputs key, so an image written by an older writer is rebuilt, not reused).
WRITER_VERSION = "1"
#: Programs whose ELF header says which architecture a root filesystem is for.
_ARCH_PROBES = ("usr/bin/env", "bin/env", "usr/bin/ls", "bin/ls", "usr/bin/sh", "bin/sh")


@dataclass
class Source:
    """Where one architecture's base comes from, checked, with what identifies it."""

    arch: str
    label: str
    digest: str  # what identifies the base's content (a manifest digest, a package list's)
    mtime: int  # the one time of every entry of the layer, from the inputs
    tree: Path | None = None  # a Debian root filesystem on this machine
    archive: ArchiveImage | None = None  # or an OCI image archive, flattened when built
    tar: tarfile.TarFile | None = None


@dataclass
class ImageBuild:
    """One VO's image for one architecture: where it went and what it is."""

    vo: str
    product: str
    tag: str
    arch: str
    folder: Path
    layout: Path
    base: str
    base_digest: str
    status: str = "planned"
    manifest_digest: str = ""
    config_digest: str = ""
    layer_digest: str = ""
    diff_id: str = ""
    layer_size: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    created: int = 0
    inputs: str = ""
    layer_inputs: str = ""
    #: The release whose layer blob this build reused ("" when it wrote its own).
    layer_from: str = ""
    left_out: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What /.dirac-release/image.json says: enough to find the image and its release."""
        return {
            "schema": SCHEMA,
            "vo": self.vo,
            "product": self.product,
            "tag": self.tag,
            "arch": self.arch,
            "oci_arch": oci.OCI_ARCH[self.arch],
            "manifest_digest": self.manifest_digest,
            "config_digest": self.config_digest,
            "layer_digest": self.layer_digest,
            "diff_id": self.diff_id,
            "base": self.base,
            "base_digest": self.base_digest,
            "created": oci.rfc3339(self.created),
            "inputs": self.inputs,
            "layer_inputs": self.layer_inputs,
            "layer_size": self.layer_size,
            "files": self.files,
            "bytes": self.bytes,
            "left_out": self.left_out,
            "added": self.added,
        }

    def take(self, recorded: dict[str, Any]) -> None:
        """Fill in what an image already in place says about itself (image.json)."""
        for name in ("manifest_digest", "config_digest", "layer_digest", "diff_id",
                     "layer_size", "files", "bytes", "left_out", "added"):  # fmt: skip
            setattr(self, name, recorded[name])
        self.layer_inputs = str(recorded.get("layer_inputs", ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.record(),
            "status": self.status,
            "folder": str(self.folder),
            "layout": str(self.layout),
            "layer_size": self.layer_size,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
            "layer_from": self.layer_from,
        }


def output_root(config: ReleaseConfig, out: Path | None) -> Path:
    """`--out`, else `images/` in the build's output folder (build.out, DIRAC_RELEASE_OUT)."""
    return (out or config.resolve_path(config.build.out) / DEFAULT_FOLDER).absolute()


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.isdigit():
        raise BadInput(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
                       fix="unset it, or give an integer, e.g. SOURCE_DATE_EPOCH=1700000000")  # fmt: skip
    return int(value)


def dpkg_installed(tree: Path) -> dict[str, str] | None:
    """Package -> version of what dpkg's status says is installed or unpacked (None: no dpkg)."""
    status = tree / "var/lib/dpkg/status"
    if not status.is_file():
        return None
    installed: dict[str, str] = {}
    for stanza in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        state = fields.get("Status", "")
        if "Package" in fields and state.endswith(("installed", "unpacked")):
            installed[fields["Package"]] = fields.get("Version", "")
    return installed


def _debian_epoch(tree: Path) -> int:
    """The newest mtime of the Debian packages' own files (usr/share/doc, as dpkg unpacked
    them from the .debs): the same packages give the same time on every machine, unlike the
    time the base happened to be made."""
    newest = 0
    doc = tree / "usr/share/doc"
    if doc.is_dir():
        for dirpath, _dirs, files in os.walk(doc):
            for name in files:
                try:
                    newest = max(newest, int(os.lstat(os.path.join(dirpath, name)).st_mtime))
                except OSError:
                    continue
    if not newest and (tree / "var/lib/dpkg/status").is_file():
        newest = int((tree / "var/lib/dpkg/status").stat().st_mtime)
    return newest


def _check_arch(tree: Path, arch: str, where: str) -> None:
    """Refuse a root filesystem whose programs are for another architecture."""
    from cvmfs import elf

    for probe in _ARCH_PROBES:
        path = tree / probe
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                header = elf.read_header(handle.read(20))
            if header is not None and not elf.matches(header, arch):
                raise BadInput(
                    f"the {arch} base at {tree} holds {header.machine_name} programs (/{probe})",
                    where=where,
                    fix=f"give a root filesystem made for {arch}",
                )
            return


def _check_packages(settings: ImageSettings, tree: Path | None, arch: str, key: str) -> None:
    if not settings.packages:
        return
    installed = dpkg_installed(tree) if tree is not None else None
    if installed is None:
        what = (
            "an OCI archive"
            if tree is None
            else f"the {arch} base at {tree}, which has no dpkg status"
        )
        raise BadInput(
            f"{key}.packages can only be checked against the Debian base's dpkg status, not "
            f"against {what}",
            where=str(tree) if tree else key,
            fix="leave packages out for this base (install them in the image you give)",
        )
    missing = [p for p in settings.packages if p not in installed]
    if missing:
        raise BadInput(
            f"the {arch} base lacks the package(s) {', '.join(missing)} that {key}.packages "
            "asks for",
            where=str(tree),
            fix="check the package names (Debian bookworm's), or leave them out",
        )


def debian_tree(arch: str, packages: tuple[str, ...] = ()) -> Path:
    """The Debian base an image that must hold `packages` starts from: this machine's base
    when it has them all (or is not made yet), else the base made with the others too,
    named by that set of packages (`bookworm-<arch>-dirac+<digest>`) beside it."""
    return _debian_tree(arch, packages)[0]


def _debian_tree(arch: str, packages: tuple[str, ...]) -> tuple[Path, list[str]]:
    """debian_tree, and the packages this machine's base lacks (sorted; none when that base
    is not made), which name the other."""
    from release.base.debian import cached_path

    standard = cached_path(arch)
    installed = dpkg_installed(standard) if packages else None
    extra = sorted(p for p in packages if p not in installed) if installed is not None else []
    if not extra:
        return standard, []
    digest = hashlib.sha256(",".join(extra).encode("utf-8")).hexdigest()[:12]
    return standard.with_name(f"{standard.name}+{digest}"), extra


def _base_with_packages(
    settings: ImageSettings, arch: str, key: str, where: str, say: Callable[[str], None]
) -> Path:
    """The Debian base for the image: this machine's, or one made once with the packages
    it lacks (debootstrap --include: root and the Debian mirror; arm64 without emulation).

    The packages are unpacked as debootstrap's first stage does (no maintainer script runs),
    and recorded in the base's dpkg status; the image build on that base is then offline and
    reproducible like any other.
    """
    from release.base.debian import DONE_MARK, PACKAGES, make_debian_base
    from release.errors import ReleaseError

    tree, extra = _debian_tree(arch, settings.packages)
    if not extra or (tree / DONE_MARK).is_file():
        return tree
    if os.geteuid() != 0:
        raise BadInput(
            f"the {arch} base lacks the package(s) {', '.join(extra)} that {key}.packages asks "
            "for, and making a base with them needs root (debootstrap)",
            where=where,
            fix=f"run the image build once as root: it makes {tree} (with the Debian mirror) "
            "and every later build uses it offline; or leave those packages out",
        )
    say(f"making the Debian base with {', '.join(extra)} once, in {tree} (debootstrap) ...")
    try:
        return make_debian_base(tree, arch=arch, packages=(*PACKAGES, *extra))
    except ReleaseError as exc:
        raise type(exc)(
            f"making the {arch} base with {', '.join(extra)} for {key}.packages failed: "
            f"{exc.message}",
            where=where,
            fix=exc.fix
            or "check that the packages exist in Debian bookworm for this "
            "architecture, and that the Debian mirror is reachable",
        ) from None


def prepare_sources(
    config: ReleaseConfig,
    vo: str,
    arches: list[str] | None,
    say: Callable[[str, str], None] | None = None,
) -> tuple[list[Source], list[str]]:
    """Check every architecture's base for the VO; nothing is written but, when the VO's
    packages are not all in this machine's Debian base, a base made with them once (a cache,
    like the base itself). Returns the sources and the architectures used."""  # fmt: skip
    from release.config.images import DebianImageBase
    from release.image.archive import read_archive

    settings = config.images[vo]
    key = f"images.{vo}"
    where = f"{config.path}: {key}.base"
    have = (
        list(config.platforms)
        if isinstance(settings.base, DebianImageBase)
        else [a for a in config.platforms if a in settings.base.oci]
    )
    wanted: list[str] = list(dict.fromkeys(arches or have))  # each once, in the order given
    for arch in wanted:
        if arch not in oci.OCI_ARCH:
            raise BadInput(f"unknown architecture {arch!r}", fix="choose x86_64 or aarch64")
        if arch not in have:
            raise BadInput(
                f"the base of {key} has no {arch} image",
                where=where,
                fix=f'add it: base.oci.{arch} = "<the {arch} image\'s OCI archive>", or '
                f"build the others: --arch {' --arch '.join(have) if have else 'x86_64'}",
            )
    epoch = _source_date_epoch()
    sources: list[Source] = []
    try:
        for arch in wanted:
            if isinstance(settings.base, DebianImageBase):

                def note(text: str, arch: str = arch) -> None:
                    if say is not None:
                        say(f"{vo} {arch}", text)

                tree = _base_with_packages(settings, arch, key, where, note)
                if (
                    not (tree / "etc/os-release").exists()
                    and not (tree / "usr/lib/os-release").exists()
                ):
                    raise BadInput(
                        f"the Debian {settings.base.debian} base for {arch} is not on this "
                        f"machine ({tree} is missing)",
                        where=where,
                        fix="make it once (root, debootstrap, arm64 without emulation): "
                        "dirac-release base debian, with a [bases.<name>] whose "
                        f"platforms.{arch}.path is {tree}",
                    )
                _check_arch(tree, arch, where)
                _check_packages(settings, tree, arch, key)
                status = tree / "var/lib/dpkg/status"
                from release.build.manifest import digest_bytes

                digest = digest_bytes(status.read_bytes()) if status.is_file() else ""
                sources.append(Source(arch, f"debian:{settings.base.debian}",
                                      f"sha256:{digest}" if digest else "",
                                      epoch if epoch is not None else _debian_epoch(tree),
                                      tree=tree))  # fmt: skip
            else:
                path = config.resolve_path(settings.base.oci[arch])  # type: ignore[index]
                image, tar = read_archive(path, arch, f"{where}.oci.{arch}")
                source = Source(arch, f"oci-archive:{path.name}", image.manifest_digest,
                                epoch if epoch is not None else image.created,
                                archive=image, tar=tar)  # fmt: skip
                sources.append(source)
                if settings.packages:
                    _check_packages(settings, None, arch, key)
    except BaseException:
        for source in sources:
            if source.tar is not None:
                source.tar.close()
        raise
    return sources, wanted


def labels_for(
    settings: ImageSettings, *, vo: str, product: str, tag: str, source: Source
) -> dict[str, str]:
    """The image's labels: OCI's own keys, the release and VO, what the base was."""
    labels = {
        "org.opencontainers.image.title": f"{vo} worker-node image for {product} {tag}",
        "org.opencontainers.image.description": (
            f"The OS {vo}'s jobs run in under DIRAC's SingularityComputingElement; {product} "
            f"{tag} comes from the bound /cvmfs"
        ),
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.created": oci.rfc3339(source.mtime),
        "org.opencontainers.image.base.name": source.label,
        "org.opencontainers.image.base.digest": source.digest,
        "org.opencontainers.image.vendor": "dirac-release",
        "org.diracgrid.release.product": product,
        "org.diracgrid.release.tag": tag,
        "org.diracgrid.image.vo": vo,
        "org.diracgrid.image.source.digests": source.digest,
        "org.diracgrid.image.packages": ",".join(settings.packages),
        "org.diracgrid.image.binds": ",".join(settings.binds),
    }
    return {**labels, **settings.labels}


def env_for(settings: ImageSettings) -> list[str]:
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", **settings.env}
    return [f"{name}={value}" for name, value in sorted(env.items())]


def inputs_key(
    source: Source, *, env: list[str], labels: dict[str, str], deflate: Deflate,
    add_dirs: tuple[str, ...], entries: oci.Entries | None,
) -> str:  # fmt: skip
    """What decides the image's bytes, hashed without reading a file's content: so a rerun
    with nothing changed is a no-op in a second, not a new 300 MB gzip.

    A Debian base counts by every entry with its device, inode, size, mtime and ctime (a
    change of content changes ctime, which no one can set back); an OCI archive by its
    manifest digest (content-addressed already). A key that differs only means a full build,
    which then still finds the same manifest digest when the bytes are the same.
    """
    layer = layer_key(source, deflate=deflate, add_dirs=add_dirs, entries=entries)
    digest = hashlib.sha256(oci.canonical({"layer": layer, "env": env, "labels": labels}))
    return f"sha256:{digest.hexdigest()}"


def layer_key(
    source: Source, *, deflate: Deflate, add_dirs: tuple[str, ...], entries: oci.Entries | None
) -> str:
    """What decides the layer's bytes alone: the inputs key without the image's Env and
    labels (which hold the release). Two releases of a VO on the same base have the same
    layer, so the second reuses the first's blob instead of compressing the base again."""
    digest = hashlib.sha256(oci.canonical({
        "writer": WRITER_VERSION, "arch": source.arch, "base": source.digest,
        "mtime": source.mtime, "deflate": deflate.key, "add_dirs": list(add_dirs),
    }))  # fmt: skip
    for entry in entries.items if entries is not None else ():
        line = f"{entry.name}\0{entry.kind}\0{entry.mode:o}\0{entry.link}\0{entry.size}"
        if entry.source is not None:
            st = os.lstat(entry.source)
            line += f"\0{st.st_dev}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return f"sha256:{digest.hexdigest()}"


def _in_place(build: ImageBuild) -> dict[str, Any] | None:
    """image.json of the image in place when its layout holds the image it names."""
    try:
        recorded: dict[str, Any] = json.loads((build.folder / IMAGE_JSON).read_text("utf-8"))
        manifest, _config, digest = oci.read_layout_image(build.layout)
        blobs = build.layout / "blobs" / "sha256"
        layer = manifest["layers"][0]
        whole = (blobs / layer["digest"].removeprefix("sha256:")).stat().st_size == layer["size"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return recorded if whole and recorded.get("manifest_digest") == digest else None


def _rewrite_record(build: ImageBuild) -> None:
    """The same image in place, found from other inputs: its record says the new ones."""
    path = build.folder / IMAGE_JSON
    temp = path.with_name(f".image.json.{os.getpid()}")
    temp.write_text(json.dumps(build.record(), indent=2, sort_keys=True) + "\n", "utf-8")
    temp.replace(path)


def _swap(staged: Path, final: Path, parent: Path) -> bool:
    """Rename `staged` to `final`, the old one moved aside first; True when one was there."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise BadInput(f"{final} exists and is not a folder", where=str(final),
                       fix="remove it, or choose another --out")  # fmt: skip
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        staged.rename(final)
        return False
    old = Path(tempfile.mkdtemp(dir=parent, prefix=f".old-{final.name}-"))
    final.rename(old / final.name)
    try:
        staged.rename(final)
    except BaseException:
        (old / final.name).rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return True


@dataclass
class Staged:
    """One architecture's image built in its staging folder, not yet in place."""

    build: ImageBuild
    staging: Path | None  # None: the image in place is this one, nothing to move


def stage_one(
    config: ReleaseConfig,
    vo: str,
    product: str,
    tag: str,
    source: Source,
    root: Path,
    progress: Progress | None = None,
) -> Staged:
    """Build one architecture's image in a staging folder beside its place, and unpack it."""
    from release.image.archive import flatten

    settings = config.images[vo]
    started = time.monotonic()
    tag_dir = root / vo / tag
    item = f"{vo} {source.arch}"

    def step(text: str) -> None:
        if progress is not None:
            progress.step(item, text)

    build = ImageBuild(vo=vo, product=product, tag=tag, arch=source.arch,
                       folder=tag_dir / source.arch, layout=tag_dir / "oci" / source.arch,
                       base=source.label, base_digest=source.digest,
                       created=source.mtime)  # fmt: skip
    env = env_for(settings)
    labels = labels_for(settings, vo=vo, product=product, tag=tag, source=source)
    add_dirs = (*MOUNT_POINTS, *settings.binds)
    deflate = Deflate(config.build.deflate, config.build.compression_level)
    step("reading the base")
    entries = oci.tree_entries(source.tree, add_dirs=add_dirs) if source.tree else None
    build.inputs = inputs_key(source, env=env, labels=labels, deflate=deflate, add_dirs=add_dirs,
                              entries=entries)  # fmt: skip
    recorded = _in_place(build)
    if recorded is not None and recorded.get("inputs") == build.inputs:
        build.take(recorded)
        build.status = "unchanged"
        build.seconds = time.monotonic() - started
        if progress is not None:
            progress.done(item, "unchanged (same inputs)")
        return Staged(build, None)
    tag_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=tag_dir, prefix=f".staging-{source.arch}-{os.getpid()}-"))
    try:
        if source.archive is not None and source.tar is not None:
            step("applying the archive's layers")
            tree = staging / "base"
            flatten(source.archive, source.tar, tree, f"{config.path}: images.{vo}.base.oci."
                    f"{source.arch}")  # fmt: skip
            entries = oci.tree_entries(tree, add_dirs=add_dirs)
        if entries is None:
            raise BadInput(f"no base for {source.arch}")  # prepare_sources gives one
        build.left_out, build.added = entries.left_out, entries.added
        build.files, build.bytes = entries.files, entries.bytes
        build.layer_inputs = layer_key(source, deflate=deflate, add_dirs=add_dirs,
                                       entries=None if source.tree is None else entries)  # fmt: skip
        reused = _reuse_layer(root / vo, source.arch, build.layer_inputs, staging / "oci")
        if reused is not None:
            build.layer_from = reused[1]
            step(f"writing the tree ({entries.files} files; layer of {reused[1]} reused)")
        else:
            step(f"writing the layer and the tree ({entries.files} files)")
        image = oci.write_image(staging / "oci", arch=source.arch, entries=entries,
                                mtime=source.mtime, env=env, labels=labels, ref=tag,
                                deflate=deflate, tree=staging / "tree",
                                layer=reused[0] if reused else None,
                                apart=config.build.jobs > 1)  # fmt: skip
        if source.archive is not None:
            shutil.rmtree(staging / "base")
        build.manifest_digest = image.manifest.digest
        build.config_digest = image.config.digest
        build.layer_digest = image.layer.descriptor.digest
        build.diff_id = image.layer.diff_id
        build.layer_size = image.layer.descriptor.size
        if recorded is not None and recorded.get("manifest_digest") == build.manifest_digest:
            build.status = "unchanged"  # the same bytes from other inputs: only the record
            _rewrite_record(build)
        else:
            meta = staging / "tree" / META_DIR
            meta.mkdir(exist_ok=True)
            (meta / "image.json").write_text(
                json.dumps(build.record(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    build.seconds = time.monotonic() - started
    if progress is not None:
        progress.done(item, f"built in {build.seconds:.1f} s"
                      + (f" (layer of {build.layer_from} reused)" if build.layer_from else ""))  # fmt: skip
    return Staged(build, staging)


def _reuse_layer(vo_dir: Path, arch: str, key: str, layout: Path) -> tuple[oci.Layer, str] | None:
    """The layer of an earlier build of this VO and architecture from the same base inputs
    (any release in the output folder), linked into `layout`; None when there is none.

    The blob is read and hashed against its digest before it is taken (a few tenths of a
    second for ~100 MB, against several seconds of gzip): an edited blob is never reused.
    """
    if not vo_dir.is_dir():
        return None
    for other in sorted(vo_dir.iterdir(), reverse=True):
        if other.name.startswith(".") or not other.is_dir():
            continue
        try:
            record = json.loads((other / arch / IMAGE_JSON).read_text(encoding="utf-8"))
            if record.get("layer_inputs") != key:
                continue
            digest = str(record["layer_digest"])
            blob = other / "oci" / arch / "blobs" / "sha256" / digest.removeprefix("sha256:")
            if blob.stat().st_size != int(record["layer_size"]):
                continue
            hashed = hashlib.sha256()
            with blob.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    hashed.update(chunk)
            if f"sha256:{hashed.hexdigest()}" != digest:
                continue
            target = oci.BlobWriter(layout).path(digest)
            try:
                os.link(blob, target)
            except OSError:
                shutil.copyfile(blob, target)
            layer = oci.Layer(oci.Descriptor(oci.MEDIA_LAYER_GZIP, digest, int(record["layer_size"])),
                              str(record["diff_id"]))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return layer, str(record.get("tag") or other.name)
    return None


def place(staged: Staged) -> None:
    """Rename the staged layout and tree into place (or leave an unchanged image alone)."""
    build, staging = staged.build, staged.staging
    if staging is None:
        return
    try:
        if build.status != "unchanged":
            tag_dir = build.folder.parent
            replaced = _swap(staging / "oci", build.layout, tag_dir)
            replaced = _swap(staging / "tree", build.folder, tag_dir) or replaced
            index = oci.index_path(staging / "tree")
            if index.is_file():
                index.replace(oci.index_path(build.folder))
            else:
                oci.index_path(build.folder).unlink(missing_ok=True)
            build.status = "replaced" if replaced else "written"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _record(config: ReleaseConfig, builds: list[ImageBuild]) -> None:
    """An `image build` record in the release's ledger, when an image was (re)written: the
    digests the report shows and publication is compared with."""
    by_release: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for build in builds:
        if build.status != "unchanged":
            by_release.setdefault((build.product, build.tag), []).append(
                {key: build.record()[key] for key in
                 ("vo", "arch", "manifest_digest", "layer_digest", "base", "base_digest")}
                | {"status": build.status, "folder": str(build.folder)}
            )  # fmt: skip
    for (product, tag), images in by_release.items():
        config.ledger(product, tag).record("image build", {"images": images})


def pick_vos(config: ReleaseConfig, vo: str | None) -> list[str]:
    if not config.images:
        from release.config import EXAMPLES

        raise BadInput(
            f"{config.path} defines no image", fix="add one, e.g.\n" + EXAMPLES["images"]
        )
    if vo is None:
        return list(config.images)
    if vo not in config.images:
        from release.config.suggest import close_match

        close = close_match(vo, config.images)
        raise BadInput(
            f"unknown VO {vo!r}",
            where=str(config.path),
            fix=(f"did you mean {close!r}? " if close else "")
            + f"VOs with an [images.<vo>] table: {', '.join(config.images)}",
        )
    return [vo]


def build_images(
    config: ReleaseConfig,
    *,
    version: str,
    vo: str | None = None,
    arches: list[str] | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
) -> list[ImageBuild]:
    """Build the images of one VO (or of every VO of [images]) for one release.

    Every base of every VO and architecture is checked first; a refusal writes nothing.
    Architectures are built in parallel (build.jobs): gzip and sha256 release the GIL.
    """
    from release.version import parse_version_arg

    tag = parse_version_arg(version).tag
    vos = pick_vos(config, vo)
    root = output_root(config, out)
    plans: list[tuple[str, str, Source]] = []
    try:
        for name in vos:
            product, _ = config.product(config.images[name].product)
            sources, _arches = prepare_sources(
                config, name, arches, progress.step if progress is not None else None
            )
            plans += [(name, product, source) for source in sources]
        workers = max(1, min(config.build.jobs, len(plans)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(stage_one, config, name, product, tag, source, root, progress)
                       for name, product, source in plans]  # fmt: skip
            staged: list[Staged] = []
            failure: BaseException | None = None
            for future in futures:
                try:
                    staged.append(future.result())
                except BaseException as exc:  # every staging is waited for, then removed
                    failure = failure or exc
        if failure is not None:
            for one in staged:
                if one.staging is not None:
                    shutil.rmtree(one.staging, ignore_errors=True)
            for name in vos:  # the folders made for the staging, when nothing else is there
                for folder in (root / name / tag, root / name):
                    try:
                        folder.rmdir()
                    except OSError:
                        break
            raise failure
        for one in staged:
            place(one)
        builds = [one.build for one in staged]
        _record(config, builds)
        return builds
    finally:
        for _name, _product, source in plans:
            if source.tar is not None:
                source.tar.close()
