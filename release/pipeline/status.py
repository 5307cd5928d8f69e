"""Where every release stands, read from the ledgers: nothing is asked of hosts or repositories.

`status` is what a release manager looks at before and after a run: per release, each stage's
latest record (when, and the evidence that matters: digests, CVMFS tag and revision, hosts and
versions, certification, promotion); per environment, which version the last deployment left
on which host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release.config import ReleaseConfig
from release.ledger import Ledger
from release.pipeline.stages import STAGE_NAMES

# Render keeps no record of its own: what it made is the inventory on disk.
STAGES = tuple(name for name in STAGE_NAMES if name != "render")


def _evidence(stage: str, record: dict[str, Any]) -> str:
    if stage == "build":
        digests = ", ".join(
            f"Linux-{p['platform']} {str(p.get('manifest_sha256'))[:12]}"
            for p in record.get("platforms", [])
        )
        return f"manifests {digests}"
    if stage == "publish":
        return (f"{record.get('status')}: tag {record.get('tag')} revision "
                f"{record.get('revision')} in {record.get('repository')}")  # fmt: skip
    if stage == "image":
        return (f"{record.get('vo')} {record.get('status')}: tag {record.get('tag')} revision "
                f"{record.get('revision')} in {record.get('repository')}")  # fmt: skip
    if stage == "deploy":
        hosts = ", ".join(f"{h['host']} {h.get('running')}" for h in record.get("hosts", []))
        return f"{record.get('environment')}: {hosts}"
    if stage == "certify":
        counts = record.get("counts") or {}
        verdict = "passed" if record.get("passed") else "FAILED"
        return (f"{record.get('environment')}: {verdict} ({counts.get('passed', 0)} passed, "
                f"{counts.get('failed', 0)} failed, {counts.get('unreachable', 0)} unreachable)")  # fmt: skip
    if stage == "promote":
        verdict = "passed" if record.get("passed") else "FAILED"
        return f"to {record.get('to')}: {verdict}"
    return ""


def release_status(config: ReleaseConfig, product: str, tag: str) -> dict[str, Any]:
    ledger = config.ledger(product, tag)
    stages: dict[str, Any] = {}
    for stage in STAGES:
        if stage == "image" and not config.product_images(product):
            continue  # a product without VO images has no such stage to show
        record = ledger.latest("image publish" if stage == "image" else stage)
        if stage == "deploy":  # deployments are recorded per environment, not per release
            record = next(
                (r for r in reversed(config.ledger(product, "environments").records("deploy"))
                 if r.get("version") == tag),
                None,
            )  # fmt: skip
        stages[stage] = (
            {"at": record["at"], "evidence": _evidence(stage, record), "ok": _ok(stage, record)}
            if record
            else None
        )
    last_run = ledger.latest("pipeline")
    return {
        "product": product,
        "tag": tag,
        "stages": stages,
        "last_run": {"at": last_run["at"], "verdict": last_run["verdict"]} if last_run else None,
    }


def _ok(stage: str, record: dict[str, Any]) -> bool:
    if stage in ("certify", "promote"):
        return bool(record.get("passed"))
    if stage == "deploy":
        return record.get("exit_code") == 0
    return True


def environments_status(config: ReleaseConfig, product: str) -> dict[str, dict[str, str]]:
    """environment → host → the version its latest deployment left running."""
    found: dict[str, dict[str, str]] = {}
    for record in config.ledger(product, "environments").records("deploy"):
        hosts = found.setdefault(str(record.get("environment")), {})
        for host in record.get("hosts", []):
            if host.get("running"):
                hosts[host["host"]] = str(host["running"])
    return found


def known_tags(config: ReleaseConfig, product: str) -> list[str]:
    """The release tags with a ledger, oldest version first."""
    from packaging.version import InvalidVersion, Version

    root = config.resolve_path(config.state.dir) / product
    tags = (
        [p.name for p in root.iterdir() if (p / "ledger.json").is_file()] if root.is_dir() else []
    )

    def order(tag: str) -> tuple[int, Any]:
        try:
            return (0, Version(tag))
        except InvalidVersion:
            return (1, tag)

    return sorted((t for t in tags if t != "environments"), key=order)


def status(config: ReleaseConfig, product: str | None, version: str | None) -> dict[str, Any]:
    from release.version import parse_version_arg

    names = [config.product(product)[0]] if product else sorted(config.products)
    data: dict[str, Any] = {"products": {}}
    for name in names:
        tags = [parse_version_arg(version).tag] if version else known_tags(config, name)
        data["products"][name] = {
            "releases": [release_status(config, name, tag) for tag in tags],
            "environments": environments_status(config, name),
        }
    return data


def ledger_path(config: ReleaseConfig, product: str, tag: str) -> Path:
    return Ledger(config.resolve_path(config.state.dir), product, tag).path
