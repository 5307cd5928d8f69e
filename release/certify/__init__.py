"""The certify stage: smoke checks of a deployed version, recorded as evidence in the ledger.

Four kinds of targets: the CVMFS repository (every platform of the version verifies against
its manifest; certification never moves `pro`), the environment's hosts (asked over Ansible
what their services run), DiracX (per host, or one URL such as an ingress), and the product's
VO images as published (release/image/certification.py: verified, then run with the release
from the bound /cvmfs). The record
holds every check with its evidence and the digests of the bundles it certified, which is what
`promote` compares before it lets a version reach production.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from release.certify.checks import (
    FAILED,
    PASSED,
    SKIPPED,
    UNREACHABLE,
    Check,
    CheckFailure,
    run_check,
    skipped,
)
from release.config import ReleaseConfig

if TYPE_CHECKING:
    from pydantic import SecretStr

    from cvmfs.backends.base import Backend
    from cvmfs.layout import Layout
from release.errors import BadInput, CheckFailed, InfrastructureError, ReleaseError
from release.version import parse_version_arg


def published_manifests(
    config: ReleaseConfig, env_name: str, tag: str
) -> tuple[Backend, Layout, dict[str, dict[str, Any] | None]]:
    """(backend, layout, manifest per platform as published, None where missing)."""
    from release.targets import for_environment

    target = for_environment(config, env_name)
    backend, layout = target.backend(), target.layout
    manifests: dict[str, dict[str, Any] | None] = {
        arch: backend.read_manifest(layout.platform_dir(tag, arch))
        for arch in sorted(config.platforms)
    }
    return backend, layout, manifests


def published_digests(config: ReleaseConfig, env_name: str, tag: str) -> dict[str, str]:
    """Per platform, the digest of the manifest published now (the bundle contract's one
    definition, the value the build recorded); platforms not published are left out."""
    from release.targets import for_environment

    target = for_environment(config, env_name)
    backend, layout = target.backend(), target.layout
    found = {
        arch: backend.manifest_digest(layout.platform_dir(tag, arch))
        for arch in sorted(config.platforms)
    }
    return {arch: digest for arch, digest in found.items() if digest}


def _cvmfs_checks(
    config: ReleaseConfig, env_name: str, tag: str, digests: dict[str, str]
) -> list[Check]:
    try:
        backend, layout, manifests = published_manifests(config, env_name, tag)
    except ReleaseError as exc:
        return [Check("cvmfs", "repository", env_name, UNREACHABLE, exc.message, 0.0)]
    checks = []
    for arch, manifest in manifests.items():
        rel = layout.platform_dir(tag, arch)

        def body(
            arch: str = arch, manifest: dict[str, Any] | None = manifest, rel: str = rel
        ) -> str:
            if manifest is None:
                raise CheckFailure(f"{layout.client_path(rel)} is not published")
            if manifest.get("tag") != tag or manifest.get("platform") != arch:
                raise CheckFailure(
                    f"the manifest there is for {manifest.get('tag')} {manifest.get('platform')}"
                )
            problems = backend.verify_published(rel, manifest)
            if problems:
                raise CheckFailure(f"{len(problems)} problem(s): {'; '.join(problems[:3])}")
            digests[arch] = backend.manifest_digest(rel) or ""
            return f"{len(manifest['files'])} files verified, manifest {digests[arch][:16]}"

        checks.append(run_check("cvmfs", f"Linux-{arch} verifies", layout.client_path(rel), body))
    return checks


def host_checks(config: ReleaseConfig, env_name: str, tag: str) -> list[Check]:
    from release.deploy import HostOutcome, run_playbook

    env = config.environment(env_name)
    if env.runtime == "k3s":
        return k3s_host_checks(config, env_name, tag)
    started = time.monotonic()
    pilot = _pilot_wrapper(config, env_name, tag)
    extra = {"dirac_pilot_wrapper": pilot["script"]} if pilot and "script" in pilot else None
    result = run_playbook(config, env_name=env_name, version=tag, action="verify", echo=False,
                          extra_vars=extra)  # fmt: skip
    seconds = round((time.monotonic() - started) / max(len(env.hosts), 1), 3)
    checks = []
    names = (f"runs {tag}", "services up", *(("pilot wrapper",) if pilot else ()))
    for host in result["hosts"]:
        name = host["host"]
        facts = host.get("facts") or {}
        if host["result"] == HostOutcome.UNREACHABLE or "service_names" not in facts:
            # Unreachable, or verify.yml failed on the host before it could report.
            kind = UNREACHABLE if host["result"] == HostOutcome.UNREACHABLE else FAILED
            why = host["reason"] or f"verify.yml reported nothing ({host['result']})"
            checks += [Check("hosts", check, name, kind, why, seconds) for check in names]
            continue
        if pilot is not None:
            checks.append(_pilot_check(pilot, facts, name, seconds))
        root = facts.get("root") or "/opt/dirac"
        services = list(zip(facts.get("service_names") or [], facts.get("service_status") or [],
                            facts.get("service_trees") or [], strict=False))  # fmt: skip
        prefix = f"{root}/versions/{tag}/"
        if services:
            wrong = [
                f"{svc} runs in {tree or 'nothing'}"
                for svc, _, tree in services
                if not str(tree).startswith(prefix)
            ]
            evidence = "; ".join(f"{svc} in {tree}" for svc, _, tree in services)
        else:
            wrong = [] if facts.get("pro") == tag else [f"pro is {facts.get('pro')}"]
            evidence = f"no services; pro -> {facts.get('pro')}"
        checks.append(Check("hosts", f"runs {tag}", name, FAILED if wrong else PASSED,
                            "; ".join(wrong) + f" (pro -> {facts.get('pro')})" if wrong else evidence, seconds))  # fmt: skip
        down = [
            f"{svc}: {status or 'no status'}"
            for svc, status, _ in services
            if not str(status).startswith("run: ")
        ]
        checks.append(Check("hosts", "services up", name, FAILED if down else PASSED,
                            "; ".join(down) if down else "; ".join(str(s) for _, s, _ in services) or "no services",
                            seconds))  # fmt: skip
    return checks


def _pilot_wrapper(config: ReleaseConfig, env_name: str, tag: str) -> dict[str, str] | None:
    """The wrapper script the build wrote for the environment's VO's pilot files of `tag`, for
    verify.yml to run on every host; None when the product has no pilot files, the reason
    when there is no script (then the check fails, it is not skipped)."""
    from release.pilot.build import output_root
    from release.pilot.wrapper import described, wrapper_path

    vo = config.environment_pilot(env_name)
    if vo is None:
        return None
    path = wrapper_path(output_root(config, None) / vo / tag)
    try:
        dirac, location = described(path.read_text(encoding="utf-8"))
    except OSError:
        return {"vo": vo, "location": str(path.parent / tag),
                "error": f"no pilot wrapper script at {path}: build the release again "
                         f"(dirac-release build --version {tag}) where the package index is "
                         "reachable"}  # fmt: skip
    return {"vo": vo, "location": location, "script": str(path), "dirac": dirac}


def _pilot_check(pilot: dict[str, str], facts: dict[str, Any], host: str, seconds: float) -> Check:
    from release.pilot.wrapper import judge

    target = f"{pilot['location']} ({pilot['vo']})"
    if "error" in pilot:
        return Check("hosts", "pilot wrapper", host, FAILED, pilot["error"], seconds)
    if facts.get("pilot_rc") in (None, ""):
        return Check("hosts", "pilot wrapper", host, FAILED,
                     f"verify.yml did not run the wrapper for {target}", seconds)  # fmt: skip
    passed, evidence = judge(int(facts["pilot_rc"]), str(facts.get("pilot_stdout") or ""),
                             str(facts.get("pilot_stderr") or ""))  # fmt: skip
    return Check("hosts", "pilot wrapper", host, PASSED if passed else FAILED,
                 f"DIRAC {pilot['dirac']} PilotWrapper on {target}: {evidence}", seconds)  # fmt: skip


def k3s_host_checks(config: ReleaseConfig, env_name: str, tag: str) -> list[Check]:
    """On k3s the hosts run no DiracX service of ours: what they must hold is the render of
    `tag`, byte for byte, in k3s's manifests folder (checked by placing it in check mode)."""
    from release.deploy import HostOutcome, run_playbook

    env = config.environment(env_name)
    started = time.monotonic()
    result = run_playbook(config, env_name=env_name, version=tag, action="place", plan=True,
                          echo=False)  # fmt: skip
    seconds = round((time.monotonic() - started) / max(len(env.hosts), 1), 3)
    checks = []
    for host in result["hosts"]:
        name, facts = host["host"], host.get("facts") or {}
        if host["result"] == HostOutcome.UNREACHABLE:
            checks.append(Check("hosts", f"k3s manifests pin {tag}", name, UNREACHABLE,
                                host["reason"] or "unreachable", seconds))  # fmt: skip
        elif host["result"] == "unchanged":
            checks.append(Check("hosts", f"k3s manifests pin {tag}", name, PASSED,
                                f"the render of {tag} is in place", seconds))  # fmt: skip
        else:
            differs = ", ".join(facts.get("changed") or []) or host["reason"] or host["result"]
            checks.append(Check("hosts", f"k3s manifests pin {tag}", name, FAILED,
                                f"not the render of {tag}: {differs}", seconds))  # fmt: skip
    return checks


