"""A Kubernetes API server on the loopback, answering the reads of `release.k3s` as the API does.

No API server can run here (no k3s, kind or container engine), so the rollout wait is tested
against this: a real HTTP server (127.0.0.1, a free port, a thread) that the official
`kubernetes` client talks to through a kubeconfig file the test writes. What it models, from
the Kubernetes API reference:

- `GET /apis/helm.cattle.io/v1/namespaces/{ns}/helmcharts/{name}` (k3s's HelmChart),
  `GET /apis/batch/v1/namespaces/{ns}/jobs/{name}`,
  `GET /apis/apps/v1/namespaces/{ns}/deployments/{name}` and the list with `labelSelector`,
  `GET /api/v1/namespaces/{ns}/pods?labelSelector=...`,
  `GET /api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.kind=K,involvedObject.name=N`;
- single objects with `kind`, `apiVersion` and `metadata` (uid, resourceVersion,
  creationTimestamp, generation), lists as `{kind: XList, apiVersion, metadata:
  {resourceVersion}, items}`;
- errors as `Status` objects (`kind: Status`, `apiVersion: v1`, `status: Failure`, `message`,
  `reason`, `details`, `code`): 401 Unauthorized without the bearer token, 403 Forbidden for
  resources the test forbids, 404 NotFound, 400 BadRequest for a selector it does not parse,
  503 ServiceUnavailable during a scripted outage.

Equality-based selectors only (`a=b,c=d`), which is all the client code sends. No watch
streams: the code under test polls, and a `?watch=true` request is answered 400 so that a
change to watching cannot pass unnoticed against a fake that does not model it.

The cluster is scripted over time: each object is a timeline of states, `[(0.0, pending),
(0.3, done)]`, the clock starting at the first request the fake serves; a state of None means
"not there". Every request is recorded (path, query, whether it carried the right token).
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.loopback import LoopbackServer

Json = dict[str, Any]
State = Json | None

CREATED = "2026-12-01T10:00:00Z"
#: A time an object's state may carry that the fake replaces by when that state began (its
#: first request plus the state's offset), for objects that must look made after the test
#: began: the Job helm-controller makes for the manifest a deploy placed.
AT_STATE_START = "@at-state-start@"

#: resource → (apiVersion, kind), as the API serves them.
RESOURCES = {
    "helmcharts": ("helm.cattle.io/v1", "HelmChart"),
    "jobs": ("batch/v1", "Job"),
    "deployments": ("apps/v1", "Deployment"),
    "pods": ("v1", "Pod"),
    "events": ("v1", "Event"),
}
_ROUTES = [
    (re.compile(r"/apis/helm\.cattle\.io/v1/namespaces/([^/]+)/(helmcharts)/([^/]+)"), "get"),
    (re.compile(r"/apis/batch/v1/namespaces/([^/]+)/(jobs)/([^/]+)"), "get"),
    (re.compile(r"/apis/apps/v1/namespaces/([^/]+)/(deployments)/([^/]+)"), "get"),
    (re.compile(r"/apis/apps/v1/namespaces/([^/]+)/(deployments)()"), "list"),
    (re.compile(r"/api/v1/namespaces/([^/]+)/(pods)()"), "list"),
    (re.compile(r"/api/v1/namespaces/([^/]+)/(events)()"), "list"),
]
_API_VERSIONS = {"Job": "batch/v1", "Deployment": "apps/v1", "ReplicaSet": "apps/v1",
                 "HelmChart": "helm.cattle.io/v1"}  # fmt: skip
_GROUPS = {"helmcharts": "helm.cattle.io", "jobs": "batch", "deployments": "apps"}


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    authorized: bool


@dataclass
class FakeKube:
    """The fake API server; use as a context manager, then `write_kubeconfig`."""

    token: str = "k3s-fake-bearer-token-0123456789abcdef"  # noqa: S105 (a test value)
    #: (resource, namespace, name) → timeline of states.
    objects: dict[tuple[str, str, str], list[tuple[float, State]]] = field(default_factory=dict)
    #: Resources answered 403 (e.g. {"events"}).
    forbidden: set[str] = field(default_factory=set)
    #: Time windows (seconds on the fake's clock) answered 503.
    outages: list[tuple[float, float]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: Listen in this network namespace (/run/netns/<name>) instead of the test's own: where
    #: a lab test's commands run (`ip netns exec`), 127.0.0.1 is that namespace's loopback.
    netns: str | None = None
    _t0: float | None = None
    _t0_wall: datetime | None = None
    _starts: dict[int, float] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _stamped: dict[int, str] = field(default_factory=dict)

    # -- scripting -------------------------------------------------------------------------

    def put(self, obj: Json | Iterable[tuple[float, State]]) -> None:
        """One object, or the timeline of one object's states (all with the same identity)."""
        timeline = [(0.0, obj)] if isinstance(obj, dict) else list(obj)
        first = next(state for _, state in timeline if state is not None)
        resource = _resource_of(first)
        key = (resource, first["metadata"]["namespace"], first["metadata"]["name"])
        self.objects[key] = sorted(timeline, key=lambda step: step[0])
        self._starts.update((id(state), at) for at, state in timeline if state is not None)

    def now(self) -> float:
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def state(self, resource: str, namespace: str, name: str) -> State:
        timeline = self.objects.get((resource, namespace, name), [])
        now = self.now()
        current: State = None
        for at, state in timeline:
            if at <= now:
                current = state
        return current

    def count(self, path_part: str) -> int:
        return sum(path_part in r.path for r in self.requests)

    # -- the server ------------------------------------------------------------------------

    def __enter__(self) -> FakeKube:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self)

        self.loop = LoopbackServer(Handler, netns=self.netns, poll_interval=0.02)
        self.loop.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.stop()

    @property
    def url(self) -> str:
        return self.loop.url

    def write_kubeconfig(self, path: Path, *, token: str | None = None,
                         server: str | None = None) -> Path:  # fmt: skip
        """A kubeconfig as k3s writes one (one cluster, user and context), pointing here."""
        import yaml

        data = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "default", "cluster": {"server": server or self.url}}],
            "users": [{"name": "default", "user": {"token": token or self.token}}],
            "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
            "current-context": "default",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        path.chmod(0o600)
        return path

    # -- answering -------------------------------------------------------------------------

    def _send(self, handler: BaseHTTPRequestHandler, code: int, data: Json) -> None:
        body = json.dumps(data).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Audit-Id", "00000000-0000-0000-0000-000000000000")
        handler.end_headers()
        handler.wfile.write(body)

    def _status(self, handler: BaseHTTPRequestHandler, code: int, reason: str, message: str,
                details: Json | None = None) -> None:  # fmt: skip
        status: Json = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": message, "reason": reason, "code": code}  # fmt: skip
        if details:
            status["details"] = details
        self._send(handler, code, status)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        if self._t0 is None:
            self._t0 = time.monotonic()
            self._t0_wall = datetime.now(UTC)
        split = urlsplit(handler.path)
        query = parse_qs(split.query, keep_blank_values=True)
        authorized = handler.headers.get("Authorization") == f"Bearer {self.token}"
        self.requests.append(Request(split.path, query, authorized))
        if not authorized:
            self._status(handler, 401, "Unauthorized", "Unauthorized")
            return
        if any(start <= self.now() < end for start, end in self.outages):
            self._status(handler, 503, "ServiceUnavailable",
                         "the server is currently unable to handle the request")  # fmt: skip
            return
        for pattern, route in _ROUTES:
            found = pattern.fullmatch(split.path)
            if found:
                namespace, resource, name = found.groups()
                verb = route
                break
        else:
            self._status(handler, 404, "NotFound", "the server could not find the requested "
                         "resource")  # fmt: skip
            return
        if query.get("watch", ["false"])[0] in ("true", "1"):
            self._status(handler, 400, "BadRequest", "this fake API server serves no watch")
            return
        if resource in self.forbidden:
            group = _GROUPS.get(resource, "")
            qualified = f"{resource}.{group}" if group else resource
            what = f'{qualified} "{name}"' if name else qualified
            self._status(handler, 403, "Forbidden",
                         f'{what} is forbidden: User "system:serviceaccount:diracx:deployer" '
                         f'cannot {verb} resource "{resource}" in API group "{group}" in the '
                         f'namespace "{namespace}"',
                         {"name": name, "group": group, "kind": resource})  # fmt: skip
            return
        if verb == "get":
            state = self.state(resource, namespace, name)
            if state is None:
                group = _GROUPS.get(resource, "")
                self._status(handler, 404, "NotFound",
                             f'{resource}.{group} "{name}" not found' if group
                             else f'{resource} "{name}" not found',
                             {"name": name, "group": group, "kind": resource})  # fmt: skip
                return
            self._send(handler, 200, self._stamp(state))
            return
        try:
            labels = _equalities(query.get("labelSelector", [""])[0])
            fields = _equalities(query.get("fieldSelector", [""])[0])
        except ValueError as exc:
            self._status(handler, 400, "BadRequest", str(exc))
            return
        unsupported = set(fields) - {"involvedObject.kind", "involvedObject.name", "metadata.name"}
        if unsupported:
            self._status(handler, 400, "BadRequest",
                         f'"{sorted(unsupported)[0]}" is not a known field selector: only '
                         '"involvedObject.kind", "involvedObject.name", "metadata.name"')  # fmt: skip
            return
        items = []
        for (res, ns, item_name), _timeline in sorted(self.objects.items()):
            if res != resource or ns != namespace:
                continue
            state = self.state(res, ns, item_name)
            if state is None or not _matches(state, labels, fields):
                continue
            item = self._stamp(state)
            item.pop("kind", None)  # list items carry no kind/apiVersion
            item.pop("apiVersion", None)
            items.append(item)
        api_version, kind = RESOURCES[resource]
        self._send(handler, 200, {"kind": f"{kind}List", "apiVersion": api_version,
                                  "metadata": {"resourceVersion": str(next(self._versions))},
                                  "items": items})  # fmt: skip

    def _stamp(self, state: Json) -> Json:
        """The object as served: a resourceVersion per state (a new state, a new version)."""
        text = json.dumps(state)
        if AT_STATE_START in text and self._t0_wall is not None:
            began = self._t0_wall + timedelta(seconds=self._starts.get(id(state), 0.0))
            text = text.replace(AT_STATE_START, began.strftime("%Y-%m-%dT%H:%M:%SZ"))
        item: Json = json.loads(text)
        version = self._stamped.setdefault(id(state), str(next(self._versions)))
        item["metadata"].setdefault("resourceVersion", version)
        return item


