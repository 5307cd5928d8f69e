"""The interface every backend provides, and the facts it reports.

The publisher only speaks this interface, so the protocol (preflight, one transaction, verify,
publish or abort, verify again) is written once and tested against both backends.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Owner:
    """Who holds a transaction: enough to tell a live publisher from a dead one."""

    user: str
    host: str
    pid: int
    started: str
    publication: str

    @classmethod
    def me(cls, publication: str) -> Owner:
        return cls(
            user=getpass.getuser(),
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            publication=publication,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpenTransaction:
    lease: str
    owner: Owner | None
    stale: bool
    detail: str = ""

    def describe(self) -> str:
        if self.owner is None:
            return f"a transaction on /{self.lease} (owner unknown{': ' + self.detail if self.detail else ''})"
        o = self.owner
        state = "its process is gone" if self.stale else "running"
        return (
            f"a transaction on /{self.lease} by {o.user}@{o.host} pid {o.pid} since {o.started} "
            f"publishing {o.publication} ({state})"
        )


@dataclass(frozen=True)
class Tag:
    name: str
    revision: int
    timestamp: int
    digest: str
    description: str = ""


@dataclass
class RepoStatus:
    repository: str
    exists: bool
    revision: int = 0
    transactions: list[OpenTransaction] = field(default_factory=list)
    whitelist_expires: datetime | None = None


class Transaction(Protocol):
    """An open transaction: stage changes, verify them, then publish or abort."""

    def sync_tree(self, rel: str, source: Path, manifest: dict[str, Any]) -> None: ...

    def mark_catalog(self, rel: str) -> None: ...

    def set_link(self, rel_dir: str, name: str, target: str) -> None: ...

    def remove(self, rel: str) -> None: ...

    def verify_staged(self, rel: str, manifest: dict[str, Any]) -> list[str]: ...

    def changes(self) -> int: ...

    def publish(self, tag: str | None, message: str, digest: str) -> int: ...

    def abort(self) -> None: ...


class Backend(Protocol):
    repository: str
    kind: str

    def status(self) -> RepoStatus: ...

    def tags(self) -> list[Tag]: ...

    def open(self, lease: str, owner: Owner, wait_s: float) -> Transaction: ...

    def read_manifest(self, rel: str) -> dict[str, Any] | None: ...

    def manifest_digest(self, rel: str) -> str | None:
        """The published manifest's digest (`cvmfs.bundle_contract.manifest_digest`: the
        SHA-256 of its bytes), None when it is not there: what certify vouches for and what
        promote compares, the same value the build recorded."""
        ...

    def verify_published(
        self, rel: str, manifest: dict[str, Any], *, shallow: bool = False
    ) -> list[str]:
        """Problems of a published tree against its manifest. `shallow`: a fast look (what
        exists, sizes, modes, links) for a rerun's "already published"; otherwise every
        file's content."""
        ...

    def entries(self, rel_dir: str) -> dict[str, str | None]: ...

    def clear_stale(self, publication: str | None) -> list[str]: ...


def check_clearable(repository: str, held: OpenTransaction, publication: str | None) -> None:
    """Refuse to clear a live transaction, or (for a publication's rerun) another one's."""
    from cvmfs.errors import InfrastructureError

    if not held.stale:
        raise InfrastructureError(
            f"{repository} has {held.describe()}",
            fix="it is not stale: wait for it to finish (publish waits up to the repository's 'wait' seconds)",
        )
    if publication is not None and held.owner is not None and held.owner.publication != publication:
        raise InfrastructureError(
            f"{repository} has {held.describe()}",
            fix="it belongs to another publication; after checking, clear it with:\n"
            f"dirac-release cvmfs abort --repository {repository} --stale",
        )
