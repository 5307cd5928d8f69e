"""The `dirac-release` command: parse, call one stage, map typed errors to exit codes.

Kept thin and fast: only argparse is imported at start; each command imports its stage.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release import __version__
from release.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, BadInput, ReleaseError

if TYPE_CHECKING:
    from release.config import ReleaseConfig

Handler = Callable[[argparse.Namespace], int]


def _load(args: argparse.Namespace) -> ReleaseConfig:
    from release.config import load_config

    return load_config(args.config)


def cmd_version(args: argparse.Namespace) -> int:
    """Validate a tag, or read the release facts of a repository."""
    from release import gitinfo, version
    from release.output import print_json, table

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
    if args.json:
        print_json(info)
    else:
        rows = [
            [key, ", ".join(value) if isinstance(value, list) else str(value)]
            for key, value in info.items()
            if value is not None
        ]
        table(f"Release {release_version.tag}", ["", ""], rows)
    return 0


def report_build(report: Any, as_json: bool) -> None:
    from release.output import human_size, markdown_table, print_json, step_summary, table

    data = report.as_dict()
    if as_json:
        print_json(data)
        return
    columns = ["platform", "distributions", "files", "size", "tarball sha256", "seconds", "smoke"]
    rows = [
        [
            f"Linux-{b['platform']}",
            str(b["distributions"]),
            str(b["files"]),
            human_size(b["size"]),
            b["tarball_sha256"],
            f"{b['seconds']:.1f}" + (" (cached)" if b["cached"] else ""),
            b["smoke"],
        ]
        for b in data["platforms"]
    ]
    table(f"{data['product']} {data['tag']} → {data['out']}", columns, rows)
    step_summary(
        f"### Build of {data['product']} {data['tag']}\n\n" + markdown_table(columns, rows)
    )


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
    report_build(report, args.json)
    return 0


def report_publication(result: dict[str, Any], as_json: bool) -> None:
    from release.output import markdown_table, print_json, step_summary, table

    if as_json:
        print_json(result)
        return
    for note in result["notes"]:
        print(note, file=sys.stderr)
    if result["status"] == "planned":
        table(
            f"plan: publish {result['tag']} to {result['repository']}",
            ["#", "action"],
            [[str(i), action] for i, action in enumerate(result["actions"], 1)],
        )
        return
    rows = [[path, result["status"], str(result["revision"])] for path in result["paths"]]
    rows += [
        [
            f"/cvmfs/{result['repository']}/{result['version_dir'].rsplit('/', 1)[0]}/{name}",
            f"-> {target}",
            "",
        ]
        for name, target in result["links"].items()
    ]
    columns = ["path", "result", "revision"]
    table(
        f"{result['tag']} in {result['repository']} ({result['backend']}, {result['seconds']:.1f}s)",
        columns,
        rows,
    )
    step_summary(f"### Publication of {result['tag']}\n\n" + markdown_table(columns, rows))


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
    report_publication(result, args.json)
    return 0


def cmd_cvmfs(args: argparse.Namespace) -> int:
    """Inspect and maintain a CVMFS repository."""
    from release import publish as stage
    from release.output import print_json, table

    config = _load(args)
    if args.action == "status":
        data = stage.repository_status(config, args.repository)
        if args.json:
            print_json(data)
            return 0
        rows = [
            ["exists", str(data["exists"])],
            ["backend", data["backend"]],
            ["revision", str(data["revision"])],
            ["versions", ", ".join(data["versions"]) or "-"],
            ["links", ", ".join(f"{k} -> {v}" for k, v in data["links"].items()) or "-"],
            ["tags", ", ".join(t["name"] for t in data["tags"]) or "-"],
            ["transactions", "; ".join(data["transactions"]) or "none open"],
        ]
        if data["whitelist_expires"]:
            rows.append(["whitelist expires", data["whitelist_expires"]])
        table(f"{data['repository']} (/{data['prefix']})", ["", ""], rows)
        return 0
    if args.action == "gc":
        data = stage.collect_garbage(config, args.repository, plan=args.plan)
        if args.json:
            print_json(data)
            return 0
        rows = [
            [name, "remove" if name in data["remove"] else "keep", data["reasons"][name]]
            for name in sorted(data["reasons"])
        ]
        table(
            f"retention of {data['repository']}: {data['status']}",
            ["version", "action", "why"],
            rows,
        )
        return 0
    if args.action == "init":
        data = stage.init_repository(config, args.repository)
    else:
        data = stage.abort_stale(config, args.repository, stale=args.stale)
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key}: {value}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Write the inventory and variables of an environment, pinned to a version."""
    from release.output import print_json, table
    from release.render import render_environment

    result = render_environment(_load(args), args.env, args.version, args.out)
    if args.json:
        print_json(result)
    else:
        rows = [[host, address] for host, address in result["hosts"].items()]
        table(f"{args.env} {result['version']}: {result['inventory']}", ["host", "address"], rows)
    return 0


