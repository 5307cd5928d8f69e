"""A small JSON-over-HTTP client for the smoke checks (stdlib only, bounded, no proxies for
loopback and lab addresses).

The token is held in memory and sent only as a header; nothing here logs requests.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from release.certify.checks import Unreachable

TIMEOUT_S = 15.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def snippet(self, limit: int = 200) -> str:
        return self.body[:limit].decode(errors="replace").replace("\n", " ")


class Client:
    def __init__(self, base_url: str, *, proxies: dict[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies or {}))
        self.token = ""

    def request(
        self, method: str, path: str, payload: Any = None, *, auth: bool = False, bearer: str = ""
    ) -> Response:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)  # noqa: S310
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if bearer or (auth and self.token):
            request.add_header("Authorization", f"Bearer {bearer or self.token}")
        try:
            with self._opener.open(request, timeout=TIMEOUT_S) as answer:
                return Response(answer.status, dict(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, dict(exc.headers.items()), exc.read())
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{method} {self.base}{path}: {reason}") from None

    def get(self, path: str, *, auth: bool = False, bearer: str = "") -> Response:
        return self.request("GET", path, auth=auth, bearer=bearer)

    def post(self, path: str, payload: Any, *, auth: bool = False) -> Response:
        return self.request("POST", path, payload, auth=auth)
