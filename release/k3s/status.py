"""What the API's JSON says about a Job, a Deployment, a Pod: pure functions, no client.

The rules are the API's documented ones (kubectl's `rollout status` reads the same fields):
- a Job has succeeded when `status.succeeded` ≥ 1 or its `Complete` condition is True; it has
  failed when its `Failed` condition is True, or (helm-controller's jobs retry up to a
  `backoffLimit` of 1000, longer than any bound) when `status.failed` ≥ 1;
- a Deployment is rolled out when the controller has seen its latest spec
  (`observedGeneration` ≥ `generation`), every replica runs the new template
  (`updatedReplicas` == `spec.replicas`, no old ones left in `status.replicas`), they are all
  available, and its `Available` condition is True; it has failed when `Progressing` is False
  with reason `ProgressDeadlineExceeded`, or `ReplicaFailure` is True;
- a Pod is stuck when a container waits with a reason that does not fix itself
  (ImagePullBackOff, ErrImagePull, CrashLoopBackOff, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Json = dict[str, Any]

SUCCEEDED, FAILED, WAITING = "succeeded", "failed", "waiting"

#: Container waiting reasons that mean "this will not start by itself".
STUCK_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class Verdict:
    """Where an object stands (`state`: succeeded, failed or waiting) and why, in words."""

    state: str
    summary: str


@dataclass(frozen=True)
class PodProblem:
    pod: str
    container: str
    reason: str
    message: str

    def line(self) -> str:
        return f"pod {self.pod} container {self.container}: {self.reason}" + (
            f": {self.message}" if self.message else ""
        )


def get(obj: Any, *keys: str) -> Any:
    """obj[k1][k2]..., or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def as_int(value: Any) -> int:
    """An API count; absent means 0 (the API leaves zero counts out)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def conditions(obj: Json) -> list[Json]:
    found = get(obj, "status", "conditions")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def condition(obj: Json, kind: str) -> Json | None:
    return next((c for c in conditions(obj) if c.get("type") == kind), None)


def is_true(obj: Json, kind: str) -> bool:
    found = condition(obj, kind)
    return found is not None and found.get("status") == "True"


def condition_lines(obj: Json) -> list[str]:
    """`Type=Status Reason: message` per condition, as kubectl describe shows them."""
    lines = []
    for cond in conditions(obj):
        reason = f" {cond['reason']}" if cond.get("reason") else ""
        message = f": {_clip(cond['message'])}" if cond.get("message") else ""
        lines.append(f"{cond.get('type')}={cond.get('status')}{reason}{message}")
    return lines


def helmchart_failure(chart: Json) -> str | None:
    """The helm-controller's `Failed` condition on a HelmChart, in words, when True."""
    failed = condition(chart, "Failed")
    if failed is None or failed.get("status") != "True":
        return None
    return _clip(str(failed.get("message") or failed.get("reason") or "Failed=True"))


def job_verdict(job: Json) -> Verdict:
    status = get(job, "status") or {}
    succeeded, failed, active = (as_int(status.get(k)) for k in ("succeeded", "failed", "active"))
    if succeeded >= 1 or is_true(job, "Complete"):
        return Verdict(SUCCEEDED, "succeeded")
    if is_true(job, "Failed"):
        cond = condition(job, "Failed") or {}
        why = cond.get("reason") or "Failed"
        text = f": {_clip(cond['message'])}" if cond.get("message") else ""
        return Verdict(FAILED, f"failed ({why}{text})")
    if failed >= 1:
        return Verdict(FAILED, f"failed: {failed} pod(s) of the install failed")
    return Verdict(WAITING, f"running ({active} active)" if active else "pending")


