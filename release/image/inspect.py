"""Finding the images already built: their image.json records, for `image check` and publishing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.errors import BadInput

if TYPE_CHECKING:
    from release.config import ReleaseConfig


def built_images(
    config: ReleaseConfig,
    *,
    version: str,
    vo: str | None = None,
    arches: list[str] | None = None,
    out: Path | None = None,
) -> list[dict[str, Any]]:
    """The image.json of each built tree (with `folder` and `layout` added); BadInput names
    what is missing and the command that builds it."""
    from release.image.build import IMAGE_JSON, output_root, pick_vos
    from release.version import parse_version_arg

    tag = parse_version_arg(version).tag
    root = output_root(config, out)
    found: list[dict[str, Any]] = []
    for name in pick_vos(config, vo):
        wanted = arches or list(config.platforms)
        for arch in wanted:
            folder = root / name / tag / arch
            try:
                record = json.loads((folder / IMAGE_JSON).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                if arches is None:
                    continue  # not asked for by name: an architecture not built
                raise BadInput(
                    f"no {arch} image of {name} for {tag} in {root}",
                    where=str(folder),
                    fix=f"build it: dirac-release image build --vo {name} --version {tag} "
                    f"--arch {arch}" + (f" --out {out}" if out else ""),
                ) from None
            found.append(
                {**record, "folder": str(folder), "layout": str(root / name / tag / "oci" / arch)}
            )
    if not found:
        raise BadInput(
            f"no image of {vo or 'any VO'} for {tag} in {root}",
            fix=f"build it first: dirac-release image build --version {tag}"
            + (f" --vo {vo}" if vo else "")
            + (f" --out {out}" if out else ""),
        )
    return found
