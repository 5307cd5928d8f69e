"""The release report: one release's story, from its ledgers, for people.

Three forms of the same facts: a terminal summary, Markdown (for GITHUB_STEP_SUMMARY and
pull requests) and one self-contained HTML file (inline style, no script, no network) that
opens anywhere, also from a CI artefact. Everything shown comes from ledger records, which
hold no secrets; the text is passed through the redactor anyway, as everything printed is.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from release.config import ReleaseConfig
from release.pipeline.stages import STAGE_NAMES as STAGE_ORDER


def collect(config: ReleaseConfig, product: str, tag: str) -> dict[str, Any]:
    """Everything the report shows, as plain data (also the `--json` form)."""
    ledger = config.ledger(product, tag)
    records = ledger.records()
    run = ledger.latest("pipeline")
    deployments = [
        r
        for r in config.ledger(product, "environments").records("deploy")
        if r.get("version") == tag
    ]
    build = ledger.latest("build")
    out = config.resolve_path(config.build.out).absolute() / tag
    artefacts = {
        "ledger": ledger.path,
        "bundles": out,
        "SHA256SUMS": out / "SHA256SUMS",
        **{
            f"tarball {p['platform']}": Path(p["tarball"])
            for p in (build or {}).get("platforms", [])
        },
    }
    return {
        "product": product,
        "tag": tag,
        "run": run,
        "stages": _stages(run, records, deployments),
        "build": build,
        "publish": ledger.latest("publish"),
        "deployments": deployments,
        "certifications": ledger.records("certify"),
        "promotion": ledger.latest("promote"),
        "pilots": _pilots(build, ledger.latest("publish")),
        "images": _images(
            ledger.records("image build"),
            ledger.records("image publish"),
            ledger.records("certify"),
        ),
        "artefacts": {name: str(path) for name, path in artefacts.items() if path.exists()},
    }


def _pilots(build: dict[str, Any] | None, publish: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per VO: the digest of its checksums.sha512 as built and as published, and where."""
    built = (build or {}).get("pilots") or {}
    published = (publish or {}).get("pilots") or {}
    return [
        {
            "vo": vo,
            "built_sha512": built.get(vo),
            "published_sha512": (published.get(vo) or {}).get("checksums_sha512"),
            "path": (published.get(vo) or {}).get("path"),
        }
        for vo in sorted(set(built) | set(published))
    ]


