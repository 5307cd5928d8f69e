"""Smoke checks of a running DiracX, without a token and with one (../docs/stages/certify.md).

A token comes from the legacy-exchange endpoint with a key the caller read from a file or an
environment variable. Neither the key nor the token is ever put in evidence, output or records:
evidence names users, VOs, job IDs and status codes only.
"""

from __future__ import annotations

import functools
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

from release.certify.checks import (
    PASSED,
    UNREACHABLE,
    Check,
    CheckFailure,
    Unreachable,
    run_check,
    skipped,
)
from release.certify.http import Client, Response
from release.config import CertifySettings
from release.credentials import remember

if TYPE_CHECKING:
    from pydantic import SecretStr

GROUP_PUBLIC = "diracx"
GROUP_TOKEN = "diracx-token"  # noqa: S105 (a check group name)
POLL_S = 0.5
FINAL_STATES = ("Done", "Failed", "Killed", "Deleted", "Completed")
JDL = 'Executable = "/bin/true";\nJobName = "dirac-release-certify";\nArguments = "";'

# A search is cheap for DiracX; polling often turns a job's last step into seconds saved.
JOB_POLL_S = 0.5


def _expect(response: Response, status: int, what: str, *also: int) -> Response:
    if response.status != status and response.status not in also:
        raise CheckFailure(
            f"{what}: HTTP {response.status} (expected {status}): {response.snippet()}"
        )
    return response


def _poll_health(client: Client, path: str, timeout: float) -> str:
    """Health routes answer 503 while the config loads: poll, bounded."""
    started = time.monotonic()
    last: Response | None = None
    while True:
        try:
            last = client.get(path)
        except Unreachable:
            if time.monotonic() - started >= timeout:
                raise
            last = None
        if last is not None and last.status == 200:
            return f"HTTP 200 {last.snippet(80)} after {time.monotonic() - started:.1f} s"
        if time.monotonic() - started >= timeout:
            seen = f"HTTP {last.status} {last.snippet(80)}" if last else "no answer"
            raise CheckFailure(f"{path} not healthy after {timeout:.0f} s: {seen}")
        time.sleep(POLL_S)


def public_checks(client: Client, settings: CertifySettings, issuer: str) -> list[Check]:
    target = client.base
    checks: list[Check] = []

    def add(name: str, body: Callable[[], str]) -> None:
        checks.append(run_check(GROUP_PUBLIC, name, target, body))

    for probe in ("live", "ready", "startup"):
        path = f"/api/health/{probe}"
        add(
            f"health {probe}",
            functools.partial(_poll_health, client, path, settings.health_timeout),
        )
        if checks[-1].result == UNREACHABLE:
            return checks  # the rest would only repeat "unreachable", each after a timeout

    def openid() -> str:
        data = _expect(
            client.get("/.well-known/openid-configuration"), 200, "openid-configuration"
        ).json()
        found = (data or {}).get("issuer")
        if found != issuer:
            raise CheckFailure(f"issuer is {found!r}, expected {issuer!r}")
        return f"issuer {found}"

    def jwks() -> str:
        data = _expect(client.get("/.well-known/jwks.json"), 200, "jwks.json").json()
        keys = (data or {}).get("keys") or []
        if not keys:
            raise CheckFailure("jwks.json has no keys")
        private = [k.get("kid") for k in keys if "d" in k]
        if private:
            raise CheckFailure(f"jwks.json publishes private key material (kid {private})")
        return f"{len(keys)} key(s): {', '.join(str(k.get('alg')) for k in keys)}"

    def metadata() -> str:
        data = _expect(client.get("/.well-known/dirac-metadata"), 200, "dirac-metadata").json()
        vos = sorted(((data or {}).get("virtual_organizations") or {}).keys())
        missing = sorted(set(settings.vos) - set(vos))
        if missing:
            raise CheckFailure(
                f"VO(s) {', '.join(missing)} missing; configured: {', '.join(vos) or 'none'}"
            )
        return f"VOs: {', '.join(vos)}"

    def openapi() -> str:
        data = _expect(client.get("/api/openapi.json"), 200, "openapi.json").json()
        info = (data or {}).get("info") or {}
        if info.get("title") != "Dirac":
            raise CheckFailure(f"title is {info.get('title')!r}, expected 'Dirac'")
        return f"title Dirac, version {info.get('version')}"

    def refuses() -> str:
        response = client.get("/api/config/")
        if response.status != 401:
            raise CheckFailure(
                f"/api/config/ without a token: HTTP {response.status} (expected 401)"
            )
        return "HTTP 401 without a token"

    add("openid-configuration issuer", openid)
    add("jwks has keys", jwks)
    add("dirac-metadata lists the VOs", metadata)
    add("openapi title", openapi)
    add("config refuses anonymous", refuses)
    return checks


