"""What each `dirac-release` command does: load the configuration, call its stage, hand the
result to `release.present`. Every stage is imported inside its handler, so that starting the
command line imports none of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release import present
from release.errors import BadInput, CheckFailed

if TYPE_CHECKING:
    from release.config import ReleaseConfig
    from release.pipeline.contract import Context


def _load(args: argparse.Namespace) -> ReleaseConfig:
    from release.config import load_config

    return load_config(args.config)


def cmd_version(args: argparse.Namespace) -> int:
    """Validate a tag, or read the release facts of a repository."""
    from release import gitinfo, version

    branch = args.branch
    if args.repo is None:
        if args.tag is None:
            raise BadInput("give --tag TAG to check a tag, or --repo PATH to read a repository")
        info: dict[str, Any] = {"tag": args.tag}
        release_version = version.parse_tag(args.tag)
    else:
        if args.next:
            latest = gitinfo.latest_tag(args.repo, branch)
            if latest is None:
                raise BadInput(
                    f"no release tag is reachable from {branch or 'HEAD'} in {args.repo}",
                    fix="tag the first release by hand, e.g. git tag -a v1.0.0a1 -m v1.0.0a1",
                )
            release_version = version.next_version(latest.version)
            info = {
                "tag": release_version.tag,
                "previous_tag": latest.tag,
                "from_commit": latest.commit,
            }
        else:
            tag = args.tag
            if tag is None:
                latest = gitinfo.latest_tag(args.repo, branch)
                if latest is None:
                    raise BadInput(
                        f"no release tag is reachable from {branch or 'HEAD'} in {args.repo}"
                    )
                tag = latest.tag
            facts = gitinfo.read_tag(args.repo, tag)
            release_version = facts.version
            info = facts.as_dict()
    version.check_branch(release_version, branch)
    info.update(
        {
            "version": str(release_version),
            "prerelease": release_version.is_prerelease,
            "channels": [str(channel) for channel in release_version.channels],
            "branch": branch,
        }
    )
    if args.github_output:
        _github_output(
            {"tag": release_version.tag, "version": str(release_version),
             "prerelease": str(release_version.is_prerelease).lower(),
             "final": str(not release_version.is_prerelease).lower(),
             "previous_tag": info.get("previous_tag") or ""}
        )  # fmt: skip
    present.version_info(info, release_version.tag, args.json)
    return 0


def _github_output(values: dict[str, str]) -> None:
    """Append `name=value` lines to the step's $GITHUB_OUTPUT (GitHub Actions' step outputs)."""
    import os

    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        raise BadInput(
            "--github-output needs GITHUB_OUTPUT (set by GitHub Actions in every step)",
            fix="run it in a workflow step, or leave out --github-output",
        )
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            raise BadInput(f"output {name} would hold a line break", fix="this is a bug: report it")
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(f"{name}={value}\n" for name, value in values.items())


def cmd_build(args: argparse.Namespace) -> int:
    """Build the bundles of one version for x86_64 and aarch64."""
    from release.build import build_release
    from release.progress import Progress

    config = _load(args)
    with Progress(enabled=_live(args), steps=5) as progress:
        report = build_release(
            config,
            version=args.version,
            product_name=args.product,
            platform=args.platform,
            out=args.out,
            allow_dirty=args.allow_dirty,
            refresh=args.refresh,
            progress=progress,
        )
    present.build(report, args.json)
    return 0


def cmd_pilot(args: argparse.Namespace) -> int:
    """Build the pilot folder of one VO (or of every VO of [pilots]) for a release:
    pilot.tar, the .py files, pilot.json and checksums.sha512 in <out>/<vo>/<tag>/; or
    upload a built folder to the VO's HTTPS upload locations (PUT, then read back)."""
    if args.action == "upload":
        return _pilot_upload(args)
    if args.plan:
        raise BadInput("--plan goes with pilot upload", fix="leave --plan out of pilot build")
    from release.pilot.build import build_pilots

    builds = build_pilots(_load(args), version=args.version, vo=args.vo, out=args.out)
    present.pilots([build.as_dict() for build in builds], args.json)
    return 0


