"""Move a named link (normally `pro`) to a published version: one transaction, verified.

Promotion publishes nothing new: it switches which version clients get under the link. The
version must be published and verify against its manifests before and after the switch, so a
client never follows the link into a tree that is missing or damaged.
"""

from __future__ import annotations

import time
from typing import Any

from cvmfs.backends.base import Backend, Owner
from cvmfs.errors import BadInput, CheckFailed
from cvmfs.layout import PRO_LINK, Layout


def _verify(
    backend: Backend,
    layout: Layout,
    tag: str,
    manifests: dict[str, dict[str, Any]],
    *,
    shallow: bool = False,
) -> list[str]:
    problems = []
    for arch, manifest in sorted(manifests.items()):
        try:
            problems += backend.verify_published(
                layout.platform_dir(tag, arch), manifest, shallow=shallow
            )
        except OSError as exc:  # removed while it was read (outside the lock)
            problems.append(f"Linux-{arch}: {exc.strerror or exc}")
    return problems


def _check_target(
    backend: Backend,
    layout: Layout,
    tag: str,
    manifests: dict[str, dict[str, Any]],
    entries: dict[str, str | None],
) -> None:
    if tag not in entries or entries[tag] is not None:
        raise BadInput(
            f"{tag} is not published in {layout.repository}",
            fix=f"publish it first: dirac-release publish --version {tag}",
        )
    problems = _verify(backend, layout, tag, manifests)
    if problems:
        raise CheckFailed(
            f"{tag} in {layout.repository} does not verify: {'; '.join(problems[:5])}",
            fix="nothing was changed; investigate the repository before promoting",
        )


def move_link(
    backend: Backend,
    layout: Layout,
    tag: str,
    manifests: dict[str, dict[str, Any]],
    *,
    name: str = PRO_LINK,
    wait_s: float = 120.0,
    plan: bool = False,
) -> dict[str, Any]:
    """Point /<prefix>/<name> at <tag>; returns what was (or would be) done.

    Checked once without the lock (to refuse early and to find nothing to do), then decided
    again under the repository's lock, where retention cannot remove the version meanwhile.
    """
    started = time.monotonic()
    entries = backend.entries(layout.prefix)
    current = entries.get(name)
    if plan or current == tag or tag not in entries:
        _check_target(backend, layout, tag, manifests, entries)
    result: dict[str, Any] = {
        "repository": layout.repository,
        "link": layout.client_path(layout.link(name)),
        "from": current,
        "to": tag,
        "revision": None,
        "actions": [
            f"verify /{layout.version_dir(tag)} against its manifests",
            f"open a transaction on /{layout.prefix} of {layout.repository}",
            f"point /{layout.link(name)} -> {tag} (was {current or 'absent'})",
            "publish, then verify the link and the version as clients see them",
        ],
    }
    if current == tag:
        result["status"] = "already there"
    elif plan:
        result["status"] = "planned"
    else:
        txn = backend.open(layout.prefix, Owner.me(f"{name}->{tag}"), wait_s)
        try:
            entries = backend.entries(layout.prefix)
            _check_target(backend, layout, tag, manifests, entries)
            current = result["from"] = entries.get(name)
            if current == tag:
                txn.abort()
                result["status"] = "already there"
                result["seconds"] = round(time.monotonic() - started, 3)
                return result
            txn.set_link(layout.prefix, name, tag)
            result["revision"] = txn.publish(None, f"{name} -> {tag} (was {current})", "")
        except BaseException:
            txn.abort()
            raise
        after = backend.entries(layout.prefix).get(name)
        # Every byte was hashed under the lock a moment ago and moving a link changes no
        # content: as clients see it now, the version must be all there (names, sizes, modes).
        problems = _verify(backend, layout, tag, manifests, shallow=True)
        if after != tag or problems:
            back = (
                f"point {name} back to {current} (dirac-release promote --version {current})"
                if current
                else f"{name} did not exist before: investigate {layout.repository} before "
                "promoting again"
            )
            raise CheckFailed(
                f"{name} was published but clients see {name} -> {after}"
                + (f" and {'; '.join(problems[:5])}" if problems else ""),
                fix=back,
            )
        result["status"] = "moved"
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
