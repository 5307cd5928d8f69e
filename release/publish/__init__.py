"""The publish stage: the toolkit's side of CVMFS publishing (config, bundles, ledger, output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release.config import ReleaseConfig
from release.errors import BadInput
from release.version import ReleaseVersion, parse_tag, parse_version_arg


def release_key(name: str) -> tuple[str, ReleaseVersion] | None:
    """What retention needs of a folder name: its series and version, None if not a tag."""
    try:
        version = parse_tag(name)
    except BadInput:
        return None
    return version.series, version


def pilot_extras(
    config: ReleaseConfig, product: str, tag: str, version_dir: str, out: Path
) -> dict[str, tuple[str, Path, dict[str, Any]]]:
    """Repository path -> (VO, checked tree, manifest) of the product's pilot files, which
    `pilot build` wrote in `<out>/pilots/` beside the bundles."""
    if not config.product_pilots(product):
        return {}
    from release.pilot.layout import version_rel
    from release.pilot.publishable import stage

    staged = stage(config, product, tag, out / "pilots")
    return {
        version_rel(version_dir, vo): (vo, tree, manifest)
        for vo, (tree, manifest) in staged.items()
    }


def _checksums_digest(tree: Path) -> str:
    """The sha512 of a pilot folder's checksums.sha512: one value naming all its files."""
    from release.pilot.archive import CHECKSUMS_NAME, sha512

    return sha512((tree / CHECKSUMS_NAME).read_bytes())


def publish_release(
    config: ReleaseConfig,
    *,
    version: str,
    product_name: str | None = None,
    repository: str | None = None,
    out: Path | None = None,
    plan: bool = False,
    step: Any = None,
) -> dict[str, Any]:
    """Publish the built bundles of one version; record the publication in the ledger."""
    from cvmfs.bundles import load_bundles
    from cvmfs.publisher import publish
    from release.targets import for_product

    target = for_product(config, product_name, repository)
    name, repo = target.product_name, target.repo
    release_version = parse_version_arg(version)
    out = (out or config.resolve_path(config.build.out)).absolute()
    # The trees' content is checked file by file by the publisher itself (in the plan, and as
    # it copies): here only what SHA256SUMS and the manifests say is loaded and checked.
    # The manifest rules and the tarballs SHA256SUMS lists are checked by the publisher, only
    # when it has something to publish (before anything is opened).
    bundles = load_bundles(out, name, release_version.tag, list(config.platforms), deferred=True)
    backend = target.backend()
    layout = target.layout
    tag_name = target.tag_name(release_version.tag)
    ledger = config.ledger(name, release_version.tag)
    # The product's VOs' pilot files go with the release, in its transaction and its folder.
    pilots = pilot_extras(config, name, release_version.tag, layout.version_dir(release_version.tag),
                          out)  # fmt: skip
    publication = publish(
        backend,
        layout,
        bundles,
        tag_name=tag_name,
        links=repo.links,
        wait_s=repo.wait,
        plan=plan,
        step=step,
        extras={rel: (tree, manifest) for rel, (_vo, tree, manifest) in pilots.items()},
    )
    result = {"product": name, "version": str(release_version), **publication.as_dict()}
    result["pilots"] = {
        vo: {"path": layout.client_path(rel), "files": manifest["totals"]["files"],
             "checksums_sha512": _checksums_digest(tree)}
        for rel, (vo, tree, manifest) in pilots.items()
    }  # fmt: skip
    if not plan:
        earlier = [r for r in ledger.records("publish") if r.get("repository") == target.repo_name]
        if publication.status != "already published" or not earlier:
            ledger.record("publish", result)
    return result


def repository_status(config: ReleaseConfig, repository: str | None) -> dict[str, Any]:
    from cvmfs.layout import PRO_LINK
    from release.targets import make_backend

    repo_name, repo = config.repository(repository)
    backend = make_backend(config, repo_name, repo)
    status = backend.status()
    entries = backend.entries(repo.prefix) if status.exists else {}
    return {
        "repository": repo_name,
        "backend": backend.kind,
        "exists": status.exists,
        "revision": status.revision,
        "prefix": repo.prefix,
        "versions": sorted(name for name, target in entries.items() if target is None),
        "links": {name: target for name, target in entries.items() if target is not None},
        "pro": entries.get(PRO_LINK),
        "tags": [tag.__dict__ for tag in (backend.tags() if status.exists else [])],
        "transactions": [txn.describe() for txn in status.transactions],
        "whitelist_expires": status.whitelist_expires.isoformat()
        if status.whitelist_expires
        else None,
    }


def collect_garbage(config: ReleaseConfig, repository: str | None, *, plan: bool) -> dict[str, Any]:
    """Remove versions beyond the retention, in one transaction; never a linked one."""
    from cvmfs.backends.base import Owner
    from cvmfs.retention import plan_retention
    from release.image.publish import images_of
    from release.targets import make_backend

    repo_name, repo = config.repository(repository)
    backend = make_backend(config, repo_name, repo)
    retention = plan_retention(backend.entries(repo.prefix), repo.keep, version_key=release_key)
    images = images_of(backend, repo.prefix, retention.remove)
    result: dict[str, Any] = {
        "repository": repo_name,
        "keep": retention.keep,
        "remove": retention.remove,
        "images": images,
        "reasons": retention.reasons,
        "status": "planned" if plan else "nothing to remove",
    }
    if plan or not retention.remove:
        return result
    txn = backend.open(repo.prefix, Owner.me("gc"), repo.wait)
    try:
        # Decide again under the lock: a link may have moved while we waited for it.
        retention = plan_retention(backend.entries(repo.prefix), repo.keep, version_key=release_key)
        images = images_of(backend, repo.prefix, retention.remove)
        result.update(keep=retention.keep, remove=retention.remove, reasons=retention.reasons,
                      images=images)  # fmt: skip
        if not retention.remove:
            txn.abort()
            result["status"] = "nothing to remove"
            return result
        # Each version's images (and their .multiarch links) go with it, in this transaction:
        # an image is certified for one release and never outlives it.
        for rel in [*(f"{repo.prefix}/{name}" for name in retention.remove), *images]:
            txn.remove(rel)
        result["revision"] = txn.publish(
            None, f"retention: remove {', '.join(retention.remove)}", ""
        )
    except BaseException:
        txn.abort()
        raise
    result["status"] = "removed"
    return result


def init_repository(config: ReleaseConfig, repository: str | None) -> dict[str, Any]:
    from cvmfs.backends.directory import DirectoryBackend
    from release.targets import make_backend

    repo_name, repo = config.repository(repository)
    backend = make_backend(config, repo_name, repo)
    if not isinstance(backend, DirectoryBackend):
        raise BadInput(
            f"{repo_name} uses the {repo.backend} backend",
            fix="a server repository is created by its administrator: cvmfs_server mkfs",
        )
    created = backend.init()
    return {"repository": repo_name, "path": str(backend.root), "created": created}


def abort_stale(config: ReleaseConfig, repository: str | None, *, stale: bool) -> dict[str, Any]:
    """Clear a transaction whose publisher died. Never a live one: there is no --force."""
    from release.targets import make_backend

    if not stale:
        raise BadInput(
            "cvmfs abort only clears a transaction whose process is gone",
            fix="say so explicitly: dirac-release cvmfs abort --stale [--repository R]",
        )

    repo_name, repo = config.repository(repository)
    backend = make_backend(config, repo_name, repo)
    return {"repository": repo_name, "cleared": backend.clear_stale(None)}
