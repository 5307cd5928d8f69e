"""The bundles of one version, loaded and checked before anything is opened.

The contract with the build stage is its output: `<out>/<tag>/Linux-<arch>/` trees carrying
`.dirac-release/manifest.json`, and `SHA256SUMS` over the manifests and tarballs. The
publisher trusts none of it: SHA256SUMS must be well formed and every file it lists must hash
to its line, each manifest must pass the manifest rules (shape, paths, links), and the trees
themselves are checked file by file against the manifests by `cvmfs.tree_check`, in the plan
and in the publish alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvmfs import bundle_contract, manifest_rules
from cvmfs.errors import BadInput
from cvmfs.safe_fs import NotSafe, open_regular_at, read_small

#: No real manifest comes near this (10,000 files are ~2 MB); a larger one is refused unread.
MAX_MANIFEST_BYTES = 256 << 20
MAX_SUMS_BYTES = 1 << 20


@dataclass
class BundleSet:
    product: str
    tag: str
    version_dir: Path
    trees: dict[str, Path] = field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest_sha256: dict[str, str] = field(default_factory=dict)
    #: The other files SHA256SUMS lists (the tarballs: name -> sha256), and the platforms
    #: whose manifests the rules have not been run on yet: both left to `check_deferred`.
    listed: dict[str, str] = field(default_factory=dict)
    unchecked: list[str] = field(default_factory=list)

    def check_deferred(self) -> None:
        """What loading with `deferred` left: every manifest passes the manifest rules, and
        every other file SHA256SUMS lists is there and hashes to its line.

        Not part of loading for the publisher: a rerun that finds this very release published
        (its tag recording these manifests' digest, so bytes the rules passed when it was
        published) should not run the rules over 18,000 entries again, nor read the
        tarballs' hundreds of megabytes (they are not published to CVMFS). Every publication
        and plan calls this before anything is opened.
        """
        for arch in list(self.unchecked):
            manifest_rules.validate(f"Linux-{arch}", self.manifests[arch])
            self.unchecked.remove(arch)
        for name, digest in sorted(self.listed.items()):
            actual_file = _sha256_of(self.version_dir, name)
            if actual_file != digest:
                raise BadInput(
                    f"{name} "
                    + ("is missing" if actual_file is None else "does not match SHA256SUMS"),
                    where=str(self.version_dir),
                    fix=f"the bundles changed after they were built: {rebuild_fix(self.tag)}",
                )
        self.listed.clear()

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
        commit = source.get("commit") if isinstance(source, dict) else None
        return (
            commit if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{7,64}", commit) else None
        )

    def files(self) -> int:
        return sum(len(m["files"]) for m in self.manifests.values())

    def size(self) -> int:
        return sum(int(m["totals"]["bytes"]) for m in self.manifests.values())


def rebuild_fix(tag: str) -> str:
    return f"rebuild the bundles: dirac-release build --version {tag} --refresh"


def read_sums(path: Path, tag: str) -> dict[str, str]:
    """SHA256SUMS as name -> digest; any line that is not `<sha256>  <name>` is bad input."""
    raw = read_small(path, limit=MAX_SUMS_BYTES, what="SHA256SUMS", fix=rebuild_fix(tag))
    if raw is None:
        raise BadInput(
            f"no bundles for {tag} (missing {path.name})",
            where=str(path.parent),
            fix=f"build them first: dirac-release build --version {tag}",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"SHA256SUMS is not UTF-8 text (byte {exc.start})",
            where=str(path),
            fix=rebuild_fix(tag),
        ) from None
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        parsed = bundle_contract.parse_sums_line(line)
        if parsed is None:
            raise BadInput(
                f"SHA256SUMS line {number} is not '<sha256>  <relative name>'",
                where=str(path),
                fix=rebuild_fix(tag),
            )
        name, digest = parsed
        if name in sums:
            raise BadInput(f"SHA256SUMS lists {name} twice", where=str(path), fix=rebuild_fix(tag))
        sums[name] = digest
    return sums


def _sha256_of(version_dir: Path, name: str) -> str | None:
    """The digest of a listed file, read without following links; None when it is missing."""
    try:
        fd, _st = open_regular_at(None, str(version_dir / name), name)
    except NotSafe as exc:
        if exc.what == "missing":
            return None
        raise BadInput(
            f"{name}, listed in SHA256SUMS, {exc.what}", where=str(version_dir)
        ) from None
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_manifest_file(
    tree: Path, arch: str, tag: str, *, rules: bool = True
) -> tuple[dict[str, Any], bytes]:
    """The manifest of one platform tree, with a message for each way it can be wrong.

    `rules=False`: a JSON object of our schema is returned without the manifest rules
    (`BundleSet.check_deferred` runs them); anything else is still refused here."""
    path = tree / manifest_rules.MANIFEST_REL
    label = f"Linux-{arch}"
    raw = read_small(path, limit=MAX_MANIFEST_BYTES, what="the manifest", fix=rebuild_fix(tag))
    if raw is None:
        raise BadInput(
            f"platform {arch} is missing from the bundles of {tag} ({tree} has no manifest)",
            fix=f"build it: dirac-release build --version {tag} --platform {arch}",
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"the {label} manifest is not UTF-8 text (byte {exc.start})",
            where=str(path),
            fix=rebuild_fix(tag),
        ) from None
    except RecursionError:
        raise BadInput(
            f"the {label} manifest nests too deeply to be one",
            where=str(path),
            fix=rebuild_fix(tag),
        ) from None
    except ValueError as exc:
        raise BadInput(
            f"the {label} manifest is not valid JSON: {exc}", where=str(path), fix=rebuild_fix(tag)
        ) from None
    if isinstance(data, dict) and data.get("schema") != manifest_rules.SCHEMA:
        raise BadInput(
            f"the {label} manifest is not a {manifest_rules.SCHEMA} manifest "
            f"(schema {str(data.get('schema'))[:60]!r})",
            where=str(path),
            fix=rebuild_fix(tag),
        )
    if not rules and isinstance(data, dict):
        return data, raw
    return manifest_rules.validate(label, data), raw


def load_bundles(
    out: Path, product: str, tag: str, platforms: list[str], *, deferred: bool = False
) -> BundleSet:
    """Load the bundles and check everything but the trees' content (see cvmfs.tree_check).

    `deferred` leaves the manifest rules and the other files SHA256SUMS lists to
    `BundleSet.check_deferred`, which `cvmfs.publisher.publish` calls before it opens
    anything (a rerun that finds the release published skips them)."""
    version_dir = out / tag
    sums_path = version_dir / bundle_contract.SUMS_NAME
    sums = read_sums(sums_path, tag)
    bundles = BundleSet(product=product, tag=tag, version_dir=version_dir)
    for arch in platforms:
        tree = version_dir / f"Linux-{arch}"
        manifest, raw = read_manifest_file(tree, arch, tag, rules=not deferred)
        if deferred:
            bundles.unchecked.append(arch)
        if (
            manifest.get("tag") != tag
            or manifest.get("product") != product
            or manifest.get("platform") != arch
        ):
            if deferred:  # a malformed manifest is named by the rules, which say more
                manifest_rules.validate(f"Linux-{arch}", manifest)
            shown = [str(manifest.get(key))[:60] for key in ("product", "tag", "platform")]
            raise BadInput(
                f"{tree} holds {shown[0]} {shown[1]} for {shown[2]}, not {product} {tag} for {arch}",
                fix="publish the version the bundles were built for, or rebuild them",
            )
        rel = f"Linux-{arch}/{manifest_rules.MANIFEST_REL}"
        actual = bundle_contract.digest_bytes(raw)
        if sums.get(rel) != actual:
            raise BadInput(
                f"{rel} does not match SHA256SUMS"
                + ("" if rel in sums else " (it is not listed there)"),
                where=str(version_dir),
                fix=f"the bundle changed after it was built: {rebuild_fix(tag)}",
            )
        bundles.trees[arch] = tree
        bundles.manifests[arch] = manifest
        bundles.manifest_sha256[arch] = actual
    # Everything else SHA256SUMS lists (the tarballs) must be there and hash to its line:
    # checked by the publisher (check_deferred) when there is something to publish.
    for name, digest in sorted(sums.items()):
        if name.endswith(manifest_rules.MANIFEST_REL):
            arch = name.split("/", 1)[0].removeprefix("Linux-")
            if arch in bundles.manifests:
                continue
        bundles.listed[name] = digest
    if not deferred:
        bundles.check_deferred()
    return bundles
