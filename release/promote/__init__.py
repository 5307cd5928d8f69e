"""The promote stage: a certified release, and only a certified one, goes to production.

The gate reads the ledger: the latest certification of exactly this version on the
certification environment must have passed, and the bundles published now must be the ones it
certified (manifest digests). Then, in order: `pro` moves in CVMFS (one verified transaction),
the production VO's pilot files are uploaded to its HTTPS locations if it lists any, the
production hosts are upgraded (the rolling upgrade with rollback), production is certified.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from release.config import ReleaseConfig
from release.errors import BadInput, CheckFailed
from release.version import parse_version_arg


def _quiet(_line: str) -> None:
    return None


def certification_gate(
    config: ReleaseConfig, product: str, tag: str, source_env: str
) -> dict[str, Any]:
    """The certification that allows this promotion, or BadInput saying what is missing."""
    from release.certify import published_digests
    from release.certify.checks import FAILED, UNREACHABLE

    ledger = config.ledger(product, tag)
    records = [r for r in ledger.records("certify") if r.get("environment") == source_env]
    certify_cmd = f"dirac-release certify --env {source_env} --version {tag}"
    if not records:
        raise BadInput(
            f"{product} {tag} was never certified on {source_env}: there is no certification record "
            f"in {ledger.path}",
            fix=f"deploy it to {source_env} and run: {certify_cmd}",
        )
    latest = records[-1]
    if not latest.get("passed"):
        failed = [
            f"{c['name']} on {c['target']}"
            for c in latest["checks"]
            if c["result"] in (FAILED, UNREACHABLE)
        ]
        raise BadInput(
            f"the latest certification of {tag} on {source_env} ({latest['at']}) did not pass: "
            + ("; ".join(failed[:5]) or "incomplete"),
            fix=f"fix the deployment and certify again: {certify_cmd}",
        )
    now = published_digests(config, source_env, tag)
    certified = latest.get("manifest_sha256") or {}
    if now != certified:
        changed = sorted(
            arch for arch in set(now) | set(certified) if now.get(arch) != certified.get(arch)
        )
        raise BadInput(
            f"the bundles of {tag} changed after their certification ({latest['at']}): "
            + ", ".join(
                f"Linux-{arch} certified {str(certified.get(arch, 'absent'))[:16]}, now {str(now.get(arch, 'absent'))[:16]}"
                for arch in changed
            ),
            fix=f"find out who changed the repository; certify again what is there now: {certify_cmd}",
        )
    return latest


def production_pilot(
    config: ReleaseConfig, env_name: str, tag: str, backend: Any, layout: Any
) -> dict[str, tuple[str, dict[str, Any]]]:
    """The `pilot` link that moves with `pro`: to the environment's VO's files of this release.

    An admin used to bump the pilots' Version by hand after an upgrade; here the files the
    wrapper reads switch in the very transaction that switches the release.
    """
    from release.pilot.layout import PILOT_LINK, link_target, version_rel

    vo = config.environment_pilot(env_name)
    if vo is None:
        return {}
    rel = version_rel(layout.version_dir(tag), vo)
    manifest = backend.read_manifest(rel)
    if manifest is None:
        raise BadInput(
            f"{tag} was published without the pilot files of {vo} (/{rel}), which "
            f"{env_name}'s pilots run",
            fix="pilot files go out with their release: build them (dirac-release pilot build "
            f"--vo {vo} --version <new tag>) and publish a new version with them",
        )
    return {PILOT_LINK: (link_target(tag, vo), manifest)}


def production_uploads(
    config: ReleaseConfig,
    env_name: str,
    tag: str,
    companions: dict[str, tuple[str, dict[str, Any]]],
) -> list[Any]:
    """The HTTPS locations that must serve the promoted pilot files too, checked up front.

    Where the environment's VO lists `upload` locations (the pilotFileServer some sites'
    pilots download from), the files sent are the built folder, checked as the wrapper would
    and then compared file by file with what was published and certified. All of it before
    `pro` moves: a missing folder, a certificate that does not load or bytes that are not the
    certified ones stop the promotion with nothing changed.
    """
    from release.pilot import upload
    from release.pilot.layout import PILOT_LINK

    vo = config.environment_pilot(env_name)
    if vo is None or not config.pilots[vo].upload or PILOT_LINK not in companions:
        return []
    targets = upload.select(config, version=tag, vo=vo)
    published = {entry["path"]: entry.get("sha256") for entry in companions[PILOT_LINK][1]["files"]}
    for target in targets:
        differ = sorted(
            name
            for name, data in target.files.items()
            if published.get(name) != hashlib.sha256(data).hexdigest()
        )
        if differ or set(published) != set(target.files):
            raise BadInput(
                f"the built pilot files of {vo} for {tag} are not the ones published and "
                f"certified ({', '.join(differ) or 'other file names'}), so they are not uploaded",
                where=str(target.folder),
                fix=f"fetch the files that were published (the build's artifact) into "
                f"{target.folder.parent}, or upload later with: dirac-release pilot upload "
                f"--vo {vo} --version {tag}",
            )
    return targets


def _upload_step(done: list[Any], *, plan: bool) -> dict[str, Any]:
    def one(u: Any) -> str:
        if plan:
            return f"{u.location}: would send {len(u.sent)} files"
        wrong = f", WRONG: {', '.join(u.wrong)}" if u.wrong else ""
        return f"{u.location}: {u.status}, {len(u.sent)} sent, {len(u.verified)} read back{wrong}"

    return {"step": "pilot upload", "result": "; ".join(one(u) for u in done),
            "uploads": [u.as_dict() for u in done]}  # fmt: skip


def promote_release(
    config: ReleaseConfig,
    *,
    version: str,
    source_env: str = "certification",
    target_env: str = "production",
    install: bool = False,
    plan: bool = False,
    echo: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Check the gate, move pro, upgrade production, certify production; record each step.

    `echo` shows Ansible's output, `progress` hears production's certification as it goes:
    the caller decides how a person sees them (promote imports no presentation).
    """
    from cvmfs.promotion import move_link
    from release.certify import certify_release, check_outcome, published_manifests
    from release.deploy import check_outcome as deploy_outcome
    from release.deploy import deploy_environment
    from release.pilot import upload
    from release.targets import for_environment

    release_version = parse_version_arg(version)
    tag = release_version.tag
    env = config.environment(target_env)
    product, _ = config.product(env.product)
    config.environment(source_env)  # an unknown name is bad input before anything happens
    if release_version.version.is_prerelease:
        raise BadInput(
            f"{tag} is a pre-release: pre-releases go to certification only, never to {target_env}",
            fix="tag a final version (e.g. "
            f"v{release_version.version.base_version}) and certify that one",
        )
    certification = certification_gate(config, product, tag, source_env)
    backend, layout, manifests = published_manifests(config, target_env, tag)
    missing = [arch for arch, manifest in manifests.items() if manifest is None]
    if missing:
        raise BadInput(
            f"{tag} is not published for {', '.join(missing)} in {layout.repository}, the "
            f"repository of {target_env}",
            fix=f"publish it there first: dirac-release publish --version {tag}",
        )
    companions = production_pilot(config, target_env, tag, backend, layout)
    uploads = production_uploads(config, target_env, tag, companions)
    steps: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "product": product,
        "version": tag,
        "from": source_env,
        "to": target_env,
        "certification": {
            "at": certification["at"],
            "manifest_sha256": certification["manifest_sha256"],
        },
        "plan": plan,
        "steps": steps,
    }
    started = time.monotonic()
    link = move_link(backend, layout, tag, {a: m for a, m in manifests.items() if m is not None},
                     companions=companions, wait_s=for_environment(config, target_env).repo.wait,
                     plan=plan)  # fmt: skip
    steps.append({"step": "gate", "result": f"certified on {source_env} at {certification['at']}"})
    moved = "".join(
        f"; {name} -> {c['to']} (was {c['from'] or 'absent'})"
        for name, c in link.get("companions", {}).items()
    )
    steps.append(
        {
            "step": "pro link",
            "result": f"{link['status']}: {link['link']} -> {tag} (was {link['from'] or 'absent'})"
            + moved,
            "actions": link["actions"],
        }
    )
    playbook = "site.yml" if install else "upgrade.yml"
    if env.runtime == "k3s":
        playbook = "k3s.yml (DiracX's manifests for k3s)"
    if plan:
        if uploads:
            steps.append(_upload_step(upload.plan(uploads), plan=True))
        steps.append(
            {
                "step": "deploy",
                "result": f"would run {playbook} on {', '.join(env.hosts)} ({target_env})",
            }
        )
        steps.append({"step": "certify", "result": f"would certify {tag} on {target_env}"})
        result["passed"] = None
        return result
    ledger = config.ledger(product, tag)
    try:
        if uploads:
            sent = upload.upload(uploads, progress or _quiet)
            steps.append(_upload_step(sent, plan=False))
            upload.check_outcome(sent)
        deployment = deploy_environment(config, env_name=target_env, version=tag,
                                        install=install, echo=echo, progress=progress)  # fmt: skip
        steps.append({"step": "deploy", "result": ", ".join(f"{h['host']} {h['result']}" for h in deployment["hosts"]),
                      "hosts": deployment["hosts"]})  # fmt: skip
        deploy_outcome(deployment)
        record = certify_release(config, env_name=target_env, version=tag, progress=progress)
        steps.append({"step": "certify", "result": f"{'passed' if record['passed'] else 'FAILED'}: "
                      f"{record['counts']['passed']} passed, {record['counts']['failed']} failed",
                      "record_at": record["at"]})  # fmt: skip
        # The certification is its own record in the same ledger: point at it, do not copy it.
        result["certify"] = {"at": record["at"], "environment": target_env,
                             "passed": record["passed"], "counts": record["counts"]}  # fmt: skip
        result["passed"] = bool(record["passed"])
        check_outcome(record)
    except BaseException as exc:
        result["passed"] = False
        result["error"] = str(getattr(exc, "message", exc))
        ledger.record("promote", {**result, "seconds": round(time.monotonic() - started, 1)})
        raise
    ledger.record("promote", {**result, "seconds": round(time.monotonic() - started, 1)})
    if not result["passed"]:
        raise CheckFailed(f"{tag} was promoted but {target_env} did not certify")
    return result
