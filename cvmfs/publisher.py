"""The publication protocol: preflight, one transaction, sync, verify, publish, verify again.

Any failure between opening and publishing aborts this publisher's own transaction, so no part
of a version ever becomes visible; a release already published with the same content is a
no-op; the same tag with other content is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvmfs import failpoints
from cvmfs.backends.base import Backend, Owner, Transaction
from cvmfs.bundles import BundleSet
from cvmfs.errors import BadInput, CheckFailed
from cvmfs.layout import Layout
from cvmfs.tree_check import check_tree

WHITELIST_WARN_S = 12 * 3600
Step = Callable[[str], None]


@dataclass
class Publication:
    repository: str
    backend: str
    tag: str
    version_dir: str
    paths: list[str]
    digest: str
    revision: int | None
    status: str  # published | already published | planned | nothing to publish
    links: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "backend": self.backend,
            "tag": self.tag,
            "version_dir": self.version_dir,
            "paths": self.paths,
            "digest": self.digest,
            "revision": self.revision,
            "status": self.status,
            "links": self.links,
            "manifests": self.manifests,
            "notes": self.notes,
            "actions": self.actions,
            "seconds": round(self.seconds, 3),
        }


def _published_digest(backend: Backend, layout: Layout, bundles: BundleSet) -> dict[str, bool]:
    """Per platform: does the published manifest equal the bundle's?"""
    same = {}
    for arch, manifest in bundles.manifests.items():
        published = backend.read_manifest(layout.platform_dir(bundles.tag, arch))
        same[arch] = published == manifest
    return same


def _every_tree(
    bundles: BundleSet,
    extras: dict[str, tuple[Path, dict[str, Any]]],
    check: Callable[[str, dict[str, Any]], list[str]],
) -> list[str]:
    """One check per platform and per extra tree, all at once (hashing releases the GIL):
    every problem found, the platforms' first. `check` gets a repository path or, for a
    platform, its name, and the manifest."""
    jobs = [(arch, bundles.manifests[arch]) for arch in bundles.trees]
    jobs += [(rel, manifest) for rel, (_tree, manifest) in extras.items()]
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        found = pool.map(lambda job: check(*job), jobs)
        return [problem for problems in found for problem in problems]


def _already_published(
    backend: Backend,
    layout: Layout,
    bundles: BundleSet,
    tag_name: str,
    links: tuple[str, ...],
    result: Publication,
    extras: dict[str, tuple[Path, dict[str, Any]]],
    views: tuple[tuple[str, str, str], ...] = (),
) -> bool:
    """True (result filled in) when this very release is published; BadInput on a conflict."""
    existing = {tag.name: tag for tag in backend.tags()}
    if tag_name not in existing:
        return False
    same = _published_digest(backend, layout, bundles)
    if existing[tag_name].digest in (bundles.digest, "") and all(same.values()):
        # What went with the release in its transaction (pilot files, installers) is part
        # of it: a rerun that brings other files there is not "the same release".
        other = [rel for rel, (_tree, manifest) in extras.items()
                 if backend.read_manifest(rel) != manifest]  # fmt: skip
        if other:
            raise BadInput(
                f"{tag_name} is already published in {layout.repository}, but not with "
                f"these files at {', '.join('/' + rel for rel in other)}",
                fix="what was published with a release never changes: release a new version "
                "(or rebuild exactly what was published)",
            )
        # "Already published" is a claim about what clients get: look at the trees, not only
        # at the manifests, before making it (a fast look: a rerun stays well under a second;
        # `dirac-release run` and certify check every file's content).
        problems = [
            f"Linux-{arch}: {problem}"
            for arch in sorted(bundles.trees)
            for problem in backend.verify_published(
                layout.platform_dir(bundles.tag, arch), bundles.manifests[arch], shallow=True
            )
        ]
        problems += [
            f"/{rel}: {problem}"
            for rel, (_tree, manifest) in extras.items()
            for problem in backend.verify_published(rel, manifest, shallow=True)
        ]
        # The views set in its transaction (an image's .multiarch links) are part of it too.
        for folder, name, target in views:
            present = backend.entries(folder)
            if present.get(name) != target:
                now = ("missing" if name not in present else
                       "not a link" if present[name] is None else f"-> {present[name]}")  # fmt: skip
                problems.append(f"/{folder}/{name} is {now}, not -> {target}")
        if problems:
            raise CheckFailed(
                f"{tag_name} is published in {layout.repository} but no longer matches its "
                f"manifests: {'; '.join(problems[:5])}",
                fix="a published release is never overwritten: investigate the repository "
                "(who changed it), restore the revision (cvmfs_server rollback), or release a "
                "new version",
            )
        result.status = "already published"
        result.revision = existing[tag_name].revision
        entries = backend.entries(layout.prefix)
        result.links = {name: str(entries.get(name)) for name in links}  # as they are now
        return True
    if bundles.tag not in backend.entries(layout.prefix):
        raise BadInput(
            f"{bundles.tag} was published as {tag_name} (revision {existing[tag_name].revision}) "
            f"and has since been removed from {layout.repository} by retention",
            fix="a release is never published twice under one tag: release a new version, or "
            "restore the old revision (cvmfs_server rollback) if it must come back",
        )
    differing = [arch for arch, ok in same.items() if not ok] or sorted(same)
    raise BadInput(
        f"tag {tag_name} is already published in {layout.repository} with other content "
        f"(differs for: {', '.join(differing)})",
        fix="a published release is never overwritten: release a new version instead",
    )


