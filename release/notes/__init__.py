"""Release notes from pull requests: `dirac-release notes` and `notes check`.

`ancestry` says which pull requests a release holds (git), `pulls` reads their descriptions
(GitHub), `blocks` parses each one's notes, `compose` drops backports' duplicates and writes
DIRAC's release.notes or Markdown.
"""

from __future__ import annotations

import re
from pathlib import Path

from release.errors import BadInput
from release.notes.compose import Notes, Pull, compose

_GITHUB_REMOTE = re.compile(r"github\.com[:/]([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$")


def slug_of_url(url: str) -> str | None:
    """OWNER/NAME of a GitHub URL (https or ssh form), None for anything else."""
    match = _GITHUB_REMOTE.search(url)
    return match.group(1) if match else None


def github_repository(path: Path, given: str | None) -> str:
    """OWNER/NAME: the one given, else the repository's `origin` on GitHub."""
    if given:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", given):
            raise BadInput(
                f"--github {given!r} is not OWNER/NAME", fix="e.g. --github DIRACGrid/DIRAC"
            )
        return given
    import git

    try:
        urls = list(git.Repo(path).remote("origin").urls)
    except (ValueError, git.InvalidGitRepositoryError, git.NoSuchPathError):
        urls = []
    for url in urls:
        slug = slug_of_url(url)
        if slug:
            return slug
    raise BadInput(
        f"the GitHub repository of {path} is not known (no GitHub 'origin' remote)",
        fix="name it: --github OWNER/NAME, e.g. --github DIRACGrid/DIRAC",
    )


def gather(path: Path, start: str, end: str, repository: str, token: str | None = None) -> Notes:
    """The notes of the pull requests merged between two tags, as `compose` makes them."""
    from release.notes.ancestry import merged_pulls
    from release.notes.pulls import fetch_pulls

    merged = merged_pulls(path, start, end)
    found, missing = fetch_pulls(repository, [m.number for m in merged], token)
    pulls = [found[m.number] for m in merged if m.number in found]
    notes = compose(end, pulls)
    notes.dropped += [f"#{n}: GitHub has no pull request with this number" for n in missing]
    return notes


__all__ = ["Notes", "Pull", "compose", "gather", "github_repository"]