def report_hosts(result: dict[str, Any], as_json: bool) -> None:
    from release.output import markdown_table, print_json, step_summary, table

    if as_json:
        print_json(result)
        return
    columns = ["host", "previous", "now running", "result", "changed"]
    rows = [
        [h["host"], h["previous"] or "-", h["running"] or "-", h["result"], str(h["changed"])]
        for h in result["hosts"]
    ]
    title = f"{result['action']} of {result['version']} on {result['environment']}"
    if result.get("plan"):
        title += " (plan: check mode, nothing changed)"
    table(f"{title}, {result['seconds']} s", columns, rows)
    for host in result["hosts"]:
        if host["reason"]:
            print(f"{host['host']}: {host['reason']}", file=sys.stderr)
    step_summary(
        f"### {result['action']} {result['version']} ({result['environment']})\n\n"
        + markdown_table(columns, rows)
    )


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _check_printed(check: Callable[[Any], None], result: Any, as_json: bool) -> None:
    """Run an outcome check on a result already printed; its error must not print JSON again."""
    try:
        check(result)
    except ReleaseError as error:
        error.result_printed = as_json  # type: ignore[attr-defined]
        raise


def _live(args: argparse.Namespace) -> bool:
    """Whether to show progress on stderr: always for a person, with --json on request."""
    return not args.json or bool(getattr(args, "progress", False))


def cmd_deploy(args: argparse.Namespace) -> int:
    """Upgrade an environment's hosts to a published version (rolling, canary first)."""
    from release.deploy import check_outcome, run_playbook

    action = "install" if args.install else "upgrade"
    result = run_playbook(_load(args), env_name=args.env, version=args.version, action=action,
                          plan=args.plan, echo=_live(args))  # fmt: skip
    report_hosts(result, args.json)
    _check_printed(check_outcome, result, args.json)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Roll an environment's hosts back to their previous version, or to a named one."""
    from release.deploy import check_outcome, run_playbook

    result = run_playbook(
        _load(args), env_name=args.env, version=args.to, action="rollback",
        plan=args.plan, echo=_live(args),
    )  # fmt: skip
    report_hosts(result, args.json)
    _check_printed(check_outcome, result, args.json)
    return 0


