"""Small synthetic root filesystems and OCI archives for the image tests.

A "Debian base" here is a few files where `release.base.debian.cached_path(arch)` looks
(XDG_CACHE_HOME points into the test's folder): an os-release, a dpkg status, a program whose
ELF header names the architecture, and the awkward entries a real base has (hardlinks,
absolute links, a long path, set-uid, a FIFO, a read-only folder).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from release.image import oci

MACHINE = {"x86_64": 62, "aarch64": 183}
DOC_TIME = 1_700_000_000
LONG = "usr/share/" + "/".join(["a-rather-long-folder-name"] * 5) + "/file.txt"


def elf(arch: str) -> bytes:
    """The first bytes of a 64-bit little-endian executable for `arch`."""
    return b"\x7fELF\x02\x01\x01" + b"\0" * 11 + MACHINE[arch].to_bytes(2, "little") + b"\0" * 44


def make_rootfs(root: Path, arch: str, *, packages: tuple[str, ...] = ("python3", "openssl"),
                elf_arch: str | None = None) -> Path:  # fmt: skip
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=debian\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/env").write_bytes(elf(elf_arch or arch))
    (root / "usr/bin/env").chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/su").write_bytes(b"#!/bin/sh\n")
    (root / "usr/bin/su").chmod(0o4755)
    (root / "usr/bin/python3.11").write_bytes(elf(elf_arch or arch) + b"python")
    os.link(root / "usr/bin/python3.11", root / "usr/bin/python3")
    os.link(root / "usr/bin/python3.11", root / "usr/bin/a-python")  # sorts first: linked later
    (root / "lib64").mkdir()
    (root / "lib64/ld.so").symlink_to("/usr/lib/ld.so")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("".join(
        f"Package: {p}\nStatus: install ok unpacked\nArchitecture: any\nVersion: 1.0-1\n\n"
        for p in packages))  # fmt: skip
    doc = root / "usr/share/doc/python3"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("MIT\n")
    os.utime(doc / "copyright", (DOC_TIME, DOC_TIME))
    (root / LONG).parent.mkdir(parents=True)
    (root / LONG).write_text("long\n")
    (root / "dev").mkdir()
    os.mkfifo(root / "dev/initctl")
    (root / "proc").mkdir()
    (root / "proc").chmod(0o555)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    return root


def debian_base(cache: Path, arch: str, **kwargs: object) -> Path:
    """A synthetic base where the build looks for the cached Debian base of `arch`."""
    return make_rootfs(cache / "dirac-release" / "bases" / f"bookworm-{arch}-dirac", arch,
                       **kwargs)  # type: ignore[arg-type]  # fmt: skip


def image_site(root: Path, cache: Path, monkeypatch: Any, repository: str) -> Path:
    """A folder to build and publish images in: the synthetic Debian base of both
    architectures where the build looks (`cache`: the test's XDG cache), and an empty
    directory stratum `root/stratum` holding `repository`. Builds depend on the bases alone
    (no SOURCE_DATE_EPOCH from the caller's shell)."""
    from cvmfs.backends.directory import DirectoryBackend

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for arch in ("x86_64", "aarch64"):
        debian_base(cache, arch)
    DirectoryBackend(repository, root / "stratum").init()
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def layer_bytes(members: list[tarfile.TarInfo], files: dict[str, bytes]) -> bytes:
    """A plain tar layer from TarInfos (with `files` giving the content of regular ones)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            data = files.get(info.name)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def oci_archive(path: Path, *, architecture: str, layers: list[bytes],
                created: str = "2024-05-01T00:00:00Z") -> Path:  # fmt: skip
    """An `oci-archive` (a tar of an OCI layout) of one image with plain tar layers."""
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> dict[str, object]:
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_descs = [{"mediaType": oci.MEDIA_LAYER_TAR, **put(data)} for data in layers]
    diff_ids = [d["digest"] for d in layer_descs]
    config = {"architecture": architecture, "os": "linux", "created": created,
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}  # fmt: skip
    manifest = {"schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST,
                "config": {"mediaType": oci.MEDIA_CONFIG, **put(oci.canonical(config))},
                "layers": layer_descs}  # fmt: skip
    manifest_desc = {"mediaType": oci.MEDIA_MANIFEST, **put(oci.canonical(manifest))}
    index = {"schemaVersion": 2, "manifests": [manifest_desc]}
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            _add(tar, f"blobs/sha256/{digest[7:]}", data)
    return path


def dir_info(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def file_info(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def el9_layers(arch: str) -> list[bytes]:
    """Two layers of a small 'EL9' image: the second removes a file and empties a folder."""
    first = layer_bytes(
        [dir_info("etc"), file_info("etc/os-release"), dir_info("usr"), dir_info("usr/bin"),
         file_info("usr/bin/env", 0o755), file_info("etc/old.conf"), dir_info("var"),
         dir_info("var/cache"), file_info("var/cache/junk")],
        {"etc/os-release": b'ID="almalinux"\nPRETTY_NAME="AlmaLinux 9"\n',
         "usr/bin/env": elf(arch), "etc/old.conf": b"old\n", "var/cache/junk": b"junk\n"},
    )  # fmt: skip
    second = layer_bytes(
        [file_info("etc/.wh.old.conf"), file_info("var/cache/.wh..wh..opq"),
         file_info("etc/new.conf")],
        {"etc/.wh.old.conf": b"", "var/cache/.wh..wh..opq": b"", "etc/new.conf": b"new\n"},
    )  # fmt: skip
    return [first, second]
