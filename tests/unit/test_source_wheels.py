"""Sources of pure-Python distributions: which one is taken, and reading uv's refusals.

The index is a real HTTP server on the loopback speaking the simple API's JSON form (PEP 691)
as PyPI does; the build itself (uv build, a real source from the index) runs in
tests/lab/test_build_on_base.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release.build.sdist import build_pure_wheel, find_source, missing_wheels
from release.errors import BadInput, InfrastructureError

# uv 0.13's words, as printed for DIRAC 8.0.55 at its date.
UV_REFUSAL = """\
  x No solution found when resolving dependencies:
  `-> Because rucio-clients>=34.4.2 has no usable wheels and dirac==8.0.55 depends on
      rucio-clients>=34.4.2, we can conclude that dirac==8.0.55 cannot be used.
      And because all versions of tornado-m2crypto have no usable wheels and you require
      dirac[server]==8.0.55, we can conclude that your requirements are unsatisfiable.
"""


def test_uv_refusals_name_each_source_and_its_range() -> None:
    assert missing_wheels(UV_REFUSAL) == [("rucio-clients", ">=34.4.2"), ("tornado-m2crypto", "")]
    assert missing_wheels("Because only foo<2,>=1.5 is available") == []
    assert missing_wheels("Because bar==1.0 has no wheels") == [("bar", "==1.0")]


FILES = {
    "rucio-clients-34.4.1.tar.gz": ("2024-08-01T00:00:00Z", False),
    "rucio_clients-34.6.0.tar.gz": ("2024-09-01T00:00:00Z", False),
    "rucio_clients-34.7.0.tar.gz": ("2024-09-20T00:00:00Z", True),  # yanked
    "rucio_clients-35.0.0-py3-none-any.whl": ("2024-09-25T00:00:00Z", False),  # not a source
    "rucio_clients-35.1.0.tar.gz": ("2024-11-01T00:00:00Z", False),  # after the date
}


@pytest.fixture
def index(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    files = []
    for name, (uploaded, yanked) in FILES.items():
        data = name.encode()
        pages[f"/files/{name}"] = data
        files.append({"filename": name, "url": f"{base}/files/{name}", "upload-time": uploaded,
                      "yanked": yanked, "hashes": {"sha256": hashlib.sha256(data).hexdigest()}})  # fmt: skip
    pages["/simple/rucio-clients/"] = json.dumps({"files": files}).encode()
    monkeypatch.setenv("UV_DEFAULT_INDEX", f"{base}/simple")
    try:
        yield pages
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_newest_source_in_range_at_the_date_is_taken(index: dict[str, bytes]) -> None:
    found = find_source("Rucio_Clients", ">=34.4.2", "2024-10-17T00:00:00Z")
    assert (found["filename"], found["version"]) == ("rucio_clients-34.6.0.tar.gz", "34.6.0")
    assert found["sha256"] == hashlib.sha256(b"rucio_clients-34.6.0.tar.gz").hexdigest()
    assert find_source("rucio-clients", "", None)["version"] == "35.1.0"  # no date: the newest
    with pytest.raises(BadInput, match="has neither a wheel nor a source on the index at 2024"):
        find_source("rucio-clients", ">=36", "2024-10-17T00:00:00Z")


def test_a_source_that_does_not_match_the_index_digest_is_refused(
    index: dict[str, bytes], tmp_path: Path
) -> None:
    index["/files/rucio_clients-34.6.0.tar.gz"] = b"altered on the way"
    with pytest.raises(InfrastructureError, match="does not match the index's sha256"):
        build_pure_wheel("rucio-clients", ">=34.4.2", "2024-10-17T00:00:00Z", "3.11", tmp_path)
    assert not list(tmp_path.rglob("*.whl"))


def test_an_unreachable_index_is_an_infrastructure_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")  # discard: refused
    with pytest.raises(InfrastructureError, match="cannot be reached"):
        find_source("rucio-clients", "", None)
