"""From the release configuration to a target: environment -> product -> repository -> backend.

Every stage asks here where a release goes (`for_environment`, `for_product`): the product an
environment runs, the repository it reads, the layout in it, the CVMFS named tag of a version,
and the backend that reaches it. Written once, so publish, deploy, certify and promote can
never disagree about which repository or tag name they mean.

The publisher (`cvmfs`) stands alone and reads no configuration or environment of its own;
this is where the toolkit turns a `[repositories.<name>]` table, its paths (relative to
release.toml) and the CI overrides `DIRAC_RELEASE_CVMFS_HOST` / `DIRAC_RELEASE_CVMFS_SSH_KEY`
into the plain values a backend takes. The overrides are read here, when the backend is made,
so that `dirac-release config` shows the file and not the job's secrets, and through
the one table of variables (release/config/overrides.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cvmfs.backends.base import Backend
    from cvmfs.backends.server import ServerNode
    from cvmfs.layout import Layout
    from release.config import Product, ReleaseConfig, Repository

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


@dataclass(frozen=True)
class Target:
    """One product's place in one repository (and the environment that asked, if any)."""

    config: ReleaseConfig
    product_name: str
    product: Product
    repo_name: str
    repo: Repository
    env_name: str | None = None

    @property
    def layout(self) -> Layout:
        from cvmfs.layout import Layout

        return Layout(self.repo_name, self.repo.prefix)

    def backend(self) -> Backend:
        return make_backend(self.config, self.repo_name, self.repo)

    def tag_name(self, tag: str) -> str:
        """The CVMFS named tag of a version of this product (the repository's `tag_format`)."""
        from release.version import parse_version_arg

        release_version = parse_version_arg(tag)
        return self.repo.tag_format.format(
            product=self.product_name, tag=release_version.tag, version=str(release_version)
        )


def for_environment(config: ReleaseConfig, env_name: str) -> Target:
    """The product an environment runs, in the repository it reads."""
    env = config.environment(env_name)
    product_name, product = config.product(env.product)
    repo_name, repo = config.repository(env.repository, product)
    return Target(config, product_name, product, repo_name, repo, env_name)


def for_product(
    config: ReleaseConfig, product_name: str | None = None, repository: str | None = None
) -> Target:
    """A product (default: the only one) in a repository (default: the product's own)."""
    name, product = config.product(product_name)
    repo_name, repo = config.repository(repository, product)
    return Target(config, name, product, repo_name, repo)
