"""Two-architecture bundles: resolve, install, verify, pack; written whole or not at all.

The names below load `release.build.bundle` (and the resolver, the installer, the packer)
only when used: publishing and verifying need `release.build.manifest` alone, and a
republish that has nothing to do should not pay for importing the whole build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from release.build.bundle import BuildReport, PlatformBundle, build_release

__all__ = ["BuildReport", "PlatformBundle", "build_release"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from release.build import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'release.build' has no attribute {name!r}")