def cmd_certify(args: argparse.Namespace) -> int:
    """Smoke-test a deployed version and record the certification in the ledger."""
    from release.certify import certify_release, check_outcome
    from release.certify.report import COLUMNS, markdown, rows, write_junit
    from release.output import print_json, step_summary, table

    record = certify_release(_load(args), env_name=args.env, version=args.version, url=args.url,
                             progress=_note if _live(args) else None)  # fmt: skip
    if args.junit:
        write_junit(record, args.junit.absolute())
    step_summary(markdown(record))
    if args.json:
        print_json(record)
    else:
        verdict = "passed" if record["passed"] else "FAILED"
        table(f"certify {record['version']} on {record['environment']}: {verdict} ({record['seconds']} s)",
              COLUMNS, rows(record))  # fmt: skip
    _check_printed(check_outcome, record, args.json)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote a certified release: move pro, upgrade production, certify production."""
    from release.output import print_json, step_summary, table
    from release.promote import promote_release

    result = promote_release(_load(args), version=args.version, source_env=args.source,
                             target_env=args.target, install=args.install, plan=args.plan,
                             echo=_live(args))  # fmt: skip
    if args.json:
        print_json(result)
    else:
        rows = [[step["step"], step["result"]] for step in result["steps"]]
        if result["plan"]:
            rows += [
                ["", f"  {action}"]
                for step in result["steps"]
                for action in step.get("actions", [])
            ]
        title = f"promote {result['version']} from {result['from']} to {result['to']}"
        table(
            title + (" (plan: nothing changed)" if result["plan"] else ""), ["step", "result"], rows
        )
    step_summary(f"### promote {result['version']} to {result['to']}\n\n"
                 + "\n".join(f"- {step['step']}: {step['result']}" for step in result["steps"]))  # fmt: skip
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Release one tag: build, publish, render, deploy, certify (and promote with --promote).

    A rerun verifies what an earlier run finished and continues where it stopped.
    """
    from release.output import print_json, step_summary, table
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
                  install=args.install, live=live, note=_note if live else lambda text: None)  # fmt: skip
    redo = set(args.redo or ())
    run = run_pipeline(ctx, first=args.from_stage, last=args.until, plan=args.plan,
                       promote=args.promote, redo=lambda stage: stage in redo)  # fmt: skip
    data = run.as_dict()
    data["ledger"] = str(ctx.ledger.path)
    if not args.plan:
        from release.report import write_report

        data["report"] = write_report(config, product, run.tag)
    if args.json:
        print_json(data)
    else:
        rows = [[r.stage, r.status.value, r.summary[:90], r.reason[:60], f"{r.seconds:.1f}"]
                for r in run.results]  # fmt: skip
        table(f"run {product} {run.tag}: {run.verdict} ({run.seconds:.0f} s)",
              ["stage", "status", "result", "why", "seconds"], rows)  # fmt: skip
        print(f"ledger: {ctx.ledger.path}", file=sys.stderr)
        if "report" in data:
            print(f"report: {data['report']['html']} (and .md)", file=sys.stderr)
    step_summary(f"### {product} {run.tag}: {run.verdict}\n\n| stage | status | result |\n|---|---|---|\n"
                 + "\n".join(f"| {r.stage} | {r.status.value} | {r.summary} |" for r in run.results))  # fmt: skip
    if run.error is not None:
        run.error.result_printed = args.json  # type: ignore[attr-defined]
        raise run.error
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one release's report (self-contained HTML and Markdown) from its ledgers."""
    from release.output import print_json, step_summary, table
    from release.report import collect, markdown, write_report
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
    step_summary(markdown(data))
    if args.json:
        print_json({**data, "written": written})
        return 0
    table(f"{product} {tag}: {data['run']['verdict'] if data['run'] else 'no pipeline run recorded'}",
          ["stage", "status", "result", "seconds"],
          [[s["stage"], s["status"], s["summary"][:90], f"{s['seconds']:.1f}"] for s in data["stages"]])  # fmt: skip
    print(f"report: {written['html']}\n        {written['markdown']}", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Where each release stands, from the ledgers, and which version runs where."""
    from release.output import print_json, table
    from release.pipeline.status import STAGES, status

    data = status(_load(args), args.product, args.version)
    if args.json:
        print_json(data)
        return 0
    for product, info in data["products"].items():
        rows = []
        for release in info["releases"]:
            for stage in STAGES:
                entry = release["stages"][stage]
                rows.append([release["tag"] if stage == STAGES[0] else "", stage,
                             "—" if entry is None else ("ok" if entry["ok"] else "FAILED"),
                             entry["at"] if entry else "", entry["evidence"] if entry else ""])  # fmt: skip
            if release["last_run"]:
                rows.append(["", "last run", "", release["last_run"]["at"],
                             release["last_run"]["verdict"]])  # fmt: skip
        table(f"{product}: releases", ["release", "stage", "state", "when", "evidence"], rows)
        env_rows = [[env, host, version] for env, hosts in info["environments"].items()
                    for host, version in sorted(hosts.items())]  # fmt: skip
        if env_rows:
            table(f"{product}: what runs where", ["environment", "host", "version"], env_rows)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on one machine, on the embedded demo product."""
    from release.demo import run_demo

    return run_demo(workdir=args.workdir, until=args.until, as_json=args.json, tag=args.tag)


def cmd_sysroot(args: argparse.Namespace) -> int:
    """Prepare a foreign-architecture root filesystem for emulated smoke tests."""
    from release.build.sysroot import prepare_sysroot
    from release.output import print_json

    path = prepare_sysroot(args.dest.absolute(), arch=args.arch, python=args.python)
    if args.json:
        print_json({"sysroot": str(path), "arch": args.arch, "python": args.python})
    else:
        print(f"{path} is ready; use it with: export DIRAC_RELEASE_AARCH64_SYSROOT={path}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Check a release.toml and show what it resolves to."""
    from release.output import print_json, table

    config = _load(args)
    data = config.model_dump(mode="json")
    if args.json:
        print_json(data)
        return 0
    rows = []
    for name, product in config.products.items():
        source = product.source
        where = getattr(source, "git", None) or f"index: {getattr(source, 'index', '')}"
        rows.append(
            [
                name,
                product.distribution_name(name),
                where,
                product.python,
                ", ".join(product.requirements),
            ]
        )
    table(
        f"{config.path}: valid",
        ["product", "distribution", "source", "python", "requirements"],
        rows,
    )
    platforms = [[arch, p.python_platform(arch)] for arch, p in config.platforms.items()]
    table("platforms", ["platform", "resolves for"], platforms)
    return 0


PIPELINE_STAGES = ("build", "publish", "render", "deploy", "certify", "promote")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dirac-release",
        description="Build, publish, deploy, certify and promote DIRAC-family releases.",
        epilog="Exit codes: 0 success, 1 a check failed, 2 bad input or configuration, "
        "3 infrastructure failure.",
    )
    parser.add_argument(
        "-V", "--version-info", action="version", version=f"dirac-release {__version__}"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("release.toml"),
        help="release configuration (default: ./release.toml)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show live progress on stderr even with --json (a caller showing it to a person)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, handler: Handler, help_text: str, *, config: bool = True
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=handler.__doc__)
        command.set_defaults(handler=handler)
        # Global options are accepted after the command too: `dirac-release build --json`.
        if config:
            command.add_argument(
                "--config",
                type=Path,
                default=argparse.SUPPRESS,
                help="release configuration (default: ./release.toml)",
            )
        command.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="machine-readable output on stdout",
        )
        command.add_argument(
            "--progress", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return command

    version = add(
        "version",
        cmd_version,
        "check a tag, read a repository's release facts, or compute the next tag",
        config=False,
    )
    version.add_argument("--repo", type=Path, help="a git repository to read tags from")
    group = version.add_mutually_exclusive_group()
    group.add_argument("--tag", help="the tag to check or read, e.g. v9.0.0a29")
    group.add_argument(
        "--next", action="store_true", help="the tag that follows the latest release tag"
    )
    version.add_argument(
        "--branch", help="apply the branch rules of this branch (integration, rel-vXrY)"
    )

    build = add("build", cmd_build, "build the release bundles for x86_64 and aarch64")
    build.add_argument(
        "--version", required=True, help="the version or tag to build, e.g. v9.0.0a29"
    )
    build.add_argument("--product", help="which product of release.toml (default: the only one)")
    build.add_argument("--platform", default="all", help="x86_64, aarch64 or all (default)")
    build.add_argument(
        "--out", type=Path, help="output folder (default: build.out of release.toml)"
    )
    build.add_argument(
        "--allow-dirty",
        action="store_true",
        help="build even if the product's work tree has uncommitted changes",
    )
    build.add_argument("--refresh", action="store_true", help="ignore cached locks and bundles")

    publish = add(
        "publish", cmd_publish, "publish a version's bundles to CVMFS (one transaction, verified)"
    )
    publish.add_argument(
        "--version", required=True, help="the version or tag to publish, e.g. v9.0.0a29"
    )
    publish.add_argument("--product", help="which product of release.toml (default: the only one)")
    publish.add_argument(
        "--repository", help="which CVMFS repository (default: the product's or the only one)"
    )
    publish.add_argument(
        "--out", type=Path, help="where the bundles were built (default: build.out)"
    )
    publish.add_argument("--plan", action="store_true", help="print every action, change nothing")

    render = add(
        "render", cmd_render, "write an environment's Ansible inventory and variables for a version"
    )
    render.add_argument(
        "--env", required=True, help="environment of release.toml, e.g. certification"
    )
    render.add_argument("--version", required=True, help="the version to pin")
    render.add_argument("--out", type=Path, help="output folder (default: ./rendered)")

    deploy = add(
        "deploy",
        cmd_deploy,
        "upgrade an environment's hosts with Ansible (rolling, rollback on failure)",
    )
    deploy.add_argument("--env", required=True, help="environment of release.toml")
    deploy.add_argument("--version", required=True, help="the published version to install")
    deploy.add_argument(
        "--plan", action="store_true", help="Ansible check mode with diffs: change nothing"
    )
    deploy.add_argument(
        "--install",
        action="store_true",
        help="first installation on new hosts (site.yml) instead of a rolling upgrade",
    )

    rollback = add("rollback", cmd_rollback, "roll an environment's hosts back")
    rollback.add_argument("--env", required=True, help="environment of release.toml")
    rollback.add_argument("--to", help="an installed version (default: each host's previous one)")
    rollback.add_argument(
        "--plan", action="store_true", help="Ansible check mode with diffs: change nothing"
    )

    certify = add("certify", cmd_certify, "smoke-test a deployment and record a certification")
    certify.add_argument("--env", required=True, help="environment of release.toml")
    certify.add_argument("--version", required=True, help="the version that should be running")
    certify.add_argument(
        "--url", help="certify this DiracX URL only (e.g. an ingress), not the hosts"
    )
    certify.add_argument("--junit", type=Path, help="also write the checks as JUnit XML here")

    promote = add("promote", cmd_promote, "promote a certified release to production")
    promote.add_argument("--version", required=True, help="a certified final version")
    promote.add_argument("--from", dest="source", default="certification",
                         help="environment that certified it (default: certification)")  # fmt: skip
    promote.add_argument("--to", dest="target", default="production",
                         help="environment to promote to (default: production)")  # fmt: skip
    promote.add_argument("--install", action="store_true",
                         help="first installation on the target hosts (site.yml)")  # fmt: skip
    promote.add_argument("--plan", action="store_true", help="show every step, change nothing")

    cvmfs = add("cvmfs", cmd_cvmfs, "inspect and maintain a CVMFS repository")
    cvmfs.add_argument(
        "action",
        choices=["status", "gc", "init", "abort"],
        help="status: versions, links, tags, open transactions; gc: apply the retention; "
        "init: create a directory repository; abort: clear a stale transaction of a dead process",
    )
    cvmfs.add_argument("--repository", help="which repository (default: the only one)")
    cvmfs.add_argument(
        "--plan", action="store_true", help="gc: list what would be removed, change nothing"
    )
    cvmfs.add_argument(
        "--stale",
        action="store_true",
        help="abort: required; clears only a transaction whose process is gone",
    )

    run = add("run", cmd_run, "release one tag through every stage, resuming where it stopped")
    run.add_argument("--product", help="product of release.toml (default: the only one)")
    run.add_argument("--tag", required=True, help="the release tag, e.g. v9.0.0a29")
    run.add_argument("--from", dest="from_stage", choices=PIPELINE_STAGES,
                     help="start at this stage (the earlier ones are not looked at)")  # fmt: skip
    run.add_argument("--until", choices=PIPELINE_STAGES, help="stop after this stage")
    run.add_argument("--plan", action="store_true", help="say what would run; change nothing")
    run.add_argument("--promote", action="store_true",
                     help="also promote to production (final releases only)")  # fmt: skip
    run.add_argument("--env", default="certification", help="environment to deploy and certify")
    run.add_argument("--to", default="production", help="environment promoted to")
    run.add_argument("--install", action="store_true", help="first install on new hosts")
    run.add_argument("--redo", action="append", choices=PIPELINE_STAGES,
                     help="run this stage again even if it verifies (repeatable)")  # fmt: skip

    report = add("report", cmd_report, "write a release's report (self-contained HTML, Markdown)")
    report.add_argument("--version", required=True, help="the release, e.g. v9.0.0a29")
    report.add_argument("--product", help="product of release.toml (default: the only one)")
    report.add_argument("--out", type=Path, help="folder for report.html and report.md "
                        "(default: beside the release's ledger)")  # fmt: skip

    status = add("status", cmd_status, "where each release stands, and which version runs where")
    status.add_argument("--product", help="only this product")
    status.add_argument("--version", help="only this release")

    demo = add("demo", cmd_demo, "run the pipeline on the embedded demo product", config=False)
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("dirac-release-demo"),
        help="where the demo keeps its repository and outputs (default: ./dirac-release-demo)",
    )
    demo.add_argument(
        "--until",
        choices=["version", "build", "publish", "deploy", "certify", "promote"],
        default="promote",
        help="stop after this stage (default: promote; deploy and later need root for lab hosts)",
    )
    demo.add_argument(
        "--tag",
        default="v1.0.0",
        help="release this version of the demo product (default v1.0.0; a later one is "
        "committed and tagged first, e.g. v1.0.1 to upgrade the hosts)",
    )

    sysroot = add(
        "sysroot",
        cmd_sysroot,
        "prepare an aarch64 root filesystem for emulated smoke tests",
        config=False,
    )
    sysroot.add_argument("--dest", type=Path, required=True, help="where to create it")
    sysroot.add_argument("--arch", default="aarch64", choices=["aarch64"], help="architecture")
    sysroot.add_argument("--python", default="3.11", help="runtime Python version (default 3.11)")

    add("config", cmd_config, "validate release.toml and show what it resolves to")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    previous = _terminate_like_interrupt()
    try:
        return int(args.handler(args))
    except ReleaseError as error:
        _report_error(error, args.json)
        return error.exit_code
    except KeyboardInterrupt as stop:
        # Ctrl-C, or SIGTERM (a cancelled CI job, systemd, kill): the same orderly stop, every
        # clean-up on the way out has run (transactions aborted, lab hosts removed).
        terminated = isinstance(stop, Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}: nothing was moved into place",
              file=sys.stderr)  # fmt: skip
        return 143 if terminated else 130
    except OSError as error:
        wrapped = ReleaseError(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
        _report_error(wrapped, args.json)
        return EXIT_INFRASTRUCTURE
    except Exception as error:  # the last line of defence: no raw traceback
        _report_error(_unexpected(error, args.command), args.json)
        return EXIT_INFRASTRUCTURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that the same clean-up as Ctrl-C runs."""


def _terminate_like_interrupt() -> Any:
    """Make SIGTERM unwind like Ctrl-C (main thread only); returns the handler it replaced."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, stop)


def _unexpected(error: Exception, command: str) -> ReleaseError:
    """A bug, said as one: its type and a short, redacted message; the traceback on request.

    A raw traceback can carry anything the failing frame held (a key, a token, a whole file)
    and is not something an admin can act on: it is printed only with DIRAC_RELEASE_DEBUG=1,
    and then redacted too.
    """
    import os
    import traceback

    from release.credentials import redact

    if os.environ.get("DIRAC_RELEASE_DEBUG") == "1":
        print(redact("".join(traceback.format_exception(error))), file=sys.stderr)
    text = redact(str(error).splitlines()[0] if str(error) else "")
    if len(text) > 200:
        text = text[:200] + f"... ({len(text)} characters)"
    return ReleaseError(
        f"unexpected {type(error).__name__} in '{command}'" + (f": {text}" if text else ""),
        fix="this is a bug in dirac-release: run again with DIRAC_RELEASE_DEBUG=1 for the "
        "traceback and report it (secrets are redacted from it)",
    )


def _report_error(error: ReleaseError, as_json: bool) -> None:
    from release.credentials import redact

    # A command that already printed its result as JSON (with the per-host or per-check
    # outcome) keeps stdout one JSON document: the error then goes to stderr only.
    if as_json and not getattr(error, "result_printed", False):
        from release.output import print_json

        print_json({k: redact(v) if isinstance(v, str) else v for k, v in error.as_dict().items()})
    print(f"error: {redact(error.render())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
