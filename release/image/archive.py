"""Reading a given OCI image archive (`oci-archive`: a tar of an OCI image layout).

A site's own base (an EL9 image it already runs) comes as one archive per architecture. Its
image is picked from `index.json` (the only one, or the one for the architecture when the
index lists several platforms), its config must say that architecture, and every blob read
is checked against its digest, all before anything is written: a wrong-architecture archive
is refused with exit 2 and the output untouched.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from release.errors import BadInput
from release.image import oci

_LAYER_TYPES = {oci.MEDIA_LAYER_GZIP, oci.MEDIA_LAYER_TAR, oci.DOCKER_LAYER_GZIP}
_MAX_JSON = 4 << 20


@dataclass
class ArchiveImage:
    """The image of an archive for one architecture: its manifest, config and layers."""

    path: Path
    arch: str
    manifest_digest: str
    config: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)

    @property
    def created(self) -> int:
        """The config's `created` time as an epoch (0 when absent or unreadable)."""
        text = self.config.get("created")
        if not isinstance(text, str):
            return 0
        try:
            return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0


def _fix(arch: str) -> str:
    return (
        f"give the {arch} image's archive, e.g. `skopeo copy --override-arch "
        f"{oci.OCI_ARCH.get(arch, arch)} docker://almalinux:9 oci-archive:el9-{arch}.tar`"
    )


class _Reader:
    def __init__(self, tar: tarfile.TarFile, path: Path, where: str) -> None:
        self.tar = tar
        self.path = path
        self.where = where
        self.members = {}
        for member in tar.getmembers():
            name = member.name
            while name.startswith("./"):
                name = name[2:]
            self.members[name] = member

    def blob(self, digest: str) -> IO[bytes]:
        algorithm, _, hexdigest = digest.partition(":")
        member = self.members.get(f"blobs/{algorithm}/{hexdigest}")
        stream = self.tar.extractfile(member) if member is not None else None
        if stream is None:
            raise BadInput(f"{self.path} lacks the blob {digest}", where=self.where,
                           fix="export the image again: the archive is incomplete")  # fmt: skip
        return stream

    def json_blob(self, digest: str) -> dict[str, Any]:
        data = self.blob(digest).read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON or hashlib.sha256(data).hexdigest() != digest.partition(":")[2]:
            raise BadInput(f"the blob {digest} of {self.path} does not match its digest",
                           where=self.where, fix="export the image again")  # fmt: skip
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise BadInput(f"the blob {digest} of {self.path} is not a JSON object",
                           where=self.where, fix="export the image again")  # fmt: skip
        return document


def _pick(index: dict[str, Any], arch: str, reader: _Reader, depth: int = 0) -> dict[str, Any]:
    """The manifest descriptor for `arch`: the only one, or the one whose platform says it."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise BadInput(f"{reader.path} lists no image in its index", where=reader.where,
                       fix=_fix(arch))  # fmt: skip
    wanted = oci.OCI_ARCH[arch]
    matching = [m for m in manifests
                if isinstance(m, dict) and (m.get("platform") or {}).get("architecture") == wanted]  # fmt: skip
    chosen = matching[0] if matching else manifests[0] if len(manifests) == 1 else None
    if not isinstance(chosen, dict):
        raise BadInput(f"{reader.path} holds several images and none for {wanted}",
                       where=reader.where, fix=_fix(arch))  # fmt: skip
    if chosen.get("mediaType") in (oci.MEDIA_INDEX, oci.DOCKER_LIST) and depth < 2:
        return _pick(reader.json_blob(str(chosen["digest"])), arch, reader, depth + 1)
    return chosen


def read_archive(path: Path, arch: str, where: str) -> tuple[ArchiveImage, tarfile.TarFile]:
    """Open and check the archive for `arch`; the caller closes the returned tar."""
    if not path.is_file():
        raise BadInput(f"the {arch} OCI archive {path} does not exist", where=where,
                       fix=_fix(arch))  # fmt: skip
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by the caller)
    except (tarfile.TarError, OSError) as exc:
        raise BadInput(f"{path} is not an OCI image archive (a tar): {exc}", where=where,
                       fix=_fix(arch)) from None  # fmt: skip
    try:
        reader = _Reader(tar, path, where)
        member = reader.members.get("index.json")
        stream = tar.extractfile(member) if member is not None else None
        if stream is None or "oci-layout" not in reader.members:
            raise BadInput(f"{path} is not an OCI image layout archive (no index.json or "
                           "oci-layout)", where=where, fix=_fix(arch))  # fmt: skip
        index = json.loads(stream.read(_MAX_JSON))
        descriptor = _pick(index, arch, reader)
        digest = str(descriptor.get("digest", ""))
        manifest = reader.json_blob(digest)
        config = reader.json_blob(str((manifest.get("config") or {}).get("digest", "")))
        said = config.get("architecture")
        if said != oci.OCI_ARCH[arch]:
            raise BadInput(
                f"{path} is an image for {said!r}, not for {arch} "
                f"({oci.OCI_ARCH[arch]}): its config says architecture {said!r}",
                where=where,
                fix=_fix(arch),
            )
        if config.get("os", "linux") != "linux":
            raise BadInput(f"{path} is an image for {config.get('os')!r}, not linux",
                           where=where, fix=_fix(arch))  # fmt: skip
        layers = manifest.get("layers") or []
        for layer in layers:
            if layer.get("mediaType") not in _LAYER_TYPES:
                raise BadInput(
                    f"{path} has a layer of type {layer.get('mediaType')!r}; only tar and "
                    "tar+gzip layers are read",
                    where=where,
                    fix="re-export it with gzip layers (skopeo copy without --dest-compress-"
                    "format zstd)",
                )
        return ArchiveImage(path, arch, digest, config, layers, reader.members), tar
    except BaseException:
        tar.close()
        raise


class _DigestCheck:
    """A read stream that hashes what passes and says at the end whether it matched."""

    def __init__(self, raw: IO[bytes], digest: str) -> None:
        self.raw = raw
        self.expected = digest.partition(":")[2]
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        return data

    def matches(self) -> bool:
        while self.read(1 << 20):
            pass
        return self.hash.hexdigest() == self.expected


def flatten(image: ArchiveImage, tar: tarfile.TarFile, dest: Path, where: str) -> int:
    """Apply the image's layers in order at `dest`; the number of entries written."""
    from release.image.layers import Applier

    reader = _Reader.__new__(_Reader)
    reader.tar, reader.path, reader.where, reader.members = tar, image.path, where, image.members
    applier = Applier(dest, where)
    written = 0
    for layer in image.layers:
        digest = str(layer.get("digest", ""))
        stream = _DigestCheck(reader.blob(digest), digest)
        written += applier.apply(stream)  # type: ignore[arg-type]
        if not stream.matches():
            raise BadInput(f"the layer {digest} of {image.path} does not match its digest",
                           where=where, fix="export the image again")  # fmt: skip
    applier.finish()
    return written
