"""`dirac-release image publish`: a VO's image for a release onto CVMFS, both arches at once.

Layout (under the repository's prefix; `<image>` is the VO's name, `<tag>` the release):

    containers/<vo>/<image>:<tag>/.cvmfscatalog       one nested catalog per image
    containers/<vo>/<image>:<tag>/<arch>/             the unpacked tree SingularityCE runs
    containers/<vo>/<image>:<tag>/oci/<arch>/         the OCI layout it was unpacked from
    containers/<vo>/.multiarch/<oci arch>/<image>:<tag>   -> ../../<image>:<tag>/<arch>
    containers/<vo>/.multiarch/<arch>/<image>:<tag>       -> ../../<image>:<tag>/<arch>

The `.multiarch/<oci arch>/` view (amd64, arm64) is the one DIRAC#8454 describes and
unpacked.cern.ch serves: DIRAC maps the node's `uname -m` to the OCI name and finds its own
architecture's tree. The same links under `uname -m`'s names (x86_64, aarch64) serve a
ContainerRoot in which `{arch}` is replaced by the node's `uname -m`. Its links are relative,
so they hold on every client mount point. The OCI layouts travel as `extras` of
the same transaction, so an image's tree and layout appear together or not at all. ':' is
accepted in CVMFS paths and by both backends (the entry names come from a validated VO and
release tag, neither of which may hold '/').
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvmfs.layout import Layout

if TYPE_CHECKING:
    from release.config import ReleaseConfig

CONTAINERS_FOLDER = "containers"
MULTIARCH = ".multiarch"
ARCHES = ("x86_64", "aarch64")
#: The OCI name of each architecture (image-spec's GOARCH values), as `.multiarch/` uses them.
OCI_NAMES = {"x86_64": "amd64", "aarch64": "arm64"}


def view_names(arch: str) -> tuple[str, str]:
    """The `.multiarch/` folders an architecture's tree is linked from: its OCI name
    (DIRAC#8454, unpacked.cern.ch), then `uname -m`'s."""
    return (OCI_NAMES[arch], arch)


@dataclass(frozen=True)
class ImageLayout(Layout):
    """A release layout whose platform folders are named by the bare arch (`x86_64`), as
    unpacked.cern.ch and DIRAC#8454 name them, rather than `Linux-<arch>`."""

    def platform_dir(self, tag: str, arch: str) -> str:
        return f"{self.prefix}/{tag}/{arch}"


def image_layout(repository: str, prefix: str, vo: str) -> ImageLayout:
    """Where a VO's images live in a repository: `<prefix>/containers/<vo>/`."""
    return ImageLayout(repository, f"{prefix}/{CONTAINERS_FOLDER}/{vo}")


def image_name(config: ReleaseConfig, vo: str) -> str:
    """The image's name in its path: `[images.<vo>] name`, else the VO's own."""
    return config.images[vo].name or vo


def image_entry(name: str, tag: str) -> str:
    return f"{name}:{tag}"


def container_root(
    repository: str, prefix: str, vo: str, name: str, tag: str, arch: str | None
) -> str:
    """The ContainerRoot a site sets on its SingularityComputingElement: through the
    `.multiarch` view, one architecture (its OCI name's folder, as DIRAC#8454 resolves it)
    or (arch None) the `{arch}` form, for a DIRAC that puts the node's `uname -m` there."""
    shown = OCI_NAMES[arch] if arch else "{arch}"
    entry = image_entry(name, tag)
    return f"/cvmfs/{repository}/{prefix}/{CONTAINERS_FOLDER}/{vo}/{MULTIARCH}/{shown}/{entry}"


def _repository(config: ReleaseConfig, vo: str, repository: str | None) -> tuple[str, Any]:
    """`--repository`, else the one of the image's product (`[images.<vo>] product`, else
    the only product): an image goes where the release it was built for is read from."""
    settings = config.images[vo]
    name = settings.product or (next(iter(config.products)) if len(config.products) == 1 else None)
    product = config.products.get(name) if name else None
    return config.repository(repository, product)


def _layout_manifest(layout: Path, tag: str, vo: str, arch: str) -> dict[str, Any]:
    """A manifest of an OCI layout folder, so the publisher checks it file by file."""
    import os

    from release.build import manifest as mf
    from release.image.oci import HEAD

    def named_by_digest(rel: str, _st: os.stat_result) -> tuple[str, bytes] | None:
        # A blob's name is its sha256: taken as the claim the publisher checks as it copies.
        folder, _sep, name = rel.rpartition("/")
        if folder != "blobs/sha256" or len(name) != 64:
            return None
        with (layout / rel).open("rb") as blob:
            return name, blob.read(HEAD)

    scan = mf.scan_tree(layout, arch, skip=frozenset({mf.MANIFEST_REL}), known=named_by_digest)
    return {
        "schema": mf.SCHEMA,
        "product": f"image-{vo}-oci",
        "version": tag,
        "tag": tag,
        "platform": arch,
        "files": scan.files,
        "totals": {"files": len(scan.files), "bytes": scan.total_bytes, "elf_files": 0},
    }


def _stage_layout(
    source: Path, dest: Path, tag: str, vo: str, arch: str
) -> tuple[Path, dict[str, Any]]:
    """A copy of the OCI layout (hardlinked where possible) with its manifest written in it."""
    import os
    import shutil

    from release.build import manifest as mf

    if dest.exists():
        shutil.rmtree(dest)

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    shutil.copytree(source, dest, copy_function=link_or_copy)
    manifest = _layout_manifest(dest, tag, vo, arch)
    path = mf.manifest_path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mf.dump(manifest), encoding="utf-8")
    return dest, manifest


