"""Three published releases of the demo product, for lab tests that deploy more than one."""

from __future__ import annotations

from pathlib import Path

#: v1.0.0 (the demo's own tag), its next final release, and a pre-release after it.
TAGS = ("v1.0.0", "v1.0.1", "v1.1.0a1")


def publish_demo_releases(root: Path, config_text: str, cache: Path) -> None:
    """The demo repository in `root` with the later tags added; every tag built and published
    to the repository of `config_text` (written as root/release.toml). With the demo build's
    cache, v1.0.0 is a cache hit and the others resolve and build once."""
    from release.build import build_release
    from release.config import load_config
    from release.demo import fixture as demo
    from release.publish import init_repository, publish_release

    demo.prepare_repository(root / demo.REPO_NAME)
    demo.add_release(root / demo.REPO_NAME, TAGS[1])
    demo.add_release(root / demo.REPO_NAME, TAGS[2], days_after=2)
    (root / "release.toml").write_text(config_text)
    config = load_config(root / "release.toml", environ={"DIRAC_RELEASE_CACHE": str(cache)})
    init_repository(config, None)
    for tag in TAGS:
        build_release(config, version=tag)
        publish_release(config, version=tag)
