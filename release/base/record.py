"""The base record: what a base provides per platform, kept next to release.toml.

Builds read the record, not the base: a CI builder needs no DIRACOS2 installed to leave
gfal2 out of a lock, and a release made a year later sees the same base. Each platform
carries a digest of its own content, so a record edited by hand (or cut short) is refused
rather than trusted, and a base that changed since it was recorded is caught where the base
itself is at hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from release.base.inspect import Inspected, inspect_base
from release.config import ReleaseConfig, stamp
from release.config.bases import Base
from release.errors import BadInput

SCHEMA = "dirac-release/base-record/1"


@dataclass(frozen=True)
class PlatformRecord:
    base: str
    version: str
    platform: str
    layout: str
    python: str
    site: tuple[str, ...]
    distributions: dict[str, dict[str, str]]
    digest: str

    @property
    def label(self) -> str:
        return f"{self.base} {self.version}"

    def provides(self, name: str) -> str | None:
        """The version the base provides of a (canonical) distribution name, or None."""
        entry = self.distributions.get(name)
        return entry["version"] if entry else None


def content_digest(layout: str, python: str, site: list[str] | tuple[str, ...],
                   dists: dict[str, dict[str, str]]) -> str:  # fmt: skip
    payload = {"layout": layout, "python": python, "site": list(site), "distributions": dists}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def record_path(config: ReleaseConfig, name: str, base: Base) -> Path:
    return config.resolve_path(base.record_name(name))


def _damaged(path: Path, what: str, name: str) -> BadInput:
    return BadInput(
        f"the base record {path} is damaged: {what}",
        where=str(path),
        fix=f"record it again from the base: dirac-release base inspect {name}",
    )


def _read(path: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, f"not readable JSON ({exc})", name) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise _damaged(path, f"not a base record (schema {SCHEMA} expected)", name)
    return data


def load_platform(config: ReleaseConfig, name: str, arch: str) -> PlatformRecord:
    """The record of base `name` for `arch`, checked against the configuration and itself."""
    base = config.bases[name]
    path = record_path(config, name, base)
    data = _read(path, name)
    if data is None:
        raise BadInput(
            f"base {base.label(name)} has no record ({path} does not exist)",
            fix=f"record what it provides: dirac-release base inspect {name}, and commit "
            f"{base.record_name(name)} with release.toml",
        )
    if (data.get("base"), data.get("version")) != (name, base.version):
        raise BadInput(
            f"{path} records base {data.get('base')} {data.get('version')}, not {base.label(name)}",
            where=str(path),
            fix=f"record this version: dirac-release base inspect {name}",
        )
    entry = (data.get("platforms") or {}).get(arch)
    if not isinstance(entry, dict):
        recorded = ", ".join(sorted(data.get("platforms") or {})) or "none"
        raise BadInput(
            f"the record of base {base.label(name)} has no platform {arch} (it has: {recorded})",
            where=str(path),
            fix=f"add [bases.{name}.platforms.{arch}] path and run: "
            f"dirac-release base inspect {name} --platform {arch}",
        )
    try:
        record = PlatformRecord(
            base=name,
            version=base.version,
            platform=arch,
            layout=str(entry["layout"]),
            python=str(entry["python"]),
            site=tuple(entry["site"]),
            distributions={
                str(k): {"name": str(v["name"]), "version": str(v["version"])}
                for k, v in entry["distributions"].items()
            },
            digest=str(entry["digest"]),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise _damaged(path, f"platform {arch} lacks {exc}", name) from None
    if content_digest(record.layout, record.python, record.site, record.distributions) != (
        record.digest
    ):
        raise _damaged(path, f"platform {arch} does not match its digest (edited?)", name)
    if record.python.split(".")[:2] != base.python.split("."):
        raise BadInput(
            f"the record of base {base.label(name)} for {arch} has Python {record.python}, "
            f"the configuration says {base.python}",
            where=str(path),
            fix=f"set [bases.{name}] python to the base's, or record it again: "
            f"dirac-release base inspect {name}",
        )
    return record


def changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """What differs between two distribution tables, as a person reads it."""
    out = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            out.append(f"+{new['name']} {new['version']}")
        elif new is None and old is not None:
            out.append(f"-{old['name']} {old['version']}")
        elif old is not None and new is not None and old["version"] != new["version"]:
            out.append(f"{new['name']} {old['version']} -> {new['version']}")
    return out


def check_unchanged(config: ReleaseConfig, record: PlatformRecord) -> Path | None:
    """Re-read the base where it is at hand and return it; None when it is not here (the
    record stands alone).

    A base that differs from its record would give a bundle built for something else.
    """
    platform = config.bases[record.base].platforms.get(record.platform)  # type: ignore[call-overload]
    if platform is None or platform.path is None:
        return None
    root = config.resolve_path(platform.path)
    if not root.is_dir():
        return None
    now = inspect_base(root, config.bases[record.base].python)
    digest = content_digest(now.layout, now.python, list(now.site), now.distributions)
    if digest != record.digest:
        diff = changes(record.distributions, now.distributions)
        if record.python != now.python:
            diff.insert(0, f"Python {record.python} -> {now.python}")
        shown = "; ".join(diff[:8]) + (f" and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise BadInput(
            f"base {record.label} for {record.platform} changed since it was recorded: "
            + (shown or "its layout or site folders differ"),
            where=str(root),
            fix=f"a changed base is a new base version: give it a new version in "
            f"[bases.{record.base}] and run dirac-release base inspect {record.base} (or, if "
            "this change is meant, inspect it again and commit the record)",
        )
    return root


def inspect_and_record(
    config: ReleaseConfig, name: str, arches: list[str]
) -> tuple[Path, list[dict[str, Any]]]:
    """Inspect the base's platforms and write them into its record (others are kept)."""
    base = config.bases[name]
    path = record_path(config, name, base)
    todo: list[tuple[str, Path]] = []
    for arch in arches:
        platform = base.platforms.get(arch)  # type: ignore[call-overload]
        if platform is None or platform.path is None:
            raise BadInput(
                f"base {base.label(name)} gives no path for {arch}",
                where=str(config.path),
                fix=f'set [bases.{name}.platforms.{arch}] path = "..." to its installed prefix '
                "or root filesystem",
            )
        todo.append((arch, config.resolve_path(platform.path)))
    inspected: dict[str, Inspected] = {arch: inspect_base(root, base.python) for arch, root in todo}
    try:
        data = _read(path, name)
    except BadInput:
        data = None  # a damaged record is replaced whole
    if data is None or (data.get("base"), data.get("version")) != (name, base.version):
        data = {"schema": SCHEMA, "base": name, "version": base.version, "platforms": {}}
    data["python"] = base.python
    summary = []
    for arch, root in todo:
        found = inspected[arch]
        before = (data["platforms"].get(arch) or {}).get("distributions") or {}
        digest = content_digest(found.layout, found.python, list(found.site), found.distributions)
        data["platforms"][arch] = {
            "source": str(root),
            "inspected": stamp(datetime.now(UTC)),
            "layout": found.layout,
            "python": found.python,
            "site": list(found.site),
            "distributions": found.distributions,
            "digest": digest,
        }
        summary.append(
            {
                "platform": arch,
                "source": str(root),
                "layout": found.layout,
                "python": found.python,
                "distributions": len(found.distributions),
                "digest": digest,
                "changes": changes(before, found.distributions) if before else [],
            }
        )
    data["platforms"] = dict(sorted(data["platforms"].items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path, summary