def publish(
    backend: Backend,
    layout: Layout,
    bundles: BundleSet,
    *,
    tag_name: str,
    links: tuple[str, ...] = (),
    wait_s: float = 120.0,
    plan: bool = False,
    step: Step | None = None,
    extras: dict[str, tuple[Path, dict[str, Any]]] | None = None,
    lease: str | None = None,
    views: tuple[tuple[str, str, str], ...] = (),
) -> Publication:
    """Publish every platform of one version in one transaction (or plan it).

    `extras` are trees published beside the version in the same transaction (repository
    path -> tree and its manifest), checked the same way: a base's installers, whose stable
    names pilots fetch, move only together with the base they install. They lie outside the
    version's folder, so the transaction is opened on `lease` (a folder holding both).
    `views` are links (folder, name, target) set in the same transaction: an image's
    `.multiarch/<arch>/` entries, which must never name a tree not yet published.
    """
    extras = extras or {}
    started = time.monotonic()
    say = step or (lambda _text: None)
    version_rel = layout.version_dir(bundles.tag)
    paths = [layout.platform_dir(bundles.tag, arch) for arch in bundles.trees]
    result = Publication(
        repository=layout.repository,
        backend=backend.kind,
        tag=tag_name,
        version_dir=version_rel,
        paths=[layout.client_path(p) for p in [*paths, *extras]],
        digest=bundles.digest,
        revision=None,
        status="planned",
        links=dict.fromkeys(links, bundles.tag),
        manifests=dict(bundles.manifest_sha256),
    )

    # 1. Preflight: nothing is opened until everything checks out.
    say("preflight")
    status = backend.status()
    if not status.exists:
        fix = (
            f"create it first: dirac-release cvmfs init --repository {layout.repository}"
            if backend.kind == "directory"
            else "create it on the stratum 0 (cvmfs_server mkfs), or fix the repository name"
        )
        raise BadInput(
            f"repository {layout.repository} does not exist on the {backend.kind} backend", fix=fix
        )
    if status.whitelist_expires is not None:
        left = status.whitelist_expires.timestamp() - time.time()
        if left < WHITELIST_WARN_S:
            result.notes.append(
                f"warning: the whitelist of {layout.repository} expires in {left / 3600:.1f} h; "
                "re-sign it (cvmfs_server resign) before it blocks publishing"
            )
    for held in status.transactions:
        if (
            held.stale
            and held.owner is not None
            and held.owner.publication == tag_name
            and not plan
        ):
            # Our own earlier attempt died: finish it (journaled) or discard it, then look again.
            result.notes.extend(backend.clear_stale(tag_name))
        else:
            result.notes.append(f"open: {held.describe()}")
    if _already_published(backend, layout, bundles, tag_name, links, result, extras, views):
        result.seconds = time.monotonic() - started
        return result
    bundles.check_deferred()
    entries = backend.entries(layout.prefix)
    if bundles.tag in entries:
        raise BadInput(
            f"/{version_rel} exists in {layout.repository} but no tag {tag_name} records it",
            fix="someone published it outside dirac-release; inspect it and remove it before publishing",
        )
    for name in links:
        if name == bundles.tag or (name in entries and entries[name] is None):
            raise BadInput(
                f"the link {name} of {layout.repository} would replace "
                + (
                    "the version it points to"
                    if name == bundles.tag
                    else f"the folder /{layout.link(name)}"
                ),
                fix="choose another link name in release.toml (repositories.<name>.links)",
            )

    result.actions = [
        f"open a transaction on /{layout.prefix} of {layout.repository} (wait up to {wait_s:.0f}s if busy)",
        *(f"sync {bundles.trees[arch]} -> /{layout.platform_dir(bundles.tag, arch)} "
          f"({len(bundles.manifests[arch]['files'])} files, hardlinks dereferenced)" for arch in bundles.trees),
        f"place /{version_rel}/.cvmfscatalog (one nested catalog for the version)",
        *(f"point /{layout.link(name)} -> {bundles.tag}" for name in links),
        *(f"point /{folder}/{name} -> {target}" for folder, name, target in views),
        *(f"sync {tree} -> /{rel} ({len(manifest['files'])} files)"
          for rel, (tree, manifest) in extras.items()),
        "verify every staged file against the manifests",
        f"publish with tag {tag_name}",
        "verify the published tree again",
    ]  # fmt: skip
    if plan:
        # The very checks the publish makes as it copies, so the plan refuses what it would.
        say("checking the bundles file by file")
        problems = _every_tree(
            bundles,
            extras,
            lambda name, manifest: check_tree(
                bundles.trees[name] if name in bundles.trees else extras[name][0], manifest, name
            ),
        )
        if problems:
            raise BadInput(
                f"the bundles of {bundles.tag} do not match their manifests: "
                + "; ".join(problems[:5])
                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
                fix="rebuild them (dirac-release build --version "
                f"{bundles.tag} --refresh); never edit a built bundle by hand",
            )
        result.seconds = time.monotonic() - started
        return result

    # 2. Open one transaction on the narrowest path that exists.
    say("opening a transaction")
    txn: Transaction = backend.open(lease or layout.prefix, Owner.me(tag_name), wait_s)
    result.notes.extend(note for note in getattr(backend, "notes", []) if note not in result.notes)
    try:
        failpoints.reached("opened")
        # Decided again under the lock: a publisher of the same release may have finished
        # while this one waited; then there is nothing left to do.
        if _already_published(backend, layout, bundles, tag_name, links, result, extras, views):
            txn.abort()
            result.notes.append("another publisher finished this release while this one waited")
            result.seconds = time.monotonic() - started
            return result
        # 3. Sync all platforms in this one transaction.
        say("syncing")
        with ThreadPoolExecutor(max_workers=len(bundles.trees)) as pool:
            futures = [
                pool.submit(
                    txn.sync_tree,
                    layout.platform_dir(bundles.tag, arch),
                    tree,
                    bundles.manifests[arch],
                )
                for arch, tree in bundles.trees.items()
            ]
            for future in futures:
                future.result()
        for rel, (tree, manifest) in extras.items():
            txn.sync_tree(rel, tree, manifest)
        txn.mark_catalog(version_rel)
        for name in links:
            txn.set_link(layout.prefix, name, bundles.tag)
        for folder, name, target in views:
            txn.set_link(folder, name, target)
        failpoints.reached("synced")
        # 4. Verify the staged tree.
        say("verifying the staged tree")
        problems = _every_tree(
            bundles,
            extras,
            lambda name, manifest: txn.verify_staged(
                layout.platform_dir(bundles.tag, name) if name in bundles.trees else name,
                manifest,
            ),
        )
        if problems:
            raise CheckFailed(
                f"the staged tree differs from the manifests: {'; '.join(problems[:5])}",
                fix="the transaction was aborted; nothing was published",
            )
        failpoints.reached("verified")
        # 5. Publish (or abort a publication that would change nothing).
        if txn.changes() == 0:
            txn.abort()
            result.status = "nothing to publish"
            result.seconds = time.monotonic() - started
            return result
        say("publishing")
        message = (
            f"{bundles.product} {bundles.tag} commit {bundles.commit or 'n/a'} "
            f"manifests sha256 {bundles.digest}"
        )
        result.revision = txn.publish(tag_name, message, bundles.digest)
    except BaseException:
        txn.abort()
        raise
    failpoints.reached("published")
    # 6. Verify again, as a client would see it.
    say("verifying the publication")
    problems = _every_tree(
        bundles,
        extras,
        lambda name, manifest: backend.verify_published(
            layout.platform_dir(bundles.tag, name) if name in bundles.trees else name, manifest
        ),
    )
    if problems:
        raise CheckFailed(
            f"{tag_name} was published but does not verify: {'; '.join(problems[:5])}",
            fix=f"roll back to the previous tag (cvmfs_server rollback) and investigate {layout.repository}",
        )
    result.status = "published"
    result.seconds = time.monotonic() - started
    return result
