"""A k3s environment's deploy, the parts that decide without hosts: which deploy runs, which
version a rollback goes to, and what a failed rollout's exit code and message are. The whole
chain runs on a lab host in tests/lab/test_k3s_deploy.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from release.config import load_config
from release.deploy import check_outcome, deploy_environment
from release.deploy.k3s import previous_version
from release.errors import CheckFailed, InfrastructureError
from tests.publishing import write_config

K3S_ENV = """
[environments.certification]
product = "vodemo"
runtime = "k3s"
hosts = { cctbk3s01 = "" }

[environments.certification.k3s]
chart = { version = "1.1.6" }
hostname = "diracx.example.org"

[environments.runit]
product = "vodemo"
hosts = { cctbdirac01 = "" }
"""


def _config(tmp_path: Path) -> Any:
    return load_config(write_config(tmp_path, extra=K3S_ENV), environ={})


def test_each_runtime_gets_its_own_deploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import release.deploy as deploy
    import release.deploy.k3s as k3s

    calls: list[tuple[str, dict[str, Any]]] = []

    def recorder(kind: str) -> Any:
        def record(config: Any, **kw: Any) -> dict[str, Any]:
            calls.append((kind, kw))
            return {}

        return record

    monkeypatch.setattr(k3s, "deploy_k3s", recorder("k3s"))
    monkeypatch.setattr(deploy, "run_playbook", recorder("ansible"))
    config = _config(tmp_path)
    deploy_environment(config, env_name="certification", version="v1.0.0", install=True)
    deploy_environment(config, env_name="runit", version="v1.0.0", install=True)
    deploy_environment(config, env_name="runit", version="v1.0.0")
    assert [(kind, kw.get("action")) for kind, kw in calls] == [
        ("k3s", None), ("ansible", "install"), ("ansible", "upgrade")]  # fmt: skip


def test_a_rollback_goes_to_the_last_deploy_that_succeeded(tmp_path: Path) -> None:
    config = _config(tmp_path)
    ledger = config.ledger("vodemo", "environments")
    for env, version, code, plan in [
        ("certification", "v1.0.0", 0, False),
        ("runit", "v1.0.5", 0, False),  # another environment's
        ("certification", "v1.0.1", 0, False),
        ("certification", "v1.0.2", 1, False),  # its placement failed
        ("certification", "v1.0.3", 0, True),  # a plan changes nothing
    ]:
        ledger.record("deploy", {"environment": env, "version": version, "exit_code": code,
                                 "plan": plan})  # fmt: skip
    # Placed, but its rollout failed (and was rolled back): not a version to go back to.
    ledger.record("deploy", {"environment": "certification", "version": "v1.0.4", "exit_code": 0,
                             "rollout": {"waited": True, "ok": False}})  # fmt: skip
    assert previous_version(config, "certification", "v1.1.0") == "v1.0.1"
    # Re-deploying the version that runs: the one before it.
    assert previous_version(config, "certification", "v1.0.1") == "v1.0.0"
    assert previous_version(config, "runit", "v1.0.5") is None


def _result(**rollout: Any) -> dict[str, Any]:
    return {"environment": "certification", "version": "v1.1.0", "action": "deploy",
            "runtime": "k3s", "exit_code": 0, "output_tail": "",
            "hosts": [{"host": "cctbk3s01", "result": "placed", "failed": 0}], **rollout}  # fmt: skip


def test_a_failed_rollout_exits_1_and_says_what_the_rollback_did() -> None:
    error = {"message": "Job kube-system/helm-install-diracx failed\n  conditions: Failed",
             "where": "https://k3s:6443", "fix": "see the Job's logs"}  # fmt: skip
    rolled = _result(rollout={"waited": True, "ok": False, "error": error},
                     rollback={"to": "v1.0.1", "result": "rolled back", "ok": True})  # fmt: skip
    with pytest.raises(CheckFailed) as caught:
        check_outcome(rolled)
    assert caught.value.message.startswith(
        "the rollout of v1.1.0 on certification failed (rolled back to v1.0.1)\nJob kube-system/"
    )
    assert caught.value.where == "https://k3s:6443" and caught.value.fix == "see the Job's logs"
    alone = _result(rollout={"waited": True, "ok": False, "error": error},
                    rollback={"to": None, "result": "nothing to roll back to"})  # fmt: skip
    with pytest.raises(CheckFailed, match=r"NOT rolled back: nothing to roll back to"):
        check_outcome(alone)


def test_an_api_server_that_cannot_be_asked_exits_3() -> None:
    error = {"message": "cannot reach https://k3s:6443", "where": None, "fix": "check the address",
             "exit_code": 3}  # fmt: skip
    with pytest.raises(InfrastructureError, match="cannot reach"):
        check_outcome(_result(rollout={"waited": True, "ok": False, "error": error}))


def test_a_rollout_done_or_not_watched_passes() -> None:
    check_outcome(_result(rollout={"waited": True, "ok": True}))
    check_outcome(_result(rollout={"waited": False, "reason": "no kubeconfig"}))


def test_a_rollback_with_nothing_before_is_refused(tmp_path: Path) -> None:
    from release.deploy.k3s import rollback_k3s
    from release.errors import BadInput

    config = _config(tmp_path)
    config.ledger("vodemo", "environments").record(
        "deploy", {"environment": "certification", "version": "v1.0.0", "exit_code": 0}
    )
    with pytest.raises(BadInput, match="no earlier version of certification") as caught:
        rollback_k3s(config, env_name="certification", to=None)
    assert caught.value.fix and "--to" in caught.value.fix
