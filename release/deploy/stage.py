"""The deploy stage behind the pipeline's contract: its verify asks the hosts which version
they run, so a host moved by hand since is named and upgraded again.
"""

from __future__ import annotations

import time

from release.pipeline.contract import Context, StageResult, done


class DeployStage:
    name = "deploy"

    def plan(self, ctx: Context) -> list[str]:
        hosts = ", ".join(ctx.config.environment(ctx.env).hosts)
        action = "install" if ctx.install else "rolling upgrade"
        return [f"{action} of {ctx.tag} on {hosts} ({ctx.env}), rolled back on failure"]

    def run(self, ctx: Context) -> StageResult:
        from release.deploy import check_outcome, deploy_environment

        started = time.monotonic()
        result = deploy_environment(ctx.config, env_name=ctx.env, version=ctx.tag,
                                    install=ctx.install, echo=ctx.live,
                                    progress=ctx.note if ctx.live else None)  # fmt: skip
        check_outcome(result)
        return done(
            self.name,
            ", ".join(f"{h['host']} {h['running']} ({h['result']})" for h in result["hosts"]),
            started,
            hosts={h["host"]: h["running"] for h in result["hosts"]},
        )

    def verify(self, ctx: Context) -> str | None:
        from release.certify import host_checks
        from release.certify.checks import PASSED

        records = [
            r
            for r in ctx.config.ledger(ctx.product, "environments").records("deploy")
            if r.get("environment") == ctx.env and r.get("version") == ctx.tag
        ]
        if not records:
            return f"never deployed to {ctx.env}"
        wrong = [c for c in host_checks(ctx.config, ctx.env, ctx.tag) if c.result != PASSED]
        if wrong:
            return f"{wrong[0].target}: {wrong[0].name}: {wrong[0].evidence}"
        return None
