"""Retention: keep the newest N versions of each release series, and anything a link names.

What a version is, which series it belongs to and how versions order are the product's
policy, not the publisher's: the caller passes them in as `version_key` (the toolkit passes
its tag parser). There is no default on purpose: retention deletes published releases, and a
guessed ordering that misread a product's tags would delete the wrong ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Ordered(Protocol):
    """A version the caller's key returns: only its ordering is used."""

    def __lt__(self, other: Any, /) -> bool: ...


#: A folder name -> (its release series, a sortable version), or None when the name is not a
#: release folder (never ours to remove).
VersionKey = Callable[[str], tuple[str, Ordered] | None]


@dataclass(frozen=True)
class Retention:
    keep: list[str]
    remove: list[str]
    reasons: dict[str, str]


def plan_retention(
    entries: dict[str, str | None], keep: int, *, version_key: VersionKey
) -> Retention:
    """entries: names in the prefix folder (link -> target, directory -> None)."""
    linked = {target.strip("/").split("/")[0] for target in entries.values() if target}
    versions: dict[str, list[tuple[Ordered, str]]] = {}
    for name, target in entries.items():
        if target is not None:
            continue
        parsed = version_key(name)
        if parsed is None:
            continue  # not a release folder: never ours to remove
        series, version = parsed
        versions.setdefault(series, []).append((version, name))
    keep_names: list[str] = []
    remove: list[str] = []
    reasons: dict[str, str] = {}
    for series, found in sorted(versions.items()):
        ordered = sorted(found, reverse=True)  # ties (two spellings of one version) by name
        for index, (_version, name) in enumerate(ordered):
            if index < keep:
                keep_names.append(name)
                reasons[name] = f"one of the newest {keep} of series {series}"
            elif name in linked:
                keep_names.append(name)
                links = ", ".join(
                    sorted(
                        k for k, v in entries.items() if v and v.strip("/").split("/")[0] == name
                    )
                )
                reasons[name] = f"a link points to it ({links})"
            else:
                remove.append(name)
                reasons[name] = f"older than the newest {keep} of series {series}"
    return Retention(keep=sorted(keep_names), remove=sorted(remove), reasons=reasons)