def _pilot_upload(args: argparse.Namespace) -> int:
    """Every folder and certificate checked first, then the files PUT and read back."""
    from release.pilot import upload

    targets = upload.select(_load(args), version=args.version, vo=args.vo, out=args.out)
    if args.plan:
        results = upload.plan(targets)
    else:
        results = upload.upload(targets, present.note if _live(args) else lambda _line: None)
    data = [result.as_dict() for result in results]
    present.pilot_uploads(data, args.json)
    present.check_printed(upload.check_outcome, results, args.json)
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    """Build a VO's container image for a release (an OCI layout and the unpacked tree
    SingularityCE runs, per architecture), or run-check the built trees."""
    from release.image.build import build_images

    config = _load(args)
    if args.action == "build":
        from release.progress import Progress

        with Progress(enabled=_live(args), steps=4) as progress:
            builds = build_images(config, version=args.version, vo=args.vo, arches=args.arch,
                                  out=args.out, progress=progress)  # fmt: skip
        present.images([build.as_dict() for build in builds], args.json)
        return 0
    if args.action == "publish":
        from release.image.publish import publish_images
        from release.progress import Progress

        with Progress(enabled=_live(args), steps=6) as progress:
            published = publish_images(config, version=args.version, vo=args.vo,
                                     repository=args.repository, out=args.out, plan=args.plan,
                                     step=lambda text: progress.step("image publish", text))  # fmt: skip
        present.image_publications(published, args.json)
        return 0
    if args.action == "container-root":
        from release.image.publish import container_roots

        roots = container_roots(config, version=args.version, vo=args.vo,
                                repository=args.repository, arches=args.arch)  # fmt: skip
        present.container_roots(roots, args.json)
        return 0
    from release.image.check import check_images
    from release.image.inspect import built_images

    found = built_images(config, version=args.version, vo=args.vo, arches=args.arch, out=args.out)
    results = check_images(found, cvmfs=args.cvmfs, source=args.source, command=args.run_command)
    data = [result.as_dict() for result in results]
    present.image_checks(data, args.json)
    failed = [f"{r['arch']} ({r['tree']})" for r in data if not r["passed"]]
    if failed:
        error = CheckFailed(f"the image check failed for {', '.join(failed)}",
                            fix="see the failing steps above")  # fmt: skip
        error.result_printed = args.json  # type: ignore[attr-defined]
        raise error
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish the bundles of one version to CVMFS, all platforms in one transaction."""
    from release.progress import Progress
    from release.publish import publish_release

    config = _load(args)
    with Progress(enabled=_live(args), steps=6) as progress:
        result = publish_release(
            config,
            version=args.version,
            product_name=args.product,
            repository=args.repository,
            out=args.out,
            plan=args.plan,
            step=lambda text: progress.step("publish", text),
        )
    present.publication(result, args.json)
    return 0


def cmd_cvmfs(args: argparse.Namespace) -> int:
    """Inspect and maintain a CVMFS repository."""
    from release import publish as stage

    config = _load(args)
    if args.action == "status":
        present.repository_status(stage.repository_status(config, args.repository), args.json)
    elif args.action == "gc":
        present.retention(stage.collect_garbage(config, args.repository, plan=args.plan), args.json)
    elif args.action == "init":
        present.key_values(stage.init_repository(config, args.repository), args.json)
    else:
        present.key_values(stage.abort_stale(config, args.repository, stale=args.stale), args.json)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Write the inventory and variables (and k3s manifests) of an environment, pinned to a version."""
    from release.render import render_environment

    result = render_environment(
        _load(args), args.env, args.version, args.out, full=args.full, diff=args.diff
    )
    present.rendered(result, args.env, args.json)
    return 0


def _live(args: argparse.Namespace) -> bool:
    """Whether to show progress on stderr: always for a person, with --json on request."""
    return not args.json or bool(getattr(args, "progress", False))


