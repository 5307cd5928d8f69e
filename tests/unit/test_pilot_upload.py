"""`dirac-release pilot upload`: the built pilot files PUT to an HTTPS server that requires a
client certificate (a loopback server, a test CA made by openssl), then read back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from release.cli import main
from release.config import load_config
from release.errors import ConfigError
from release.pilot import upload
from tests.loopback import LoopbackServer
from tests.pilot_repos import write_pilot_config
from tests.pilot_server import Store, signed

VERSION = "v1.0.0"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload, "BACKOFF", (0.0, 0.0))
    monkeypatch.setattr(upload, "TIMEOUT", 10.0)


def _config(tmp_path: Path, pki: Path, url: str, ca: str = "ca.pem") -> Path:
    path, _ = write_pilot_config(tmp_path)
    for name in ("ca.pem", "otherca.pem", "client.pem", "client.key"):
        shutil.copy(pki / name, path.parent / name)
    text = path.read_text().replace(
        "[pilots.myvo.settings]",
        f'upload = ["{url}/pilot/"]\nupload_cert = "client.pem"\nupload_key = "client.key"\n'
        f'upload_ca = "{ca}"\n\n[pilots.myvo.settings]',
    )
    path.write_text(text)
    return path


def _run(config: Path, *extra: str) -> int:
    return main(["--config", str(config), "pilot", "upload", "--version", VERSION, *extra])


@pytest.fixture
def built(tmp_path: Path, isolated_env: Path, pki: Path,
          server: tuple[LoopbackServer, Store]) -> Path:  # fmt: skip
    config = _config(tmp_path, pki, server[0].url)
    assert main(["--config", str(config), "pilot", "build", "--vo", "myvo",
                 "--version", VERSION]) == 0  # fmt: skip
    return config


def _folder(config: Path) -> Path:
    return config.parent / "dist" / "pilots" / "myvo" / VERSION


def _key_text(config: Path) -> list[str]:
    """The key's lines that are its secret (the base64 body, not the BEGIN/END markers)."""
    return [line for line in (config.parent / "client.key").read_text().splitlines()
            if line and not line.startswith("-----")]  # fmt: skip


def _assert_no_key(config: Path, captured: pytest.CaptureResult[str]) -> None:
    for line in _key_text(config):
        assert line not in captured.out and line not in captured.err


