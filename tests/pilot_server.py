"""A loopback HTTPS server for pilot uploads that requires a client certificate, and the
test PKI it runs on (a test CA made by openssl, another CA, server and client certificates)."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.loopback import LoopbackServer


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip


def signed(folder: Path, name: str, ca: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=folder)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=folder)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, the server's certificate for 127.0.0.1, a client certificate, another CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the test CA and certificates are made with it")
    folder = tmp_path_factory.mktemp("pki")
    _ca(folder, "ca")
    _ca(folder, "otherca")
    signed(folder, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    signed(folder, "client", "ca", "extendedKeyUsage=clientAuth\n")
    return folder


@dataclass
class Store:
    """The server's side: what it holds, what it was asked, and how it misbehaves."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)
    forbid: bool = False
    unavailable: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            self.broken = False
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                # Let the client read the alert before the socket closes: closing with its
                # request unread would reset the connection first.
                self.broken = True
                self.request.settimeout(1.0)
                with contextlib.suppress(OSError):
                    self.request.recv(65536)
            super().setup()

        def handle(self) -> None:
            if not self.broken:
                super().handle()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refused(self) -> bool:
            name = self.path.rsplit("/", 1)[-1]
            with store.lock:
                store.requests.append((self.command, name))
                if store.forbid:
                    self._answer(403, b"DN not authorized")
                    return True
                if self.command == "PUT" and store.unavailable:
                    store.unavailable -= 1
                    self._answer(503, b"busy")
                    return True
            return False

        def do_GET(self) -> None:
            if self._refused():
                return
            data = store.files.get(self.path)
            self._answer(404) if data is None else self._answer(200, data)

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self._refused():
                return
            if self.path.rsplit("/", 1)[-1] in store.corrupt:
                body = bytes([body[0] ^ 1]) + body[1:]
            store.files[self.path] = body
            self._answer(201)

    return Handler


@pytest.fixture
def server(pki: Path) -> Iterator[tuple[LoopbackServer, Store]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    store = Store()
    loopback = LoopbackServer(_handler(store), tls=context, poll_interval=0.05)
    loopback.start()
    yield loopback, store
    loopback.stop()
