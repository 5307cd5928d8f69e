"""The bounded wait for DiracX's rollout on k3s, against a fake Kubernetes API on the loopback.

The official `kubernetes` client talks HTTP to `tests/k8s_fake.py`, which answers the
documented JSON shapes scripted over time (a Job active then succeeded, a Deployment
progressing then Available, failure shapes). Waits poll every 20 ms with bounds of a few
seconds at most: the whole module runs in a few seconds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client.api.core_v1_api  # noqa: F401 (2 s to import: once, not in a timing)
import pytest

from release.cli import main
from release.credentials import forget_all
from release.errors import BadInput, InfrastructureError
from release.k3s import status as st
from release.k3s.rollout import RolloutFailed, RolloutResult, RolloutTimeout, wait_for_rollout
from tests import k8s_fake as kf

LABELS = {"app.kubernetes.io/name": "diracx", "app.kubernetes.io/instance": "diracx"}
JOB_DONE = kf.job(succeeded=1, conditions=[kf.condition("Complete", "True")])


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    forget_all()


@pytest.fixture
def kube() -> Iterator[kf.FakeKube]:
    with kf.FakeKube() as fake:
        yield fake


@pytest.fixture
def kubeconfig(kube: kf.FakeKube, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "k3s.yaml")


def wait(kubeconfig: Path, **options: Any) -> RolloutResult:
    settings: dict[str, Any] = {"namespace": "diracx", "chart": "diracx", "timeout": 5.0,
                                "interval": 0.02, "stuck_after": 0.0}  # fmt: skip
    settings.update(options)
    return wait_for_rollout(kubeconfig, **settings)


def installed(kube: kf.FakeKube) -> None:
    """A chart whose install Job already succeeded."""
    kube.put(kf.helmchart())
    kube.put(JOB_DONE)


# -- success ----------------------------------------------------------------------------------


def test_waits_for_the_job_then_the_deployments(kube: kf.FakeKube, kubeconfig: Path) -> None:
    kube.put([(0.0, kf.helmchart(job=None)), (0.1, kf.helmchart())])
    kube.put([(0.0, None), (0.15, kf.job(active=1)), (0.3, JOB_DONE)])
    kube.put([(0.0, None), (0.25, kf.progressing()), (0.5, kf.available())])
    kube.put([(0.0, None), (0.25, kf.progressing("diracx-web")), (0.6, kf.available("diracx-web"))])
    said: list[str] = []
    started = time.monotonic()
    result = wait(kubeconfig, progress=said.append)
    assert time.monotonic() - started < 3
    assert result.job == "helm-install-diracx"
    assert 0.3 <= result.job_seconds < result.seconds
    assert [(d.name, d.replicas) for d in result.deployments] == [("diracx", 1), ("diracx-web", 1)]
    assert result.deployments[1].seconds >= 0.6
    text = "\n".join(said)
    assert "waiting for helm-controller to start its install Job" in text
    assert "Job kube-system/helm-install-diracx: running (1 active)" in text
    assert "Deployment diracx/diracx-web: available (1/1)" in text
    assert len(said) == len(set(said))  # a line per change, not per poll
    assert all(r.authorized for r in kube.requests)
    # The deployments were found by Helm's release label, in the target namespace.
    listing = [r for r in kube.requests if r.path == "/apis/apps/v1/namespaces/diracx/deployments"]
    assert listing[0].query["labelSelector"] == ["app.kubernetes.io/instance=diracx"]


def test_named_deployments_are_the_only_ones_waited_for(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    installed(kube)
    kube.put(kf.available("diracx"))
    kube.put(kf.progressing("diracx-web"))  # never ready: not asked for
    result = wait(kubeconfig, deployments=["diracx"])
    assert [d.name for d in result.deployments] == ["diracx"]
    assert kube.count("/deployments/diracx-web") == 0


def test_a_deployment_scaled_to_zero_is_rolled_out(kube: kf.FakeKube, kubeconfig: Path) -> None:
    installed(kube)
    kube.put(kf.deployment("diracx", replicas=0, conditions=[]))
    assert wait(kubeconfig).deployments[0].replicas == 0


# -- failures, with conditions and events -----------------------------------------------------


def test_a_failed_install_job_shows_its_conditions_events_and_pod(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    kube.put(kf.helmchart())
    failed = kf.job(failed=1, conditions=[kf.condition(
        "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")])  # fmt: skip
    kube.put([(0.0, kf.job(active=1)), (0.1, failed)])
    kube.put(kf.pod("helm-install-diracx-x7k2p", "kube-system",
                    labels={"job-name": "helm-install-diracx"}, container="helm",
                    terminated=(1, "Error", "Error: INSTALLATION FAILED: chart \"diracx\" "
                                "version \"9.9.9\" not found")))  # fmt: skip
    kube.put(kf.event("kube-system", "Job", "helm-install-diracx", "BackoffLimitExceeded",
                      "Job has reached the specified backoff limit",
                      component="job-controller"))  # fmt: skip
    kube.put(kf.event("kube-system", "Pod", "unrelated", "Noise", "must not be shown"))
    with pytest.raises(RolloutFailed) as caught:
        wait(kubeconfig)
    error = caught.value
    assert error.exit_code == 1
    assert error.where == "Job kube-system/helm-install-diracx"
    assert (
        "Failed=True BackoffLimitExceeded: Job has reached the specified backoff limit"
        in error.message
    )
    assert (
        "Warning BackoffLimitExceeded: Job has reached the specified backoff limit" in error.message
    )
    assert (
        'exit 1 (Error): Error: INSTALLATION FAILED: chart "diracx" version "9.9.9"'
        in error.message
    )
    assert "must not be shown" not in error.message
    assert "kubectl -n kube-system logs job/helm-install-diracx" in (error.fix or "")
    events = [r for r in kube.requests if r.path == "/api/v1/namespaces/kube-system/events"]
    assert {"involvedObject.kind=Job,involvedObject.name=helm-install-diracx"} <= {
        r.query["fieldSelector"][0] for r in events
    }
    assert [o["kind"] for o in error.as_dict()["objects"]] == ["HelmChart", "Job"]  # type: ignore[index]


def test_the_first_failed_install_attempt_ends_the_wait(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    """helm-controller's Job retries up to backoffLimit 1000: failed ≥ 1 is already a failure."""
    kube.put(kf.helmchart())
    kube.put(kf.job(active=1, failed=1))
    with pytest.raises(RolloutFailed, match="1 pod\\(s\\) of the install failed"):
        wait(kubeconfig)


