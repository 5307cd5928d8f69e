"""[build] and [state]: the tables the DIRAC_RELEASE_* config overrides write into."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from release.config.base import _Frozen
from release.deflate import Engine


def _default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "dirac-release")


class BuildSettings(_Frozen):
    """Where bundles go and how they are packed."""

    out: str = "dist"
    cache_dir: str = Field(default_factory=_default_cache)
    compression_level: int = Field(default=3, ge=0, le=9, strict=True)
    #: Which deflate writes the gzip streams (`release.deflate`): ISA-L, several times faster.
    deflate: Engine = "isal"
    jobs: int = Field(default=2, ge=1, le=16, strict=True)


class StateSettings(_Frozen):
    """Where the ledger of each release is kept."""

    dir: str = "state"