def _images(
    builds: list[dict[str, Any]],
    publications: list[dict[str, Any]],
    certifications: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per VO and architecture: the manifest digest last built, the one published, where, and
    the environments whose latest certification ran that published image and passed it."""  # fmt: skip
    built: dict[tuple[str, str], str] = {}
    for record in builds:
        for image in record.get("images", []):
            built[(image["vo"], image["arch"])] = image.get("manifest_digest")
    published: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for record in publications:
        for arch, digest in (record.get("digests") or {}).items():
            where = (record.get("container_root") or {}).get(arch)
            published[(record["vo"], arch)] = (digest, where)
    latest: dict[str, dict[str, Any]] = {}
    for record in certifications or []:
        latest[str(record.get("environment"))] = record
    rows = []
    for key in sorted(set(built) | set(published)):
        digest, where = published.get(key, (None, None))
        certified = sorted(
            env for env, record in latest.items()
            if record.get("passed") and digest is not None
            and ((record.get("images") or {}).get(key[0]) or {}).get(key[1]) == digest
        )  # fmt: skip
        rows.append({"vo": key[0], "arch": key[1], "built": built.get(key),
                     "published": digest, "container_root": where,
                     "certified": certified})  # fmt: skip
    return rows


def _stages(
    run: dict[str, Any] | None, records: list[dict[str, Any]], deployments: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The timeline: the last pipeline run's stages, or (stages run one by one) the records."""
    if run is not None:
        return [dict(stage, at=run["at"]) for stage in run["stages"]]
    found: list[dict[str, Any]] = []
    for name in STAGE_ORDER:
        source = deployments if name == "deploy" else [r for r in records if r["stage"] == name]
        if source:
            last = source[-1]
            ok = last.get("passed", last.get("exit_code", 0) in (0, None))
            found.append({"stage": name, "status": "done" if ok else "failed",
                          "summary": _summary(name, last), "reason": "",
                          "seconds": float(last.get("seconds") or 0), "at": last["at"]})  # fmt: skip
        else:
            found.append({"stage": name, "status": "not run", "summary": "", "reason": "no record",
                          "seconds": 0.0, "at": ""})  # fmt: skip
    return found


def _summary(name: str, record: dict[str, Any]) -> str:
    if name == "build":
        return f"{len(record.get('platforms', []))} bundles in {record.get('out')}"
    if name == "publish":
        return f"{record.get('status')}: tag {record.get('tag')} revision {record.get('revision')}"
    if name == "deploy":
        return ", ".join(f"{h['host']} {h.get('running')}" for h in record.get("hosts", []))
    if name == "certify":
        counts = record.get("counts") or {}
        return f"{record.get('environment')}: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed"
    return f"to {record.get('to')}"


def markdown(data: dict[str, Any]) -> str:
    from release.credentials import redact

    lines = [f"## {data['product']} {data['tag']}", ""]
    if data["run"]:
        lines += [f"Last run {data['run']['at']}: **{data['run']['verdict']}**", ""]
    lines += ["| stage | status | result | why | seconds |", "|---|---|---|---|---|"]
    lines += [
        f"| {s['stage']} | {s['status']} | {_cell(s['summary'])} | {_cell(s['reason'])} | {s['seconds']:.1f} |"
        for s in data["stages"]
    ]
    for cert in data["certifications"]:
        verdict = "passed" if cert.get("passed") else "FAILED"
        lines += ["", f"### certification on {cert.get('environment')} ({cert['at']}): {verdict}", "",
                  "| check | target | result | evidence |", "|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {c['name']} | {c['target']} | {c['result']} | {_cell(c['evidence'])} |"
            for c in cert.get("checks", [])
        ]
    if data.get("pilots"):
        lines += ["", "### pilot files (sha512 of checksums.sha512)", "",
                  "| VO | built | published | where |", "|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {p['vo']} | {str(p['built_sha512'])[:16]} | {str(p['published_sha512'])[:16]} "
            f"| {p['path'] or 'not published'} |"
            for p in data["pilots"]
        ]
    if data.get("images"):
        lines += [
            "",
            "### container images (OCI manifest digests)",
            "",
            "| VO | arch | built | published | certified on | ContainerRoot |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {i['vo']} | {i['arch']} | {str(i['built'])[:19]} | {str(i['published'])[:19]} "
            f"| {', '.join(i.get('certified') or []) or 'not certified'} "
            f"| {i['container_root'] or 'not published'} |"
            for i in data["images"]
        ]  # fmt: skip
    if data["artefacts"]:
        lines += ["", "### artefacts", ""]
        lines += [f"- {name}: `{path}`" for name, path in data["artefacts"].items()]
    return redact("\n".join(lines) + "\n")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:300]


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d232a;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
.verdict{font-size:1.1em;margin:.3em 0 1em}.muted{color:#57606a}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:.3em .5em;
text-align:left;vertical-align:top}th{background:#f6f8fa}
.timeline{display:flex;gap:2px;margin:1em 0;height:2.4em}
.seg{display:flex;align-items:center;justify-content:center;color:#fff;font-weight:600;min-width:5em;
border-radius:3px;font-size:.85em;white-space:nowrap;overflow:hidden}
.done,.passed{background:#1a7f37}.verified{background:#4493f8}.skipped,.planned{background:#8c959f}
.failed,.unreachable{background:#cf222e}.not-run{background:#d4a72c}
td.status span{color:#fff;padding:.1em .4em;border-radius:3px;font-size:.85em}
code{font-size:.9em;background:#f6f8fa;padding:.1em .3em;border-radius:3px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(status: str) -> str:
    return f'<span class="{_e(status.replace(" ", "-"))}">{_e(status)}</span>'


def html_page(data: dict[str, Any]) -> str:
    """One self-contained page: inline style, no script, no external resource."""
    from release.credentials import redact

    total = sum(s["seconds"] for s in data["stages"]) or 1.0
    segments = "".join(
        f'<div class="seg {_e(s["status"].replace(" ", "-"))}" style="flex:{max(s["seconds"] / total, 0.04):.3f}" '
        f'title="{_e(s["stage"])}: {_e(s["status"])}, {s["seconds"]:.1f} s">{_e(s["stage"])}</div>'
        for s in data["stages"]
    )
    stage_rows = "".join(
        f"<tr><td>{_e(s['stage'])}</td><td class=status>{_badge(s['status'])}</td>"
        f"<td>{_e(s['summary'])}</td><td class=muted>{_e(s['reason'])}</td>"
        f"<td>{s['seconds']:.1f}</td></tr>"
        for s in data["stages"]
    )
    verdict = (
        f"Last run {_e(data['run']['at'])}: <b>{_e(data['run']['verdict'])}</b>"
        if data["run"]
        else "No pipeline run recorded: stages run one by one."
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(data['product'])} {_e(data['tag'])}: release report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(data['product'])} {_e(data['tag'])}</h1><p class=verdict>{verdict}</p>",
        f"<div class=timeline>{segments}</div>",
        "<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>result</th><th>why</th>"
        f"<th>seconds</th></tr>{stage_rows}</table>",
    ]
    if data["build"]:
        rows = "".join(
            f"<tr><td>Linux-{_e(p['platform'])}</td><td><code>{_e(str(p.get('manifest_sha256'))[:16])}</code></td>"
            f"<td>{_e(p.get('files'))}</td><td>{_e(p.get('size'))}</td><td>{_e(p.get('smoke'))}</td></tr>"
            for p in data["build"].get("platforms", [])
        )
        parts.append("<h2>Bundles</h2><table><tr><th>platform</th><th>manifest</th><th>files</th>"
                     f"<th>bytes</th><th>smoke test</th></tr>{rows}</table>")  # fmt: skip
    if data["publish"]:
        pub = data["publish"]
        parts.append(f"<h2>CVMFS</h2><p>{_e(pub.get('status'))}: tag <code>{_e(pub.get('tag'))}</code>, "
                     f"revision {_e(pub.get('revision'))} in <code>{_e(pub.get('repository'))}</code>, "
                     f"<code>/cvmfs/{_e(pub.get('repository'))}/{_e(pub.get('version_dir'))}</code></p>")  # fmt: skip
    if data.get("pilots"):
        rows = "".join(
            f"<tr><td>{_e(p['vo'])}</td><td><code>{_e(str(p['built_sha512'])[:16])}</code></td>"
            f"<td><code>{_e(str(p['published_sha512'])[:16])}</code></td>"
            f"<td><code>{_e(p['path'] or 'not published')}</code></td></tr>"
            for p in data["pilots"]
        )
        parts.append("<h2>Pilot files</h2><p class=muted>sha512 of each VO's checksums.sha512, "
                     "which names every file the pilot wrapper checks</p><table><tr><th>VO</th>"
                     f"<th>built</th><th>published</th><th>where</th></tr>{rows}</table>")  # fmt: skip
    if data.get("images"):
        rows = "".join(
            f"<tr><td>{_e(i['vo'])}</td><td>{_e(i['arch'])}</td>"
            f"<td><code>{_e(str(i['built'])[:19])}</code></td>"
            f"<td><code>{_e(str(i['published'])[:19])}</code></td>"
            f"<td>{_e(', '.join(i.get('certified') or []) or 'not certified')}</td>"
            f"<td><code>{_e(i['container_root'] or 'not published')}</code></td></tr>"
            for i in data["images"]
        )
        parts.append("<h2>Container images</h2><p class=muted>OCI manifest digest of each "
                     "VO's image per architecture, and the ContainerRoot a site sets</p><table>"
                     "<tr><th>VO</th><th>arch</th><th>built</th><th>published</th>"
                     f"<th>certified on</th><th>ContainerRoot</th></tr>{rows}</table>")  # fmt: skip
    if data["deployments"]:
        rows = "".join(
            f"<tr><td>{_e(d.get('environment'))}</td><td>{_e(h['host'])}</td><td>{_e(h.get('previous'))}</td>"
            f"<td>{_e(h.get('running'))}</td><td>{_e(h.get('result'))}</td><td>{_e(d['at'])}</td></tr>"
            for d in data["deployments"]
            for h in d.get("hosts", [])
        )
        parts.append("<h2>Hosts</h2><table><tr><th>environment</th><th>host</th><th>before</th>"
                     f"<th>runs</th><th>result</th><th>when</th></tr>{rows}</table>")  # fmt: skip
    for cert in data["certifications"]:
        rows = "".join(
            f"<tr><td>{_e(c['group'])}</td><td>{_e(c['name'])}</td><td>{_e(c['target'])}</td>"
            f"<td class=status>{_badge(c['result'])}</td><td>{_e(c['evidence'])}</td></tr>"
            for c in cert.get("checks", [])
        )
        verdict_text = "passed" if cert.get("passed") else "FAILED"
        parts.append(f"<h2>Certification on {_e(cert.get('environment'))}: {verdict_text}</h2>"
                     f"<p class=muted>{_e(cert['at'])}</p><table><tr><th>group</th><th>check</th>"
                     f"<th>target</th><th>result</th><th>evidence</th></tr>{rows}</table>")  # fmt: skip
    if data["promotion"]:
        promo = data["promotion"]
        steps = "".join(
            f"<li>{_e(s['step'])}: {_e(s['result'])}</li>" for s in promo.get("steps", [])
        )
        parts.append(f"<h2>Promotion to {_e(promo.get('to'))}</h2><ul>{steps}</ul>")
    if data["artefacts"]:
        items = "".join(
            f'<li>{_e(name)}: <a href="{_e(Path(path).as_uri())}"><code>{_e(path)}</code></a></li>'
            for name, path in data["artefacts"].items()
        )
        parts.append(f"<h2>Artefacts</h2><ul>{items}</ul>")
    parts.append(
        "<p class=muted>Written by dirac-release from the release's ledgers.</p></body></html>"
    )
    return redact("\n".join(parts) + "\n")


def write_report(
    config: ReleaseConfig,
    product: str,
    tag: str,
    out: Path | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write report.html and report.md beside the ledger (or into `out`); returns their paths.

    `data` is what `collect` returned, when the caller has it already."""
    data = data if data is not None else collect(config, product, tag)
    folder = (out or config.ledger(product, tag).path.parent).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    page, text = folder / "report.html", folder / "report.md"
    for path, content in ((page, html_page(data)), (text, markdown(data))):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(path)
    return {"html": str(page), "markdown": str(text)}
