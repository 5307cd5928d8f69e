"""Wait, bounded, for DiracX to roll out on k3s: the chart's install Job, then its Deployments.

k3s's helm-controller turns a `HelmChart` (helm.cattle.io/v1, normally in kube-system) into a
Job named in the chart's `status.jobName` (`helm-install-<chart>`) that runs `helm install` or
`upgrade`; the chart's Deployments then roll out in the target namespace. A deploy that placed
the manifest is finished only when both have happened, and has failed as soon as either says
so: this module asks the API server (read-only) until one or the other, or the bound.

Why polling and not watch streams: every request is bounded by its own timeout, there is no
stream state to resume (resourceVersion, 410 Gone), and a poll every 2 s costs nothing next to
rollouts that take minutes. Why fail early: a Job's `backoffLimit` (1000 for helm-controller's
jobs) and a Deployment's progress deadline (10 min) outlast a person's patience; the first
failed install attempt, a `ProgressDeadlineExceeded`, or a Pod stuck in ImagePullBackOff or
CrashLoopBackOff for `stuck_after` seconds ends the wait with the object's conditions and
recent Events, and what to try.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from release.errors import BadInput, CheckFailed, ReleaseError
from release.k3s import status as st
from release.k3s.api import ClusterApi, Json, Unavailable, connect
from release.k3s.kubeconfig import read_kubeconfig

#: A Kubernetes namespace: an RFC 1123 label.
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
#: An object name (HelmChart, Deployment): an RFC 1123 subdomain.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
#: The label Helm puts on everything a release installs (its value: the release's name, which
#: helm-controller takes from the HelmChart's name).
INSTANCE_LABEL = "app.kubernetes.io/instance"
EVENTS_SHOWN = 8
#: What explaining a failure may add to the wait at most (its reads of Events and Pods).
REPORT_SECONDS = 10.0

T = TypeVar("T")


@dataclass(frozen=True)
class DeploymentRollout:
    name: str
    replicas: int
    seconds: float


@dataclass(frozen=True)
class RolloutResult:
    """What finished, and when (seconds since the wait began)."""

    server: str
    chart: str
    chart_namespace: str
    namespace: str
    job: str
    job_seconds: float
    deployments: tuple[DeploymentRollout, ...]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ObjectReport:
    """One object as a failure shows it: its state, conditions, recent Events, and details
    (stuck containers, failed install pods)."""

    kind: str
    namespace: str
    name: str
    state: str
    conditions: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    details: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        lines = [f"{self.kind} {self.namespace}/{self.name}: {self.state}"]
        if self.conditions:
            lines += ["  conditions:", *(f"    {c}" for c in self.conditions)]
        lines += [f"  {d}" for d in self.details]
        lines += ["  events (newest last):", *(f"    {e}" for e in self.events)] if self.events \
            else ["  events: none"]  # fmt: skip
        return lines

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RolloutFailed(CheckFailed):
    """The rollout failed (exit 1): the message carries every object's conditions and Events."""

    def __init__(self, headline: str, *, where: str, fix: str,
                 objects: Sequence[ObjectReport] = ()) -> None:  # fmt: skip
        lines = [headline] + [line for report in objects for line in report.lines()]
        super().__init__("\n".join(lines), where=where, fix=fix)
        self.objects = tuple(objects)

    def render(self) -> str:
        """The headline, each object's block, then the fix under its own label: below blocks of
        conditions and Events, a fix merely indented would read as one more of their lines."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += "\nfix:\n" + "\n".join(f"  {line}" for line in self.fix.splitlines())
        return text

    def as_dict(self) -> dict[str, object]:
        data = super().as_dict()
        data["objects"] = [report.as_dict() for report in self.objects]
        return data


class RolloutTimeout(RolloutFailed):
    """The bound passed before the rollout finished or failed (exit 1)."""


def wait_for_rollout(
    kubeconfig: Path,
    *,
    namespace: str,
    chart: str,
    deployments: Sequence[str] | None = None,
    timeout: float = 600.0,
    chart_namespace: str = "kube-system",
    context: str | None = None,
    interval: float = 2.0,
    stuck_after: float = 60.0,
    grace: float = 30.0,
    not_before: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> RolloutResult:
    """Wait until HelmChart `chart_namespace/chart`'s install Job succeeded and the Deployments
    (`deployments`, default: every Deployment labelled with the release) of `namespace` are
    Available; at most `timeout` seconds in all.

    `kubeconfig` is the only configuration read (its `context`, default its current one).
    `stuck_after`: how long a container may wait in ImagePullBackOff, CrashLoopBackOff, ...
    before the rollout counts as failed (DiracX pods may crash-loop while their database
    starts). `grace`: how long the API server may stay silent after a first answer (k3s
    restarting). `not_before`: a Job created earlier is a previous release's: wait for
    helm-controller to recreate it (pass the time the changed manifest was placed).
    `progress` hears a line whenever what is waited for changes.

    Raises BadInput (exit 2) for bad arguments or kubeconfig; InfrastructureError (exit 3) when
    the API server cannot be reached or refuses the credentials; RolloutFailed (exit 1) when
    the Job fails, a Deployment fails or a Pod is stuck; RolloutTimeout (exit 1) at the bound.
    """
    _check_arguments(namespace, chart, chart_namespace, deployments, timeout, interval, not_before)
    config = read_kubeconfig(kubeconfig, context)
    api = ClusterApi(connect(config), config, grace=grace)
    try:
        wait = _Wait(api, timeout=timeout, interval=interval, stuck_after=stuck_after,
                     progress=progress)  # fmt: skip
        job, job_seconds = wait.job(chart_namespace, chart, namespace, not_before)
        names = list(deployments) if deployments else wait.release_deployments(namespace, chart)
        done = wait.deployments(namespace, names)
    finally:
        api.close()
    return RolloutResult(server=config.server, chart=chart, chart_namespace=chart_namespace,
                         namespace=namespace, job=job, job_seconds=round(job_seconds, 2),
                         deployments=tuple(done), seconds=round(wait.elapsed(), 2))  # fmt: skip


def _check_arguments(
    namespace: str,
    chart: str,
    chart_namespace: str,
    deployments: Sequence[str] | None,
    timeout: float,
    interval: float,
    not_before: datetime | None,
) -> None:
    for what, value in (("namespace", namespace), ("chart namespace", chart_namespace)):
        if not _LABEL.match(value):
            raise BadInput(f"{what} {value!r} is not a Kubernetes namespace name",
                           fix="lower-case letters, digits and '-', at most 63, e.g. diracx")  # fmt: skip
    for what, value in [("chart", chart), *(("deployment", d) for d in deployments or ())]:
        if not _SUBDOMAIN.match(value):
            raise BadInput(f"{what} {value!r} is not a Kubernetes object name",
                           fix="lower-case letters, digits, '-' and '.', e.g. diracx")  # fmt: skip
    if not (math.isfinite(timeout) and timeout > 0):
        raise BadInput(f"timeout {timeout} must be a positive number of seconds",
                       fix="e.g. --timeout 600")  # fmt: skip
    if not (math.isfinite(interval) and interval > 0):
        raise BadInput(f"interval {interval} must be a positive number of seconds")
    if not_before is not None and not_before.tzinfo is None:
        raise BadInput("not_before must carry a time zone (the API server's times are UTC)")


class _Wait:
    """One bounded wait: the deadline, the progress lines, and what was seen last."""

    def __init__(self, api: ClusterApi, *, timeout: float, interval: float, stuck_after: float,
                 progress: Callable[[str], None] | None) -> None:  # fmt: skip
        self.api = api
        self.timeout = timeout
        self.interval = interval
        self.stuck_after = stuck_after
        self.progress = progress
        self.start = time.monotonic()
        self.deadline = self.start + timeout
        self._said: dict[str, str] = {}
        #: First time each (pod, container, reason) was seen stuck; never reset, because a
        #: crash-looping container alternates between running and CrashLoopBackOff.
        self._stuck_since: dict[tuple[str, str, str], float] = {}
        #: The objects as last read, for a failure's or a timeout's report.
        self.helmchart: Json | None = None
        self.job_name: str | None = None
        self.job_seen: Json | None = None
        self.deployment_seen: dict[str, Json] = {}
        self._report_until: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def note(self, key: str, text: str) -> None:
        """Tell the person, once per change of what `key` is waiting for."""
        if self._said.get(key) != text:
            self._said[key] = text
            if self.progress is not None:
                self.progress(f"k3s: {text}")

    def until(self, step: Callable[[], T | None]) -> T | None:
        """Run `step` every `interval` until it returns a value; None when the bound passes."""
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.api.budget = max(remaining, 0.2)
            try:
                found = step()
                self._said.pop("api", None)  # answered: say the next outage again
            except Unavailable as exc:
                if "api" not in self._said:  # once per outage, not once per request
                    self.note("api", f"the API server did not answer ({exc}); asking again")
                found = None
            if found is not None:
                return found
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(self.interval, remaining))

    def stuck(self, problems: list[st.PodProblem]) -> list[st.PodProblem]:
        now = time.monotonic()
        found = []
        for problem in problems:
            since = self._stuck_since.setdefault(
                (problem.pod, problem.container, problem.reason), now
            )
            if now - since >= self.stuck_after:
                found.append(problem)
        return found

    # -- the install Job ----------------------------------------------------------------------

    def job(self, chart_ns: str, chart: str, namespace: str,
            not_before: datetime | None) -> tuple[str, float]:  # fmt: skip
        """The name of the chart's install Job once it succeeded, and when that was seen."""
        label = f"HelmChart {chart_ns}/{chart}"

        def step() -> str | None:
            helmchart = self.api.helmchart(chart_ns, chart)
            self.helmchart = helmchart
            if helmchart is None:
                self.note("job", f"{label}: not there yet (k3s applies the manifest it finds in "
                          "/var/lib/rancher/k3s/server/manifests/)")  # fmt: skip
                return None
            target = str(st.get(helmchart, "spec", "targetNamespace") or chart_ns)
            if target != namespace:
                raise BadInput(
                    f"{label} installs into namespace {target!r}, not {namespace!r}",
                    fix=f"wait for namespace {target} (--namespace {target})",
                )
            failure = st.helmchart_failure(helmchart)
            name = st.get(helmchart, "status", "jobName")
            if failure is not None:
                raise self._job_failed(chart_ns, chart, str(name or f"helm-install-{chart}"),
                                       f"failed: helm-controller marks {label} Failed: {failure}")  # fmt: skip
            if not isinstance(name, str) or not name:
                self.note("job", f"{label}: waiting for helm-controller to start its install Job")
                return None
            self.job_name = name
            job = self.api.job(chart_ns, name)
            self.job_seen = job
            if job is None:
                self.note("job", f"Job {chart_ns}/{name}: not created yet")
                return None
            created = _timestamp(st.get(job, "metadata", "creationTimestamp"))
            if not_before is not None and created is not None and created < not_before:
                self.note("job", f"Job {chart_ns}/{name}: from an earlier release (created "
                          f"{created:%H:%M:%S}); waiting for helm-controller to recreate it")  # fmt: skip
                return None
            verdict = st.job_verdict(job)
            if verdict.state == st.FAILED:
                raise self._job_failed(chart_ns, chart, name, verdict.summary)
            self.note("job", f"Job {chart_ns}/{name}: {verdict.summary}")
            if verdict.state == st.SUCCEEDED:
                return name
            stuck = self.stuck(st.pod_problems(self.api.pods(chart_ns, f"job-name={name}")))
            if stuck:
                raise self._pods_stuck("Job", chart_ns, name, job, stuck)
            return None

        name = self.until(step)
        if name is None:
            raise self._job_timeout(chart_ns, chart)
        return name, self.elapsed()

    def _job_failed(self, chart_ns: str, chart: str, name: str, why: str) -> RolloutFailed:
        job = self._read(lambda: self.api.job(chart_ns, name))
        pods = self._read(lambda: self.api.pods(chart_ns, f"job-name={name}")) or []
        reports = [self._report("HelmChart", chart_ns, chart, self.helmchart, "failed")]
        details = tuple(st.terminations(pods))
        reports.append(self._report("Job", chart_ns, name, job, "failed", details=details))
        return RolloutFailed(
            f"the install of chart {chart} {why}",
            where=f"Job {chart_ns}/{name}",
            fix=f"helm's own output: kubectl -n {chart_ns} logs job/{name}; fix the chart "
            "version or the values in the rendered HelmChart and deploy again (with "
            "failurePolicy: abort, helm-controller leaves the release as it is)",
            objects=reports,
        )

    def _job_timeout(self, chart_ns: str, chart: str) -> RolloutTimeout:
        helmchart, name = self.helmchart, self.job_name
        reports = [self._report("HelmChart", chart_ns, chart, helmchart,
                                "found" if helmchart else "not found")]  # fmt: skip
        if name:
            job = self.job_seen
            state = st.job_verdict(job).summary if job else "not created"
            pods = self._read(lambda: self.api.pods(chart_ns, f"job-name={name}")) or []
            details = tuple(p.line() for p in st.pod_problems(pods))
            reports.append(self._report("Job", chart_ns, name, job, state, details=details))
        waiting_for = (
            f"Job {chart_ns}/{name}" if name else f"the install Job of HelmChart {chart_ns}/{chart}"
        )
        fix = (
            "raise --timeout if the cluster is slow (a first image pull can take minutes); "
            f"kubectl -n {chart_ns} describe job/{name} and its logs say what it does"
            if name
            else f"check the manifest of HelmChart {chart} is in /var/lib/rancher/k3s/server/"
            "manifests/ on a k3s server (its name is the HelmChart's), and that k3s's "
            "helm-controller runs (k3s started without --disable-helm-controller)"
        )
        return RolloutTimeout(f"{waiting_for} did not succeed within {self.timeout:g} s",
                              where=f"HelmChart {chart_ns}/{chart}", fix=fix, objects=reports)  # fmt: skip

    # -- the Deployments ----------------------------------------------------------------------

    def release_deployments(self, namespace: str, chart: str) -> list[str]:
        """The Deployments Helm installed for the release (labelled with its name)."""
        selector = f"{INSTANCE_LABEL}={chart}"
        found = self.until(lambda: self.api.deployments(namespace, selector) or [])
        if found is None:
            raise RolloutTimeout(f"could not list the Deployments of {namespace} within "
                                 f"{self.timeout:g} s", where=f"namespace {namespace}",
                                 fix="raise --timeout")  # fmt: skip
        names = sorted(str(st.get(d, "metadata", "name")) for d in found)
        if not names:
            raise RolloutFailed(
                f"no Deployment is labelled {selector}: nothing of release {chart} to wait for",
                where=f"namespace {namespace}",
                fix="name the Deployments to wait for (--deployment NAME, repeatable), or check "
                "--namespace and --chart",
            )
        self.note("deployments", f"waiting for the Deployments of {chart}: {', '.join(names)}")
        return names

    def deployments(self, namespace: str, names: Sequence[str]) -> list[DeploymentRollout]:
        pending = list(dict.fromkeys(names))
        done: dict[str, DeploymentRollout] = {}

        def step() -> bool | None:
            for name in list(pending):
                deployment = self.api.deployment(namespace, name)
                if deployment is None:
                    raise self._missing(namespace, name)
                self.deployment_seen[name] = deployment
                verdict = st.deployment_verdict(deployment)
                if verdict.state == st.FAILED:
                    raise self._deployment_failed(namespace, name, deployment, verdict.summary)
                self.note(f"deployment/{name}", f"Deployment {namespace}/{name}: {verdict.summary}")
                if verdict.state == st.SUCCEEDED:
                    replicas = st.as_int(st.get(deployment, "status", "availableReplicas"))
                    done[name] = DeploymentRollout(name, replicas, round(self.elapsed(), 2))
                    pending.remove(name)
                    continue
                selector = st.match_labels(deployment)
                if selector:
                    stuck = self.stuck(st.pod_problems(self.api.pods(namespace, selector)))
                    if stuck:
                        raise self._pods_stuck("Deployment", namespace, name, deployment, stuck)
            return True if not pending else None

        if self.until(step) is None:
            reports = [
                self._deployment_report(namespace, name, "not available") for name in pending
            ]
            raise RolloutTimeout(
                f"{len(pending)} Deployment(s) not available within {self.timeout:g} s: "
                f"{', '.join(pending)}",
                where=f"namespace {namespace}",
                fix="raise --timeout if pods are still pulling images or starting; else "
                f"kubectl -n {namespace} describe deployment/NAME and kubectl -n {namespace} "
                "logs deployment/NAME say why",
                objects=reports,
            )
        return [done[name] for name in dict.fromkeys(names)]

    def _missing(self, namespace: str, name: str) -> RolloutFailed:
        there = self._read(lambda: self.api.deployments(namespace, "")) or []
        names = sorted(str(st.get(d, "metadata", "name")) for d in there)
        return RolloutFailed(
            "does not exist, though the chart's install succeeded",
            where=f"Deployment {namespace}/{name}",
            fix=f"the Deployments in {namespace}: {', '.join(names) or 'none'}; check --deployment",
        )

    def _deployment_failed(self, namespace: str, name: str, deployment: Json,
                           summary: str) -> RolloutFailed:  # fmt: skip
        report = self._deployment_report(namespace, name, summary, deployment)
        return RolloutFailed(
            f"failed to roll out: {summary}",
            where=f"Deployment {namespace}/{name}",
            fix=f"kubectl -n {namespace} describe deployment/{name} and kubectl -n {namespace} "
            f"logs deployment/{name} say why; to go back, deploy the previous release again",
            objects=[report],
        )

    def _deployment_report(self, namespace: str, name: str, state: str,
                           deployment: Json | None = None) -> ObjectReport:  # fmt: skip
        deployment = deployment or self.deployment_seen.get(name)
        details: list[str] = []
        if deployment is not None:
            replica_set = st.replica_set_named(deployment)
            if replica_set:
                events = self._events(namespace, "ReplicaSet", replica_set)
                details += [f"ReplicaSet {replica_set} events:", *(f"  {e}" for e in events)] \
                    if events else []  # fmt: skip
            selector = st.match_labels(deployment)
            pods = self._read(lambda: self.api.pods(namespace, selector)) if selector else None
            for problem in st.pod_problems(pods or []):
                details.append(problem.line())
                details += [f"  {e}" for e in self._events(namespace, "Pod", problem.pod)]
        return self._report("Deployment", namespace, name, deployment, state,
                            details=tuple(details))  # fmt: skip

    # -- stuck pods -----------------------------------------------------------------------------

    def _pods_stuck(self, kind: str, namespace: str, name: str, owner: Json,
                    stuck: list[st.PodProblem]) -> RolloutFailed:  # fmt: skip
        details: list[str] = []
        for problem in stuck:
            details.append(problem.line())
            details += [f"  {e}" for e in self._events(namespace, "Pod", problem.pod)]
        reasons = {p.reason for p in stuck}
        report = self._report(kind, namespace, name, owner, "pods stuck", details=tuple(details))
        return RolloutFailed(
            f"pod(s) stuck in {', '.join(sorted(reasons))}",
            where=f"{kind} {namespace}/{name}",
            fix=_stuck_fix(reasons, namespace, stuck[0]),
            objects=[report],
        )

    # -- reading for a report -----------------------------------------------------------------

    def _read(self, call: Callable[[], T]) -> T | None:
        """A read made to explain a failure: its own failure must not hide the first one, and
        all of them together take at most REPORT_SECONDS (past the deadline, on a timeout)."""
        now = time.monotonic()
        if self._report_until is None:
            self._report_until = now + REPORT_SECONDS
        if now >= self._report_until:
            return None
        self.api.budget = max(0.2, min(5.0, self._report_until - now))
        try:
            return call()
        except (Unavailable, ReleaseError):
            return None

    def _events(self, namespace: str, kind: str, name: str) -> list[str]:
        events = self._read(lambda: self.api.events(namespace, kind, name))
        if events is None:
            return ["(the Events could not be read)"]
        return st.event_lines(events, EVENTS_SHOWN)

    def _report(self, kind: str, namespace: str, name: str, obj: Json | None, state: str,
                details: tuple[str, ...] = ()) -> ObjectReport:  # fmt: skip
        return ObjectReport(
            kind=kind, namespace=namespace, name=name, state=state,
            conditions=tuple(st.condition_lines(obj)) if obj else (),
            events=tuple(self._events(namespace, kind, name)) if obj else (),
            details=details,
        )  # fmt: skip


def _stuck_fix(reasons: set[str], namespace: str, first: st.PodProblem) -> str:
    fixes = []
    if reasons & {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"}:
        fixes.append("the image cannot be pulled: check its name and tag exist (e.g. "
                     "ghcr.io/diracgrid/diracx/services:vX.Y.Z, for the nodes' architecture), "
                     "that the nodes reach the registry, or import the air-gap images")  # fmt: skip
    if "CrashLoopBackOff" in reasons or reasons & {"RunContainerError", "CreateContainerError"}:
        fixes.append(f"the container exits: kubectl -n {namespace} logs {first.pod} -c "
                     f"{first.container} --previous says why")  # fmt: skip
    if "CreateContainerConfigError" in reasons:
        fixes.append("a Secret or ConfigMap the pod needs is missing: create the Secrets the "
                     "chart expects (from the vault) before deploying")  # fmt: skip
    return "\n".join(fixes)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


__all__ = [
    "DeploymentRollout",
    "ObjectReport",
    "RolloutFailed",
    "RolloutResult",
    "RolloutTimeout",
    "wait_for_rollout",
]
