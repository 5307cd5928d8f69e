"""The release report: every stage shown, nothing external, nothing unescaped, no secret; and a
real headless browser (Debian's chromium) renders it."""

from __future__ import annotations

import html.parser
import json
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.cli import main
from release.config import load_config
from release.credentials import forget_all, remember
from release.pipeline.contract import Context
from release.pipeline.runner import ORDER, run_pipeline
from release.publish import init_repository
from release.version import parse_version_arg
from tests.conftest import lab_skip
from tests.publishing import make_bundle, write_config

ENV = """
[environments.certification]
hosts = { cctbdirac01 = "10.77.0.11", cctbdirac02 = "10.77.0.12" }

[environments.production]
hosts = { diracprod01 = "10.77.0.21" }
"""
HOSTILE = '<script>alert("x")</script><img src="http://evil.example/x.png">'


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Iterator[Path]:
    path = write_config(tmp_path, extra=ENV)
    config = load_config(path, environ={})
    init_repository(config, None)
    make_bundle(tmp_path / "dist", "v1.0.0")
    ctx = Context(config, "vodemo", parse_version_arg("v1.0.0"), live=False)
    # A certification whose evidence holds markup a server sent, and a secret of the run.
    secret = remember("Sx" + "7" * 20).get_secret_value()
    config.ledger("vodemo", "environments").record(
        "deploy", {"environment": "certification", "version": "v1.0.0", "exit_code": 0,
                   "hosts": [{"host": "cctbdirac01", "previous": "v0.9.0", "running": "v1.0.0",
                              "result": "upgraded"}]},
    )  # fmt: skip
    config.ledger("vodemo", "v1.0.0").record(
        "certify", {"environment": "certification", "version": "v1.0.0", "passed": False,
                    "counts": {"passed": 1, "failed": 1},
                    "checks": [{"group": "diracx", "name": "openapi title", "target": "http://h",
                                "result": "passed", "evidence": "title Dirac", "seconds": 0.1},
                               {"group": "diracx", "name": "jwks has keys", "target": "http://h",
                                "result": "failed", "evidence": HOSTILE + secret, "seconds": 0.1}]},
    )  # fmt: skip
    run_pipeline(ctx, first="publish", last="render")
    yield tmp_path
    forget_all()


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_report_shows_every_stage_and_nothing_foreign(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(site / "release.toml"), "--json", "report", "--version", "v1.0.0"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    page = Path(data["written"]["html"]).read_text()
    parsed = _Page()
    parsed.feed(page)
    # Every stage of the pipeline is on the timeline and in the table, with its status.
    text = " ".join(parsed.text)
    for stage in ORDER:
        assert stage in text
    assert [s["status"] for s in data["stages"]] == ["skipped", "done", "done", "done", "skipped",
                                                     "skipped", "skipped"]  # fmt: skip
    # Self-contained: no script, no external resource of any kind.
    assert "script" not in parsed.tags and "img" not in parsed.tags and "link" not in parsed.tags
    for name, value in parsed.attrs:
        if name in ("src", "href"):
            assert value is not None and value.startswith("file://"), (name, value)
    assert "@import" not in page and "url(" not in page
    # The server's markup is shown as text, and the secret is not there at all.
    assert HOSTILE in text
    assert "7" * 20 not in page and "[redacted]" in page
    # Hosts, certification and artefacts.
    assert "cctbdirac01" in text and "v0.9.0" in text and "Certification on certification" in text
    assert "ledger" in data["artefacts"] and "SHA256SUMS" in data["artefacts"]
    markdown = Path(data["written"]["markdown"]).read_text()
    assert "| publish | done |" in markdown and "7" * 20 not in markdown


def test_a_run_writes_its_report(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(site / "release.toml"), "--json", "run", "--tag", "v1.0.0",
                 "--from", "publish", "--until", "render"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["verdict"].startswith("nothing to do")
    page = Path(data["report"]["html"]).read_text()
    assert "nothing to do" in page and "verified" in page


def test_a_run_writes_the_certification_as_junit(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xml.etree.ElementTree as ET

    junit = tmp_path / "out" / "certification.junit.xml"
    code = main(["--config", str(site / "release.toml"), "--json", "run", "--tag", "v1.0.0",
                 "--from", "publish", "--until", "render", "--junit", str(junit)])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["junit"] == str(junit)
    suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314 (a file this test wrote)
    assert suite is not None
    assert suite.get("name") == "certify certification v1.0.0" and suite.get("tests") == "2"
    failed = [
        case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None
    ]
    assert failed == ["jwks has keys"]
    assert "7" * 20 not in junit.read_text()
    # An environment without a certification: said, and no file left behind.
    other = tmp_path / "none.xml"
    code = main(["--config", str(site / "release.toml"), "--json", "run", "--tag", "v1.0.0",
                 "--from", "publish", "--until", "render", "--env", "production",
                 "--junit", str(other)])  # fmt: skip
    assert json.loads(capsys.readouterr().out)["junit"] is None and not other.exists()


def test_a_release_without_a_ledger_is_bad_input(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(site / "release.toml"), "report", "--version", "v2.0.0"])
    assert code == 2 and "no ledger" in capsys.readouterr().err


def _png_size_and_colours(path: Path) -> tuple[int, int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        length = struct.unpack(">I", data[offset : offset + 4])[0]
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            chunks.append(data[offset + 8 : offset + 8 + length])
        offset += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    return width, height, len(set(raw[: 4 * width * 200]))


def test_a_real_browser_renders_the_report(site: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        lab_skip("chromium is not installed (apt-get install chromium; CI installs it)")
        return
    assert main(["--config", str(site / "release.toml"), "report", "--version", "v1.0.0"]) == 0
    page = site / "state" / "vodemo" / "v1.0.0" / "report.html"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    for stage in ORDER:
        assert f">{stage}</div>" in dom  # laid out on the timeline
    assert "<script" not in dom.split("</style>", 1)[1].replace("&lt;script", "")
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    width, height, colours = _png_size_and_colours(shot)
    assert (width, height) == (1280, 1400)
    assert colours > 20  # drawn: text, badges, timeline colours, not a blank page
