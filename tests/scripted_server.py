"""A local HTTP server on the loopback whose answers a test scripts, for clients of HTTP APIs
(certification's DiracX checks) tested without the real service."""

from __future__ import annotations

import http.server
from typing import Any

from tests.loopback import LoopbackServer


class ScriptedServer:
    """A local HTTP server whose answers a test scripts; it records every request it gets."""

    def __init__(self, answer: Any) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append((self.command, self.path, dict(self.headers.items())))
                status, headers, payload = answer(self, body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        self.loop = LoopbackServer(Handler)
        self.httpd = self.loop.server
        self.url = self.loop.url

    def __enter__(self) -> ScriptedServer:
        self.loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.stop()
