"""Shared fixtures and the lab-test policy.

Tests marked `lab` need the real package index (and later root for network namespaces).
Elsewhere they skip with the reason; with DIRAC_RELEASE_REQUIRE_LAB=1 (CI) a skip is a failure.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

REQUIRE_LAB = os.environ.get("DIRAC_RELEASE_REQUIRE_LAB") == "1"


@functools.cache
def index_problem() -> str | None:
    """Why the package index cannot be used here, or None when it can (asked through uv)."""
    from release.build.uvtool import uv_binary, uv_env

    try:
        proc = subprocess.run(
            [uv_binary(), "pip", "compile", "-", "--no-config", "--quiet", "--no-header",
             "--python-version", "3.11", "--refresh-package", "packaging"],
            input="packaging\n", capture_output=True, text=True, env=uv_env(), timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"uv could not ask the package index: {exc}"
    if proc.returncode != 0:
        return "package index unreachable: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return None


def lab_skip(reason: str) -> None:
    """Skip a lab test here, fail it in CI."""
    if REQUIRE_LAB:
        pytest.fail(f"lab test cannot run and DIRAC_RELEASE_REQUIRE_LAB=1: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _lab_policy(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lab") is not None:
        problem = index_problem()
        if problem:
            lab_skip(problem)


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DIRAC_RELEASE_* overrides leak in from the developer's shell; a private cache."""
    for name in list(os.environ):
        if name.startswith("DIRAC_RELEASE_") and name != "DIRAC_RELEASE_REQUIRE_LAB":
            monkeypatch.delenv(name)
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache
