"""A GitHub REST API v3 on the loopback, answering as the documented API does, for PyGithub.

What it models (from GitHub's REST documentation): `GET /repos/{owner}/{repo}`, the pull
request listing with `state`, `sort`, `direction`, `per_page` and `page` and an RFC 8288 `Link`
header (`rel="next"`, `rel="last"`), `GET /repos/{owner}/{repo}/pulls/{number}`; 401 with
`{"message": "Bad credentials"}` for a wrong token, 404 `{"message": "Not Found"}`, and a
primary rate limit (403, `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset` in epoch seconds).
Every request is recorded, with whether it carried the token, so tests can count pages and
check that nothing leaked.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class FakeGitHub:
    owner: str = "DIRACGrid"
    name: str = "DIRAC"
    token: str | None = "ghp_test-token-never-printed"  # noqa: S105 (a test value)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Requests to answer with a rate limit (403) before serving normally.
    rate_limited: int = 0
    rate_reset_in: float = 1.0
    requests: list[tuple[str, str, bool]] = field(default_factory=list)

    def add_pull(self, number: int, title: str, body: str | None) -> None:
        self.pulls[number] = {"number": number, "title": title, "body": body, "state": "closed"}

    # -- the server ----------------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _pull_json(self, pull: dict[str, Any]) -> dict[str, Any]:
        base = f"{self.url}/repos/{self.owner}/{self.name}"
        return {**pull, "url": f"{base}/pulls/{pull['number']}",
                "html_url": f"https://github.com/{self.owner}/{self.name}/pull/{pull['number']}"}  # fmt: skip

    def _send(self, handler: BaseHTTPRequestHandler, code: int, data: object,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        body = json.dumps(data).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("X-RateLimit-Limit", "5000")
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        auth = handler.headers.get("Authorization") or ""
        given = auth.split(" ", 1)[1] if " " in auth else None
        split = urlsplit(handler.path)
        self.requests.append((split.path, split.query, given is not None))
        if given is not None and given != self.token:
            self._send(handler, 401, {"message": "Bad credentials",
                                      "documentation_url": "https://docs.github.com/rest"})  # fmt: skip
            return
        if self.rate_limited > 0:
            self.rate_limited -= 1
            reset = str(int(time.time() + self.rate_reset_in))
            self._send(handler, 403, {"message": "API rate limit exceeded for 127.0.0.1."},
                       {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})  # fmt: skip
            return
        base = f"/repos/{self.owner}/{self.name}"
        if split.path == base:
            self._send(handler, 200, {"id": 1, "name": self.name,
                                      "full_name": f"{self.owner}/{self.name}",
                                      "owner": {"login": self.owner},
                                      "url": f"{self.url}{base}"})  # fmt: skip
        elif split.path == f"{base}/pulls":
            query = parse_qs(split.query)
            per_page = int(query.get("per_page", ["30"])[0])
            page = int(query.get("page", ["1"])[0])
            listed = sorted(self.pulls.values(), key=lambda p: p["number"],
                            reverse=query.get("direction", ["desc"])[0] == "desc")  # fmt: skip
            last = max(1, -(-len(listed) // per_page))
            chunk = listed[(page - 1) * per_page : page * per_page]
            links = []
            link = f"{self.url}{base}/pulls?state=closed&per_page={per_page}&page="
            if page < last:
                links.append(f'<{link}{page + 1}>; rel="next"')
            links.append(f'<{link}{last}>; rel="last"')
            self._send(handler, 200, [self._pull_json(p) for p in chunk],
                       {"Link": ", ".join(links)})  # fmt: skip
        elif split.path.startswith(f"{base}/pulls/") and split.path.rsplit("/", 1)[1].isdigit():
            pull = self.pulls.get(int(split.path.rsplit("/", 1)[1]))
            if pull is None:
                self._send(handler, 404, {"message": "Not Found"})
            else:
                self._send(handler, 200, self._pull_json(pull))
        else:
            self._send(handler, 404, {"message": "Not Found"})

    def pages_read(self) -> list[str]:
        return [query for path, query, _auth in self.requests if path.endswith("/pulls")]
