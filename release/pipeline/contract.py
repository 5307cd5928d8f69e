"""The stage contract: what every stage of the pipeline offers, and the typed result it returns.

A stage can say what it would do (`plan`), do it (`run`), and tell whether what an earlier run
left is still true (`verify`). That last one is what makes resume safe: a rerun trusts no
record on its word, it checks the bundle, the publication, the hosts, and redoes (saying why)
whatever no longer holds. New stages (GitHub release, k3s, pilot files, images) implement the
same three methods and take their place in the ordered list of `release.pipeline.runner`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from release.config import ReleaseConfig
    from release.ledger import Ledger
    from release.version import ReleaseVersion


class StageStatus(StrEnum):
    """Where a stage stands after a run, or in a plan."""

    DONE = "done"  # ran in this run, and succeeded
    VERIFIED = "verified"  # finished before, checked again now, not redone
    PLANNED = "planned"  # --plan: would run
    SKIPPED = "skipped"  # not asked for (before --from, after --until, promote without --promote)
    FAILED = "failed"  # ran and failed: the run stops here
    NOT_RUN = "not run"  # after a failure, or could not run here (a person must hear why)

    @property
    def ok(self) -> bool:
        return self in (StageStatus.DONE, StageStatus.VERIFIED, StageStatus.SKIPPED)


@dataclass
class StageResult:
    stage: str
    status: StageStatus
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # Why it was redone, skipped, not run or failed; empty when there is nothing to say.
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": self.status.value,
            "summary": self.summary,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "evidence": self.evidence,
        }


@dataclass
class Context:
    """What one pipeline run is about: product, tag, environments, options, and where to talk."""

    config: ReleaseConfig
    product: str
    version: ReleaseVersion
    env: str = "certification"
    production: str = "production"
    install: bool = False
    live: bool = True
    note: Callable[[str], None] = lambda text: None

    @property
    def tag(self) -> str:
        return self.version.tag

    @property
    def ledger(self) -> Ledger:
        return self.config.ledger(self.product, self.tag)


def done(name: str, summary: str, started: float, **evidence: Any) -> StageResult:
    """The result of a stage that ran now and succeeded, timed from `started` (monotonic)."""
    import time

    return StageResult(name, StageStatus.DONE, summary, evidence, time.monotonic() - started)


class Stage(Protocol):
    """One step of a release. `verify` returns None when an earlier run still holds, else why not."""

    name: str

    def plan(self, ctx: Context) -> list[str]: ...

    def run(self, ctx: Context) -> StageResult: ...

    def verify(self, ctx: Context) -> str | None: ...
