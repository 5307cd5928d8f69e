"""The promote stage behind the pipeline's contract: its verify looks at where `pro` points
in the production repository now, not only at the record.
"""

from __future__ import annotations

import time

from release.pipeline.contract import Context, StageResult, done


class PromoteStage:
    name = "promote"

    def plan(self, ctx: Context) -> list[str]:
        hosts = ", ".join(ctx.config.environment(ctx.production).hosts)
        return [f"move pro to {ctx.tag}, upgrade {hosts} ({ctx.production}), certify it"]

    def run(self, ctx: Context) -> StageResult:
        from release.promote import promote_release

        started = time.monotonic()
        result = promote_release(ctx.config, version=ctx.tag, source_env=ctx.env,
                                 target_env=ctx.production, install=ctx.install, echo=ctx.live,
                                 progress=ctx.note if ctx.live else None)  # fmt: skip
        return done(
            self.name,
            "; ".join(step["result"] for step in result["steps"][1:]),
            started,
            to=ctx.production,
        )

    def verify(self, ctx: Context) -> str | None:
        from cvmfs.layout import PRO_LINK
        from release.targets import for_environment

        records = [r for r in ctx.ledger.records("promote") if r.get("to") == ctx.production]
        if not records or not records[-1].get("passed"):
            return f"never promoted to {ctx.production}"
        target = for_environment(ctx.config, ctx.production)
        entries = target.backend().entries(target.layout.prefix)
        now = entries.get(PRO_LINK)
        if now != ctx.tag:
            return f"pro points to {now or 'nothing'} now"
        vo = ctx.config.environment_pilot(ctx.production)
        if vo is not None:
            from release.pilot.layout import PILOT_LINK, link_target

            if entries.get(PILOT_LINK) != link_target(ctx.tag, vo):
                return f"pilot points to {entries.get(PILOT_LINK) or 'nothing'} now"
        return None
