"""Running uv: the resolver and installer behind every bundle.

uv resolves for a foreign platform from metadata alone (`--python-platform`), so one x86_64
machine builds both architectures without emulation, and it is several times faster than pip
at the same job (bench/build.py measures it).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from release.errors import BadInput, InfrastructureError


@functools.cache
def uv_binary() -> str:
    """The uv that ships as our dependency, else one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise InfrastructureError(
        "uv is not installed",
        fix="install it with: pip install uv  (dirac-release depends on it)",
    )


@functools.cache
def uv_version() -> str:
    out = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().removeprefix("uv ").split(" ")[0] or "unknown"


def uv_env(cache_dir: Path | None = None) -> dict[str, str]:
    """A controlled environment: never download Pythons (no GitHub here), no user config."""
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_PROGRESS"] = "1"
    env.pop("VIRTUAL_ENV", None)
    if cache_dir is not None:
        env["UV_CACHE_DIR"] = str(cache_dir)
    return env


_NO_WHEEL = re.compile(
    r"(?:Because|and|of)\s+(?:only\s+)?(?:all versions of\s+)?`?([A-Za-z0-9][A-Za-z0-9._-]*)`?"
    r"(?:[=<>!~]=?[^\s,]*)?\s+(?:has|have)\s+no\s+(?:usable\s+)?wheels"
)
_AVAILABLE = re.compile(
    r"Wheels are available for `([^`]+)` \(v([^)]+)\) on the following platforms: (.*)"
)


class NoWheel(BadInput):
    """A resolution refused for a distribution without wheels; keeps uv's words for the
    caller that can build a pure-Python source instead."""

    def __init__(self, message: str, *, fix: str, stderr: str) -> None:
        super().__init__(message, fix=fix)
        self.stderr = stderr


def explain_resolution_failure(
    stderr: str, platform: str, searched: str | None = None
) -> NoWheel | None:
    """Turn uv's 'no wheels' resolution error into our refusal, naming the package."""
    names = list(dict.fromkeys(_NO_WHEEL.findall(stderr)))
    if not names:
        return None
    available = _AVAILABLE.search(stderr)
    detail = ""
    if available:
        detail = f" (version {available.group(2)} has wheels only for {available.group(3).strip()})"
    name = names[0]
    if searched:
        detail += f" and {searched} does not provide it"
    return NoWheel(
        f"{name} has no wheel for {platform}{detail}; bundles hold wheels only "
        "(nothing is compiled at build time, so every platform gets exactly what was published)",
        fix=(
            f"pin a version of {name} that publishes {platform} wheels in the product's requirements,\n"
            f"or install {name} in the base environment (DIRACOS2, conda) and drop it from the\n"
            f"product's requirements, or build for the other platforms only (--platform)."
        ),
        stderr=stderr,
    )


#: uv's words for a network failure (an infrastructure problem, not bad input).
_UNREACHABLE = (
    "Failed to fetch",
    "error sending request",
    "tcp connect error",
    "dns error",
    "timed out",
)


def run_uv(
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    what: str,
    platform: str = "",
    searched: str | None = None,
) -> str:
    """Run one uv command; map its failures to our typed errors."""
    proc = subprocess.run(
        [uv_binary(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode == 0:
        return proc.stdout
    stderr = proc.stderr.strip()
    if any(sign in stderr for sign in _UNREACHABLE):
        raise InfrastructureError(
            f"{what} failed: the package index cannot be reached",
            fix=_tail(stderr, 4)
            + "\ncheck the network, or the index settings (UV_INDEX_URL, UV_DEFAULT_INDEX)",
        )
    refusal = explain_resolution_failure(stderr, platform, searched) if platform else None
    if refusal is not None:
        raise refusal
    if "No solution found" in stderr or "not found in the package registry" in stderr:
        raise BadInput(
            f"{what} failed: the requirements cannot be satisfied for {platform or 'this platform'}",
            fix=_tail(stderr),
        )
    raise InfrastructureError(f"{what} failed (uv exit {proc.returncode})", fix=_tail(stderr))


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[-lines:])
