"""The API calls of the rollout wait, through the official `kubernetes` client, as plain JSON.

The client is untyped and deserialises into generated models that refuse objects missing a
field the model calls required; the wait only reads a few documented fields, so every call
asks for the raw response (`_preload_content=False`) and hands back the JSON the API server
sent. This module is the one place that touches the client: everything above it sees
`dict[str, Any]`, typed errors, or `Unavailable`.

Each request is bounded (connect and read timeouts, no retries inside urllib3: the wait loop
is the retry). Errors become the house's types:
- 401 / 403 → InfrastructureError (exit 3) with what to fix in the kubeconfig or the RBAC;
- no answer, 5xx, 429 → `Unavailable`, which the wait rides out for `grace` seconds after a
  first answer (k3s restarts its API server in an upgrade), and InfrastructureError otherwise;
- 404 → None: "not there (yet)" is a state the wait understands;
- anything else → InfrastructureError naming the call and the API's own Status message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, NoReturn

from release.errors import BadInput, InfrastructureError
from release.k3s.kubeconfig import Kubeconfig

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0

Json = dict[str, Any]


class Unavailable(Exception):
    """The API server did not answer this time; the caller may ask again later."""


def connect(config: Kubeconfig) -> Any:
    """An ApiClient built from that file and context only (never ~/.kube, never KUBECONFIG)."""
    from kubernetes import client
    from kubernetes.config import new_client_from_config
    from kubernetes.config.config_exception import ConfigException

    from release.credentials import redact

    configuration = type.__call__(client.Configuration)  # a fresh one, not the global default
    configuration.retries = 0  # the wait loop retries, within its own bound
    try:
        return new_client_from_config(
            config_file=str(config.path),
            context=config.context,
            persist_config=False,  # never write the user's file back
            client_configuration=configuration,
        )
    except (ConfigException, ValueError, TypeError, OSError) as exc:
        text = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]
        raise BadInput(
            f"the kubernetes client refused it: {text}",
            where=f"kubeconfig {config.path}",
            fix="check its certificate-authority(-data), client-certificate(-data) and "
            "client-key(-data) entries (base64 of PEM), or copy k3s.yaml from the server again",
        ) from None


class ClusterApi:
    """The reads the wait makes, each bounded, as JSON.

    `grace`: how long after the last answer an unanswered request is still `Unavailable`
    rather than fatal. Before the first answer there is no grace: a wrong address fails now.
    """

    def __init__(
        self,
        api_client: Any,
        config: Kubeconfig,
        *,
        grace: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self.config = config
        self.grace = grace
        self._clock = clock
        self._last_answer: float | None = None
        #: The per-request ceiling (seconds); the wait lowers it near its deadline.
        self.budget = READ_TIMEOUT

    def close(self) -> None:
        """Release the client's connections."""
        self._core.api_client.close()

    # -- the calls --------------------------------------------------------------------------

    def helmchart(self, namespace: str, name: str) -> Json | None:
        return self._get(
            f"HelmChart {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            "helm.cattle.io", "v1", namespace, "helmcharts", name,
        )  # fmt: skip

    def job(self, namespace: str, name: str) -> Json | None:
        return self._get(f"Job {namespace}/{name}", self._batch.read_namespaced_job, name,
                         namespace)  # fmt: skip

    def deployment(self, namespace: str, name: str) -> Json | None:
        return self._get(
            f"Deployment {namespace}/{name}", self._apps.read_namespaced_deployment, name, namespace
        )

    def deployments(self, namespace: str, label_selector: str) -> list[Json]:
        return self._list(f"Deployments in {namespace}", self._apps.list_namespaced_deployment,
                          namespace, label_selector=label_selector)  # fmt: skip

    def pods(self, namespace: str, label_selector: str) -> list[Json]:
        return self._list(f"Pods in {namespace}", self._core.list_namespaced_pod, namespace,
                          label_selector=label_selector)  # fmt: skip

    def events(self, namespace: str, kind: str, name: str) -> list[Json]:
        """The Events whose involvedObject is that object (the API filters, not us)."""
        return self._list(
            f"Events of {kind} {namespace}/{name}",
            self._core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _list(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Json]:
        found = self._get(what, call, *args, **kwargs)
        items = (found or {}).get("items")
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    def _get(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Json | None:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        timeout = (min(CONNECT_TIMEOUT, self.budget), min(READ_TIMEOUT, self.budget))
        try:
            response = call(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
            data = json.loads(response.data)
        except ApiException as exc:
            if exc.status == 404:
                self._answered()
                return None
            if exc.status in (401, 403):
                raise self._refused(what, exc.status, _status_message(exc.body)) from None
            if exc.status == 0 or exc.status == 429 or (exc.status or 0) >= 500:
                detail = f"HTTP {exc.status} {_status_message(exc.body) or exc.reason or ''}"
                return self._unanswered(what, detail.strip() if exc.status else _tls(exc))
            self._answered()
            raise InfrastructureError(
                f"{what}: HTTP {exc.status} {exc.reason}: {_status_message(exc.body)}",
                where=self.config.server,
                fix="this API server answers the call unlike the Kubernetes API: check the "
                "kubeconfig points at k3s's API server",
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return self._unanswered(what, _short_reason(exc))
        except ValueError:
            return self._unanswered(what, "the answer is not JSON")
        self._answered()
        if not isinstance(data, dict):
            raise InfrastructureError(f"{what}: the answer is not a JSON object",
                                      where=self.config.server)  # fmt: skip
        return data

    def _answered(self) -> None:
        self._last_answer = self._clock()

    def _unanswered(self, what: str, reason: str) -> NoReturn:
        now = self._clock()
        if self._last_answer is not None and now - self._last_answer <= self.grace:
            raise Unavailable(f"{what}: {reason}")
        since = (
            "" if self._last_answer is None else f" (no answer for {now - self._last_answer:.0f} s)"
        )
        raise InfrastructureError(
            f"cannot reach the Kubernetes API server: {reason}{since}",
            where=self.config.server,
            fix=f"check the server: address in {self.config.path} (k3s writes "
            "https://127.0.0.1:6443: put the server's name), that port 6443 is open from here, "
            "and that k3s runs on the server (systemctl status k3s)",
        )

    def _refused(self, what: str, status: int, message: str) -> InfrastructureError:
        if status == 401:
            return InfrastructureError(
                f"the API server refused the credentials of context {self.config.context!r} "
                f"(401 Unauthorized) when asked for {what}",
                where=self.config.server,
                fix=f"the token or client certificate in {self.config.path} is wrong or expired: "
                "copy /etc/rancher/k3s/k3s.yaml from the server again (or a fresh "
                "ServiceAccount token)",
            )
        return InfrastructureError(
            f"the API server forbids {what} to context {self.config.context!r} (403 Forbidden)"
            + (f": {message}" if message else ""),
            where=self.config.server,
            fix="grant the kubeconfig's user get on helmcharts.helm.cattle.io and batch jobs, "
            "and list on pods and events, in the HelmChart's namespace; get and list on apps "
            "deployments, and list on pods and events, in the DiracX namespace",
        )


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status object in an error body, else ''."""
    if not body:
        return ""
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return str(message)[:300] if message else ""


def _tls(exc: Any) -> str:
    reason = str(getattr(exc, "reason", "") or "").replace("\n", ": ")
    return f"TLS failed ({reason[:200]}); check certificate-authority-data in the kubeconfig"


def _short_reason(exc: BaseException) -> str:
    """A connection error in a few words: the errno text, or the kind of timeout."""
    import urllib3

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
            return "no connection within the timeout"
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            return "no answer within the timeout"
        found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(cause))
        if found:
            return found.group(0)
        cause = getattr(cause, "reason", None) or cause.__cause__ or cause.__context__
    return type(exc).__name__
