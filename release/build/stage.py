"""The build stage behind the pipeline's contract: its verify re-reads the bundles on disk
against their SHA256SUMS and the digests the ledger holds, so a changed bundle is rebuilt.
"""

from __future__ import annotations

import time

from release.errors import ReleaseError
from release.pipeline.contract import Context, StageResult, done


class BuildStage:
    name = "build"

    def plan(self, ctx: Context) -> list[str]:
        arches = ", ".join(sorted(ctx.config.platforms))
        return [f"build {ctx.product} {ctx.tag} for {arches} (lock, wheels, bundles, SHA256SUMS)"]

    def run(self, ctx: Context) -> StageResult:
        from release.build import build_release
        from release.progress import Progress

        started = time.monotonic()
        with Progress(enabled=ctx.live, steps=5) as progress:
            report = build_release(
                ctx.config, version=ctx.tag, product_name=ctx.product, progress=progress
            )
        cached = all(bundle.cached for bundle in report.bundles)
        pilots = report.pilots
        return done(
            self.name,
            f"{len(report.bundles)} bundles in {report.version_dir}"
            + (" (cached)" if cached else "")
            + (f", pilot files of {', '.join(pilots)}" if pilots else ""),
            started,
            manifest_sha256={b.platform: b.manifest_sha256 for b in report.bundles},
            out=str(report.version_dir),
            pilots=pilots,
        )

    def verify(self, ctx: Context) -> str | None:
        from cvmfs.bundles import load_bundles

        record = ctx.ledger.latest("build")
        if record is None:
            return "never built"
        out = ctx.config.resolve_path(ctx.config.build.out).absolute()
        try:
            bundles = load_bundles(out, ctx.product, ctx.tag, sorted(ctx.config.platforms))
        except ReleaseError as exc:
            return f"the built bundles no longer check: {exc.message}"
        built = {p["platform"]: p["manifest_sha256"] for p in record.get("platforms", [])}
        changed = [a for a, digest in bundles.manifest_sha256.items() if built.get(a) != digest]
        if changed:
            return (
                f"the bundle of {', '.join(f'Linux-{a}' for a in changed)} changed since its build"
            )
        from release.pilot.build import output_root
        from release.pilot.publishable import read_checked

        for vo in ctx.config.product_pilots(ctx.product):
            try:
                read_checked(output_root(ctx.config, None) / vo / ctx.tag, vo, ctx.tag)
            except ReleaseError as exc:
                return exc.message
        return None