def _targets(template: str, hosts: dict[str, str]) -> list[tuple[str, str]]:
    """(host or '', url) for each DiracX to check."""
    if "{address}" in template or "{host}" in template:
        return [
            (name, template.format(address=address or name, host=name))
            for name, address in hosts.items()
        ]
    return [("", template)]


def _legacy_key(config: ReleaseConfig, env_name: str) -> SecretStr | None:
    """The key, checked by its shape before any request is made (never echoed)."""
    from release.credentials import legacy_key_from_env, read_legacy_key_file

    settings = config.environment(env_name).certify
    if settings.legacy_key_file:
        return read_legacy_key_file(
            config.resolve_path(settings.legacy_key_file),
            env_name=settings.legacy_key_env,
            setting=f"environment {env_name}: certify.legacy_key_file",
        )
    return legacy_key_from_env(settings.legacy_key_env)


def _check_url(template: str, source: str) -> None:
    """A DiracX URL must be http(s) and carry no credentials (they would land in records)."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(template.replace("{address}", "a").replace("{host}", "h"))
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            f"{source} is not an http(s) URL with a host",
            fix="give the DiracX base URL, e.g. https://diracx.example.org or http://{address}:8000",
        )
    if parts.username is not None or parts.password is not None:
        raise BadInput(
            f"{source} carries credentials (user:password@): they would be stored with the record",
            fix="remove them from the URL; the token comes from the legacy exchange",
        )


def certify_release(
    config: ReleaseConfig,
    *,
    env_name: str,
    version: str,
    url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every check, record the certification in the ledger, return the record.

    `progress` hears one line per group of checks as it ends: the DiracX checks alone can take
    a minute (health polling, a job walked to Done), which a person should see happen.
    """

    def note(group: str, found: list[Check]) -> None:
        if progress is not None and found:
            counts = {
                kind: sum(c.result == kind for c in found)
                for kind in (PASSED, FAILED, SKIPPED, UNREACHABLE)
            }
            text = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
            progress(f"  certify {group}: {text}")

    from release.certify.diracx import public_checks, token_checks
    from release.certify.http import Client

    env = config.environment(env_name)
    product_name, _ = config.product(env.product)
    tag = parse_version_arg(version).tag
    settings = env.certify
    template = url or settings.url
    if template is not None:
        _check_url(template, "--url" if url else f"environment {env_name}: certify.url")
    key = _legacy_key(config, env_name)
    started = time.monotonic()
    digests: dict[str, str] = {}

    def cvmfs() -> list[Check]:
        found = _cvmfs_checks(config, env_name, tag, digests)
        note("cvmfs", found)
        return found

    def hosts() -> list[Check]:
        found = host_checks(config, env_name, tag)
        note("hosts", found)
        return found

    groups: list[Callable[[], list[Check]]] = [cvmfs]
    if url is None:
        groups.append(hosts)
    from release.image.certification import image_check_groups

    images: dict[str, dict[str, str]] = {}
    for group in image_check_groups(config, env_name, tag, images):

        def image_group(group: Callable[[], list[Check]] = group) -> list[Check]:
            found = group()
            note(found[0].name if found else "image", found)
            return found

        groups.append(image_group)
    if template is None:
        groups.append(lambda: [skipped("diracx", "DiracX", env_name,
                                       "no DiracX URL: set certify.url or pass --url")])  # fmt: skip
    else:

        def one(host: str, target: str) -> list[Check]:
            issuer = (settings.issuer or target).format(
                address=env.hosts.get(host) or host, host=host
            )
            client = Client(target)
            found = public_checks(client, settings, issuer.rstrip("/"))
            if any(c.result == UNREACHABLE for c in found):
                found += [
                    skipped("diracx-token", "token checks", client.base, "DiracX unreachable")
                ]
            else:
                found += token_checks(client, settings, key)
            note(f"DiracX {host or client.base}", found)
            return found

        targets = list(_targets(template, env.hosts))
        groups += [functools.partial(one, host, target) for host, target in targets]
    # The groups do not depend on each other (the stratum's files, the hosts over Ansible,
    # each DiracX over HTTP) and mostly wait: at once, their checks kept in this order.
    checks = [check for found in _concurrently(groups) for check in found]
    counts = {
        kind: sum(c.result == kind for c in checks)
        for kind in (PASSED, FAILED, SKIPPED, UNREACHABLE)
    }
    record = {
        "product": product_name,
        "version": tag,
        "environment": env_name,
        "url": url,
        "manifest_sha256": digests,
        # The VO images (manifest digest per architecture) whose every check passed.
        **({"images": images} if images else {}),
        "checks": [c.as_dict() for c in checks],
        "counts": counts,
        "passed": counts[FAILED] == 0
        and counts[UNREACHABLE] == 0
        and len(digests) == len(config.platforms),
        "seconds": round(time.monotonic() - started, 1),
    }
    return config.ledger(product_name, tag).record("certify", record)


