"""The bundles of one version, loaded and checked before anything is opened.

The contract with the build stage is its output: `<out>/<tag>/Linux-<arch>/` trees carrying
`.dirac-release/manifest.json`, and `SHA256SUMS` over the manifests and tarballs.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release.build import manifest as mf
from release.build.bundle import read_sums
from release.errors import BadInput


@dataclass
class BundleSet:
    product: str
    tag: str
    version_dir: Path
    trees: dict[str, Path] = field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """One digest for the whole release: the named tag maps to it."""
        text = "".join(
            f"{arch} {self.manifest_sha256[arch]}\n" for arch in sorted(self.manifest_sha256)
        )
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def commit(self) -> str | None:
        first = next(iter(self.manifests.values()), {})
        source = first.get("source", {})
        return source.get("commit") if isinstance(source, dict) else None

    def files(self) -> int:
        return sum(len(m["files"]) for m in self.manifests.values())

    def size(self) -> int:
        return sum(int(m["totals"]["bytes"]) for m in self.manifests.values())


def check_paths(arch: str, manifest: dict[str, Any]) -> None:
    """No absolute paths, no `..`, no link that leaves the tree: a bundle stays in its folder."""
    for entry in manifest["files"]:
        path = str(entry.get("path", ""))
        parts = path.split("/")
        if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise BadInput(
                f"the Linux-{arch} manifest lists an unsafe path {path!r}",
                fix="rebuild the bundle with dirac-release build; never edit manifests by hand",
            )
        if "link" in entry:
            target = str(entry["link"])
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise BadInput(
                    f"Linux-{arch}/{path} is a symlink to {target}, outside the bundle",
                    fix="bundles must be self-contained; rebuild without that link",
                )


def load_bundles(
    out: Path, product: str, tag: str, platforms: list[str], *, deep: bool
) -> BundleSet:
    """Load and check the bundles; `deep` also hashes every file (else sizes and counts)."""
    version_dir = out / tag
    sums_path = version_dir / "SHA256SUMS"
    if not sums_path.is_file():
        raise BadInput(
            f"no bundles for {tag} in {out} (missing {sums_path.name})",
            fix=f"build them first: dirac-release build --version {tag}",
        )
    sums = read_sums(sums_path)
    bundles = BundleSet(product=product, tag=tag, version_dir=version_dir)
    for arch in platforms:
        tree = version_dir / f"Linux-{arch}"
        manifest = mf.read_manifest(tree)
        if manifest is None:
            raise BadInput(
                f"platform {arch} is missing from the bundles of {tag} ({tree} has no manifest)",
                fix=f"build it: dirac-release build --version {tag} --platform {arch}",
            )
        if (
            manifest.get("tag") != tag
            or manifest.get("product") != product
            or manifest.get("platform") != arch
        ):
            raise BadInput(
                f"{tree} holds {manifest.get('product')} {manifest.get('tag')} for "
                f"{manifest.get('platform')}, not {product} {tag} for {arch}",
                fix="publish the version the bundles were built for, or rebuild them",
            )
        rel = f"Linux-{arch}/.dirac-release/manifest.json"
        actual = hashlib.sha256(mf.manifest_path(tree).read_bytes()).hexdigest()
        if sums.get(rel) != actual:
            raise BadInput(
                f"{rel} does not match SHA256SUMS",
                where=str(version_dir),
                fix=f"the bundle changed after it was built: rebuild with dirac-release build --version {tag} --refresh",
            )
        check_paths(arch, manifest)
        problems = (
            mf.verify_tree(tree, manifest)
            if deep
            else ([] if mf.quick_check(tree, manifest) else ["sizes or file count differ"])
        )
        if problems:
            shown = "; ".join(problems[:5]) + (
                f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            )
            raise BadInput(
                f"the Linux-{arch} bundle does not match its manifest: {shown}",
                where=str(tree),
                fix=f"rebuild it: dirac-release build --version {tag} --refresh",
            )
        bundles.trees[arch] = tree
        bundles.manifests[arch] = manifest
        bundles.manifest_sha256[arch] = actual
    return bundles
