"""The publish stage behind the pipeline's contract: its verify reads the publication itself
(every file against its manifest), not the ledger's word that it happened.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from release.errors import ReleaseError
from release.pipeline.contract import Context, StageResult, done

if TYPE_CHECKING:
    from cvmfs.backends.base import Backend
    from cvmfs.layout import Layout


class PublishStage:
    name = "publish"

    def plan(self, ctx: Context) -> list[str]:
        from release.targets import for_product

        target = for_product(ctx.config, ctx.product)
        repo_name, repo = target.repo_name, target.repo
        return [
            f"publish {ctx.tag} to /cvmfs/{repo_name}/{repo.prefix}/{ctx.tag} (one transaction)"
        ]

    def run(self, ctx: Context) -> StageResult:
        from release.progress import Progress
        from release.publish import publish_release

        started = time.monotonic()
        with Progress(enabled=ctx.live, steps=6) as progress:
            publication = publish_release(
                ctx.config,
                version=ctx.tag,
                product_name=ctx.product,
                step=lambda text: progress.step("publish", text),
            )
        if publication["status"] == "already published":
            # The publisher's rerun looks at sizes and modes only: the pipeline, which reran
            # this stage because something did not verify, checks every file again.
            problem = self.verify(ctx)
            if problem is not None:
                from release.errors import CheckFailed

                raise CheckFailed(
                    f"{ctx.tag} is already published but {problem}",
                    fix="a published release is never overwritten: investigate the repository, "
                    "restore its revision, or release a new version",
                )
        return done(
            self.name,
            f"{publication['status']}: /cvmfs/{publication['repository']}/"
            f"{publication['version_dir']} (revision {publication['revision']})",
            started,
            repository=publication["repository"],
            revision=publication["revision"],
            tag_name=publication.get("tag"),
        )

    def verify(self, ctx: Context) -> str | None:
        from release.targets import for_product

        if not ctx.ledger.records("publish"):
            return "never published"
        try:
            # Where this stage publishes: the product's repository (an environment may read
            # another, and a configuration that only publishes has none).
            target = for_product(ctx.config, ctx.product)
            backend, layout = target.backend(), target.layout
            manifests = {
                arch: backend.read_manifest(layout.platform_dir(ctx.tag, arch))
                for arch in sorted(ctx.config.platforms)
            }
        except ReleaseError as exc:
            return f"the repository cannot be read: {exc.message}"
        build = ctx.ledger.latest("build") or {}
        built = {p["platform"]: p.get("manifest_sha256") for p in build.get("platforms", [])}
        for arch, manifest in manifests.items():
            rel = layout.platform_dir(ctx.tag, arch)
            if manifest is None:
                return f"{layout.client_path(rel)} is not published any more"
            problem = verify_tree(backend, layout, rel, manifest)
            if problem is not None:
                return problem
            if built.get(arch) and backend.manifest_digest(rel) != built[arch]:
                return f"{layout.client_path(rel)} is not the bundle built now"
        from release.pilot.layout import version_rel

        for vo in ctx.config.product_pilots(ctx.product):
            rel = version_rel(layout.version_dir(ctx.tag), vo)
            manifest = backend.read_manifest(rel)
            if manifest is None:
                return f"{layout.client_path(rel)} (the pilot files of {vo}) is not published"
            problem = verify_tree(backend, layout, rel, manifest)
            if problem is not None:
                return problem
        return None


def verify_tree(backend: Backend, layout: Layout, rel: str, manifest: dict[str, Any]) -> str | None:
    """Why the published tree at `rel` does not match its manifest (every file read), or None:
    what a stage's verify says instead of trusting its record."""
    problems = backend.verify_published(rel, manifest)
    if problems:
        return f"{layout.client_path(rel)}: {len(problems)} problem(s): {problems[0]}"
    return None
