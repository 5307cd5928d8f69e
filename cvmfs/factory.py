"""Build the backend a repository's configuration asks for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cvmfs.backends.base import Backend

if TYPE_CHECKING:
    from release.config import ReleaseConfig, Repository


def make_backend(config: ReleaseConfig, name: str, repo: Repository) -> Backend:
    if repo.backend == "directory":
        from cvmfs.backends.directory import DirectoryBackend

        return DirectoryBackend(name, config.resolve_path(repo.path or "."))
    from cvmfs.backends.server import ServerBackend

    key = Path(config.resolve_path(repo.ssh_key)) if repo.ssh_key else None
    return ServerBackend(name, repo, ssh_key=key)
