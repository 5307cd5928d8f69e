"""No secret ever prints: malformed keys are refused by their shape, servers that echo or
redirect get nothing back out, a failing ansible-vault leaves no plaintext, and an unexpected
error is a short redacted message, not a traceback.

Every case plants a unique marker in the secret and then searches all output for it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from release.certify.checks import FAILED, PASSED
from release.certify.diracx import token_checks
from release.certify.http import Client
from release.cli import main
from release.config import CertifySettings
from release.credentials import REDACTED, forget_all, remember
from release.errors import BadInput, InfrastructureError
from tests.publishing import write_config
from tests.scripted_server import ScriptedServer

ROOT = Path(__file__).resolve().parents[2]


def marker() -> str:
    return "Mk" + secrets.token_hex(8)


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    forget_all()
    yield
    forget_all()


# -- malformed keys: refused by their shape, never echoed ----------------------------------------

OPENSSH = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW{m}\n"
    "QyNTUxOQAAACDx{m}AAAAJhY2FyZG9uYWNhcmRvbgAAAAtzc2gtZWQyNTUxOQAAACDx\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC{m}\n-----END PRIVATE KEY-----\n"
)

# (name, text with {m} where the marker goes, words the message must contain)
TEXT_CASES = [
    ("line break inside", "{m}AAAA\nBBBB{m}", "2 lines"),
    ("carriage return inside", "{m}AAAA\rBBBB", "2 lines"),
    ("three lines", "{m}\n{m}x\n{m}y", "3 lines"),
    ("two trailing line breaks", "{m}AAAAAAAA\n\n", "2 lines"),
    ("OpenSSH private key", OPENSSH, "private key"),
    ("PEM private key", PEM, "private key"),
    ("SSH public key line", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{m} user@host", "private key"),
    ("space inside", "{m} {m}", "white space"),
    ("tab inside", "{m}\t{m}", "white space"),
    ("leading space", " {m}AAAAAAAA", "white space"),
    ("non-ASCII letter", "{m}é{m}", "base64url"),
    ("Arabic-Indic digits", "{m}\u0661\u0662\u0663", "base64url"),
    ("plus and slash (base64, not base64url)", "{m}+/AAAA", "base64url"),
    ("a quote", '{m}"AAAA', "base64url"),
    ("too much padding", "{m}===", "base64url"),
    ("too short", "Ab1_-", "characters long"),
    ("too long", "{m}" + "A" * 2000, "characters long"),
    ("bearer prefix included", "diracx:legacy:{m}", "diracx:legacy:"),
    ("empty", "", "is empty"),
    ("a line break only", "\n", "is empty"),
]


def _site(tmp_path: Path, certify: str) -> Path:
    path = write_config(tmp_path)
    path.write_text(
        path.read_text()
        + '\n[environments.certification]\nhosts = { cctbdirac01 = "10.77.0.11" }\n'
        + "\n[environments.certification.certify]\n"
        + 'user = "ci"\nvo = "vodemo"\ngroup = "vodemo_user"\nhealth_timeout = 1\n'
        + certify
    )
    return path


def _certify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["--config", str(path), "certify", "--env", "certification",
                 "--version", "v1.0.0", "--url", "http://127.0.0.1:9", *extra])  # fmt: skip
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize(("name", "text", "words"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_a_malformed_key_file_is_refused_without_echo(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str],
    name: str, text: str, words: str,
) -> None:  # fmt: skip
    m = marker()
    key = tmp_path / "key"
    key.write_text(text.replace("{m}", m), encoding="utf-8", newline="")
    code, output = _certify(_site(tmp_path, 'legacy_key_file = "key"\n'), capsys)
    assert code == 2, output
    assert words in output and "legacy_key_file" in output and str(key) in output
    assert m not in output and "Traceback" not in output
    # Refused before any check: nothing was recorded.
    assert not (tmp_path / "state").exists() or "certify" not in _ledgers(tmp_path)


ENV_CASES = [c for c in TEXT_CASES if c[1].strip()]


@pytest.mark.parametrize(("name", "text", "words"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_a_malformed_key_in_the_environment_is_refused_without_echo(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, name: str, text: str, words: str,
) -> None:  # fmt: skip
    m = marker()
    monkeypatch.setenv("DIRAC_RELEASE_LEGACY_KEY", text.replace("{m}", m))
    code, output = _certify(_site(tmp_path, ""), capsys)
    assert code == 2, output
    assert words in output and "$DIRAC_RELEASE_LEGACY_KEY" in output
    assert m not in output and "Traceback" not in output


def _ledgers(root: Path) -> str:
    return "".join(p.read_text() for p in root.rglob("ledger.json"))


def _special(kind: str, path: Path) -> Path:
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "missing":
        pass
    elif kind == "non-UTF-8":
        path.write_bytes(b"\xff\xfe" + secrets.token_bytes(30))
    elif kind == "NUL inside":
        path.write_bytes(b"AAAAAAAA\x00BBBBBBBBBB")
    elif kind == "5 MB file":
        path.write_bytes(b"A" * 5_000_000)
    return path


SPECIAL = [("FIFO", "a FIFO"), ("directory", "a directory"), ("device", "a device"),
           ("socket", "cannot open"), ("missing", "cannot open"), ("non-UTF-8", "not UTF-8"),
           ("NUL inside", "base64url"), ("5 MB file", "5000000 bytes")]  # fmt: skip


@pytest.mark.parametrize(("kind", "words"), SPECIAL, ids=[k for k, _ in SPECIAL])
def test_a_key_file_that_is_not_a_small_text_file_is_refused_without_blocking(
    tmp_path: Path, isolated_env: Path, kind: str, words: str
) -> None:
    """Through the real CLI with a timeout: a FIFO that blocked would fail the test, not hang it."""
    path = _site(tmp_path, 'legacy_key_file = "key"\n')
    _special(kind, tmp_path / "key")
    proc = subprocess.run(
        [sys.executable, "-m", "release", "--config", str(path), "certify", "--env",
         "certification", "--version", "v1.0.0", "--url", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_a_good_key_is_accepted_and_its_value_hidden(tmp_path: Path) -> None:
    from release.credentials import read_legacy_key_file

    value = "A" * 20 + marker() + "-_="
    (tmp_path / "key").write_text(value + "\n")
    key = read_legacy_key_file(tmp_path / "key", env_name="X", setting="s")
    assert key.get_secret_value() == value
    assert value not in repr(key) and value not in str(key) and value not in f"{key}"


# -- servers that echo, redirect, loop ---------------------------------------------------------


def echo_everything(handler: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """A misconfigured proxy: every answer echoes the request line, headers and body."""
    echoed = f"{handler.command} {handler.path}\n{handler.headers}\n".encode() + body
    if handler.path.startswith("/api/auth/legacy-exchange"):
        token = handler.server.token
        payload = json.dumps({"access_token": token, "echo": echoed.decode()}).encode()
        return 200, {"Content-Type": "application/json"}, payload
    return 500, {"Content-Type": "text/plain"}, echoed


SETTINGS = CertifySettings(user="ci", vo="vodemo", group="vodemo_user", workers=True,
                           job_timeout=1)  # fmt: skip


def test_a_server_that_echoes_credentials_gets_none_into_evidence() -> None:
    key, token = remember("K" * 16 + marker()), "eyJ" + marker() + "." + marker()
    with ScriptedServer(echo_everything) as server:
        server.httpd.token = token  # type: ignore[attr-defined]
        checks = token_checks(Client(server.url), SETTINGS, key)
    evidence = json.dumps([c.as_dict() for c in checks])
    assert checks[0].result == PASSED
    assert any(c.result == FAILED for c in checks)  # the echoing answers fail the checks
    assert key.get_secret_value() not in evidence and token not in evidence
    assert REDACTED in evidence  # the echo was there, and scrubbed
    # The server did get the credentials, in the Authorization header only.
    auth = [headers.get("Authorization", "") for _, _, headers in server.requests]
    assert auth[0] == f"Bearer diracx:legacy:{key.get_secret_value()}"
    assert all(a == f"Bearer {token}" for a in auth[1:])
    assert all(key.get_secret_value() not in path for _, path, _ in server.requests)


@contextmanager
def _redirecting(code: int, where: Any) -> Iterator[tuple[ScriptedServer, ScriptedServer]]:
    """`front` redirects the exchange with `code` to where(front, other); `other` answers 200."""

    def other_answer(handler: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, json.dumps({"access_token": "eyJ" + marker()}).encode()

    with ScriptedServer(other_answer) as other:
        holder: dict[str, ScriptedServer] = {}

        def front_answer(handler: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
            if handler.path.startswith("/api/auth/legacy-exchange"):
                return code, {"Location": where(holder["front"], other)}, b""
            if handler.path.startswith("/moved"):
                return 200, {}, json.dumps({"access_token": "eyJ" + marker()}).encode()
            return 404, {}, b""

        with ScriptedServer(front_answer) as front:
            holder["front"] = front
            yield front, other


def _port(url: str) -> int:
    return urllib.parse.urlsplit(url).port or 80


CROSS = {
    "another port": lambda front, other: f"{other.url}/api/auth/legacy-exchange",
    "another host name": lambda front, other: f"http://localhost:{_port(other.url)}/x",
    "https on the same host": lambda front, other: f"https://127.0.0.1:{_port(front.url)}/moved",
    "protocol-relative": lambda front, other: f"//localhost:{_port(other.url)}/x",
    "another scheme's default port": lambda front, other: "http://127.0.0.1:80/moved",
}


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", list(CROSS), ids=list(CROSS))
def test_a_cross_origin_redirect_is_not_followed_with_credentials(code: int, target: str) -> None:
    key = remember("K" * 16 + marker())
    with _redirecting(code, CROSS[target]) as (front, other):
        checks = token_checks(Client(front.url), SETTINGS, key)
    assert checks[0].result == FAILED
    assert "another origin" in checks[0].evidence and "not followed" in checks[0].evidence
    assert other.requests == []  # nothing, so certainly not the key
    assert len(front.requests) == 1
    assert all(c.result != PASSED for c in checks[1:])
    assert key.get_secret_value() not in json.dumps([c.as_dict() for c in checks])


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_same_origin_redirect_is_followed(code: int) -> None:
    key = remember("K" * 16 + marker())
    with _redirecting(code, lambda front, other: "/moved?x=1") as (front, other):
        checks = token_checks(Client(front.url), SETTINGS, key)
    assert checks[0].result == PASSED, checks[0].evidence
    assert other.requests == []
    paths = [path for _, path, _ in front.requests]
    assert paths[0].startswith("/api/auth/legacy-exchange") and paths[1] == "/moved?x=1"
    assert (
        front.requests[1][2].get("Authorization")
        == f"Bearer diracx:legacy:{key.get_secret_value()}"
    )


def test_a_redirect_loop_is_bounded() -> None:
    key = remember("K" * 16 + marker())

    def loop(handler: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 302, {"Location": f"/hop{len(server.requests)}"}, b""

    with ScriptedServer(loop) as server:
        checks = token_checks(Client(server.url), SETTINGS, key)
    assert checks[0].result == FAILED and "redirects" in checks[0].evidence
    assert len(server.requests) <= 7


@pytest.mark.parametrize(
    "url",
    ["http://ci:{m}@127.0.0.1:9", "http://{m}@127.0.0.1:9", "ftp://127.0.0.1/x", "127.0.0.1:9"],
)
def test_a_url_with_credentials_or_without_http_is_refused(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    m = marker()
    path = _site(tmp_path, "")
    code = main(["--config", str(path), "certify", "--env", "certification", "--version",
                 "v1.0.0", "--url", url.replace("{m}", m)])  # fmt: skip
    out = capsys.readouterr()
    assert code == 2
    assert m not in out.out + out.err and "--url" in out.err


# -- the demo's vault -------------------------------------------------------------------------

FAKE_VAULTS = {
    "fails at once": "exit 3",
    "writes the plaintext then fails": 'cat > "$OUT"; exit 1',
    "writes the plaintext and claims success": 'cat > "$OUT"; exit 0',
    "is killed": 'cat > "$OUT"; kill -9 $$',
    "writes nothing and succeeds": "exit 0",
}


@pytest.mark.parametrize("behaviour", list(FAKE_VAULTS), ids=list(FAKE_VAULTS))
def test_a_failing_ansible_vault_leaves_no_plaintext(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str
) -> None:
    from release.demo.fixture import prepare_secrets

    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "ansible-vault"
    # The arguments are: encrypt --vault-password-file PW --output OUT -
    fake.write_text(f'#!/bin/sh\nOUT="$5"\necho "vault: broken" >&2\n{FAKE_VAULTS[behaviour]}\n')
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tools / "python"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(InfrastructureError) as caught:
        prepare_secrets(workdir)
    key = (workdir / "secrets" / "legacy-exchange.key").read_text().strip()
    assert key not in caught.value.render()
    folder = workdir / "secrets"
    assert sorted(p.name for p in folder.iterdir()) == ["legacy-exchange.key", "vault-password"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("legacy-exchange.key", "vault-password"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600


def test_the_real_ansible_vault_seals_the_key(tmp_path: Path) -> None:
    from release.demo.fixture import prepare_secrets

    password = prepare_secrets(tmp_path)
    folder = tmp_path / "secrets"
    key = (folder / "legacy-exchange.key").read_text().strip()
    sealed = (folder / "secrets.yml").read_text()
    assert sealed.startswith("$ANSIBLE_VAULT") and key not in sealed
    assert sorted(p.name for p in folder.iterdir()) == [
        "legacy-exchange.key",
        "secrets.yml",
        "vault-password",
    ]
    tool = Path(sys.executable).parent / "ansible-vault"
    plain = subprocess.run(
        [str(tool) if tool.exists() else "ansible-vault", "view", "--vault-password-file",
         str(password), str(folder / "secrets.yml")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert json.loads(plain)["dirac_server_secret_files"][0]["content"].strip() == key
    assert prepare_secrets(tmp_path) == password  # made once, reused
    assert (folder / "secrets.yml").read_text() == sealed


# -- the last line of defence -----------------------------------------------------------------


def test_an_unexpected_error_is_short_redacted_and_exit_3(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import release.certify

    secret = remember("S" * 10 + marker())

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError(f"Invalid header value b'Bearer {secret.get_secret_value()}\\n'")

    monkeypatch.setattr(release.certify, "certify_release", broken)
    path = _site(tmp_path, "")
    code, output = _certify(path, capsys)
    assert code == 3
    assert "unexpected ValueError in 'certify'" in output and "DIRAC_RELEASE_DEBUG=1" in output
    assert secret.get_secret_value() not in output and REDACTED in output
    assert "Traceback" not in output
    monkeypatch.setenv("DIRAC_RELEASE_DEBUG", "1")
    code, output = _certify(path, capsys)
    assert code == 3 and "Traceback" in output and "broken" in output
    assert secret.get_secret_value() not in output


def test_bad_input_stays_bad_input(tmp_path: Path) -> None:
    """The checks are BadInput (exit 2): nothing about the key reaches an Infrastructure path."""
    from release.credentials import legacy_key_from_env

    with pytest.raises(BadInput):
        legacy_key_from_env("K", {"K": "a\nb" * 10})
    assert legacy_key_from_env("K", {"K": "  "}) is None
    assert legacy_key_from_env("K", {}) is None
