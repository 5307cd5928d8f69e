"""Certification's job check: a job that reaches a final state passes; one that never does fails
within the bound, and its evidence shows the statuses it went through (a job cycling
Received -> Waiting -> Received is a different fault from one no worker ever touched)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from release.certify.checks import FAILED, PASSED
from release.certify.diracx import token_checks
from release.certify.http import Client
from release.config import CertifySettings
from release.credentials import forget_all, remember
from tests.scripted_server import ScriptedServer

JOB = 42


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    yield
    forget_all()


def dirac_x(statuses: Iterator[str]) -> Any:
    """A DiracX that accepts one job and answers its searches with the next status given."""

    def answer(handler: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        path = handler.path.split("?")[0]
        data: object
        if path == "/api/auth/legacy-exchange":
            data = {"access_token": "eyJtoken"}
        elif path == "/api/auth/userinfo":
            data = {"preferred_username": "ci", "vo": "vodemo", "dirac_group": "vodemo_user"}
        elif path == "/api/config/":
            return 200, {"ETag": "abc", "Content-Type": "application/json"}, b"{}"
        elif path == "/api/jobs/jdl":
            return (
                201,
                {"Content-Type": "application/json"},
                json.dumps([{"JobID": JOB, "Status": "Received"}]).encode(),
            )
        elif path == "/api/jobs/summary":
            data = [{"Status": "Received", "count": 1}]
        elif path == "/api/jobs/search":
            data = [{"JobID": JOB, "Status": next(statuses)}]
        else:
            return 404, {}, b""
        return 200, {"Content-Type": "application/json"}, json.dumps(data).encode()

    return answer


def _final_state(statuses: Iterator[str], timeout: float) -> Any:
    settings = CertifySettings(user="ci", vo="vodemo", group="vodemo_user", workers=True,
                               job_timeout=timeout)  # fmt: skip
    with ScriptedServer(dirac_x(statuses)) as server:
        checks = token_checks(Client(server.url), settings, remember("k" * 24))
    return {c.name: c for c in checks}["job reaches a final state"]


def test_a_job_walked_to_done_passes() -> None:
    # The first answer is the search check's own; then the job moves on.
    check = _final_state(iter(["Received", "Received", "Waiting", "Running", "Done"]), 10)
    assert check.result == PASSED and f"job {JOB} Done" in check.evidence


def test_a_cycling_job_fails_with_the_statuses_it_went_through() -> None:
    def cycling() -> Iterator[str]:
        while True:
            yield from ("Received", "Waiting")

    check = _final_state(cycling(), 4.2)
    assert check.result == FAILED
    # Polled every 0.5 s for 4.2 s (fewer polls on a busy machine): more changes than shown.
    found = re.fullmatch(
        rf"job {JOB} still (\w+) after 4 s; statuses seen: (\d+) changes, the last (.+)",
        check.evidence,
    )
    assert found, check.evidence
    last, changes, shown = found[1], int(found[2]), found[3].split(" -> ")
    assert changes > 6 and len(shown) == 6 and shown[-1] == last
    assert all({a, b} == {"Received", "Waiting"} for a, b in itertools.pairwise(shown))


def test_a_job_nobody_touches_shows_one_status() -> None:
    check = _final_state(iter(["Received"] * 100), 1.2)
    assert check.result == FAILED
    assert check.evidence == f"job {JOB} still Received after 1 s; statuses seen: Received"
