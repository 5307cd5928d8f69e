"""Release facts read from a real git repository: which commit a tag names, and what came before.

A build is reproducible only if everything it stamps comes from the tagged commit itself, not
from the clock or the checkout: ``commit_time`` becomes ``SOURCE_DATE_EPOCH`` and ``tree``
identifies the exact sources. ``previous_tag`` bounds the release notes.

GitPython is imported inside the functions: importing it spawns ``git --version``, and the CLI
must start fast for commands (``--help``, version checks) that never touch a repository.
Tags that are not release tags (legacy ``v7r3p38``, ``latest``, dev versions) are skipped
silently when listing, because old DIRAC repositories are full of them; asking for one by name
is refused by :func:`~release.version.parse_tag`.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from release.errors import BadInput, InfrastructureError
from release.version import ReleaseVersion, branch_series, parse_tag

if TYPE_CHECKING:
    import git

__all__ = [
    "TagInfo",
    "is_dirty",
    "latest_tag",
    "open_repo",
    "read_tag",
    "release_tags",
]

StrPath = str | os.PathLike[str]

# How many existing tags a "no such tag" error suggests; enough to spot a typo, short to read.
_NEAREST = 5


@dataclass(frozen=True)
class TagInfo:
    """Everything a release stage needs to know about one tag, resolved once."""

    tag: str
    version: ReleaseVersion
    commit: str
    commit_time: int
    previous_tag: str | None
    tree: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form; derived facts are included so CI steps need not re-derive them."""
        return {
            "tag": self.tag,
            "version": str(self.version),
            "series": self.version.series,
            "prerelease": self.version.is_prerelease,
            "channels": [str(channel) for channel in self.version.channels],
            "commit": self.commit,
            "commit_time": self.commit_time,
            "previous_tag": self.previous_tag,
            "tree": self.tree,
        }


def open_repo(path: StrPath) -> git.Repo:
    """Open ``path`` as a repository, turning GitPython's exceptions into a readable refusal.

    Parent directories are not searched: reading tags from an enclosing repository by accident
    would release the wrong project.
    """
    _ensure_git()
    import git

    where = os.fspath(path)
    if not Path(path).exists():
        raise BadInput(
            "path does not exist",
            where=where,
            fix="Pass the path of a git checkout (the directory that contains .git).",
        )
    try:
        return git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise BadInput(
            "not a git repository",
            where=where,
            fix=(
                "Pass the top directory of a git checkout (the one that contains .git); "
                "clone the project first if needed."
            ),
        ) from None


def read_tag(path: StrPath, tag: str) -> TagInfo:
    """Resolve a release tag (annotated or lightweight) to the commit it names.

    The tag is validated before the repository is touched, so a legacy or misspelled tag is
    refused with the right spelling even when a tag of that name exists.
    """
    version = parse_tag(tag)
    repo = open_repo(path)
    commit = _tag_commit(repo, tag)
    if commit is None:
        kind = _tag_object_type(repo, tag)
        if kind is not None:
            # The tag exists (and a listing shows it): saying "does not exist" would mislead.
            raise BadInput(
                f"tag {tag} points to a {kind}, not to a commit: there is nothing to build",
                where=os.fspath(path),
                fix=f"tag the release commit instead (git tag -f -a {tag} <commit>)",
            )
        raise BadInput(
            f"tag {tag} does not exist in this repository",
            where=os.fspath(path),
            fix=_missing_tag_fix(_release_tags(repo), version),
        )
    return _tag_info(repo, tag, version, commit)


def _tag_object_type(repo: git.Repo, name: str) -> str | None:
    """What refs/tags/<name> finally points at (tree, blob...), or None when there is no tag."""
    import git

    try:
        kind = repo.git.execute(
            ["git", "cat-file", "-t", f"refs/tags/{name}^{{}}"], with_extended_output=False
        )
    except git.GitCommandError:
        return None
    return str(kind).strip() or None


def release_tags(path: StrPath) -> list[tuple[ReleaseVersion, str]]:
    """All valid release tags, oldest version first; every other tag is ignored."""
    return _release_tags(open_repo(path))


def latest_tag(path: StrPath, branch: str | None = None) -> TagInfo | None:
    """The highest release tag reachable from ``branch`` (HEAD when None), or None if none is.

    "Highest" is by version, not by tag name or date: git lists ``v8.0.9`` after ``v8.0.10``,
    and a merge can bring in a tag that was made later but names an older release.
    """
    repo = open_repo(path)
    rev = branch if branch is not None else "HEAD"
    head = _resolve_commit(repo, rev)
    if head is None and branch is None:
        raise BadInput(
            "HEAD does not name a commit (the repository has no commits yet)",
            where=os.fspath(path),
            fix="Check out the project's history first (clone it, or fetch and check out a branch).",
        )
    if head is None:
        raise BadInput(
            f"branch {branch!r} does not name a commit in this repository",
            where=os.fspath(path),
            fix=(
                "Check the spelling; a branch that exists only on the remote is spelled "
                f"origin/{branch}, or fetch it with 'git fetch origin {branch}:{branch}'."
            ),
        )
    candidates = _valid(_merged_tags(repo, head))
    series = branch_series(branch)
    if series is not None:
        # A maintenance branch's history can contain tags of newer series (merged pre-releases):
        # its latest release is the latest of its own series.
        candidates = [pair for pair in candidates if pair[0].series == series]
    if not candidates:
        return None
    version, name = max(candidates)
    commit = _tag_commit(repo, name)
    if commit is None:  # pragma: no cover - the tag was deleted while we were reading
        raise InfrastructureError(f"tag {name} vanished while reading", where=os.fspath(path))
    return _tag_info(repo, name, version, commit)


