"""Two-architecture bundles: resolve, install, verify, pack; written whole or not at all."""

from release.build.bundle import BuildReport, PlatformBundle, build_release

__all__ = ["BuildReport", "PlatformBundle", "build_release"]
