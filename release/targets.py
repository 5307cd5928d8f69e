"""From the release configuration to a publishing target: a repository's backend.

The publisher (`cvmfs`) stands alone and reads no configuration or environment of its own;
this is where the toolkit turns a `[repositories.<name>]` table, its paths (relative to
release.toml) and the CI overrides `DIRAC_RELEASE_CVMFS_HOST` / `DIRAC_RELEASE_CVMFS_SSH_KEY`
into the plain values a backend takes. The overrides are read here, when the backend is made,
so that `dirac-release config` shows the file and not the job's secrets, and through
the one table of variables (release/config/overrides.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cvmfs.backends.base import Backend
    from cvmfs.backends.server import ServerNode
    from release.config import ReleaseConfig, Repository

HOST_ENV = "DIRAC_RELEASE_CVMFS_HOST"
SSH_KEY_ENV = "DIRAC_RELEASE_CVMFS_SSH_KEY"


def server_node(config: ReleaseConfig, repo: Repository) -> ServerNode:
    """The node a `backend = "server"` repository publishes on, overrides applied.

    An override that is set but empty counts as unset, as every `DIRAC_RELEASE_*` variable.
    The key from the environment is used as given; the one from the file is relative to it.
    """
    from cvmfs.backends.server import ServerNode
    from release.config import overrides

    env_key = overrides.get(SSH_KEY_ENV)
    if env_key:
        key: Path | None = Path(env_key)
    else:
        key = Path(config.resolve_path(repo.ssh_key)) if repo.ssh_key else None
    return ServerNode(
        host=overrides.get(HOST_ENV) or repo.host,
        user=repo.user,
        ssh_key=key,
        ssh_options=repo.ssh_options,
        cvmfs_server=repo.cvmfs_server,
        mount_root=repo.mount_root,
        stratum_root=repo.stratum_root,
        spool_root=repo.spool_root,
    )


def make_backend(config: ReleaseConfig, name: str, repo: Repository) -> Backend:
    """The backend repository `name` asks for (imported only when a command needs one)."""
    if repo.backend == "directory":
        from cvmfs.backends.directory import DirectoryBackend

        return DirectoryBackend(name, config.resolve_path(repo.path or "."))
    from cvmfs.backends.server import ServerBackend

    return ServerBackend(name, server_node(config, repo))
