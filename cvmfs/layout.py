"""Where a release lives in a repository: `<prefix>/<tag>/Linux-<arch>`, links beside it."""

from __future__ import annotations

from dataclasses import dataclass

#: Moved only by promotion, never by publish.
PRO_LINK = "pro"


@dataclass(frozen=True)
class Layout:
    repository: str
    prefix: str

    def version_dir(self, tag: str) -> str:
        return f"{self.prefix}/{tag}"

    def platform_dir(self, tag: str, arch: str) -> str:
        return f"{self.prefix}/{tag}/Linux-{arch}"

    def link(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def client_path(self, rel: str) -> str:
        """The path a client sees, e.g. /cvmfs/dirac.egi.eu/dirac/v9.0.0/Linux-x86_64."""
        return f"/cvmfs/{self.repository}/{rel}"