def _resource_of(obj: Json) -> str:
    for resource, (api_version, kind) in RESOURCES.items():
        if obj.get("kind") == kind and obj.get("apiVersion") == api_version:
            return resource
    raise ValueError(f"the fake serves no {obj.get('apiVersion')} {obj.get('kind')}")


def _equalities(selector: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in filter(None, selector.split(",")):
        if "!=" in part or "=" not in part or " in " in part:
            raise ValueError(f"unable to parse requirement: {part!r} (this fake: a=b only)")
        key, _, value = part.partition("=")
        found[key.strip()] = value.lstrip("=").strip()
    return found


def _matches(obj: Json, labels: dict[str, str], fields: dict[str, str]) -> bool:
    have = obj["metadata"].get("labels") or {}
    if any(have.get(key) != value for key, value in labels.items()):
        return False
    for key, value in fields.items():
        current: Any = obj
        for part in key.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if current != value:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- objects, in the API's documented shapes ---------------------------------------------------

_uids = itertools.count(1)


def _meta(name: str, namespace: str, *, labels: dict[str, str] | None = None,
          generation: int | None = None, created: str = CREATED) -> Json:  # fmt: skip
    meta: Json = {"name": name, "namespace": namespace,
                  "uid": f"00000000-0000-4000-8000-{next(_uids):012d}",
                  "creationTimestamp": created}  # fmt: skip
    if labels:
        meta["labels"] = labels
    if generation is not None:
        meta["generation"] = generation
    return meta


def condition(kind: str, status: str, reason: str = "", message: str = "",
              at: str = CREATED) -> Json:  # fmt: skip
    cond: Json = {"type": kind, "status": status, "lastTransitionTime": at}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def helmchart(name: str = "diracx", namespace: str = "kube-system", *, target: str = "diracx",
              job: str | None = "default", conditions: list[Json] | None = None) -> Json:  # fmt: skip
    """A HelmChart as k3s's helm-controller leaves it: `status.jobName` once it made the Job."""
    status: Json = {}
    if job is not None:
        status["jobName"] = f"helm-install-{name}" if job == "default" else job
    if conditions is not None:
        status["conditions"] = conditions
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {**_meta(name, namespace, generation=1),
                     "annotations": {"helmcharts.cattle.io/managed-by": "helm-controller"},
                     "finalizers": ["wrangler.cattle.io/on-helm-chart-remove"]},
        "spec": {"chart": "diracx", "version": "1.0.0", "repo": "https://charts.diracgrid.org/",
                 "targetNamespace": target, "failurePolicy": "abort",
                 "valuesContent": "diracx:\n  hostname: diracx.example.org\n"},
        "status": status,
    }  # fmt: skip


