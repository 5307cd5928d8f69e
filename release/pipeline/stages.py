"""The stages of a release behind the one contract: each adapts a stage module that also runs
on its own (`dirac-release build`, `publish`, ...), and knows how to check its own past work.

Every verify looks at the world, not only at the ledger: the bundles on disk against their
SHA256SUMS, the publication against its manifests, the hosts against the version they run.
"""

from __future__ import annotations

import time
from typing import Any

from release.errors import ReleaseError
from release.pipeline.contract import Context, StageResult, StageStatus


def _result(name: str, summary: str, started: float, **evidence: Any) -> StageResult:
    return StageResult(name, StageStatus.DONE, summary, evidence, time.monotonic() - started)


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
        return _result(
            self.name,
            f"{len(report.bundles)} bundles in {report.version_dir}"
            + (" (cached)" if cached else ""),
            started,
            manifest_sha256={b.platform: b.manifest_sha256 for b in report.bundles},
            out=str(report.version_dir),
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
        return None


class PublishStage:
    name = "publish"

    def plan(self, ctx: Context) -> list[str]:
        _, product = ctx.config.product(ctx.product)
        repo_name, repo = ctx.config.repository(None, product)
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
        return _result(
            self.name,
            f"{publication['status']}: /cvmfs/{publication['repository']}/"
            f"{publication['version_dir']} (revision {publication['revision']})",
            started,
            repository=publication["repository"],
            revision=publication["revision"],
            tag_name=publication.get("tag"),
        )

    def verify(self, ctx: Context) -> str | None:
        from release.certify import manifest_digest, published_manifests

        if not ctx.ledger.records("publish"):
            return "never published"
        try:
            backend, layout, manifests = published_manifests(ctx.config, ctx.env, ctx.tag)
        except ReleaseError as exc:
            return f"the repository cannot be read: {exc.message}"
        out = ctx.config.resolve_path(ctx.config.build.out).absolute()
        for arch, manifest in manifests.items():
            rel = layout.platform_dir(ctx.tag, arch)
            if manifest is None:
                return f"{layout.client_path(rel)} is not published any more"
            problems = backend.verify_published(rel, manifest)
            if problems:
                return f"{layout.client_path(rel)}: {len(problems)} problem(s): {problems[0]}"
            built = _built_manifest(out, ctx.tag, arch)
            if built is not None and manifest_digest(built) != manifest_digest(manifest):
                return f"{layout.client_path(rel)} is not the bundle built now"
        return None


def _built_manifest(out: Any, tag: str, arch: str) -> dict[str, Any] | None:
    import json

    path = out / tag / f"Linux-{arch}" / ".dirac-release" / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RenderStage:
    name = "render"

    def plan(self, ctx: Context) -> list[str]:
        return [f"render the Ansible inventory of {ctx.env} pinned to {ctx.tag}"]

    def run(self, ctx: Context) -> StageResult:
        from release.render import render_environment

        started = time.monotonic()
        rendered = render_environment(ctx.config, ctx.env, ctx.tag)
        return _result(
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


class DeployStage:
    name = "deploy"

    def plan(self, ctx: Context) -> list[str]:
        hosts = ", ".join(ctx.config.environment(ctx.env).hosts)
        action = "install" if ctx.install else "rolling upgrade"
        return [f"{action} of {ctx.tag} on {hosts} ({ctx.env}), rolled back on failure"]

    def run(self, ctx: Context) -> StageResult:
        from release.deploy import check_outcome, run_playbook

        started = time.monotonic()
        result = run_playbook(ctx.config, env_name=ctx.env, version=ctx.tag,
                              action="install" if ctx.install else "upgrade", echo=ctx.live)  # fmt: skip
        check_outcome(result)
        return _result(
            self.name,
            ", ".join(f"{h['host']} {h['running']} ({h['result']})" for h in result["hosts"]),
            started,
            hosts={h["host"]: h["running"] for h in result["hosts"]},
        )

    def verify(self, ctx: Context) -> str | None:
        from release.certify import _host_checks
        from release.certify.checks import PASSED

        records = [
            r
            for r in ctx.config.ledger(ctx.product, "environments").records("deploy")
            if r.get("environment") == ctx.env and r.get("version") == ctx.tag
        ]
        if not records:
            return f"never deployed to {ctx.env}"
        wrong = [c for c in _host_checks(ctx.config, ctx.env, ctx.tag) if c.result != PASSED]
        if wrong:
            return f"{wrong[0].target}: {wrong[0].name}: {wrong[0].evidence}"
        return None


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
        return _result(
            self.name,
            f"passed: {counts['passed']} passed, {counts['skipped']} skipped",
            started,
            counts=counts,
            digests=record["digests"],
        )

    def verify(self, ctx: Context) -> str | None:
        from release.promote import _gate

        try:
            _gate(ctx.config, ctx.product, ctx.tag, ctx.env)
        except ReleaseError as exc:
            return exc.message
        return None


class PromoteStage:
    name = "promote"

    def plan(self, ctx: Context) -> list[str]:
        hosts = ", ".join(ctx.config.environment(ctx.production).hosts)
        return [f"move pro to {ctx.tag}, upgrade {hosts} ({ctx.production}), certify it"]

    def run(self, ctx: Context) -> StageResult:
        from release.promote import promote_release

        started = time.monotonic()
        result = promote_release(ctx.config, version=ctx.tag, source_env=ctx.env,
                                 target_env=ctx.production, install=ctx.install, echo=ctx.live)  # fmt: skip
        return _result(
            self.name,
            "; ".join(step["result"] for step in result["steps"][1:]),
            started,
            to=ctx.production,
        )

    def verify(self, ctx: Context) -> str | None:
        from cvmfs.layout import PRO_LINK
        from release.certify import published_manifests

        records = [r for r in ctx.ledger.records("promote") if r.get("to") == ctx.production]
        if not records or not records[-1].get("passed"):
            return f"never promoted to {ctx.production}"
        backend, layout, _ = published_manifests(ctx.config, ctx.production, ctx.tag)
        now = backend.entries(layout.prefix).get(PRO_LINK)
        if now != ctx.tag:
            return f"pro points to {now or 'nothing'} now"
        return None


STAGES: tuple[Any, ...] = (
    BuildStage(),
    PublishStage(),
    RenderStage(),
    DeployStage(),
    CertifyStage(),
    PromoteStage(),
)
