"""The render stage behind the pipeline's contract: its verify compares the rendered inventory
with what release.toml says now, so an edited configuration is rendered again.
"""

from __future__ import annotations

import time

from release.pipeline.contract import Context, StageResult, done


class RenderStage:
    name = "render"

    def plan(self, ctx: Context) -> list[str]:
        return [f"render the Ansible inventory of {ctx.env} pinned to {ctx.tag}"]

    def run(self, ctx: Context) -> StageResult:
        from release.render import render_environment

        started = time.monotonic()
        rendered = render_environment(ctx.config, ctx.env, ctx.tag)
        return done(
            self.name,
            f"{ctx.env}: {len(rendered['hosts'])} host(s) in {rendered['inventory']}",
            started,
            inventory=rendered["inventory"],
            hosts=rendered["hosts"],
        )

    def verify(self, ctx: Context) -> str | None:
        import yaml

        from release.render import environment_vars

        base = ctx.config.resolve_path("rendered").absolute() / ctx.env / ctx.tag / "inventory"
        try:
            hosts = yaml.safe_load((base / "hosts.yml").read_text(encoding="utf-8"))
            values = yaml.safe_load((base / "group_vars" / "all.yml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return "not rendered"
        listed = (((hosts or {}).get("all") or {}).get("children") or {}).get("dirac_servers") or {}
        env = ctx.config.environment(ctx.env)
        if sorted(listed.get("hosts") or {}) != sorted(env.hosts):
            return f"the rendered hosts are not those of {ctx.env} in release.toml"
        wanted = environment_vars(ctx.config, ctx.env, ctx.tag)
        if (values or {}).get("dirac_version") != ctx.tag or any(
            (values or {}).get(k) != v for k, v in wanted.items() if isinstance(v, str | int | bool)
        ):
            return "the rendered variables differ from release.toml"
        return None