def _concurrently(groups: list[Callable[[], list[Check]]]) -> list[list[Check]]:
    """Every group of checks at once (each mostly waits: files read, Ansible, health, a job
    walked to Done), their results in the order given; the first error is raised.

    Daemon threads, joined in short steps: Ctrl-C reaches the main thread at once and the
    process does not wait for a check still polling (each is bounded by its own timeout).
    """
    import threading

    if len(groups) < 2:
        return [group() for group in groups]
    results: list[list[Check] | BaseException] = [[] for _ in groups]

    def work(index: int, group: Callable[[], list[Check]]) -> None:
        try:
            results[index] = group()
        except BaseException as exc:  # handed to the main thread, raised there
            results[index] = exc

    threads = [
        threading.Thread(target=work, args=(i, group), daemon=True, name=f"certify-{i}")
        for i, group in enumerate(groups)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    for found in results:
        if isinstance(found, BaseException):
            raise found
    return [found for found in results if not isinstance(found, BaseException)]


def check_outcome(record: dict[str, Any]) -> None:
    """Exit 3 when a target was unreachable, 1 when a check failed."""
    failed = [c for c in record["checks"] if c["result"] == FAILED]
    unreachable = [c for c in record["checks"] if c["result"] == UNREACHABLE]
    where = f"{record['version']} on {record['environment']}"
    if unreachable:
        raise InfrastructureError(
            f"certification of {where}: {len(unreachable)} check(s) could not reach their target "
            f"({', '.join(sorted({c['target'] for c in unreachable}))})",
            fix="see the table above; certify again once the targets answer",
        )
    if failed:
        raise CheckFailed(
            f"certification of {where} failed: "
            + "; ".join(f"{c['name']} on {c['target']}" for c in failed[:5]),
            fix="see the evidence above; fix the deployment and certify again",
        )