def deployment_verdict(deployment: Json) -> Verdict:
    spec = get(deployment, "spec") or {}
    status = get(deployment, "status") or {}
    progressing = condition(deployment, "Progressing")
    if (
        progressing is not None
        and progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    ):
        return Verdict(FAILED, "Progressing=False (ProgressDeadlineExceeded): "
                       + _clip(str(progressing.get("message") or "")))  # fmt: skip
    if is_true(deployment, "ReplicaFailure"):
        cond = condition(deployment, "ReplicaFailure") or {}
        return Verdict(FAILED, f"ReplicaFailure ({cond.get('reason')}): "
                       + _clip(str(cond.get("message") or "")))  # fmt: skip
    wanted = spec.get("replicas")
    wanted = 1 if wanted is None else as_int(wanted)
    generation = as_int(get(deployment, "metadata", "generation"))
    observed = as_int(status.get("observedGeneration"))
    updated, replicas, available = (
        as_int(status.get(k)) for k in ("updatedReplicas", "replicas", "availableReplicas")
    )
    counts = f"{updated}/{wanted} updated, {available} available"
    if observed < generation:
        return Verdict(WAITING, f"the controller has not seen generation {generation} yet")
    if updated < wanted:
        return Verdict(WAITING, counts)
    if replicas > updated:
        return Verdict(WAITING, f"{counts}, {replicas - updated} old replica(s) terminating")
    if available < updated:
        return Verdict(WAITING, counts)
    if wanted > 0 and not is_true(deployment, "Available"):
        return Verdict(WAITING, f"{counts}, condition Available not True")
    return Verdict(SUCCEEDED, f"available ({available}/{wanted})")


def pod_problems(pods: list[Json]) -> list[PodProblem]:
    """The containers (init containers too) waiting for a reason in STUCK_REASONS."""
    problems = []
    for pod in pods:
        name = str(get(pod, "metadata", "name") or "?")
        statuses = [
            *(get(pod, "status", "initContainerStatuses") or []),
            *(get(pod, "status", "containerStatuses") or []),
        ]
        for container in statuses:
            waiting = get(container, "state", "waiting")
            reason = get(waiting, "reason")
            if reason in STUCK_REASONS:
                problems.append(PodProblem(name, str(get(container, "name") or "?"), str(reason),
                                           _clip(str(get(waiting, "message") or ""))))  # fmt: skip
    return problems


def terminations(pods: list[Json]) -> list[str]:
    """Why a Job's pods ended in failure: each failed container's reason and message."""
    lines = []
    for pod in pods:
        name = str(get(pod, "metadata", "name") or "?")
        for container in get(pod, "status", "containerStatuses") or []:
            for state in ("state", "lastState"):
                ended = get(container, state, "terminated")
                if isinstance(ended, dict) and as_int(ended.get("exitCode")) != 0:
                    text = f": {_clip(str(ended['message']))}" if ended.get("message") else ""
                    lines.append(f"pod {name} container {get(container, 'name')}: exit "
                                 f"{ended.get('exitCode')} ({ended.get('reason')}){text}")  # fmt: skip
                    break
    return lines


def match_labels(deployment: Json) -> str | None:
    """The Deployment's `spec.selector.matchLabels` as a label selector, None without one."""
    labels = get(deployment, "spec", "selector", "matchLabels")
    if not isinstance(labels, dict) or not labels:
        return None
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def replica_set_named(deployment: Json) -> str | None:
    """The ReplicaSet the Progressing condition names (its events say why pods are missing)."""
    message = str((condition(deployment, "Progressing") or {}).get("message") or "")
    found = re.search(r'ReplicaSet "([^"]+)"', message)
    return found.group(1) if found else None


def _when(event: Json) -> datetime:
    for value in (
        event.get("lastTimestamp"),
        event.get("eventTime"),
        get(event, "series", "lastObservedTime"),
        event.get("firstTimestamp"),
        get(event, "metadata", "creationTimestamp"),
    ):
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                continue
    return datetime.min.replace(tzinfo=datetime.now().astimezone().tzinfo)


def event_lines(events: list[Json], limit: int = 10) -> list[str]:
    """The newest `limit` events, oldest first: `time Type Reason: message (xcount)`."""
    ordered = sorted(events, key=_when)[-limit:]
    lines = []
    for event in ordered:
        when = _when(event)
        stamp = when.strftime("%H:%M:%S") if when.year > 1 else "--:--:--"
        count = as_int(event.get("count")) or as_int(get(event, "series", "count"))
        times = f" (x{count})" if count > 1 else ""
        lines.append(f"{stamp} {event.get('type') or '?'} {event.get('reason') or '?'}: "
                     f"{_clip(str(event.get('message') or ''))}{times}")  # fmt: skip
    return lines


def _clip(text: str, size: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size] + "..."