def job(name: str = "helm-install-diracx", namespace: str = "kube-system", *, active: int = 0,
        succeeded: int = 0, failed: int = 0, conditions: list[Json] | None = None,
        created: str = CREATED) -> Json:  # fmt: skip
    """A batch/v1 Job as helm-controller creates it (backoffLimit 1000), with its status."""
    status: Json = {"startTime": created}
    for key, value in (("active", active), ("succeeded", succeeded), ("failed", failed)):
        if value:
            status[key] = value  # the API leaves zero counts out
    if conditions:
        status["conditions"] = conditions
    if succeeded:
        status["completionTime"] = created
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {**_meta(name, namespace, generation=1, created=created),
                     "annotations": {"helmcharts.helm.cattle.io/configHash": "SHA256=0F00"},
                     "labels": {"helmcharts.helm.cattle.io/chart": name.removeprefix("helm-install-")}},
        "spec": {"backoffLimit": 1000, "completions": 1, "parallelism": 1,
                 "template": {"metadata": {"labels": {"job-name": name}},
                              "spec": {"containers": [{"name": "helm",
                                                       "image": "rancher/klipper-helm:v0.9.3"}],
                                       "restartPolicy": "OnFailure"}}},
        "status": status,
    }  # fmt: skip


def deployment(name: str = "diracx", namespace: str = "diracx", *, replicas: int = 1,
               updated: int = 0, ready: int = 0, available: int = 0, total: int | None = None,
               generation: int = 2, observed: int | None = None,
               conditions: list[Json] | None = None, release: str = "diracx") -> Json:  # fmt: skip
    """An apps/v1 Deployment of the chart (Helm's labels), with the given rollout status."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": release,
              "app.kubernetes.io/managed-by": "Helm"}  # fmt: skip
    status: Json = {"observedGeneration": generation if observed is None else observed}
    counts = (("replicas", updated if total is None else total), ("updatedReplicas", updated),
              ("readyReplicas", ready), ("availableReplicas", available))  # fmt: skip
    for key, value in counts:
        if value:
            status[key] = value
    if replicas - available > 0:
        status["unavailableReplicas"] = replicas - available
    if conditions is not None:
        status["conditions"] = conditions
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels=labels, generation=generation),
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                 "selector": {"matchLabels": {"app.kubernetes.io/name": name,
                                              "app.kubernetes.io/instance": release}},
                 "strategy": {"type": "RollingUpdate"},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": name,
                                                      "app.kubernetes.io/instance": release}},
                              "spec": {"containers": [{"name": name,
                                                       "image": "ghcr.io/diracgrid/diracx/services:v0.7.0"}]}}},
        "status": status,
    }  # fmt: skip


def available(name: str = "diracx", namespace: str = "diracx", replicas: int = 1,
              release: str = "diracx") -> Json:  # fmt: skip
    """A Deployment fully rolled out: the conditions the controller sets then."""
    return deployment(name, namespace, replicas=replicas, updated=replicas, ready=replicas,
                      available=replicas, release=release, conditions=[
                          condition("Available", "True", "MinimumReplicasAvailable",
                                    "Deployment has minimum availability."),
                          condition("Progressing", "True", "NewReplicaSetAvailable",
                                    f'ReplicaSet "{name}-7c9f8d6b5" has successfully progressed.'),
                      ])  # fmt: skip


def progressing(name: str = "diracx", namespace: str = "diracx", replicas: int = 1) -> Json:
    """A Deployment whose new ReplicaSet is being rolled out, nothing available yet."""
    return deployment(name, namespace, replicas=replicas, updated=replicas, conditions=[
        condition("Available", "False", "MinimumReplicasUnavailable",
                  "Deployment does not have minimum availability."),
        condition("Progressing", "True", "ReplicaSetUpdated",
                  f'ReplicaSet "{name}-7c9f8d6b5" is progressing.'),
    ])  # fmt: skip


def pod(name: str, namespace: str = "diracx", *, labels: dict[str, str],
        waiting: tuple[str, str] | None = None, terminated: tuple[int, str, str] | None = None,
        container: str = "diracx") -> Json:  # fmt: skip
    """A v1 Pod with one container: waiting (reason, message), terminated (code, reason,
    message), or running."""
    if waiting is not None:
        state: Json = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif terminated is not None:
        state = {"terminated": {"exitCode": terminated[0], "reason": terminated[1],
                                "message": terminated[2], "startedAt": CREATED,
                                "finishedAt": CREATED}}  # fmt: skip
    else:
        state = {"running": {"startedAt": CREATED}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, namespace, labels=labels),
        "spec": {"containers": [{"name": container, "image": "ghcr.io/diracgrid/diracx/services:v0.7.0"}]},
        "status": {"phase": "Pending" if waiting else "Running", "containerStatuses": [
            {"name": container, "state": state, "lastState": {}, "ready": False,
             "restartCount": 0, "image": "ghcr.io/diracgrid/diracx/services:v0.7.0",
             "imageID": "", "started": False}]},
    }  # fmt: skip


def event(namespace: str, kind: str, name: str, reason: str, message: str, *,
          type_: str = "Warning", count: int = 1, at: str = "2026-12-01T10:01:00Z",
          component: str = "kubelet") -> Json:  # fmt: skip
    """A core/v1 Event about an object (what `kubectl describe` lists at its end)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(f"{name}.{next(_uids):016x}", namespace, created=at),
        "involvedObject": {"kind": kind, "namespace": namespace, "name": name,
                           "apiVersion": _API_VERSIONS.get(kind, "v1")},
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": count,
        "type": type_,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": "",
    }  # fmt: skip
