"""Pull requests' titles and descriptions from GitHub, every page of them.

Listed newest first (`state=closed`, sorted by creation) and followed page by page through
the API's `Link` headers until every wanted number has been seen or the listing passed below
the oldest one: a release's pull requests can be older than the last 100, which is where
reading a single page loses notes. A number the listing does not show (still open, or an
issue number in a squash title) is asked for on its own.
"""

from __future__ import annotations

from release.github_api import NotFound, call, client
from release.notes.compose import Pull


def fetch_pulls(
    repository: str, numbers: list[int], token: str | None = None
) -> tuple[dict[int, Pull], list[int]]:
    """The pull requests found, and the numbers GitHub has no pull request for."""
    if not numbers:
        return {}, []
    gh = client(token)
    repo = call(f"reading repository {repository}", lambda: gh.get_repo(repository),
                repository=repository)  # fmt: skip
    wanted, found = set(numbers), {}
    oldest = min(wanted)
    listing = repo.get_pulls(state="closed", sort="created", direction="desc")

    def walk() -> None:
        for pull in listing:
            if pull.number in wanted:
                found[pull.number] = Pull(pull.number, pull.title or "", pull.body)
            if pull.number <= oldest or wanted <= found.keys():
                return

    call(f"listing the pull requests of {repository}", walk, repository=repository)
    missing = []
    for number in sorted(wanted - found.keys()):
        try:
            pull = call(f"reading pull request #{number} of {repository}",
                        lambda n=number: repo.get_pull(n), repository=repository)  # type: ignore[misc]  # fmt: skip
        except NotFound:
            missing.append(number)  # e.g. an issue number in a squash commit's title
            continue
        found[number] = Pull(pull.number, pull.title or "", pull.body)
    return found, missing
