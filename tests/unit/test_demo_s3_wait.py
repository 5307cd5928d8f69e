"""The demo's DiracX waits for its S3 child after its import, and never waits for a dead one.

`wait_for_s3` runs in a child interpreter with the demo product's sources on its path (the
real DiracX is only in built bundles; the lab tests start it with moto).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.test_demo_tasks_scheduler import PRODUCT_SRC

METADATA = "Metadata-Version: 2.1\nName: vodemo-dirac\nVersion: 1.0.0\n"

# A child of the waiting process, as the S3 server is: it answers HTTP after `delay` seconds,
# or exits with `code` without ever answering.
PROBE = textwrap.dedent(
    """
    import json, socket, subprocess, sys, time
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from vodemo import server
    delay, code = float(sys.argv[3]), int(sys.argv[4])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", (
        "import http.server, sys, time\\n"
        f"time.sleep({delay})\\n"
        f"if {code}: sys.exit({code})\\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.BaseHTTPRequestHandler)"
        ".serve_forever()\\n")])
    server.S3_START_TIMEOUT = 20
    started = time.monotonic()
    try:
        server.wait_for_s3(child.pid, f"http://127.0.0.1:{port}")
        print(json.dumps({"answered": True, "after": time.monotonic() - started}))
    except SystemExit as exc:
        print(json.dumps({"answered": False, "message": str(exc)}))
    finally:
        child.kill()
    """
)


def _probe(tmp_path: Path, delay: float, code: int) -> dict[str, object]:
    info = tmp_path / "vodemo_dirac-1.0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(METADATA)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), str(PRODUCT_SRC), str(delay), str(code)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_the_wait_ends_when_the_s3_server_answers(tmp_path: Path) -> None:
    result = _probe(tmp_path, delay=0.8, code=0)
    assert result["answered"] is True, result
    assert 0.8 <= float(str(result["after"])) < 10, result


def test_an_s3_server_that_exits_ends_the_wait_with_its_code(tmp_path: Path) -> None:
    result = _probe(tmp_path, delay=0.3, code=3)
    assert result == {"answered": False, "message": "vodemo-diracx: the S3 server exited (3)"}
