"""Where a release's pilot files lie in a repository, and the link the pilot wrapper follows.

A module of its own, importing nothing, because the build, publish, promote and certify all
need these names and the build must not import the publishing side.
"""

from __future__ import annotations

#: Inside a version folder: `<prefix>/<tag>/pilot/<vo>/`.
VERSION_SUBFOLDER = "pilot"
#: In the prefix: the link the wrapper's CVMFS location reaches (`<cvmfs>/<project>dirac/pilot`).
PILOT_LINK = "pilot"


def version_rel(version_dir: str, vo: str) -> str:
    """Where a VO's pilot files lie in the repository, under the release's version folder."""
    return f"{version_dir}/{VERSION_SUBFOLDER}/{vo}"


def link_target(tag: str, vo: str) -> str:
    """What `<prefix>/pilot` points to for a VO's files of a release (relative, in the prefix)."""
    return f"{tag}/{VERSION_SUBFOLDER}/{vo}"
