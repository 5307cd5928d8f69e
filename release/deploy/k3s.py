"""Deploying to an environment that runs DiracX on k3s: place the render, wait, roll back.

k3s installs the chart by itself from the files in its manifests folder, so the hosts need no
upgrade of their own: a deploy renders the environment pinned to the version, lets Ansible
place the manifests (role diracx_k3s), then, when the environment gives a kubeconfig, waits
through the API for helm-controller's install Job and DiracX's Deployments. A rollout that
fails is rolled back the k3s way: the previous version's render is placed again (re-rendered
from release.toml), helm-controller upgrades back, and that rollout is waited for too. The
failed version's objects, conditions and Events are in the error either way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from release.config import ReleaseConfig
from release.config.environments import K3S_EXAMPLE
from release.config.k3s import K3sSettings
from release.errors import BadInput, CheckFailed, InfrastructureError, ReleaseError
from release.version import parse_version_arg

Progress = Callable[[str], None] | None


def _settings(config: ReleaseConfig, env_name: str) -> K3sSettings:
    settings = config.environment(env_name).k3s
    if settings is None:  # refused when release.toml loads; kept for the type checker
        raise BadInput(f"environment {env_name} has no [k3s] table", fix=K3S_EXAMPLE)
    return settings


def _succeeded(config: ReleaseConfig, env_name: str) -> list[str]:
    """The versions of the environment's deploys that succeeded, oldest first."""
    env = config.environment(env_name)
    ledger = config.ledger(config.product(env.product)[0], "environments")
    return [
        str(record["version"])
        for record in ledger.records("deploy")
        if record.get("environment") == env_name
        and record.get("exit_code") == 0
        and (record.get("rollout") or {}).get("ok") is not False
        and not record.get("plan")
        and record.get("version") not in ("previous", None)
    ]


def previous_version(config: ReleaseConfig, env_name: str, tag: str) -> str | None:
    """The version the environment ran before `tag`: its last deploy that succeeded."""
    return next((v for v in reversed(_succeeded(config, env_name)) if v != tag), None)


def rollback_k3s(config: ReleaseConfig, *, env_name: str, to: str | None, plan: bool = False,
                 echo: bool = True, progress: Progress = None) -> dict[str, Any]:  # fmt: skip
    """Roll a k3s environment back: place `to` (default: the version deployed before the one it
    runs now) and wait for it, as a deploy of that version does."""
    if to is None:
        deployed = _succeeded(config, env_name)
        to = previous_version(config, env_name, deployed[-1]) if deployed else None
        if to is None:
            raise BadInput(
                f"no earlier version of {env_name} to roll back to: the environments ledger "
                "holds no earlier deploy that succeeded",
                fix="name the version: dirac-release rollback --env ENV --to vX.Y.Z",
            )
    return deploy_k3s(config, env_name=env_name, version=to, plan=plan, echo=echo,
                      progress=progress, action="rollback")  # fmt: skip


def _wait(config: ReleaseConfig, env_name: str, kubeconfig: Path, not_before: datetime | None,
          progress: Progress) -> dict[str, Any]:  # fmt: skip
    from release.k3s.rollout import wait_for_rollout

    settings = _settings(config, env_name)
    done = wait_for_rollout(
        kubeconfig, namespace=settings.namespace, chart=settings.release,
        timeout=settings.rollout_timeout, not_before=not_before, progress=progress,
    )  # fmt: skip
    return {"waited": True, "ok": True, **done.as_dict()}


def _roll_back(config: ReleaseConfig, env_name: str, previous: str | None, kubeconfig: Path,
               *, echo: bool, progress: Progress, out: Path | None) -> dict[str, Any]:  # fmt: skip
    """Place the previous version's render again and wait for it; never raises for its own
    failure (the caller reports the failed rollout first, then this)."""
    from release.deploy import run_playbook

    if previous is None:
        return {"to": None, "result": f"nothing to roll back to: no earlier deploy of "
                                      f"{env_name} succeeded"}  # fmt: skip
    if progress:
        progress(f"rolling back {env_name} to {previous}: placing its manifests again")
    started = datetime.now(UTC)
    try:
        placed = run_playbook(config, env_name=env_name, version=previous, action="place",
                              echo=echo, out=out)  # fmt: skip
        if placed["exit_code"] != 0:
            return {"to": previous, "result": f"placing {previous}'s manifests failed "
                                              f"(exit {placed['exit_code']})"}  # fmt: skip
        _wait(config, env_name, kubeconfig, started, progress)
    except ReleaseError as exc:
        first = (exc.message.splitlines() or [type(exc).__name__])[0]
        return {"to": previous, "result": f"{previous} placed, but: {first}"}
    return {"to": previous, "result": "rolled back", "ok": True}