def cmd_deploy(args: argparse.Namespace) -> int:
    """Upgrade an environment's hosts to a published version (rolling, canary first)."""
    from release.deploy import check_outcome, deploy_environment

    result = deploy_environment(_load(args), env_name=args.env, version=args.version,
                                install=args.install, plan=args.plan, echo=_live(args),
                                progress=present.note if _live(args) else None)  # fmt: skip
    present.hosts(result, args.json)
    present.check_printed(check_outcome, result, args.json)
    return 0


def cmd_k3s(args: argparse.Namespace) -> int:
    """Wait, bounded, for DiracX's rollout on k3s: the HelmChart's install Job (k3s's
    helm-controller), then the chart's Deployments, read through the Kubernetes API."""
    from release.k3s.rollout import wait_for_rollout

    result = wait_for_rollout(
        args.kubeconfig, namespace=args.namespace, chart=args.chart,
        chart_namespace=args.chart_namespace, deployments=args.deployments,
        timeout=args.timeout, context=args.context,
        progress=present.note if _live(args) else None,
    )  # fmt: skip
    present.k3s_rollout(result.as_dict(), args.json)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Roll an environment's hosts back to their previous version, or to a named one."""
    from release.deploy import check_outcome, rollback_environment

    result = rollback_environment(_load(args), env_name=args.env, to=args.to, plan=args.plan,
                                  echo=_live(args),
                                  progress=present.note if _live(args) else None)  # fmt: skip
    present.hosts(result, args.json)
    present.check_printed(check_outcome, result, args.json)
    return 0


def cmd_certify(args: argparse.Namespace) -> int:
    """Smoke-test a deployed version and record the certification in the ledger."""
    from release.certify import certify_release, check_outcome
    from release.certify.report import write_junit

    record = certify_release(_load(args), env_name=args.env, version=args.version, url=args.url,
                             progress=present.note if _live(args) else None)  # fmt: skip
    if args.junit:
        write_junit(record, args.junit.absolute())
    present.certification(record, args.json)
    present.check_printed(check_outcome, record, args.json)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote a certified release: move pro, upgrade production, certify production."""
    from release.promote import promote_release

    result = promote_release(_load(args), version=args.version, source_env=args.source,
                             target_env=args.target, install=args.install, plan=args.plan,
                             echo=_live(args), progress=present.note if _live(args) else None)  # fmt: skip
    present.promotion(result, args.json)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Release one tag: build, publish, render, deploy, certify (and promote with --promote).

    A rerun verifies what an earlier run finished and continues where it stopped.
    """
    from release.pipeline.contract import Context
    from release.pipeline.runner import run_pipeline
    from release.version import parse_version_arg

    config = _load(args)
    product, _ = config.product(args.product)
    config.environment(args.env)
    if args.promote:
        config.environment(args.to)
    live = _live(args)
    ctx = Context(config, product, parse_version_arg(args.tag), env=args.env, production=args.to,
                  install=args.install, live=live, note=present.note if live else lambda text: None)  # fmt: skip
    redo = set(args.redo or ())
    run = run_pipeline(ctx, first=args.from_stage, last=args.until, plan=args.plan,
                       promote=args.promote, redo=lambda stage: stage in redo)  # fmt: skip
    data = run.as_dict()
    data["ledger"] = str(ctx.ledger.path)
    if not args.plan:
        from release.report import write_report

        data["report"] = write_report(config, product, run.tag)
        if args.junit:
            data["junit"] = _certification_junit(ctx, args.junit.absolute())
    present.pipeline_run(run, data, args.json)
    if run.error is not None:
        run.error.result_printed = args.json  # type: ignore[attr-defined]
        raise run.error
    return 0


def _certification_junit(ctx: Context, path: Path) -> str | None:
    """The last certification of ctx.env as JUnit (CI shows it), whether this run made it or
    verified an earlier one; None, with nothing written, when the release has none."""
    from release.certify.report import write_junit

    records = [r for r in ctx.ledger.records("certify") if r.get("environment") == ctx.env]
    if not records:
        return None
    return str(write_junit(records[-1], path))


