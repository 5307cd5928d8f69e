"""The certify stage behind the pipeline's contract: its verify is promotion's gate (a passed
certification of the bundles published now), so the two can never disagree.
"""

from __future__ import annotations

import time

from release.errors import ReleaseError
from release.pipeline.contract import Context, StageResult, done


class CertifyStage:
    name = "certify"

    def plan(self, ctx: Context) -> list[str]:
        return [f"certify {ctx.tag} on {ctx.env} (CVMFS, hosts, DiracX smoke checks)"]

    def run(self, ctx: Context) -> StageResult:
        from release.certify import certify_release, check_outcome

        started = time.monotonic()
        record = certify_release(
            ctx.config, env_name=ctx.env, version=ctx.tag, progress=ctx.note if ctx.live else None
        )
        check_outcome(record)
        counts = record["counts"]
        return done(
            self.name,
            f"passed: {counts['passed']} passed, {counts['skipped']} skipped",
            started,
            counts=counts,
            manifest_sha256=record["manifest_sha256"],
        )

    def verify(self, ctx: Context) -> str | None:
        from release.promote import certification_gate

        try:
            certification_gate(ctx.config, ctx.product, ctx.tag, ctx.env)
        except ReleaseError as exc:
            return exc.message
        return None