def is_dirty(path: StrPath) -> bool:
    """Whether the checkout differs from HEAD, so a build from it would not match any tag.

    Untracked files count (they could end up in an sdist); ignored files do not.
    """
    repo = open_repo(path)
    import git

    try:
        return repo.is_dirty(index=True, working_tree=True, untracked_files=True)
    except git.GitCommandError as exc:
        raise InfrastructureError(
            f"git status failed: {_stderr(exc)}", where=os.fspath(path)
        ) from None


def _ensure_git() -> None:
    """Import GitPython once, reporting a missing git binary as infrastructure, not a crash.

    Every public function goes through :func:`open_repo`, so later ``import git`` statements
    only hit the module cache.
    """
    try:
        import git  # noqa: F401
    except ImportError as exc:  # GitPython raises ImportError when no git executable is found
        raise InfrastructureError(
            f"cannot use git: {exc}",
            fix="Install git and make sure it is on PATH (or set GIT_PYTHON_GIT_EXECUTABLE).",
        ) from None


def _tag_info(repo: git.Repo, name: str, version: ReleaseVersion, commit: git.Commit) -> TagInfo:
    return TagInfo(
        tag=name,
        version=version,
        commit=commit.hexsha,
        commit_time=int(commit.committed_date),
        previous_tag=_previous_tag(repo, commit, version),
        tree=commit.tree.hexsha,
    )


def _previous_tag(repo: git.Repo, commit: git.Commit, version: ReleaseVersion) -> str | None:
    """Highest lower release tag in ``commit``'s history, not counting tags on ``commit`` itself.

    Tags on the same commit are skipped because they name the same sources (``v9.0.0rc3`` then
    ``v9.0.0`` on one commit): release notes against them would be empty. Higher versions are
    skipped because a merge can bring a newer series into an older branch's history.
    """
    candidates = [pair for pair in _valid(_merged_tags(repo, commit.hexsha)) if pair[0] < version]
    for _version, name in sorted(candidates, reverse=True):
        tagged = _tag_commit(repo, name)
        if tagged is not None and tagged.hexsha != commit.hexsha:
            return name
    return None


def _release_tags(repo: git.Repo) -> list[tuple[ReleaseVersion, str]]:
    return sorted(_valid(_run(repo, "tag", "--list").splitlines()))


def _merged_tags(repo: git.Repo, rev: str) -> list[str]:
    """Tag names whose commit is reachable from ``rev``; git walks the graph far faster than we."""
    return _run(repo, "tag", "--merged", rev).splitlines()


def _valid(names: list[str]) -> list[tuple[ReleaseVersion, str]]:
    found = []
    for name in names:
        try:
            found.append((parse_tag(name), name))
        except BadInput:
            continue
    return found


def _tag_commit(repo: git.Repo, name: str) -> git.Commit | None:
    """The commit a tag finally points at (annotated tags peeled), or None if there is none."""
    return _resolve_commit_object(repo, f"refs/tags/{name}")


def _resolve_commit(repo: git.Repo, rev: str) -> str | None:
    commit = _resolve_commit_object(repo, rev)
    return None if commit is None else commit.hexsha


def _resolve_commit_object(repo: git.Repo, rev: str) -> git.Commit | None:
    """``rev`` peeled to a commit, or None when it names nothing or something else (a tree)."""
    import git

    if not rev or rev.startswith("-"):  # would be read as an option, never as a revision
        return None
    try:
        sha = repo.git.execute(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"])
    except git.GitCommandError:
        return None
    return repo.commit(str(sha).strip())


def _run(repo: git.Repo, *args: str) -> str:
    """Run a git command in ``repo``; a failing command is an infrastructure problem here."""
    import git

    try:
        return str(repo.git.execute(["git", *args]))
    except git.GitCommandError as exc:
        raise InfrastructureError(
            f"git {' '.join(args)} failed: {_stderr(exc)}",
            where=str(repo.working_dir),
        ) from None


def _missing_tag_fix(tags: list[tuple[ReleaseVersion, str]], wanted: ReleaseVersion) -> str:
    """Suggest the existing tags closest in version order to the one asked for."""
    if not tags:
        return (
            "The repository has no release tags at all; fetch them with 'git fetch --tags' "
            "(CI checkouts are often shallow and tagless)."
        )
    index = bisect_left(tags, (wanted, ""))
    below, above = tags[:index][::-1], tags[index:]
    nearest: list[tuple[ReleaseVersion, str]] = []
    while len(nearest) < _NEAREST and (below or above):
        if below:
            nearest.append(below.pop(0))
        if above and len(nearest) < _NEAREST:
            nearest.append(above.pop(0))
    names = ", ".join(name for _version, name in sorted(nearest))
    return (
        f"Nearest existing release tags: {names}.\n"
        "If the tag was just pushed, fetch it with 'git fetch --tags'."
    )


def _stderr(exc: Exception) -> str:
    text = str(getattr(exc, "stderr", "") or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip() or str(exc)