def cmd_report(args: argparse.Namespace) -> int:
    """Write one release's report (self-contained HTML and Markdown) from its ledgers."""
    from release.report import collect, write_report
    from release.version import parse_version_arg

    config = _load(args)
    product, _ = config.product(args.product)
    tag = parse_version_arg(args.version).tag
    if not config.ledger(product, tag).path.is_file():
        raise BadInput(
            f"{product} {tag} has no ledger ({config.ledger(product, tag).path}): nothing to report",
            fix="run a stage of that release first, or check --version and --config",
        )
    data = collect(config, product, tag)
    written = write_report(config, product, tag, args.out, data)
    present.release_report(data, written, args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Where each release stands, from the ledgers, and which version runs where."""
    from release.pipeline.status import status

    present.release_status(status(_load(args), args.product, args.version), args.json)
    return 0


def cmd_notes(args: argparse.Namespace) -> int:
    """Release notes of the pull requests merged between two tags (by commit ancestry), in
    DIRAC's release.notes format or Markdown; `notes check --pr N` checks one description."""
    from release.notes import github_repository

    repository = github_repository(args.repo, args.github)
    if args.action == "check":
        from release.notes.blocks import parse_block
        from release.notes.pulls import fetch_pulls

        if args.pr is None:
            raise BadInput(
                "notes check needs --pr N", fix="e.g. dirac-release notes check --pr 7827"
            )
        found, _missing = fetch_pulls(repository, [args.pr])
        if args.pr not in found:
            raise BadInput(f"{repository} has no pull request #{args.pr}", fix="check the number")
        block = parse_block(found[args.pr].body)
        present.notes_check(repository, args.pr, block, args.json)
        if block.problems:
            raise CheckFailed(
                f"pull request #{args.pr} of {repository}: " + "; ".join(block.problems[:5]),
                fix="edit its description: a BEGINRELEASENOTES ... ENDRELEASENOTES block with "
                "*System lines and NEW:/CHANGE:/FIX: entries",
            )
        return 0
    if not args.start or not args.end:
        raise BadInput(
            "notes needs --from TAG and --to TAG",
            fix="e.g. dirac-release notes --from v9.0.0a30 --to v9.0.0a31",
        )
    from release.notes import gather
    from release.notes.compose import as_dirac, as_markdown

    notes = gather(args.repo, args.start, args.end, repository)
    text = as_dirac(notes) if args.format == "dirac" else as_markdown(notes, repository)
    present.notes(notes, text, args.output, args.json)
    return 0


def cmd_pypi(args: argparse.Namespace) -> int:
    """Make and check the product's wheel and sdist for PyPI in <out>/<tag>/pypi/: the
    wheel installed in the bundles (file by file), an sdist of the same commit."""
    from release.pypi import prepare_pypi

    result = prepare_pypi(_load(args), version=args.version, product_name=args.product)
    present.pypi_files(result, args.json)
    return 0


def cmd_github_release(args: argparse.Namespace) -> int:
    """Create (as a draft) or update a version's GitHub release: notes, tarballs, manifests,
    an SBOM and SHA256SUMS; published only when every asset reads back with its sha256."""
    from release.ghrelease import github_release
    from release.notes import github_repository, slug_of_url

    config = _load(args)
    _name, product = config.product(args.product)
    location = getattr(product.source, "git", None)
    if args.github or not location:
        repository = github_repository(Path("."), args.github)
    else:
        # The product's git source: a GitHub URL, or a clone whose origin is on GitHub.
        repository = slug_of_url(location) or github_repository(config.resolve_path(location), None)
    notes = ""
    if args.notes is not None:
        try:
            notes = args.notes.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"--notes {args.notes}: {exc.strerror}", fix="give the notes file "
                           "dirac-release notes --output wrote") from None  # fmt: skip
    result = github_release(config, version=args.version, product_name=args.product,
                            repository=repository, notes=notes, plan=args.plan)  # fmt: skip
    present.github_release(result, args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on one machine, on the embedded demo product."""
    from release.demo import run_demo
    from release.demo.fixture import DEMO_TAG

    if args.product == "DIRAC":
        from release.demo import run_product_demo

        if args.tag is not None:
            raise BadInput(
                "--tag is for the demo product: the DIRAC demo releases DIRAC v8.0.55",
                fix="leave out --tag with --product DIRAC",
            )
        return run_product_demo(workdir=args.workdir, until=args.until or "publish",
                                as_json=args.json)  # fmt: skip
    return run_demo(workdir=args.workdir, until=args.until or "promote", as_json=args.json,
                    tag=args.tag or DEMO_TAG)  # fmt: skip


def cmd_sysroot(args: argparse.Namespace) -> int:
    """Prepare a foreign-architecture root filesystem for emulated smoke tests."""
    from release.build.sysroot import prepare_sysroot

    path = prepare_sysroot(args.dest.absolute(), arch=args.arch, python=args.python)
    present.sysroot(path, args.arch, args.python, args.json)
    return 0


def cmd_base(args: argparse.Namespace) -> int:
    """Record what a pinned base (DIRACOS2, a Debian root filesystem) provides, or show it."""
    from release.base.record import inspect_and_record, record_path

    config = _load(args)
    name, base = config._pick(
        "base", config.bases, args.name, "name the base: dirac-release base inspect NAME", "bases"
    )
    if args.platform != "all" and args.platform not in base.platforms:
        raise BadInput(
            f"base {name} has no platform {args.platform!r}",
            fix=f"choose one of: {', '.join([*base.platforms, 'all'])}",
        )
    arches = list(base.platforms) if args.platform == "all" else [args.platform]
    if args.action == "publish":
        from release.base.publish import publish_base
        from release.progress import Progress

        with Progress(enabled=not args.json, steps=7) as progress:
            result = publish_base(
                config, name, arches, repository=args.repository, plan=args.plan,
                step=lambda text: progress.step("base publish", text),
            )  # fmt: skip
        present.publication(result, args.json)
        return 0
    if args.action == "debian":
        from release.base.debian import make_debian_base

        for arch in arches:
            folder = base.platforms[arch].path
            if folder is None:
                raise BadInput(
                    f"base {name} gives no path for {arch}",
                    fix=f'set [bases.{name}.platforms.{arch}] path = "..." (where to make it)',
                )
            present.note(f"base {name}: making the Debian {arch} base in {folder} ...")
            make_debian_base(config.resolve_path(folder), arch=arch, python=base.python)
    if args.action in ("inspect", "debian"):
        path, platforms = inspect_and_record(config, name, arches)
    else:
        from release.base.record import load_platform

        path = record_path(config, name, base)
        platforms = []
        for arch in arches:
            record = load_platform(config, name, arch)
            platforms.append(
                {"platform": arch, "layout": record.layout, "python": record.python,
                 "distributions": len(record.distributions), "digest": record.digest,
                 "changes": []}
            )  # fmt: skip
    present.base_record(
        {"base": name, "version": base.version, "record": str(path), "platforms": platforms},
        "inspect" if args.action == "debian" else args.action,
        args.json,
    )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Check a release.toml and show what it resolves to."""
    config = _load(args)
    if args.github_output:
        import json

        from release.targets import for_product

        target = for_product(config, args.product)
        _, product = config.product(target.product_name)
        _github_output({"product": target.product_name, "cvmfs_repository": target.repo_name,
                        "platforms": json.dumps(sorted(config.platforms)),
                        "pypi": "true" if product.pypi else "false"})  # fmt: skip
    present.configuration(config, args.json)
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    """Throwaway SSH lab hosts on this machine (root): `up` keeps them until Ctrl-C, `check`
    says what the machine lacks, `clean` removes what dead runs left."""
    from release.lab.cli import run

    return run(args)
