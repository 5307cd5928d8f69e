"""A small JSON-over-HTTP client for the smoke checks (stdlib only, bounded, no proxies for
loopback and lab addresses).

The token is held in memory and sent only as a header; nothing here logs requests. Redirects
are followed only within the origin (scheme, host, port) and at most MAX_REDIRECTS times:
urllib would otherwise resend the Authorization header to wherever a server points it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from release.certify.checks import CheckFailure, Unreachable
from release.credentials import redact

TIMEOUT_S = 15.0
MAX_REDIRECTS = 5
MAX_BODY = 8 * 1024 * 1024


def origin(url: str) -> str:
    """scheme://host:port, the unit a browser would trust with the same credentials."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
    except ValueError:
        port = 0
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the request's origin; anything else is answered as is."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if origin(newurl) != origin(req.full_url):
            return None  # the 3xx reaches the caller, who refuses it by name
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
        # Servers echo requests (headers included) in error pages: nothing of the run's
        # secrets may come back out through evidence.
        text = self.body[: limit * 4].decode(errors="replace")
        return redact(text)[:limit].replace("\n", " ")


class Client:
    def __init__(self, base_url: str, *, proxies: dict[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler(proxies or {}), _SameOriginRedirects()
        )
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
                response = Response(
                    answer.status, dict(answer.headers.items()), answer.read(MAX_BODY)
                )
        except urllib.error.HTTPError as exc:
            response = Response(exc.code, dict(exc.headers.items()), exc.read(MAX_BODY))
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(redact(f"{method} {self.base}{_path_only(path)}: {reason}")) from None
        if 300 <= response.status < 400:
            location = {k.lower(): v for k, v in response.headers.items()}.get("location", "")
            target = urllib.parse.urljoin(f"{self.base}{path}", location)
            if location and origin(target) != origin(self.base):
                raise CheckFailure(
                    f"{method} {_path_only(path)}: HTTP {response.status} to another origin "
                    f"({origin(target)}); not followed, so no credentials are sent there: "
                    "point the certify URL at that address if it is the DiracX"
                )
            raise CheckFailure(
                f"{method} {_path_only(path)}: HTTP {response.status} "
                f"(more than {MAX_REDIRECTS} redirects, or one without a location)"
            )
        return response

    def get(self, path: str, *, auth: bool = False, bearer: str = "") -> Response:
        return self.request("GET", path, auth=auth, bearer=bearer)

    def post(self, path: str, payload: Any, *, auth: bool = False) -> Response:
        return self.request("POST", path, payload, auth=auth)


def _path_only(path: str) -> str:
    """The path without its query: queries name users and scopes, which evidence need not."""
    return path.split("?", 1)[0]
