"""Running one function of the toolkit in a Python process of its own, JSON in and out.

Packing a tarball or writing an image layer is mostly Python work per file (headers, small
reads, file creation) that holds the GIL: two platforms handled by two threads of one process
take turns, by two processes they run on two cores. The child is this very copy of the
package (wherever it was imported from), started as `python -m <module>`; the request goes
on stdin as JSON, the answer comes back on stdout as JSON. A `ReleaseError` in the child
comes back as the same kind of error, with its message, place and fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from release.errors import BadInput, CheckFailed, InfrastructureError, ReleaseError

_KINDS: dict[str, type[ReleaseError]] = {
    "BadInput": BadInput,
    "CheckFailed": CheckFailed,
    "InfrastructureError": InfrastructureError,
}


def run_apart(module: str, request: dict[str, Any], *, what: str, where: str) -> Any:
    """The `answer` of `module`'s `serve` for `request`; its error raised here."""
    home = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (home, os.environ.get("PYTHONPATH", "")) if p)}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", module],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    try:
        reply = json.loads(proc.stdout)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and proc.returncode == 0 and "answer" in reply:
        return reply["answer"]
    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, dict) and error.get("kind") in _KINDS:
        raise _KINDS[error["kind"]](
            str(error.get("message")), where=error.get("where"), fix=error.get("fix")
        )
    # An unexpected exception: its last line says what it was (a traceback helps no one here).
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    raise InfrastructureError(
        f"{what} failed: {lines[-1][-2000:] if lines else f'exit code {proc.returncode}'}",
        where=where,
        fix="free disk space or fix the permissions the message names, then build again",
    )


def serve(handler: Callable[[dict[str, Any]], Any]) -> None:
    """The child's side: one request from stdin, its answer (or error) to stdout."""
    request = json.load(sys.stdin)
    try:
        reply: dict[str, Any] = {"answer": handler(request)}
        code = 0
    except ReleaseError as exc:
        kind = next((name for name, cls in _KINDS.items() if isinstance(exc, cls)),
                    "InfrastructureError")  # fmt: skip
        reply = {"error": {"kind": kind, "message": exc.message, "where": exc.where,
                           "fix": exc.fix}}  # fmt: skip
        code = 1
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    raise SystemExit(code)
