"""The ordered pipeline of one release, with its plan and its resume.

A run walks the stages in order. A stage an earlier run finished is verified against the world
(bundles, publication, hosts) and not redone; one whose past work no longer verifies is redone,
and the reason is shown and recorded. The first failure stops the run: the stages after it are
`not run`, and a rerun continues from there. Each run is recorded in the release's ledger
(stage `pipeline`), which is what `dirac-release status` and the report read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from release.errors import BadInput, InfrastructureError, ReleaseError
from release.pipeline.contract import Context, Stage, StageResult, StageStatus
from release.pipeline.stages import STAGE_NAMES as ORDER


@dataclass
class PipelineRun:
    product: str
    tag: str
    plan: bool
    results: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0
    error: ReleaseError | None = None

    @property
    def changed_nothing(self) -> bool:
        return all(r.status in (StageStatus.VERIFIED, StageStatus.SKIPPED) for r in self.results)

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.status.ok or r.status is StageStatus.PLANNED
                                          for r in self.results)  # fmt: skip

    @property
    def verdict(self) -> str:
        if self.plan:
            return "plan: nothing was changed"
        if self.error is not None:
            failed = next((r.stage for r in self.results if r.status is StageStatus.FAILED), "?")
            return f"stopped at {failed}: run the same command again to continue from there"
        if self.changed_nothing:
            return "nothing to do: every stage asked for was already done and verifies"
        return "complete"

    def as_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "tag": self.tag,
            "plan": self.plan,
            "verdict": self.verdict,
            "seconds": round(self.seconds, 1),
            "stages": [r.as_dict() for r in self.results],
            **({"error": self.error.as_dict()} if self.error else {}),
        }


def _window(first: str | None, last: str | None) -> tuple[int, int]:
    for given in (first, last):
        if given is not None and given not in ORDER:
            raise BadInput(f"unknown stage {given!r}", fix=f"choose one of: {', '.join(ORDER)}")
    start = ORDER.index(first) if first else 0
    end = ORDER.index(last) if last else len(ORDER) - 1
    if start > end:
        raise BadInput(
            f"--from {first} comes after --until {last}",
            fix=f"the stages run in this order: {', '.join(ORDER)}",
        )
    return start, end


def run_pipeline(
    ctx: Context,
    *,
    stages: Sequence[Stage] | None = None,
    first: str | None = None,
    last: str | None = None,
    plan: bool = False,
    promote: bool = False,
    redo: Callable[[str], bool] = lambda stage: False,
) -> PipelineRun:
    """Plan or run the stages from `first` to `last`; never raises for a stage's failure
    (the caller shows the table first): `PipelineRun.error` holds it."""
    from release.pipeline.stages import all_stages

    stages = list(stages if stages is not None else all_stages())
    start, end = _window(first, last)
    run = PipelineRun(ctx.product, ctx.tag, plan)
    started = time.monotonic()
    for index, stage in enumerate(stages):
        skip = _not_asked(stage.name, index, start, end, first, last, promote, ctx)
        if skip:
            run.results.append(
                StageResult(stage.name, StageStatus.SKIPPED, "not asked", reason=skip)
            )
            continue
        if run.error is not None:
            run.results.append(StageResult(stage.name, StageStatus.NOT_RUN, "",
                                           reason="an earlier stage failed"))  # fmt: skip
            continue
        # What a stage checked was made by the stages before it: once one of those runs again,
        # the later ones run again too (fresh hosts must be certified, not trusted).
        earlier = next((r.stage for r in run.results
                        if r.status in (StageStatus.DONE, StageStatus.PLANNED)), None)  # fmt: skip
        forced = f"{earlier} ran again in this run" if earlier else ""
        if redo(stage.name):
            forced = "asked to redo it (--redo)"
        run.results.append(_one(stage, ctx, plan=plan, forced=forced, run=run))
    run.seconds = time.monotonic() - started
    if not plan:
        ctx.ledger.record("pipeline", run.as_dict())
    return run


def _not_asked(
    name: str, index: int, start: int, end: int, first: str | None, last: str | None,
    promote: bool, ctx: Context,
) -> str:  # fmt: skip
    if index < start:
        return f"before --from {first}"
    if index > end:
        return f"after --until {last}"
    if name == "promote":
        if not promote:
            return "promotion to production is asked with --promote"
        if ctx.version.version.is_prerelease:
            return f"{ctx.tag} is a pre-release: only final releases are promoted"
    return ""


def _one(stage: Stage, ctx: Context, *, plan: bool, forced: str, run: PipelineRun) -> StageResult:
    started = time.monotonic()
    why: str | None = forced
    if not forced:
        ctx.note(f"{stage.name}: checking what an earlier run left ...")
        try:
            why = stage.verify(ctx)
        except ReleaseError as exc:
            why = f"cannot verify: {exc.message}"
    if why is None:
        ctx.note(f"{stage.name}: done before, and still verifies: not redone")
        return StageResult(stage.name, StageStatus.VERIFIED, "done before; verifies now",
                           seconds=time.monotonic() - started)  # fmt: skip
    if plan:
        return StageResult(stage.name, StageStatus.PLANNED, "; ".join(stage.plan(ctx)), reason=why)
    ctx.note(f"{stage.name}: {'; '.join(stage.plan(ctx))} ({why}) ...")
    try:
        result = stage.run(ctx)
    except (ReleaseError, OSError) as exc:
        # An OSError a stage let through (a disk, a permission) is still the run's failure
        # to record and show, not a crash that loses the table.
        error = (
            exc
            if isinstance(exc, ReleaseError)
            else InfrastructureError(
                f"{stage.name}: {exc.strerror or exc}"
                + (f": {exc.filename}" if exc.filename else ""),
                fix="fix the cause, then run the same command again",
            )
        )
        run.error = error
        return StageResult(stage.name, StageStatus.FAILED, error.message, reason=why,
                           seconds=time.monotonic() - started)  # fmt: skip
    result.reason = why
    result.seconds = time.monotonic() - started
    return result
