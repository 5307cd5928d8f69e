"""The image stage behind the pipeline's contract: the product's VO images, built for the tag
and published beside the release; its verify reads the published trees (every file against
its manifest) and compares their image digests with the latest build, not the ledger's word.

A product without `[images.<vo>]` tables has nothing to do here, and says so.
"""

from __future__ import annotations

import time
from typing import Any

from release.errors import ReleaseError
from release.pipeline.contract import Context, StageResult, done


class ImageStage:
    name = "image"

    def plan(self, ctx: Context) -> list[str]:
        vos = ctx.config.product_images(ctx.product)
        if not vos:
            return [f"no VO images: release.toml has no [images.<vo>] for {ctx.product}"]
        from release.image.publish import container_root

        arches = ", ".join(sorted(ctx.config.platforms))
        steps = []
        for vo in vos:
            repo_name, repo, image = _where(ctx, vo)
            folder = container_root(repo_name, repo.prefix, vo, image, ctx.tag, None)
            steps.append(f"build the image of {vo} for {arches} and publish it (one "
                         f"transaction): {folder}")  # fmt: skip
        return steps

    def run(self, ctx: Context) -> StageResult:
        from release.image.build import build_images
        from release.image.publish import publish_images
        from release.progress import Progress

        started = time.monotonic()
        vos = ctx.config.product_images(ctx.product)
        if not vos:
            return done(self.name, f"no VO images configured for {ctx.product}", started)
        parts, evidence = [], {}
        for vo in vos:
            with Progress(enabled=ctx.live, steps=4) as progress:
                builds = build_images(ctx.config, version=ctx.tag, vo=vo, progress=progress)
                published = publish_images(
                    ctx.config, version=ctx.tag, vo=vo,
                    step=lambda text, vo=vo: progress.step(f"image {vo}", text),
                )[0]  # fmt: skip
            if published["status"] == "already published":
                problem = _published_problem(ctx, vo)
                if problem is not None:
                    from release.errors import CheckFailed

                    raise CheckFailed(
                        f"the image of {vo} for {ctx.tag} is already published but {problem}",
                        fix="a published image is never overwritten: investigate the "
                        "repository, restore its revision, or release a new version",
                    )
            digests = {b.arch: b.manifest_digest for b in builds}
            statuses = sorted({b.status for b in builds})
            parts.append(
                f"{vo} ({'/'.join(statuses)}; "
                + ", ".join(f"{a} {d.removeprefix('sha256:')[:12]}" for a, d in digests.items())
                + f"): {published['status']}, {published['container_root_any']}"
            )
            evidence[vo] = {
                "digests": digests,
                "status": published["status"],
                "revision": published.get("revision"),
                "container_root": published["container_root"],
            }
        return done(self.name, "; ".join(parts), started, images=evidence)

    def verify(self, ctx: Context) -> str | None:
        for vo in ctx.config.product_images(ctx.product):
            problem = _published_problem(ctx, vo)
            if problem is not None:
                return problem
        return None


def _where(ctx: Context, vo: str) -> tuple[str, Any, str]:
    from release.image.publish import _repository, image_name

    repo_name, repo = _repository(ctx.config, vo, None)
    return repo_name, repo, image_name(ctx.config, vo)


def _published_problem(ctx: Context, vo: str) -> str | None:
    """Why the published image of `vo` is not the one built for this tag, or None."""
    from release.image.publish import image_entry, image_layout
    from release.publish.stage import verify_tree
    from release.targets import make_backend

    published = [r for r in ctx.ledger.records("image publish") if r.get("vo") == vo]
    if not published:
        return f"the image of {vo} was never published"
    built: dict[str, str] = {}
    for record in ctx.ledger.records("image build"):
        for image in record.get("images", []):
            if image.get("vo") == vo:
                built[image["arch"]] = image.get("manifest_digest")
    try:
        repo_name, repo, image = _where(ctx, vo)
        backend = make_backend(ctx.config, repo_name, repo)
        layout = image_layout(repo_name, repo.prefix, vo)
        entry = image_entry(image, ctx.tag)
        for arch in sorted(ctx.config.platforms):
            rel = layout.platform_dir(entry, arch)
            manifest = backend.read_manifest(rel)
            if manifest is None:
                return f"{layout.client_path(rel)} is not published any more"
            problem = verify_tree(backend, layout, rel, manifest)
            if problem is not None:
                return problem
            digest = (manifest.get("image") or {}).get("manifest_digest")
            if built.get(arch) and digest != built[arch]:
                return f"{layout.client_path(rel)} is not the image built now"
    except ReleaseError as exc:
        return f"the repository cannot be read: {exc.message}"
    return None
