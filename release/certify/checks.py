"""One check: a name, a target, a result and the evidence that decided it.

Checks never raise for what they find: a wrong answer is a failed check with evidence; only a
target that cannot be reached at all is marked `unreachable`, which certify maps to exit 3.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from release.credentials import redact


class CheckResult(StrEnum):
    """A check's verdict; a StrEnum, so records and JUnit keep the same words."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"


PASSED, FAILED, SKIPPED, UNREACHABLE = (
    CheckResult.PASSED, CheckResult.FAILED, CheckResult.SKIPPED, CheckResult.UNREACHABLE)  # fmt: skip


class CheckFailure(Exception):
    """Raised inside a check body: the check failed, the message is its evidence."""


class Unreachable(Exception):
    """Raised inside a check body: the target did not answer at all."""


@dataclass
class Check:
    group: str
    name: str
    target: str
    result: str
    evidence: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.result in (PASSED, SKIPPED)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_check(group: str, name: str, target: str, body: Callable[[], str]) -> Check:
    """Run `body`, which returns its evidence or raises CheckFailure/Unreachable."""
    started = time.monotonic()
    try:
        evidence, result = body(), PASSED
    except CheckFailure as exc:
        evidence, result = str(exc), FAILED
    except Unreachable as exc:
        evidence, result = str(exc), UNREACHABLE
    # Evidence is printed and recorded: whatever a server echoed, no secret of the run stays.
    return Check(
        group, name, target, result, redact(evidence), round(time.monotonic() - started, 3)
    )


def skipped(group: str, name: str, target: str, reason: str) -> Check:
    return Check(group, name, target, SKIPPED, redact(reason), 0.0)