def test_a_helmchart_marked_failed_ends_the_wait(kube: kf.FakeKube, kubeconfig: Path) -> None:
    kube.put(kf.helmchart(conditions=[kf.condition("JobCreated", "True"), kf.condition(
        "Failed", "True", "Error", "Job failed: BackoffLimitExceeded")]))  # fmt: skip
    kube.put(kf.job(active=1))
    with pytest.raises(RolloutFailed, match="helm-controller marks HelmChart kube-system/diracx "
                       "Failed: Job failed: BackoffLimitExceeded"):  # fmt: skip
        wait(kubeconfig)


def test_progress_deadline_exceeded_shows_conditions_and_events(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    installed(kube)
    stalled = kf.deployment("diracx", updated=1, conditions=[
        kf.condition("Available", "False", "MinimumReplicasUnavailable",
                     "Deployment does not have minimum availability."),
        kf.condition("Progressing", "False", "ProgressDeadlineExceeded",
                     'ReplicaSet "diracx-5d8f7c9b6" has timed out progressing.'),
    ])  # fmt: skip
    kube.put([(0.0, kf.progressing()), (0.1, stalled)])
    kube.put(kf.event("diracx", "Deployment", "diracx", "ScalingReplicaSet",
                      "Scaled up replica set diracx-5d8f7c9b6 to 1", type_="Normal",
                      component="deployment-controller"))  # fmt: skip
    kube.put(kf.event("diracx", "ReplicaSet", "diracx-5d8f7c9b6", "FailedCreate",
                      'Error creating: pods "diracx-5d8f7c9b6-abcde" is forbidden: exceeded '
                      "quota: compute", count=7, component="replicaset-controller"))  # fmt: skip
    with pytest.raises(RolloutFailed) as caught:
        wait(kubeconfig)
    message = caught.value.message
    assert caught.value.where == "Deployment diracx/diracx"
    assert message.startswith("failed to roll out: Progressing=False (ProgressDeadlineExceeded)")
    assert "Available=False MinimumReplicasUnavailable" in message
    assert "Progressing=False ProgressDeadlineExceeded: ReplicaSet" in message
    assert "Normal ScalingReplicaSet: Scaled up replica set diracx-5d8f7c9b6 to 1" in message
    assert "ReplicaSet diracx-5d8f7c9b6 events:" in message
    assert "exceeded quota: compute (x7)" in message
    assert "kubectl -n diracx describe deployment/diracx" in (caught.value.fix or "")


def test_image_pull_backoff_is_shown_with_the_pods_events(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    installed(kube)
    kube.put(kf.progressing())
    image = "ghcr.io/diracgrid/diracx/services:v0.7.99"
    kube.put(kf.pod("diracx-7c9f8d6b5-q2x4z", labels=LABELS,
                    waiting=("ImagePullBackOff", f'Back-off pulling image "{image}"')))  # fmt: skip
    kube.put(kf.event("diracx", "Pod", "diracx-7c9f8d6b5-q2x4z", "Failed",
                      f'Failed to pull image "{image}": rpc error: code = NotFound desc = '
                      f"failed to pull and unpack image \"{image}\": not found", count=3))  # fmt: skip
    kube.put(kf.event("diracx", "Pod", "diracx-7c9f8d6b5-q2x4z", "BackOff",
                      f'Back-off pulling image "{image}"', type_="Normal", count=12,
                      at="2026-12-01T10:02:00Z"))  # fmt: skip
    with pytest.raises(RolloutFailed) as caught:
        wait(kubeconfig)
    error = caught.value
    assert error.exit_code == 1
    assert "pod(s) stuck in ImagePullBackOff" in error.message
    assert f'container diracx: ImagePullBackOff: Back-off pulling image "{image}"' in error.message
    lines = error.message.splitlines()
    failed = next(
        i for i, line in enumerate(lines) if "Warning Failed: Failed to pull image" in line
    )
    backoff = next(i for i, line in enumerate(lines) if "Normal BackOff" in line)
    assert failed < backoff  # oldest first
    assert "(x12)" in lines[backoff]
    assert "the image cannot be pulled" in (error.fix or "")


def test_a_crash_loop_gets_stuck_after_seconds_to_recover(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    """A DiracX pod may crash-loop while its database starts: that is not yet a failure."""
    installed(kube)
    kube.put([(0.0, kf.progressing()), (0.3, kf.available())])
    crashing = kf.pod("diracx-7c9f8d6b5-q2x4z", labels=LABELS,
                      waiting=("CrashLoopBackOff", "back-off 10s restarting failed container"))  # fmt: skip
    kube.put([(0.0, crashing), (0.3, kf.pod("diracx-7c9f8d6b5-q2x4z", labels=LABELS))])
    assert wait(kubeconfig, stuck_after=2.0).deployments[0].name == "diracx"


def test_a_crash_loop_that_lasts_fails_with_the_logs_hint(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    installed(kube)
    kube.put(kf.progressing())
    kube.put(kf.pod("diracx-7c9f8d6b5-q2x4z", labels=LABELS,
                    waiting=("CrashLoopBackOff", "back-off 40s restarting failed container")))  # fmt: skip
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as caught:
        wait(kubeconfig, stuck_after=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert "logs diracx-7c9f8d6b5-q2x4z -c diracx --previous" in (caught.value.fix or "")


def test_a_stuck_install_pod_fails_the_job_wait(kube: kf.FakeKube, kubeconfig: Path) -> None:
    """Air-gapped k3s without the klipper-helm image: the install Job never starts."""
    kube.put(kf.helmchart())
    kube.put(kf.job(active=1))
    kube.put(kf.pod("helm-install-diracx-x7k2p", "kube-system",
                    labels={"job-name": "helm-install-diracx"}, container="helm",
                    waiting=("ErrImagePull", "failed to pull rancher/klipper-helm:v0.9.3")))  # fmt: skip
    with pytest.raises(RolloutFailed, match=r"pod\(s\) stuck in ErrImagePull") as caught:
        wait(kubeconfig)
    assert caught.value.where == "Job kube-system/helm-install-diracx"
    assert "failed to pull rancher/klipper-helm:v0.9.3" in caught.value.render()


# -- bounds --------------------------------------------------------------------------------


def test_the_timeout_bounds_the_wait_and_says_what_was_pending(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    installed(kube)
    kube.put(kf.available("diracx"))
    kube.put(kf.progressing("diracx-web"))
    kube.put(kf.event("diracx", "Deployment", "diracx-web", "ScalingReplicaSet",
                      "Scaled up replica set diracx-web-7c9f8d6b5 to 1", type_="Normal"))  # fmt: skip
    started = time.monotonic()
    with pytest.raises(RolloutTimeout) as caught:
        wait(kubeconfig, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5
    error = caught.value
    assert error.exit_code == 1
    assert "1 Deployment(s) not available within 0.5 s: diracx-web" in error.message
    assert "Deployment diracx/diracx-web: not available" in error.message
    assert "Available=False MinimumReplicasUnavailable" in error.message
    assert "Scaled up replica set diracx-web-7c9f8d6b5 to 1" in error.message
    assert "Deployment diracx/diracx:" not in error.message  # the available one is not blamed


def test_a_missing_helmchart_times_out_with_where_to_look(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    with pytest.raises(RolloutTimeout) as caught:
        wait(kubeconfig, timeout=0.3)
    assert "HelmChart kube-system/diracx: not found" in caught.value.message
    assert "/var/lib/rancher/k3s/server/manifests/" in (caught.value.fix or "")


def test_an_earlier_releases_job_is_not_taken_for_this_one(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    kube.put(kf.helmchart())
    old = kf.job(succeeded=1, created="2026-12-01T10:00:00Z")
    new = "2026-12-01T11:00:00Z"
    kube.put(
        [(0.0, old), (0.2, kf.job(active=1, created=new)), (0.4, kf.job(succeeded=1, created=new))]
    )
    kube.put(kf.available())
    said: list[str] = []
    result = wait(
        kubeconfig, not_before=datetime(2026, 12, 1, 10, 30, tzinfo=UTC), progress=said.append
    )
    assert result.job_seconds >= 0.4
    assert any("from an earlier release" in line for line in said)


def test_a_short_outage_is_ridden_out(kube: kf.FakeKube, kubeconfig: Path) -> None:
    installed(kube)
    kube.outages.append((0.05, 0.3))
    kube.put([(0.0, kf.progressing()), (0.4, kf.available())])
    said: list[str] = []
    assert wait(kubeconfig, grace=5.0, progress=said.append).deployments
    assert any("did not answer" in line and "503" in line for line in said)


def test_an_outage_longer_than_the_grace_is_an_infrastructure_error(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    installed(kube)
    kube.outages.append((0.05, 60.0))
    kube.put(kf.progressing())
    with pytest.raises(InfrastructureError, match="no answer for"):
        wait(kubeconfig, grace=0.3)


# -- access ----------------------------------------------------------------------------------


def test_a_wrong_token_is_401_exit_3_and_never_printed(kube: kf.FakeKube, tmp_path: Path) -> None:
    wrong = "not-the-right-token-abcdefghijklmnop"
    config = kube.write_kubeconfig(tmp_path / "k3s.yaml", token=wrong)
    with pytest.raises(InfrastructureError) as caught:
        wait(config)
    error = caught.value
    assert error.exit_code == 3
    assert "401 Unauthorized" in error.message
    assert "k3s.yaml" in (error.fix or "")
    text = error.render() + json.dumps(error.as_dict())
    assert wrong not in text and kube.token not in text
    assert kube.requests and not kube.requests[0].authorized


def test_forbidden_names_the_rbac_to_grant(kube: kf.FakeKube, kubeconfig: Path) -> None:
    kube.forbidden.add("helmcharts")
    with pytest.raises(InfrastructureError) as caught:
        wait(kubeconfig)
    assert "403 Forbidden" in caught.value.message
    assert 'cannot get resource "helmcharts"' in caught.value.message  # the API's own words
    assert "grant" in (caught.value.fix or "")


def test_an_unreachable_server_fails_at_once_with_exit_3(tmp_path: Path) -> None:
    with kf.FakeKube() as fake:
        config = fake.write_kubeconfig(
            tmp_path / "k3s.yaml", server=f"http://127.0.0.1:{kf.free_port()}"
        )
    started = time.monotonic()
    with pytest.raises(InfrastructureError) as caught:
        wait(config, timeout=30.0)
    assert time.monotonic() - started < 3  # no grace before a first answer
    assert caught.value.exit_code == 3
    assert "cannot reach the Kubernetes API server" in caught.value.message
    assert "Connection refused" in caught.value.message
    assert "6443" in (caught.value.fix or "")


# -- bad input ---------------------------------------------------------------------------------


def _bad_kubeconfigs(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    import yaml

    data = yaml.safe_load(good.read_text())
    cases: dict[str, tuple[Path, str]] = {
        "missing": (tmp_path / "nope.yaml", "does not exist"),
        "directory": (tmp_path, "is not a regular file"),
        "colon": (tmp_path / "a:b.yaml", "list of files"),
    }
    token = data["users"][0]["user"]["token"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"users:\n- name: x\n  user: {{token: {token}\n  oops: [\n")
    cases["not yaml"] = (broken, "is not valid YAML at line")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    cases["not a mapping"] = (scalar, "not a YAML mapping")

    def variant(name: str, change: Any) -> Path:
        copy = json.loads(json.dumps(data))
        change(copy)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(copy))
        return path

    cases["no current context"] = (variant("nocontext", lambda d: d.pop("current-context")),
                                   "no current-context")  # fmt: skip
    cases["unknown cluster"] = (
        variant("cluster", lambda d: d["contexts"][0]["context"].update(cluster="elsewhere")),
        "names cluster 'elsewhere', which is not in clusters",
    )
    cases["server not a URL"] = (
        variant("server", lambda d: d["clusters"][0]["cluster"].update(server="cctbdirac01:6443")),
        "has no server: https://HOST:PORT",
    )
    return cases


def test_bad_kubeconfigs_are_bad_input_without_secrets(kubeconfig: Path, tmp_path: Path,
                                                       kube: kf.FakeKube) -> None:  # fmt: skip
    (tmp_path / "bad").mkdir()
    for name, (path, expected) in _bad_kubeconfigs(tmp_path / "bad", kubeconfig).items():
        with pytest.raises(BadInput) as caught:
            wait(path)
        assert caught.value.exit_code == 2, name
        assert expected in caught.value.render(), name
        assert kube.token not in caught.value.render(), name
    assert kube.requests == []  # nothing was asked of the server


def test_the_namespace_must_be_the_charts_target(kube: kf.FakeKube, kubeconfig: Path) -> None:
    kube.put(kf.helmchart(target="diracx-cert"))
    with pytest.raises(BadInput, match="installs into namespace 'diracx-cert', not 'diracx'"):
        wait(kubeconfig)


@pytest.mark.parametrize(
    "options",
    [
        {"namespace": "DiracX"},
        {"chart": "dirac_x"},
        {"deployments": ["a b"]},
        {"timeout": 0.0},
        {"timeout": float("inf")},
        {"not_before": datetime(2026, 1, 1)},
    ],
)
def test_bad_arguments_are_bad_input(kubeconfig: Path, options: dict[str, Any]) -> None:
    with pytest.raises(BadInput):
        wait(kubeconfig, **options)


def test_no_deployment_of_the_release_is_a_failure(kube: kf.FakeKube, kubeconfig: Path) -> None:
    installed(kube)
    kube.put(kf.available("other", release="something-else"))
    with pytest.raises(RolloutFailed, match=r"labelled app\.kubernetes\.io/instance=diracx"):
        wait(kubeconfig)


def test_a_named_deployment_that_is_not_there_lists_those_that_are(
    kube: kf.FakeKube, kubeconfig: Path
) -> None:
    installed(kube)
    kube.put(kf.available("diracx"))
    with pytest.raises(RolloutFailed) as caught:
        wait(kubeconfig, deployments=["diracx-servics"])
    assert "the Deployments in diracx: diracx;" in (caught.value.fix or "")


# -- the command line --------------------------------------------------------------------------


def _cli(kubeconfig: Path, *extra: str) -> list[str]:
    return ["k3s", "wait", "--kubeconfig", str(kubeconfig), "--namespace", "diracx",
            "--chart", "diracx", "--timeout", "5", *extra]  # fmt: skip


def test_cli_success_as_json(kube: kf.FakeKube, kubeconfig: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    installed(kube)
    kube.put(kf.available())
    assert main([*_cli(kubeconfig), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["job"] == "helm-install-diracx"
    assert data["deployments"][0]["name"] == "diracx"


def test_cli_table_and_progress(kube: kf.FakeKube, kubeconfig: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    installed(kube)
    kube.put(kf.available())
    assert main(_cli(kubeconfig, "--deployment", "diracx")) == 0
    out, err = capsys.readouterr()
    assert "Deployment diracx/diracx" in out and "available (1)" in out
    assert "k3s: Job kube-system/helm-install-diracx: succeeded" in err


def test_cli_exit_codes_and_no_token_anywhere(kube: kf.FakeKube, kubeconfig: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # exit 2: a kubeconfig that is not there
    assert main(_cli(tmp_path / "missing.yaml")) == 2
    assert "error: kubeconfig" in capsys.readouterr().err
    # exit 3: the credentials refused
    wrong = "wrong-bearer-token-0123456789abcdef"
    refused = kube.write_kubeconfig(tmp_path / "wrong.yaml", token=wrong)
    assert main([*_cli(refused), "--json"]) == 3
    out, err = capsys.readouterr()
    assert json.loads(out)["exit_code"] == 3
    assert wrong not in out + err and kube.token not in out + err
    # exit 1: ImagePullBackOff, with the pod's events on stderr
    installed(kube)
    kube.put(kf.progressing())
    kube.put(kf.pod("diracx-7c9f8d6b5-q2x4z", labels=LABELS,
                    waiting=("ImagePullBackOff", 'Back-off pulling image "x"')))  # fmt: skip
    kube.put(kf.event("diracx", "Pod", "diracx-7c9f8d6b5-q2x4z", "Failed", "Failed to pull image"))
    # stuck_after is 60 s from the command line: script a pod stuck long enough instead.
    import release.k3s.rollout as rollout

    original = rollout._Wait.stuck
    try:
        rollout._Wait.stuck = lambda self, problems: list(problems)  # type: ignore[method-assign]
        assert main(_cli(kubeconfig)) == 1
    finally:
        rollout._Wait.stuck = original  # type: ignore[method-assign]
    out, err = capsys.readouterr()
    assert "ImagePullBackOff" in err and "Warning Failed: Failed to pull image" in err
    assert kube.token not in out + err


def test_the_command_line_does_not_import_kubernetes_at_start() -> None:
    import subprocess
    import sys

    code = (
        "import sys, release.cli; print(any(m.split('.')[0] == 'kubernetes' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the fake answers like the API ---------------------------------------------------------------


def test_the_fake_answers_errors_as_status_objects(kube: kf.FakeKube) -> None:
    def get(path: str, token: str | None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(kube.url + path)  # noqa: S310 (http on the loopback)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    code, body = get("/apis/batch/v1/namespaces/kube-system/jobs/helm-install-diracx", kube.token)
    assert code == 404
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'jobs.batch "helm-install-diracx" not found', "reason": "NotFound",
                    "details": {"name": "helm-install-diracx", "group": "batch", "kind": "jobs"},
                    "code": 404}  # fmt: skip
    assert get("/api/v1/namespaces/diracx/pods", None)[1]["reason"] == "Unauthorized"
    code, body = get("/api/v1/namespaces/diracx/pods?watch=true", kube.token)
    assert (code, body["reason"]) == (400, "BadRequest")
    code, body = get("/api/v1/namespaces/diracx/pods?labelSelector=a%20in%20(b)", kube.token)
    assert (code, body["reason"]) == (400, "BadRequest")
    kube.put(kf.pod("p", labels={"a": "b"}))
    code, body = get("/api/v1/namespaces/diracx/pods?labelSelector=a%3Db", kube.token)
    assert (code, body["kind"], [i["metadata"]["name"] for i in body["items"]]) == (
        200,
        "PodList",
        ["p"],
    )
    assert "kind" not in body["items"][0] and body["metadata"]["resourceVersion"]


# -- what the JSON says (pure) ---------------------------------------------------------------------


def test_deployment_verdicts_follow_the_rollout_rules() -> None:
    assert st.deployment_verdict(kf.available()).state == st.SUCCEEDED
    unseen = kf.available()
    unseen["metadata"]["generation"] = 3  # the controller has not seen the new spec
    assert "not seen generation 3" in st.deployment_verdict(unseen).summary
    old_left = kf.deployment(replicas=2, updated=2, available=2, total=3,
                             conditions=[kf.condition("Available", "True")])  # fmt: skip
    assert "1 old replica(s) terminating" in st.deployment_verdict(old_left).summary
    no_condition = kf.deployment(replicas=1, updated=1, available=1, conditions=[])
    assert st.deployment_verdict(no_condition).state == st.WAITING
    quota = kf.deployment(
        conditions=[kf.condition("ReplicaFailure", "True", "FailedCreate", "quota")]
    )
    assert st.deployment_verdict(quota).state == st.FAILED


def test_job_verdicts_and_event_order() -> None:
    assert st.job_verdict(kf.job(active=1)).summary == "running (1 active)"
    assert st.job_verdict(kf.job()).summary == "pending"
    assert (
        st.job_verdict(kf.job(conditions=[kf.condition("Complete", "True")])).state == st.SUCCEEDED
    )
    events = [kf.event("ns", "Pod", "p", f"R{i}", f"m{i}", at=f"2026-12-01T10:0{9 - i}:00Z")
              for i in range(10)]  # fmt: skip
    lines = st.event_lines(events, limit=3)
    assert [line.split()[2] for line in lines] == ["R2:", "R1:", "R0:"]  # newest 3, oldest first
