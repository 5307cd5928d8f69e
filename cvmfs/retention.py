"""Retention: keep the newest N versions of each release series, and anything a link names."""

from __future__ import annotations

from dataclasses import dataclass

from cvmfs.errors import BadInput
from release.version import ReleaseVersion, parse_tag


@dataclass(frozen=True)
class Retention:
    keep: list[str]
    remove: list[str]
    reasons: dict[str, str]


def plan_retention(entries: dict[str, str | None], keep: int) -> Retention:
    """entries: names in the prefix folder (link -> target, directory -> None)."""
    linked = {target.strip("/").split("/")[0] for target in entries.values() if target}
    versions: dict[str, list[tuple[ReleaseVersion, str]]] = {}
    for name, target in entries.items():
        if target is not None:
            continue
        try:
            version = parse_tag(name)
        except BadInput:
            continue  # not a release folder: never ours to remove
        versions.setdefault(version.series, []).append((version, name))
    keep_names: list[str] = []
    remove: list[str] = []
    reasons: dict[str, str] = {}
    for series, found in sorted(versions.items()):
        ordered = sorted(found, reverse=True)
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
