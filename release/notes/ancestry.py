"""Which pull requests a release holds: by commit ancestry between two tags, not by date.

A pull request belongs to `--to` and not to `--from` when the commit that merged it (a merge
commit `Merge pull request #N from ...`, or a squash commit `Title (#N)`) is reachable from
the new tag and not from the old one: exactly `git log FROM..TO`. Merge dates lie about this
(a pull request merged into a release branch after the old tag was cut may already be in it,
one merged long ago into another branch may arrive only now), which is how today's gatherer
misses notes or shows them twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from release.errors import BadInput, InfrastructureError

_MERGE = re.compile(r"^Merge pull request #(\d+) from ")
_SQUASH = re.compile(r"\(#(\d+)\)\s*$")
_PICKED = re.compile(r"\(cherry picked from commit ([0-9a-f]{7,40})\)")


@dataclass(frozen=True)
class MergedPull:
    number: int
    commit: str
    subject: str
    #: Commits this one was cherry-picked from (a backport names its origin so).
    picked_from: tuple[str, ...] = ()


def _commit(repo: object, ref: str, which: str, path: Path) -> object:
    import git

    try:
        return repo.commit(ref)  # type: ignore[attr-defined]
    except ValueError as exc:
        if "dubious ownership" in str(exc):
            raise BadInput(
                f"git refuses to read {path}: it belongs to another user (dubious ownership)",
                fix=f"trust it: git config --global --add safe.directory {path}",
            ) from None
        raise _unknown(repo, ref, which, path) from None
    except git.BadName:
        raise _unknown(repo, ref, which, path) from None


def _unknown(repo: object, ref: str, which: str, path: Path) -> BadInput:
    tags = sorted(t.name for t in repo.tags)  # type: ignore[attr-defined]
    shown = ", ".join(tags[-5:]) or "none"
    return BadInput(
        f"{which} {ref!r} is not a tag or commit of {path}",
        fix=f"give a tag the repository has (latest: {shown}); fetch tags first "
        "(git fetch --tags) if it is a fresh clone",
    )


def merged_pulls(path: Path, start: str, end: str) -> list[MergedPull]:
    """Pull requests merged into `end` and not into `start`, oldest first."""
    import git

    from release.gitinfo import open_repo

    repo = open_repo(path)
    _commit(repo, start, "--from", path)
    _commit(repo, end, "--to", path)
    found: dict[int, MergedPull] = {}
    try:
        # Parents before children: which of two pull requests saying the same came first.
        commits = list(repo.iter_commits(f"{start}..{end}", topo_order=True))
    except git.GitCommandError as exc:
        raise InfrastructureError(f"git log {start}..{end} failed: {exc.stderr.strip()}") from None
    for commit in reversed(commits):  # oldest first: the first merge of a number wins
        message = str(commit.message)
        subject = message.split("\n", 1)[0].strip()
        match = _MERGE.match(subject) or _SQUASH.search(subject)
        if match is None:
            continue
        number = int(match.group(1))
        if number not in found:
            found[number] = MergedPull(
                number=number,
                commit=commit.hexsha,
                subject=subject,
                picked_from=tuple(_PICKED.findall(message)),
            )
    return list(found.values())