def token_checks(client: Client, settings: CertifySettings, key: SecretStr | None) -> list[Check]:
    target = client.base
    names = ["token (legacy exchange)", "userinfo", "config ETag", "job submit", "job search",
             "job summary", "job reaches a final state"]  # fmt: skip
    if not (settings.user and settings.vo and settings.group):
        return [
            skipped(GROUP_TOKEN, n, target, "no user/vo/group configured for a token")
            for n in names
        ]
    if not key:
        where = settings.legacy_key_file or f"${settings.legacy_key_env}"
        return [run_check(GROUP_TOKEN, names[0], target, lambda: _raise(f"no legacy-exchange key in {where}"))] + [
            skipped(GROUP_TOKEN, n, target, "no token") for n in names[1:]
        ]  # fmt: skip
    checks: list[Check] = []
    job: dict[str, int] = {}

    def exchange() -> str:
        query = urllib.parse.urlencode(
            {
                "preferred_username": settings.user,
                "scope": f"vo:{settings.vo} group:{settings.group}",
            }
        )
        response = client.get(
            f"/api/auth/legacy-exchange?{query}", bearer=f"diracx:legacy:{key.get_secret_value()}"
        )
        if response.status != 200:
            raise CheckFailure(
                f"legacy exchange: HTTP {response.status}"
            )  # the body may echo input
        token = (response.json() or {}).get("access_token")
        if not token:
            raise CheckFailure("legacy exchange answered without an access_token")
        client.token = remember(str(token)).get_secret_value()
        return f"token for {settings.user} ({settings.vo}, {settings.group})"

    def userinfo() -> str:
        data = _expect(client.get("/api/auth/userinfo", auth=True), 200, "userinfo").json() or {}
        if data.get("preferred_username") != settings.user or data.get("vo") != settings.vo:
            raise CheckFailure(
                f"userinfo names {data.get('preferred_username')!r} of {data.get('vo')!r}"
            )
        return f"{data['preferred_username']} in {data['vo']}, group {data.get('dirac_group')}"

    def etag() -> str:
        response = _expect(client.get("/api/config/", auth=True), 200, "config")
        tag = {k.lower(): v for k, v in response.headers.items()}.get("etag")
        if not tag:
            raise CheckFailure("/api/config/ answered without an ETag")
        return f"ETag {tag}"

    def submit() -> str:
        data = (
            _expect(client.post("/api/jobs/jdl", [JDL], auth=True), 201, "submit", 200).json() or []
        )
        if not data or "JobID" not in data[0]:
            raise CheckFailure(f"submit answered {str(data)[:200]}")
        job["id"] = int(data[0]["JobID"])
        return f"job {job['id']} {data[0].get('Status')}"

    def search_filter() -> list[dict[str, object]]:
        return [{"parameter": "JobID", "operator": "eq", "value": job["id"]}]

    def search() -> str:
        body = {"parameters": ["JobID", "Status"], "search": search_filter()}
        data = _expect(client.post("/api/jobs/search", body, auth=True), 200, "search").json() or []
        if [row.get("JobID") for row in data] != [job["id"]]:
            raise CheckFailure(f"search for job {job['id']} found {str(data)[:200]}")
        return f"job {job['id']} found, {data[0].get('Status')}"

    def summary() -> str:
        body = {"grouping": ["Status"], "search": search_filter()}
        data = (
            _expect(client.post("/api/jobs/summary", body, auth=True), 200, "summary").json() or []
        )
        count = sum(int(row.get("count", 0)) for row in data)
        if count != 1:
            raise CheckFailure(f"summary of job {job['id']} counts {count}: {str(data)[:200]}")
        return f"1 job: {', '.join(str(row.get('Status')) for row in data)}"

    def final_state() -> str:
        started = time.monotonic()
        status = "?"
        seen: list[str] = []  # each change of status: a job that cycles shows it
        while time.monotonic() - started < settings.job_timeout:
            body = {"parameters": ["JobID", "Status"], "search": search_filter()}
            data = (
                _expect(client.post("/api/jobs/search", body, auth=True), 200, "search").json()
                or []
            )
            status = str(data[0].get("Status")) if data else "?"
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in FINAL_STATES:
                return f"job {job['id']} {status} after {time.monotonic() - started:.0f} s"
            time.sleep(JOB_POLL_S)
        path = " -> ".join(seen[-6:])
        raise CheckFailure(
            f"job {job['id']} still {status} after {settings.job_timeout:.0f} s; statuses seen: "
            + (f"{len(seen)} changes, the last {path}" if len(seen) > 6 else path)
        )

    steps: list[tuple[str, Callable[[], str]]] = [
        (names[0], exchange), (names[1], userinfo), (names[2], etag), (names[3], submit),
        (names[4], search), (names[5], summary),
    ]  # fmt: skip
    needs = {names[1]: names[0], names[2]: names[0], names[3]: names[0],
             names[4]: names[3], names[5]: names[3]}  # fmt: skip
    done: dict[str, Check] = {}
    for name, body in steps:
        dependency = needs.get(name)
        if dependency and done[dependency].result != PASSED:
            done[name] = skipped(GROUP_TOKEN, name, target, f"needs a passing '{dependency}'")
        else:
            done[name] = run_check(GROUP_TOKEN, name, target, body)
        checks.append(done[name])
    if not settings.workers:
        checks.append(skipped(GROUP_TOKEN, names[6], target,
                              "no task workers configured (certify.workers = false): jobs stay Received"))  # fmt: skip
    elif "id" in job:
        checks.append(run_check(GROUP_TOKEN, names[6], target, final_state))
    else:
        checks.append(skipped(GROUP_TOKEN, names[6], target, "no job was submitted"))
    client.token = ""
    return checks


def _raise(message: str) -> str:
    raise CheckFailure(message)
