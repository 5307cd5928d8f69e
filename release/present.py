"""How each command's result looks: a table for a person, JSON for a machine, Markdown for
GitHub's job summary. The command handlers (`release.commands`) only fetch results and hand them
here, so the look of a result is decided in one place and the stages never print tables.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from release.errors import ReleaseError

if TYPE_CHECKING:
    from pathlib import Path

    from release.notes import Notes
    from release.notes.blocks import Block
    from release.pipeline.runner import PipelineRun


def note(text: str) -> None:
    """A line of live progress for the person watching: stderr, flushed at once."""
    print(text, file=sys.stderr, flush=True)


def check_printed(check: Callable[[Any], None], result: Any, as_json: bool) -> None:
    """Run an outcome check on a result already printed; its error must not print JSON again."""
    try:
        check(result)
    except ReleaseError as error:
        error.result_printed = as_json  # type: ignore[attr-defined]
        raise


def version_info(info: dict[str, Any], tag: str, as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(info)
        return
    rows = [
        [key, ", ".join(value) if isinstance(value, list) else str(value)]
        for key, value in info.items()
        if value is not None
    ]
    table(f"Release {tag}", ["", ""], rows)


def base_record(data: dict[str, Any], action: str, as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(data)
        return
    rows = [
        [f"Linux-{p['platform']}", p["layout"], p["python"], str(p["distributions"]),
         p["digest"][:16], "; ".join(p["changes"][:6]) or ("-" if action == "show" else "none")]
        for p in data["platforms"]
    ]  # fmt: skip
    table(
        f"Base {data['base']} {data['version']}",
        ["platform", "layout", "python", "distributions", "digest", "changes"],
        rows,
    )
    verb = "recorded in" if action == "inspect" else "from"
    note(
        f"{verb} {data['record']}"
        + (": commit it with release.toml" if action == "inspect" else "")
    )


def build(report: Any, as_json: bool) -> None:
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


def pilots(builds: list[dict[str, Any]], as_json: bool) -> None:
    from release.output import human_size, print_json, table

    if as_json:
        print_json({"pilots": builds})
        return
    for build in builds:
        rows = [[f["name"], human_size(f["size"]), f["sha512"][:16]] for f in build["files"]]
        table(f"pilot of {build['vo']} for {build['product']} {build['tag']} ({build['status']})",
              ["file", "size", "sha512"], rows)  # fmt: skip
        modules = build["modules"]
        made_of = f"Pilot {build['pilot']['commit'][:12]}"
        if modules:
            made_of += f", modules {modules['ref'] or modules['origin']}" + (
                f" {modules['commit'][:12]}" if modules["commit"] else ""
            )
        print(f"→ {build['folder']} ({made_of})")


def pilot_uploads(uploads: list[dict[str, Any]], as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json({"uploads": uploads})
        return
    if any(u["status"] == "planned" for u in uploads):
        rows = [[u["vo"], u["tag"], u["location"], str(i), name]
                for u in uploads for i, name in enumerate(u["sent"], 1)]  # fmt: skip
        table("pilot upload plan (nothing was sent)", ["VO", "tag", "location", "order", "file"],
              rows)  # fmt: skip
        return
    rows = [
        [u["vo"], u["tag"], u["location"], str(len(u["sent"])), str(len(u["unchanged"])),
         f"{len(u['verified'])}/{len(u['verified']) + len(u['wrong'])}"
         + (f" (wrong: {', '.join(u['wrong'])})" if u["wrong"] else ""), u["status"]]
        for u in uploads
    ]  # fmt: skip
    table("pilot upload", ["VO", "tag", "location", "sent", "unchanged", "verified", "status"],
          rows)  # fmt: skip


def images(builds: list[dict[str, Any]], as_json: bool) -> None:
    from release.output import human_size, markdown_table, print_json, step_summary, table

    if as_json:
        print_json({"images": builds})
        return
    columns = ["VO", "arch", "manifest digest", "layer", "files", "size", "seconds", "status"]
    rows = [
        [b["vo"], b["arch"], b["manifest_digest"].removeprefix("sha256:")[:16],
         human_size(b["layer_size"]), str(b["files"]), human_size(b["bytes"]),
         f"{b['seconds']:.1f}", b["status"]]
        for b in builds
    ]  # fmt: skip
    first = builds[0] if builds else {"product": "", "tag": ""}
    table(f"images for {first['product']} {first['tag']}", columns, rows)
    for build in builds:
        print(f"→ {build['folder']} (OCI layout: {build['layout']})")
        if build["left_out"]:
            note(f"{build['arch']}: left out {len(build['left_out'])} special file(s) "
                 f"(device nodes...; the runtime brings /dev): "
                 + ", ".join(build["left_out"][:4]))  # fmt: skip
    step_summary(f"### Images for {first['product']} {first['tag']}\n\n"
                 + markdown_table(columns, rows))  # fmt: skip


def image_publications(results: list[dict[str, Any]], as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json({"publications": results})
        return
    rows = [[r["vo"], ", ".join(r["platforms"]), r["tag"], r["status"], str(r["revision"] or "")]
            for r in results]  # fmt: skip
    table("image publications", ["VO", "arches", "CVMFS tag", "status", "revision"], rows)
    for r in results:
        for path in r["paths"]:
            print(f"→ {path}")
        for action in r["actions"] if r["status"] == "planned" else []:
            print(f"  would {action}")
        for arch, root in r["container_root"].items():
            print(f"ContainerRoot ({r['vo']}, {arch}): {root}")
        for text in r["notes"]:
            note(text)


def container_roots(roots: list[dict[str, Any]], as_json: bool) -> None:
    """One path a line (what a site pastes), or JSON."""
    from release.output import print_json

    if as_json:
        print_json({"container_roots": roots})
        return
    for root in roots:
        print(root["container_root"])


def image_checks(results: list[dict[str, Any]], as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json({"checks": results})
        return
    for result in results:
        rows = [[s["name"], "passed" if s["passed"] else "FAILED", s["detail"]]
                for s in result["steps"]]  # fmt: skip
        table(f"{result['arch']} image {result['tree']} ({result['how']})",
              ["check", "result", "detail"], rows)  # fmt: skip


def publication(result: dict[str, Any], as_json: bool) -> None:
    from release.output import markdown_table, print_json, step_summary, table

    if as_json:
        print_json(result)
        return
    for line in result["notes"]:
        print(line, file=sys.stderr)
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


def repository_status(data: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(data)
        return
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


def retention(data: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(data)
        return
    rows = [
        [name, "remove" if name in data["remove"] else "keep", data["reasons"][name]]
        for name in sorted(data["reasons"])
    ]
    table(f"retention of {data['repository']}: {data['status']}", ["version", "action", "why"],
          rows)  # fmt: skip
    for path in data.get("images", []):
        print(f"{'would remove' if data['status'] == 'planned' else 'image removed:'} /{path} "
              "(the image of a version removed)")  # fmt: skip


def key_values(data: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json

    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        print(f"{key}: {value}")


def rendered(result: dict[str, Any], env: str, as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(result)
        return
    rows = [[host, address] for host, address in result["hosts"].items()]
    table(f"{env} {result['version']}: {result['inventory']}", ["host", "address"], rows)
    k8s = result.get("k8s")
    if k8s:
        chart = k8s["chart"]
        checked = k8s["validated"]
        print(f"k3s manifests: {k8s['folder']} (chart {chart['name']} {chart['version']} from "
              f"{chart['repo']}; {checked['objects']} object(s) valid)")  # fmt: skip
        for name in k8s["files"]:
            print(f"  {name}")
        print(f"Secrets expected, by name only: {', '.join(k8s['secrets'])}")
        objects = k8s.get("chart_objects")
        if objects:
            kinds = ", ".join(f"{n} {k}" for k, n in objects["kinds"].items())
            print(f"helm template: {objects['objects']} object(s) valid ({kinds})")
            if objects["without_schema"]:
                print(
                    "  no schema for (name checked only): " + ", ".join(objects["without_schema"])
                )
    roots = result.get("container_roots")
    if roots:
        print(f"ContainerRoot of the SingularityComputingElement, for {roots['platform']} nodes "
              f"(every architecture and the {{arch}} form in {roots['file']}):")  # fmt: skip
        for vo, root in roots["container_root"].items():
            print(f"  {vo}: {root}")
    changes = result.get("diff")
    if changes is not None:
        _render_diff(changes)


def _render_diff(changes: dict[str, Any]) -> None:
    if not changes["against"]:
        print("diff: no previous render of this environment: every file is new")
        return
    if not changes["changes"]:
        print(f"diff against {changes['against']}: no change")
        return
    print(f"diff against {changes['against']}: {len(changes['changes'])} file(s) changed, "
          f"{changes['unchanged']} unchanged")  # fmt: skip
    for change in changes["changes"]:
        sys.stdout.write(change["diff"] if change["diff"].endswith("\n") else change["diff"] + "\n")


def hosts(result: dict[str, Any], as_json: bool) -> None:
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
    _k3s_deploy_end(result)


def _k3s_deploy_end(result: dict[str, Any]) -> None:
    """After a k3s deploy's host table: the rollout as it was waited for, or why it was not,
    and what a rollback did."""
    rollout = result.get("rollout")
    if result.get("runtime") != "k3s" or not rollout:
        return
    if rollout.get("ok"):
        k3s_rollout(rollout, False)
    elif not rollout.get("waited"):
        note(f"rollout not waited for: {rollout['reason']}")
    rollback = result.get("rollback")
    if rollback:
        note(f"rollback: {rollback['result']}")


def k3s_rollout(result: dict[str, Any], as_json: bool) -> None:
    """A finished rollout wait: the install Job and each Deployment, with when each was done."""
    from release.output import markdown_table, print_json, step_summary, table

    if as_json:
        print_json(result)
        return
    columns = ["object", "state", "done after (s)"]
    rows = [[f"Job {result['chart_namespace']}/{result['job']}", "succeeded",
             f"{result['job_seconds']:.1f}"]]  # fmt: skip
    rows += [
        [f"Deployment {result['namespace']}/{d['name']}", f"available ({d['replicas']})",
         f"{d['seconds']:.1f}"]
        for d in result["deployments"]
    ]  # fmt: skip
    title = f"k3s rollout of {result['chart']} on {result['server']}: done in {result['seconds']} s"
    table(title, columns, rows)
    step_summary(f"### {title}\n\n" + markdown_table(columns, rows))


def certification(record: dict[str, Any], as_json: bool) -> None:
    from release.certify.report import COLUMNS, markdown, rows
    from release.output import print_json, step_summary, table

    step_summary(markdown(record))
    if as_json:
        print_json(record)
        return
    verdict = "passed" if record["passed"] else "FAILED"
    table(f"certify {record['version']} on {record['environment']}: {verdict} ({record['seconds']} s)",
          COLUMNS, rows(record))  # fmt: skip


def promotion(result: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, step_summary, table

    if as_json:
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


def pipeline_run(run: PipelineRun, data: dict[str, Any], as_json: bool) -> None:
    """The end of `run`: what happened per stage, and where every output is."""
    from release.output import print_json, step_summary, table

    if as_json:
        print_json(data)
    else:
        rows = [[r.stage, r.status.value, r.summary[:90], r.reason[:60], f"{r.seconds:.1f}"]
                for r in run.results]  # fmt: skip
        table(f"run {run.product} {run.tag}: {run.verdict} ({run.seconds:.0f} s)",
              ["stage", "status", "result", "why", "seconds"], rows)  # fmt: skip
        print(f"ledger: {data['ledger']}", file=sys.stderr)
        if "report" in data:
            print(f"report: {data['report']['html']} (and .md)", file=sys.stderr)
        if "junit" in data:
            print(f"junit: {data['junit'] or 'not written: no certification recorded'}",
                  file=sys.stderr)  # fmt: skip
    step_summary(f"### {run.product} {run.tag}: {run.verdict}\n\n| stage | status | result |\n|---|---|---|\n"
                 + "\n".join(f"| {r.stage} | {r.status.value} | {r.summary} |" for r in run.results))  # fmt: skip


def release_report(data: dict[str, Any], written: dict[str, str], as_json: bool) -> None:
    from release.output import print_json, step_summary, table
    from release.report import markdown

    step_summary(markdown(data))
    if as_json:
        print_json({**data, "written": written})
        return
    product, tag = data["product"], data["tag"]
    table(f"{product} {tag}: {data['run']['verdict'] if data['run'] else 'no pipeline run recorded'}",
          ["stage", "status", "result", "seconds"],
          [[s["stage"], s["status"], s["summary"][:90], f"{s['seconds']:.1f}"] for s in data["stages"]])  # fmt: skip
    print(f"report: {written['html']}\n        {written['markdown']}", file=sys.stderr)


def release_status(data: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, table
    from release.pipeline.status import STAGES

    if as_json:
        print_json(data)
        return
    for product, info in data["products"].items():
        rows = []
        for release in info["releases"]:
            for stage in STAGES:
                if stage not in release["stages"]:
                    continue  # not a stage of this product (no VO images)
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


def configuration(config: Any, as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(config.model_dump(mode="json"))
        return
    rows = []
    for name, product in config.products.items():
        source = product.source
        where = getattr(source, "git", None) or f"index: {getattr(source, 'index', '')}"
        rows.append([name, product.distribution_name(name), where, product.python,
                     ", ".join(product.requirements)])  # fmt: skip
    table(f"{config.path}: valid", ["product", "distribution", "source", "python", "requirements"],
          rows)  # fmt: skip
    platforms = [[arch, p.python_platform(arch)] for arch, p in config.platforms.items()]
    table("platforms", ["platform", "resolves for"], platforms)


def sysroot(path: Any, arch: str, python: str, as_json: bool) -> None:
    from release.output import print_json

    if as_json:
        print_json({"sysroot": str(path), "arch": arch, "python": python})
    else:
        print(f"{path} is ready; use it with: export DIRAC_RELEASE_AARCH64_SYSROOT={path}")


def notes(data: Notes, text: str, output: Path | None, as_json: bool) -> None:
    """The notes on stdout (or in a file), what was dropped and why on stderr."""
    from release.output import print_json

    if output is not None:
        output.write_text(text, encoding="utf-8")
    if as_json:
        print_json({**data.as_dict(), "text": text, "output": str(output) if output else None})
        return
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
    for line in data.dropped:
        print(f"dropped {line}", file=sys.stderr)
    if data.without_notes:
        shown = ", ".join(f"#{n}" for n in data.without_notes)
        print(f"no notes block: {shown}", file=sys.stderr)
    for number, problems in sorted(data.problems.items()):
        print(f"#{number}: " + "; ".join(problems), file=sys.stderr)
    where = f" in {output}" if output else ""
    print(f"{len(data.entries)} notes{where}", file=sys.stderr)


def notes_check(repository: str, number: int, block: Block, as_json: bool) -> None:
    from release.output import print_json

    if as_json:
        print_json({"repository": repository, "pr": number, "found": block.found,
                    "entries": len(block.entries), "problems": block.problems})  # fmt: skip
    elif not block.problems:
        print(f"{repository}#{number}: {len(block.entries)} release notes, well formed",
              file=sys.stderr)  # fmt: skip


def pypi_files(result: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(result)
        return
    table(f"PyPI files of {result['product']} {result['tag']}", ["file", "sha256"],
          [[name, digest[:16]] for name, digest in sorted(result["files"].items())])  # fmt: skip
    print(f"the wheel is the one installed in the bundles of "
          f"{', '.join(result['wheel_in_bundles'])} ({result['wheel_files']} files checked); "
          f"ready in {result['folder']}", file=sys.stderr)  # fmt: skip


def github_release(result: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, table

    if as_json:
        print_json(result)
        return
    for line in result["notes"]:
        print(line, file=sys.stderr)
    table(
        f"GitHub release {result['tag']} of {result['repository']}: {result['status']}"
        + (" (pre-release)" if result["prerelease"] else ""),
        ["asset", "sha256", "result"],
        [[a["name"], a["sha256"][:16], a["action"]] for a in result["assets"]],
    )
    where = f" {result['url']}" if result.get("url") else ""
    print(f"GitHub release {result['tag']}: {result['status']}{where}", file=sys.stderr)
