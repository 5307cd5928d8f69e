"""The render stage behind the pipeline's contract: its verify compares the rendered inventory
(a k3s environment's manifests, and the VO images' ContainerRoots) with what release.toml and
the values say now, so an edited configuration is rendered again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from release.pipeline.contract import Context, StageResult, done


class RenderStage:
    name = "render"

    def plan(self, ctx: Context) -> list[str]:
        steps = [f"render the Ansible inventory of {ctx.env} pinned to {ctx.tag}"]
        if ctx.config.environment(ctx.env).runtime == "k3s":
            steps.append(f"render and validate the k3s manifests of {ctx.env} pinned to {ctx.tag}")
        return steps

    def run(self, ctx: Context) -> StageResult:
        from release.errors import BadInput
        from release.render import render_environment

        started = time.monotonic()
        other = _runs_other_product(ctx)
        if other is not None:
            # The tag is this product's: pinned into another product's environment it would
            # install a version that does not exist (on k3s: DiracX images of a DIRAC tag).
            raise BadInput(
                f"environment {ctx.env} runs {other}, not {ctx.product}: {ctx.tag} cannot be "
                "rendered for it",
                where=str(ctx.config.path),
                fix=f"pass --env with an environment whose product is {ctx.product}",
            )
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

        from release.errors import BadInput

        if _runs_other_product(ctx) is not None:
            return f"{ctx.env} runs another product"

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
        try:
            wanted = environment_vars(ctx.config, ctx.env, ctx.tag)
        except BadInput as exc:  # e.g. an [images] table whose product cannot be told
            return f"the variables would not render now: {exc.message}"
        if (values or {}).get("dirac_version") != ctx.tag or any(
            (values or {}).get(k) != v for k, v in wanted.items() if isinstance(v, str | int | bool)
        ):
            return "the rendered variables differ from release.toml"
        roots = _container_roots_differ(ctx, values or {}, wanted, base.parent)
        if roots is not None:
            return roots
        if env.runtime == "k3s":
            return _k8s_differs(ctx, base.parent / "k8s")
        return None


def _runs_other_product(ctx: Context) -> str | None:
    """The product the environment runs when it is not the one being released, else None."""
    named = ctx.config.environment(ctx.env).product
    return named if named is not None and named != ctx.product else None


def _container_roots_differ(
    ctx: Context, values: dict[str, Any], wanted: dict[str, Any], folder: Path
) -> str | None:
    """Why the rendered ContainerRoots (the group variable and site/container-roots.cfg) are
    not what rendering now would write, or None when they are.

    They follow [images] of release.toml, which the other variables do not see: an image
    table added, removed or renamed, or another repository, changes them alone.
    """
    from release.render.containers import CONTAINER_ROOTS_VAR, SITE_FILE, site_config

    roots = wanted.get(CONTAINER_ROOTS_VAR)
    if values.get(CONTAINER_ROOTS_VAR) != roots:
        return "the rendered container roots differ from the [images] of release.toml"
    path = folder / SITE_FILE
    env = ctx.config.environment(ctx.env)
    text = site_config(ctx.env, ctx.tag, env.platform, roots) if roots else None
    try:
        written: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        written = None
    except OSError:
        return f"{SITE_FILE} cannot be read"
    if written != text:
        return f"the rendered {SITE_FILE} differs from the [images] of release.toml"
    return None


def _k8s_differs(ctx: Context, folder: Path) -> str | None:
    """Why the k8s/ folder is not what rendering now would write, or None when it is."""
    from release.errors import BadInput
    from release.render.diff import read_render
    from release.render.k8s import render_k8s

    try:
        wanted = render_k8s(ctx.config, ctx.env, ctx.tag).files
    except BadInput as exc:
        return f"the k3s manifests would not render now: {exc.message}"
    if read_render(folder) != wanted:
        return "the rendered k3s manifests differ from release.toml and the values"
    return None