def deploy_k3s(
    config: ReleaseConfig,
    *,
    env_name: str,
    version: str,
    plan: bool = False,
    echo: bool = True,
    progress: Progress = None,
    out: Path | None = None,
    action: str = "deploy",
) -> dict[str, Any]:
    """Place `version`'s manifests on the environment's k3s servers and wait for the rollout.

    Returns the hosts' rows (as a runit deploy does) plus `rollout`; `check_outcome` turns a
    failed placement or rollout into the exit code. Recorded in the environments ledger.
    """
    from release.deploy import run_playbook

    tag = parse_version_arg(version).tag
    env = config.environment(env_name)
    settings = _settings(config, env_name)
    kubeconfig = config.resolve_path(settings.kubeconfig) if settings.kubeconfig else None
    if kubeconfig is not None:
        from release.k3s.kubeconfig import read_kubeconfig

        read_kubeconfig(kubeconfig)  # a broken one is refused before any host is touched
    previous = previous_version(config, env_name, tag)
    started = datetime.now(UTC)
    result = run_playbook(config, env_name=env_name, version=tag, action="place", plan=plan,
                          echo=echo, out=out)  # fmt: skip
    result.update(action=action, runtime="k3s", previous=previous)
    for row in result["hosts"]:
        row["previous"] = row["previous"] or previous
    if plan:
        return result
    placed = result["exit_code"] == 0
    changed = any(row["result"] == "placed" for row in result["hosts"])
    if not placed:
        result["rollout"] = {"waited": False, "reason": "the manifests were not placed"}
    elif kubeconfig is None:
        result["rollout"] = {
            "waited": False,
            "reason": f"no kubeconfig in [environments.{env_name}.k3s]: k3s installs the "
            "chart by itself, but its rollout was not watched",
        }
    else:
        try:
            result["rollout"] = _wait(config, env_name, kubeconfig, started if changed else None,
                                      progress)  # fmt: skip
        except CheckFailed as exc:  # the rollout failed or timed out: roll back
            result["rollout"] = {"waited": True, "ok": False, "error": exc.as_dict()}
            result["rollback"] = _roll_back(config, env_name, previous, kubeconfig, echo=echo,
                                            progress=progress, out=out)  # fmt: skip
        except InfrastructureError as exc:  # the API server: state unknown, nothing undone
            result["rollout"] = {"waited": True, "ok": False, "error": exc.as_dict()}
    if result.get("rollout", {}).get("ok"):
        for row in result["hosts"]:
            row["running"] = tag  # the cluster runs what the manifests pin
    elif (result.get("rollback") or {}).get("ok"):
        for row in result["hosts"]:
            row.update(running=previous, result="failed, rolled back")
    ledger = config.ledger(config.product(env.product)[0], "environments")
    ledger.record("deploy", {k: v for k, v in result.items() if k != "output_tail"})
    return result


def check_rollout(result: dict[str, Any]) -> None:
    """Exit codes of the wait, once the placement succeeded (`exit_code` is the playbook's):
    1 for a failed rollout (with what the rollback did), 3 when the API server could not be
    asked."""
    rollout = result.get("rollout") or {}
    error = rollout.get("error")
    if not error:
        return
    message, where, fix = str(error.get("message", "")), error.get("where"), error.get("fix")
    if error.get("exit_code") == InfrastructureError.exit_code:
        raise InfrastructureError(message, where=where, fix=fix)
    rollback = result.get("rollback") or {}
    back = (
        f"rolled back to {rollback['to']}" if rollback.get("ok")
        else f"NOT rolled back: {rollback.get('result', 'no rollback ran')}"
    )  # fmt: skip
    raise CheckFailed(
        f"the rollout of {result['version']} on {result['environment']} failed ({back})\n{message}",
        where=where,
        fix=fix,
    )
