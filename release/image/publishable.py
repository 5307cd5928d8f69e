"""A built image as CVMFS serves it: per architecture a tree and its manifest.

Publishing (a later step) puts each architecture's tree at
`<repo>/containers/<vo>/<image>:<tag>/<arch>/` (plus the `.multiarch/<arch>/` view of
DIRAC#8454) through the same checked transaction as releases and bases
(`cvmfs.publisher.publish` over a `cvmfs.bundles.BundleSet`). What it needs is what a base
gives it: a tree the bundle contract accepts and its manifest, so the unpacked image is laid
out with the base's own helper (`release.base.publishable.stage_tree`, layout "rootfs":
absolute links made relative inside the tree, modes 755/644, empty folders such as /cvmfs
kept by a marker, device nodes never there) and listed with the same manifest helpers. The
image's record (image.json: release, VO, manifest digest) rides along in the manifest, so
the published tree says which OCI image it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.errors import BadInput

if TYPE_CHECKING:
    from release.config import ReleaseConfig


@dataclass
class PublishableImage:
    arch: str
    tree: Path
    manifest: dict[str, Any]
    layout: Path  # the OCI layout, kept beside the tree when published


def product_name(vo: str) -> str:
    """What an image's manifests and CVMFS tags call it: never a product's name."""
    return f"image-{vo}"


def stage_image(record: dict[str, Any], dest: Path) -> PublishableImage:
    """One built architecture (an image.json record from `inspect.built_images`) laid out at
    `dest` with its manifest written in it."""
    from cvmfs import manifest_rules
    from release.base.publishable import stage_tree
    from release.build import manifest as mf

    arch = str(record["arch"])
    source = Path(record["folder"])
    from release.image.oci import load_index

    staged = stage_tree(source, dest, layout="rootfs", arch=arch)
    # The staged files are hardlinks of the built ones: what the build hashed as it wrote
    # them is not read again here (the publisher still reads and checks every byte).
    scan = mf.scan_tree(staged.tree, arch, skip=frozenset({mf.MANIFEST_REL}),
                        known=load_index(source))  # fmt: skip
    mf.raise_wrong_arch(scan, arch, staged.tree)
    image = {k: v for k, v in record.items() if k not in ("folder", "layout")}
    manifest = {
        "schema": mf.SCHEMA,
        "product": product_name(str(record["vo"])),
        "version": record["tag"],
        "tag": record["tag"],
        "platform": arch,
        "image": image,
        "files": scan.files,
        "totals": {"files": len(scan.files), "bytes": scan.total_bytes,
                   "elf_files": scan.elf_files},
        "laid_out": {"relinked": staged.relinked, "normalised": len(staged.normalised),
                     "left_out": staged.left_out},
    }  # fmt: skip
    manifest_rules.validate(f"image {record['vo']} {record['tag']} {arch}", manifest)
    path = mf.manifest_path(staged.tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mf.dump(manifest), encoding="utf-8")
    return PublishableImage(arch, staged.tree, manifest, Path(record["layout"]))


def publishable(
    config: ReleaseConfig,
    *,
    version: str,
    vo: str,
    arches: list[str] | None = None,
    out: Path | None = None,
    staging: Path | None = None,
) -> dict[str, PublishableImage]:
    """Each built architecture of the VO's image for `version`, laid out under `staging`
    (default: `<out>/<vo>/<tag>/.publish/`) as `<arch>/`, with its manifest."""
    from release.image.build import IMAGE_JSON
    from release.image.inspect import built_images

    records = built_images(config, version=version, vo=vo, arches=arches, out=out)
    apart = config.build.jobs > 1 and len(records) > 1

    def one(record: dict[str, Any]) -> PublishableImage:
        folder = Path(record["folder"])
        dest = (staging or folder.parent / ".publish") / str(record["arch"])
        if not apart:
            image = stage_image(record, dest)
        else:
            # Each architecture laid out by a process of its own: walking, linking and
            # listing 12,000 entries is Python work that would take turns on the GIL.
            from release.apart import run_apart
            from release.build import manifest as mf

            run_apart("release.image.publishable", {"record": record, "dest": str(dest)},
                      what=f"laying out the {record['arch']} image", where=str(folder))  # fmt: skip
            manifest = json.loads(mf.manifest_path(dest).read_text(encoding="utf-8"))
            image = PublishableImage(str(record["arch"]), dest, manifest, Path(record["layout"]))
        recorded = json.loads((folder / IMAGE_JSON).read_text(encoding="utf-8"))
        if recorded.get("manifest_digest") != record.get("manifest_digest"):
            raise BadInput(f"{folder} changed while being laid out", where=str(folder),
                           fix="build the image again")  # fmt: skip
        return image

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(config.build.jobs, len(records))) as pool:
        return {image.arch: image for image in pool.map(one, records)}


def _serve_stage(request: dict[str, Any]) -> None:
    stage_image(request["record"], Path(request["dest"]))


if __name__ == "__main__":
    from release.apart import serve

    serve(_serve_stage)
