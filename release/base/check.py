"""Does the base satisfy what the bundle asks of it?

Distributions the base provides are left out of the lock, so the resolver never sees the
product's requirement on them: `DIRAC requires M2Crypto>=0.50` would pass silently on a
base with 0.38 and fail at import on a worker node. Every Requires-Dist of every bundled
distribution that names a base-provided distribution is evaluated here, for the target's
markers, against the version the base records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release.base.record import PlatformRecord
from release.config.bases import BaseOverride
from release.errors import BadInput


@dataclass
class BaseUse:
    """What the bundle takes from its base, for the manifest."""

    provided: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self, record: PlatformRecord) -> dict[str, Any]:
        return {
            "name": record.base,
            "version": record.version,
            "python": record.python,
            "record_digest": record.digest,
            "provided": [
                {**entry, "provided_by": f"base {record.label}"}
                for _, entry in sorted(self.provided.items())
            ],
            "overrides": self.overrides,
        }


def marker_environment(arch: str, python: str, extra: str = "") -> dict[str, str]:
    """The PEP 508 marker values of the target (not of this machine)."""
    parts = python.split(".")
    full = python if len(parts) == 3 else f"{parts[0]}.{parts[1]}.0"
    return {
        "python_version": f"{parts[0]}.{parts[1]}",
        "python_full_version": full,
        "implementation_version": full,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_machine": arch,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "extra": extra,
    }


def _bundled(site: Path) -> list[tuple[str, list[str]]]:
    """(name, Requires-Dist lines) of every distribution installed in the bundle."""
    from importlib.metadata import Distribution

    out = []
    for info in sorted(site.glob("*.dist-info")):
        dist = Distribution.at(info)
        out.append((f"{dist.metadata['Name'] or info.name} {dist.version}", dist.requires or []))
    return out


def check_base(
    site: Path,
    record: PlatformRecord,
    *,
    product: str,
    distribution: str,
    version: str,
    extras: tuple[str, ...],
    extra_requirements: tuple[str, ...],
    overrides: tuple[BaseOverride, ...],
) -> BaseUse:
    """Every requirement on the base checked; BadInput naming each unmet one (exit 2)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    wanted = canonicalize_name(distribution)
    use = BaseUse()
    problems: list[tuple[str, str]] = []  # (message, the requirement on the base)
    accepted = {canonicalize_name(o.distribution): o for o in overrides if o.applies_to(version)}
    requirers = _bundled(site)
    requirers.append((f"products.{product}.requirements", list(extra_requirements)))
    for name, lines in requirers:
        own = canonicalize_name(name.split(" ")[0]) == wanted
        for line in lines:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue  # the installer accepted it; not ours to judge
            key = canonicalize_name(req.name)
            provided = record.provides(key)
            if provided is None:
                continue
            if req.marker is not None and not any(
                req.marker.evaluate(marker_environment(record.platform, record.python, extra))
                for extra in ((*extras, "") if own else ("",))
            ):
                continue
            entry = use.provided.setdefault(
                key,
                {"name": record.distributions[key]["name"], "version": provided,
                 "required_by": []},
            )  # fmt: skip
            entry["required_by"].append(f"{name} ({req.specifier or 'any'})")
            if req.specifier.contains(provided, prereleases=True):
                continue
            override = accepted.get(key)
            what = f"{name} requires {req.name}{req.specifier}; base {record.label} provides {provided}"
            if override is not None:
                use.overrides.append(
                    {"requirement": what, "reason": override.reason,
                     "releases": override.releases or "all"}
                )  # fmt: skip
                continue
            problems.append((what, f"{req.name}{req.specifier}"))
    if problems:
        needed = problems[0][1]
        raise BadInput(
            f"{product} {version} for {record.platform} needs what its base does not provide: "
            + "; ".join(what for what, _ in problems),
            fix=f"use a newer base that provides {needed} (a new [bases.{record.base}] version, "
            f"inspected again), or, if {product} is known to run on the base's version, record "
            f"an override with its reason:\n  [[products.{product}.base_overrides]]\n"
            f'  distribution = "{Requirement(needed).name}"\n  reason = "..."',
        )
    return use
