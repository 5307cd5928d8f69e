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
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.loopback import LoopbackServer


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
    releases: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Report each asset's `digest` (GitHub does since 2025); False models an older server.
    report_digest: bool = True
    #: Uploads to corrupt (their stored bytes differ from what was sent), by asset name.
    corrupt: set[str] = field(default_factory=set)

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

            def do_POST(self) -> None:
                fake._handle(self)

            def do_PATCH(self) -> None:
                fake._handle(self)

            def do_DELETE(self) -> None:
                fake._handle(self)

        self.loop = LoopbackServer(Handler)
        self.loop.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.stop()

    @property
    def url(self) -> str:
        return self.loop.url

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
        elif "/releases" in split.path:
            self._releases(handler, split.path, parse_qs(split.query), base)
        else:
            self._send(handler, 404, {"message": "Not Found"})

    # -- releases ---------------------------------------------------------------------------

    def _release_json(self, rel: dict[str, Any]) -> dict[str, Any]:
        base = f"{self.url}/repos/{self.owner}/{self.name}"
        return {
            "id": rel["id"], "tag_name": rel["tag_name"], "name": rel["name"],
            "body": rel["body"], "draft": rel["draft"], "prerelease": rel["prerelease"],
            "url": f"{base}/releases/{rel['id']}",
            "html_url": f"https://github.com/{self.owner}/{self.name}/releases/tag/{rel['tag_name']}",
            "assets_url": f"{base}/releases/{rel['id']}/assets",
            "upload_url": f"{self.url}/uploads{base.removeprefix(self.url)}/releases/{rel['id']}/assets{{?name,label}}",
            "assets": [self._asset_json(a) for a in rel["assets"].values()],
        }  # fmt: skip

    def _asset_json(self, asset: dict[str, Any]) -> dict[str, Any]:
        base = f"{self.url}/repos/{self.owner}/{self.name}"
        data = {"id": asset["id"], "name": asset["name"], "size": len(asset["data"]),
                "state": "uploaded", "content_type": asset["content_type"],
                "url": f"{base}/releases/assets/{asset['id']}",
                "browser_download_url": f"{self.url}/download/{asset['id']}"}  # fmt: skip
        if self.report_digest:
            import hashlib

            data["digest"] = "sha256:" + hashlib.sha256(asset["data"]).hexdigest()
        return data

    def _body(self, handler: BaseHTTPRequestHandler) -> bytes:
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    def _releases(self, handler: BaseHTTPRequestHandler, path: str,
                  query: dict[str, list[str]], base: str) -> None:  # fmt: skip
        method = handler.command
        tail = path.removeprefix("/uploads").removeprefix(base)
        parts = tail.strip("/").split("/")
        if method == "GET" and parts == ["releases"]:
            listed = sorted(self.releases.values(), key=lambda r: -r["id"])
            self._send(handler, 200, [self._release_json(r) for r in listed])
        elif method == "GET" and parts[:2] == ["releases", "tags"]:
            found = [
                r for r in self.releases.values() if r["tag_name"] == parts[2] and not r["draft"]
            ]  # drafts have no tag yet
            if found:
                self._send(handler, 200, self._release_json(found[0]))
            else:
                self._send(handler, 404, {"message": "Not Found"})
        elif method == "POST" and parts == ["releases"]:
            data = json.loads(self._body(handler))
            if any(r["tag_name"] == data["tag_name"] and not r["draft"]
                   for r in self.releases.values()):  # fmt: skip
                self._send(handler, 422, {"message": "Validation Failed", "errors": [
                    {"resource": "Release", "code": "already_exists", "field": "tag_name"}]})  # fmt: skip
                return
            rid = max(self.releases, default=0) + 1
            self.releases[rid] = {"id": rid, "tag_name": data["tag_name"],
                                  "name": data.get("name"), "body": data.get("body"),
                                  "draft": bool(data.get("draft")),
                                  "prerelease": bool(data.get("prerelease")), "assets": {}}  # fmt: skip
            self._send(handler, 201, self._release_json(self.releases[rid]))
        elif method == "PATCH" and len(parts) == 2 and parts[1].isdigit():
            rel = self.releases[int(parts[1])]
            data = json.loads(self._body(handler))
            rel.update({k: data[k] for k in ("name", "body", "draft", "prerelease") if k in data})
            self._send(handler, 200, self._release_json(rel))
        elif method == "GET" and len(parts) == 3 and parts[2] == "assets":
            rel = self.releases[int(parts[1])]
            self._send(handler, 200, [self._asset_json(a) for a in rel["assets"].values()])
        elif method == "POST" and len(parts) == 3 and parts[2] == "assets":
            rel = self.releases[int(parts[1])]
            name = query["name"][0]
            data = self._body(handler)
            if any(a["name"] == name for a in rel["assets"].values()):
                self._send(handler, 422, {"message": "Validation Failed", "errors": [
                    {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}]})  # fmt: skip
                return
            if name in self.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 1])
            aid = 1000 + sum(len(r["assets"]) for r in self.releases.values()) + len(self.requests)
            rel["assets"][aid] = {"id": aid, "name": name, "data": data,
                                  "content_type": handler.headers.get("Content-Type")}  # fmt: skip
            self._send(handler, 201, self._asset_json(rel["assets"][aid]))
        elif parts[:2] == ["releases", "assets"] and len(parts) == 3:
            aid = int(parts[2])
            owner = next(r for r in self.releases.values() if aid in r["assets"])
            if method == "DELETE":
                del owner["assets"][aid]
                handler.send_response(204)
                handler.end_headers()
            elif "octet-stream" in (handler.headers.get("Accept") or ""):
                data = owner["assets"][aid]["data"]
                handler.send_response(200)
                handler.send_header("Content-Type", "application/octet-stream")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
            else:
                self._send(handler, 200, self._asset_json(owner["assets"][aid]))
        else:
            self._send(handler, 404, {"message": "Not Found"})

    def pages_read(self) -> list[str]:
        return [query for path, query, _auth in self.requests if path.endswith("/pulls")]