def test_upload_sends_every_file_then_reads_it_back(
    built: Path, server: tuple[LoopbackServer, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    _, store = server
    assert _run(built) == 0
    folder = _folder(built)
    names = sorted(p.name for p in folder.iterdir())
    assert store.files == {f"/pilot/{n}": (folder / n).read_bytes() for n in names}
    puts = [name for method, name in store.requests if method == "PUT"]
    assert sorted(puts) == names and puts[-1] == "checksums.sha512"
    # Every file was read back after the last PUT.
    after = store.requests[store.requests.index(("PUT", "checksums.sha512")) + 1 :]
    assert sorted(name for method, name in after if method == "GET") == names
    captured = capsys.readouterr()
    assert "pilot.tar sent to" in captured.err and "sent" in captured.out
    _assert_no_key(built, captured)


def test_a_rerun_sends_nothing_and_says_unchanged(
    built: Path, server: tuple[LoopbackServer, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    _, store = server
    assert _run(built) == 0
    store.requests.clear()
    capsys.readouterr()
    assert _run(built, "--json") == 0
    assert not [r for r in store.requests if r[0] == "PUT"]
    import json

    (result,) = json.loads(capsys.readouterr().out)["uploads"]
    assert result["status"] == "unchanged" and result["sent"] == []
    assert len(result["unchanged"]) == len(result["verified"]) == len(store.files)


def test_a_server_storing_other_bytes_is_a_failure_naming_the_file(
    built: Path, server: tuple[LoopbackServer, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    server[1].corrupt.add("pilot.tar")
    assert _run(built) == 1
    captured = capsys.readouterr()
    assert "pilot.tar" in captured.err and "serves other bytes" in captured.err
    assert "wrong: pilot.tar" in captured.out


def test_a_forbidden_location_stops_with_the_location_and_the_fix(
    built: Path, server: tuple[LoopbackServer, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    loopback, store = server
    store.forbid = True
    assert _run(built) == 3
    captured = capsys.readouterr()
    assert f"{loopback.url}/pilot/" in captured.err and "403" in captured.err
    assert "authorize" in captured.err
    assert not [r for r in store.requests if r[0] == "PUT"]
    _assert_no_key(built, captured)


def test_a_server_error_is_retried(built: Path, server: tuple[LoopbackServer, Store]) -> None:
    server[1].unavailable = 2
    assert _run(built) == 0
    assert server[1].unavailable == 0 and len(server[1].files) == len(
        list(_folder(built).iterdir())
    )


def test_a_server_signed_by_another_ca_is_a_tls_error(
    tmp_path: Path, isolated_env: Path, pki: Path, server: tuple[LoopbackServer, Store],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config = _config(tmp_path, pki, server[0].url, ca="otherca.pem")
    assert main(["--config", str(config), "pilot", "build", "--vo", "myvo",
                 "--version", VERSION]) == 0  # fmt: skip
    capsys.readouterr()
    assert _run(config) == 3
    captured = capsys.readouterr()
    assert "TLS with" in captured.err and server[0].url in captured.err
    assert "upload_ca" in captured.err
    assert server[1].files == {}
    _assert_no_key(config, captured)


def test_a_tampered_folder_is_refused_with_nothing_sent(
    built: Path, server: tuple[LoopbackServer, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    tar = _folder(built) / "pilot.tar"
    data = bytearray(tar.read_bytes())
    data[600] ^= 1
    tar.write_bytes(bytes(data))
    assert _run(built) == 2
    assert server[1].requests == []
    assert "checksum mismatch" in capsys.readouterr().err


def test_an_unbuilt_folder_is_refused_with_nothing_sent(
    tmp_path: Path, isolated_env: Path, pki: Path, server: tuple[LoopbackServer, Store],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert _run(_config(tmp_path, pki, server[0].url)) == 2
    assert server[1].requests == []
    assert "not built" in capsys.readouterr().err


def test_plan_contacts_no_server(
    built: Path, server: tuple[LoopbackServer, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(built, "--plan") == 0
    assert server[1].requests == []
    out = capsys.readouterr().out
    assert "nothing was sent" in out and "checksums.sha512" in out


def test_a_key_that_does_not_match_is_bad_config_without_its_text(
    built: Path, pki: Path, server: tuple[LoopbackServer, Store],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    shutil.copy(pki / "otherca.key", built.parent / "client.key")
    assert _run(built) == 2
    captured = capsys.readouterr()
    assert "cannot be loaded" in captured.err and server[1].requests == []
    _assert_no_key(built, captured)


def test_send_order_puts_the_checksums_last() -> None:
    files = {"checksums.sha512": b"", "pilot.tar": b"", "a.py": b"", "pilot.json": b""}
    assert upload.send_order(files) == ["a.py", "pilot.json", "pilot.tar", "checksums.sha512"]


HEAD = """\
[products.DIRAC]
source = { index = "DIRAC" }

[pilots.dteam]
pilot = { git = "https://github.com/DIRACGrid/Pilot.git", commit = "%s" }
""" % ("0" * 40)
CREDS = 'upload_cert = "c.pem"\nupload_key = "k.pem"\n'


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('upload = ["http://dirac.example.org/pilot"]\n' + CREDS, "is not an https:// URL"),
        ('upload = ["https://u:secretpw@dirac.example.org/pilot"]\n' + CREDS, "credentials"),
        ('upload = ["ftp://u:secretpw@dirac.example.org:x/pilot"]\n' + CREDS, "credentials"),
        ('upload = ["https://dirac.example.org/pilot?x=1"]\n' + CREDS, "query or fragment"),
        ('upload = ["https://dirac.example.org/pilot#x"]\n' + CREDS, "query or fragment"),
        ('upload = ["https://dirac.example.org/pilot"]\n', "needs upload_cert and upload_key"),
        (CREDS, "without upload locations"),
        ('upload = ["https://a.org/p", "https://a.org/p/"]\n' + CREDS, "twice"),
        ('upload = ["https://a.org/p"]\nupload_crt = "c.pem"\n' + CREDS, "upload_cert"),
    ],
)
def test_bad_upload_settings_are_refused(tmp_path: Path, extra: str, words: str) -> None:
    path = tmp_path / "release.toml"
    path.write_text(HEAD + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert words in caught.value.render()
    assert "secretpw" not in caught.value.render()


def test_good_upload_settings_load(tmp_path: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(HEAD + 'upload = ["https://dirac.example.org:8443/pilot/"]\n' + CREDS)
    deployment = load_config(path, environ={}).pilots["dteam"]
    assert deployment.upload == ("https://dirac.example.org:8443/pilot",)
    assert deployment.upload_ca is None


def test_a_client_certificate_the_server_does_not_trust_is_a_tls_error(
    tmp_path: Path, isolated_env: Path, pki: Path, server: tuple[LoopbackServer, Store],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    for name in ("otherca.pem", "otherca.key"):
        shutil.copy(pki / name, stranger / name)
    signed(stranger, "client", "otherca", "extendedKeyUsage=clientAuth\n")
    config = _config(tmp_path, pki, server[0].url)
    for name in ("client.pem", "client.key"):
        shutil.copy(stranger / name, config.parent / name)
    assert main(["--config", str(config), "pilot", "build", "--vo", "myvo",
                 "--version", VERSION]) == 0  # fmt: skip
    capsys.readouterr()
    assert _run(config) == 3
    captured = capsys.readouterr()
    assert server[0].url in captured.err and "client certificate" in captured.err
    assert server[1].files == {}
    _assert_no_key(config, captured)


def test_a_vo_without_upload_locations_is_bad_input(
    built: Path, server: tuple[LoopbackServer, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(built, "--vo", "dteam") == 2
    assert "pilots.dteam has no upload locations" in capsys.readouterr().err
    assert _run(built, "--vo", "myv") == 2
    assert "did you mean 'myvo'" in capsys.readouterr().err
    assert server[1].requests == []
