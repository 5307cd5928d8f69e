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


def _companion_problems(
    backend: Backend,
    layout: Layout,
    companions: dict[str, tuple[str, dict[str, Any]]],
    *,
    shallow: bool = False,
) -> list[str]:
    problems = []
    for link, (target, manifest) in sorted(companions.items()):
        rel = f"{layout.prefix}/{target}"
        try:
            found = backend.verify_published(rel, manifest, shallow=shallow)
        except OSError as exc:
            found = [exc.strerror or str(exc)]
        problems += [f"{link} -> {target}: {problem}" for problem in found]
    return problems


def _check_companions(
    backend: Backend, layout: Layout, companions: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    for link, (target, _manifest) in companions.items():
        if backend.read_manifest(f"{layout.prefix}/{target}") is None:
            raise BadInput(
                f"/{layout.prefix}/{target}, where {link} would point, is not published in "
                f"{layout.repository}",
                fix="it is published with its release: publish the release with it "
                "(dirac-release publish), or release a new version that has it",
            )
    problems = _companion_problems(backend, layout, companions)
    if problems:
        raise CheckFailed(
            f"in {layout.repository}: {'; '.join(problems[:5])}",
            fix="nothing was changed; investigate the repository before promoting",
        )


def move_link(
    backend: Backend,
    layout: Layout,
    tag: str,
    manifests: dict[str, dict[str, Any]],
    *,
    name: str = PRO_LINK,
    companions: dict[str, tuple[str, dict[str, Any]]] | None = None,
    wait_s: float = 120.0,
    plan: bool = False,
) -> dict[str, Any]:
    """Point /<prefix>/<name> at <tag>; returns what was (or would be) done.

    `companions` are links that move in the same transaction (link name -> target inside
    the version, e.g. `pilot` -> `<tag>/pilot/<vo>`, and the manifest of that folder): what
    clients get under them changes at the same instant as the release, never apart.
    Checked once without the lock (to refuse early and to find nothing to do), then decided
    again under the repository's lock, where retention cannot remove the version meanwhile.
    """
    companions = companions or {}
    started = time.monotonic()
    entries = backend.entries(layout.prefix)
    current = entries.get(name)
    moved = {link: entries.get(link) for link, (target, _m) in companions.items()
             if entries.get(link) != target}  # fmt: skip
    if plan or (current == tag and not moved) or tag not in entries:
        _check_target(backend, layout, tag, manifests, entries)
        _check_companions(backend, layout, companions)
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
            *(f"point /{layout.link(link)} -> {target} (was {entries.get(link) or 'absent'})"
              for link, (target, _m) in companions.items()),
            "publish, then verify the links and the version as clients see them",
        ],
        "companions": {link: {"from": entries.get(link), "to": target}
                       for link, (target, _m) in companions.items()},
    }  # fmt: skip
    if current == tag and not moved:
        result["status"] = "already there"
    elif plan:
        result["status"] = "planned"
    else:
        txn = backend.open(layout.prefix, Owner.me(f"{name}->{tag}"), wait_s)
        try:
            entries = backend.entries(layout.prefix)
            _check_target(backend, layout, tag, manifests, entries)
            _check_companions(backend, layout, companions)
            current = result["from"] = entries.get(name)
            for link in companions:
                result["companions"][link]["from"] = entries.get(link)
            if current == tag and all(entries.get(k) == t for k, (t, _m) in companions.items()):
                txn.abort()
                result["status"] = "already there"
                result["seconds"] = round(time.monotonic() - started, 3)
                return result
            txn.set_link(layout.prefix, name, tag)
            for link, (target, _m) in companions.items():
                txn.set_link(layout.prefix, link, target)
            message = "; ".join([f"{name} -> {tag} (was {current})",
                                 *(f"{k} -> {t}" for k, (t, _m) in companions.items())])  # fmt: skip
            result["revision"] = txn.publish(None, message, "")
        except BaseException:
            txn.abort()
            raise
        now = backend.entries(layout.prefix)
        after = now.get(name)
        # Every byte was hashed under the lock a moment ago and moving a link changes no
        # content: as clients see it now, the version must be all there (names, sizes, modes).
        problems = _verify(backend, layout, tag, manifests, shallow=True)
        problems += [f"{k} -> {now.get(k)}, not {t}" for k, (t, _m) in companions.items()
                     if now.get(k) != t]  # fmt: skip
        problems += _companion_problems(backend, layout, companions, shallow=True)
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