def publish_images(
    config: ReleaseConfig,
    *,
    version: str,
    vo: str | None = None,
    repository: str | None = None,
    out: Path | None = None,
    plan: bool = False,
    step: Any = None,
) -> list[dict[str, Any]]:
    """Publish each VO's built image (every architecture built) in one transaction per VO."""
    from cvmfs.bundles import BundleSet
    from cvmfs.publisher import publish
    from release.build import manifest as mf
    from release.image.build import pick_vos
    from release.image.publishable import product_name, publishable
    from release.targets import make_backend
    from release.version import parse_version_arg

    tag = parse_version_arg(version).tag
    say = step or (lambda _text: None)
    results: list[dict[str, Any]] = []
    for name in pick_vos(config, vo):
        repo_name, repo = _repository(config, name, repository)
        wanted: list[str] = list(config.platforms)  # every platform: an image is published whole
        say(f"laying out the image of {name}")
        staged = publishable(config, version=tag, vo=name, arches=wanted, out=out)
        image = image_name(config, name)
        entry = image_entry(image, tag)
        layout = image_layout(repo_name, repo.prefix, name)
        trees = {arch: s.tree for arch, s in staged.items()}
        bundles = BundleSet(
            product=product_name(name),
            tag=entry,
            version_dir=next(iter(trees.values())).parent,
            trees=trees,
            manifests={arch: s.manifest for arch, s in staged.items()},
            manifest_sha256={
                arch: mf.manifest_digest(mf.manifest_path(s.tree)) for arch, s in staged.items()
            },
        )
        extras = {}
        for arch, s in staged.items():
            dest = s.tree.parent / "oci" / arch
            extras[f"{layout.version_dir(entry)}/oci/{arch}"] = _stage_layout(
                s.layout, dest, tag, name, arch
            )
        views = tuple(
            (f"{layout.prefix}/{MULTIARCH}/{name}", entry, f"../../{entry}/{arch}")
            for arch in sorted(staged)
            for name in view_names(arch)
        )
        backend = make_backend(config, repo_name, repo)
        publication = publish(
            backend,
            layout,
            bundles,
            tag_name=f"image-{name}-{tag}",
            wait_s=repo.wait,
            plan=plan,
            step=say,
            extras=extras,
            views=views,
        )
        results.append({
            "vo": name,
            "image": image,
            "version": tag,
            "platforms": sorted(staged),
            "digests": {arch: s.manifest["image"].get("manifest_digest") for arch, s in staged.items()},
            "container_root": {
                arch: container_root(repo_name, repo.prefix, name, image, tag, arch) for arch in sorted(staged)
            },
            "container_root_any": container_root(repo_name, repo.prefix, name, image, tag, None),
            **publication.as_dict(),
        })  # fmt: skip
    if not plan:
        for result in results:
            product = config.images[result["vo"]].product
            config.ledger(config.product(product)[0], tag).record("image publish", {
                key: result.get(key) for key in
                ("vo", "image", "status", "tag", "revision", "repository", "digests",
                 "container_root")
            })  # fmt: skip
    return results


def container_roots(
    config: ReleaseConfig,
    *,
    version: str,
    vo: str | None = None,
    repository: str | None = None,
    arches: list[str] | None = None,
) -> list[dict[str, str]]:
    """Per VO and architecture the ContainerRoot a site sets (plus the `{arch}` form):
    computed from the configuration, so it can be given to sites before publishing."""
    from release.image.build import pick_vos
    from release.version import parse_version_arg

    tag = parse_version_arg(version).tag
    roots: list[dict[str, str]] = []
    for name in pick_vos(config, vo):
        repo_name, repo = _repository(config, name, repository)
        image = image_name(config, name)
        wanted: list[str | None] = [*(arches or config.platforms)]
        if not arches:
            wanted.append(None)  # the {arch} form, for a site serving both
        for arch in wanted:
            roots.append({
                "vo": name, "arch": arch or "{arch}",
                "container_root": container_root(repo_name, repo.prefix, name, image, tag, arch),
            })  # fmt: skip
    return roots


def images_of(backend: Any, prefix: str, tags: list[str]) -> list[str]:
    """The repository paths of the images of the release versions `tags`, and of their
    `.multiarch` links: what retention removes with those versions.

    An image follows its release: it is built and certified for that release only, so it is
    kept exactly as long as the release is (never a link to a tree that is gone, never a tree
    no link or release needs). Images whose release was never in this repository are not
    touched.
    """
    wanted = set(tags)
    root = f"{prefix}/{CONTAINERS_FOLDER}"
    paths: list[str] = []
    for vo, target in sorted(backend.entries(root).items()):
        if target is not None:
            continue
        folder = f"{root}/{vo}"
        for entry, kind in sorted(backend.entries(folder).items()):
            # Any image of the VO's folder (`[images.<vo>] name` may have changed since).
            name, _sep, tag = entry.rpartition(":")
            if kind is None and name and tag in wanted:
                paths.append(f"{folder}/{entry}")
        multiarch = f"{folder}/{MULTIARCH}"
        # entries() hides dot-folders: .multiarch is read by name, both names of each arch.
        for arch in (*ARCHES, *OCI_NAMES.values()):
            for entry, link in sorted(backend.entries(f"{multiarch}/{arch}").items()):
                _name, _sep, tag = entry.rpartition(":")
                if link is not None and tag in wanted:
                    paths.append(f"{multiarch}/{arch}/{entry}")
    return paths
