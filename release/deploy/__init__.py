"""The deploy stage: run the rolling upgrade with ansible-playbook, report per host, record it.

Ansible does the work (serial canary then batches, rollback of a failed host); this module
checks the inputs first (the environment exists, the version was published), renders the
inventory pinned to the version, streams Ansible's progress, and turns its recap into a table,
an exit code and a ledger record.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from release.config import ReleaseConfig
from release.content import content_dir
from release.errors import BadInput, CheckFailed, InfrastructureError
from release.version import parse_version_arg

_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)(?:\s+skipped=(?P<skipped>\d+))?(?:\s+rescued=(?P<rescued>\d+))?"
)
PLAYBOOKS = {
    "install": "site.yml",
    "upgrade": "upgrade.yml",
    "rollback": "rollback.yml",
    "verify": "verify.yml",  # read-only: what each host runs (certify)
    "place": "k3s.yml",  # a k3s environment: the rendered manifests into k3s's folder
}


class HostOutcome(StrEnum):
    """How a run left a host, when the run itself decides it (a host that finished reports its
    own result, e.g. `upgraded`). A StrEnum: the JSON and the ledger hold the same words."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    NOT_STARTED = "not started (the run stopped before this host)"
    ROLLED_BACK = "failed, rolled back"
    NOT_ROLLED_BACK = "failed, NOT rolled back: check the host"
    FAILED = "failed"


@dataclass
class HostResult:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    rescued: int

    @property
    def result(self) -> HostOutcome:
        if self.unreachable:
            return HostOutcome.UNREACHABLE
        if self.failed and self.rescued:
            return HostOutcome.ROLLED_BACK
        if self.failed:
            return HostOutcome.FAILED
        return HostOutcome.OK


def parse_recap(output: str) -> dict[str, HostResult]:
    """PLAY RECAP lines of ansible-playbook's default output, last one per host."""
    hosts: dict[str, HostResult] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        match = _RECAP.match(line.strip()) if in_recap else None
        if match:
            hosts[match["host"]] = HostResult(
                host=match["host"],
                ok=int(match["ok"]),
                changed=int(match["changed"]),
                unreachable=int(match["unreachable"]),
                failed=int(match["failed"]),
                rescued=int(match["rescued"] or 0),
            )
    return hosts


def _published(config: ReleaseConfig, env_name: str, tag: str) -> None:
    """Refuse a version that was never published to the environment's repository."""
    from release.targets import for_environment

    target = for_environment(config, env_name)
    if target.tag_name(tag) not in {t.name for t in target.backend().tags()}:
        raise BadInput(
            f"{target.product_name} {tag} was never published to {target.repo_name}",
            fix=f"publish it first: dirac-release publish --version {tag}",
        )


def _ansible_playbook() -> str:
    found = shutil.which("ansible-playbook") or str(
        Path(sys.executable).parent / "ansible-playbook"
    )
    if not Path(found).exists():
        raise InfrastructureError(
            "ansible-playbook is not installed", fix="pip install ansible-core"
        )
    return found


SLOWEST_TASKS = 3


def read_report(path: Path) -> dict[str, dict[str, Any]]:
    """The last state the playbook reported for each host, with its failures and reachability."""
    hosts: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return hosts
    timings: dict[str, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run
        kind = event.pop("event", "")
        if kind == "start":
            continue
        if kind == "task":
            spent = timings.setdefault(str(event.get("host")), {})
            name = str(event.get("task"))
            spent[name] = spent.get(name, 0.0) + float(event.get("seconds", 0.0))
            continue
        entry = hosts.setdefault(str(event.get("host")), {})
        if kind == "report":
            # Jinja renders a missing version (a first installation) as "".
            entry.update(
                {k: (v if v != "" else None) for k, v in event.items() if k not in ("host", "time")}
            )
        elif kind in ("failed", "unreachable"):
            entry.setdefault("errors", []).append(f"{event.get('task')}: {event.get('msg')}")
            if kind == "unreachable":
                entry["unreachable"] = True
    for host, spent in timings.items():
        # The steps that bound this host's time, for the table's reader and the ledger.
        slowest = sorted(spent.items(), key=lambda item: -item[1])[:SLOWEST_TASKS]
        hosts.setdefault(host, {})["slowest"] = [[n, round(s, 1)] for n, s in slowest]
    return hosts


def host_rows(
    env_hosts: list[str], recap: dict[str, HostResult], report: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per host of the environment, also for hosts the run never reached."""
    rows = []
    for name in env_hosts:
        facts = report.get(name, {})
        stats = recap.get(name)
        result: str
        if (stats is not None and stats.unreachable) or facts.get("unreachable"):
            result = HostOutcome.UNREACHABLE
        elif stats is None:
            result = HostOutcome.NOT_STARTED
        elif stats.failed and facts.get("result") == "rolled back":
            result = HostOutcome.ROLLED_BACK
        elif stats.failed and facts.get("result") == "started":
            result = HostOutcome.NOT_ROLLED_BACK
        elif stats.failed:
            result = HostOutcome.FAILED
        else:
            result = str(facts.get("result") or HostOutcome.OK)
        rows.append(
            {
                "host": name,
                "previous": facts.get("previous"),
                "running": facts.get("running"),
                "target": facts.get("target"),
                "result": result,
                "reason": facts.get("reason") or "; ".join(facts.get("errors", [])[:1]),
                "ok": stats.ok if stats else 0,
                "changed": stats.changed if stats else 0,
                "failed": stats.failed if stats else 0,
                "unreachable": (stats.unreachable if stats else 0)
                or int(bool(facts.get("unreachable"))),
                "rescued": stats.rescued if stats else 0,
                "slowest": facts.get("slowest", []),
            }
        )
    return rows


def _ssh_multiplexing(environ: Mapping[str, str], control_dir: Path) -> dict[str, str]:
    """One SSH connection per host for the whole run instead of one per task.

    Without it every task pays a full SSH handshake on the controller and on the host, for
    each host of a batch. The masters live in this run's own folder and are closed when
    the run ends (`_close_ssh_masters`), so none lingers; ansible.cfg itself leaves
    multiplexing off, for plain ansible-playbook runs that have no such clean-up.
    """
    extra = environ.get("ANSIBLE_SSH_EXTRA_ARGS", "")
    return {
        "ANSIBLE_SSH_EXTRA_ARGS": f"{extra} -o ControlMaster=auto -o ControlPersist=120s".strip(),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
    }


REPORT_CALLBACK = "dirac_release_report"


def _report_callback(environ: Mapping[str, str], ansible: Path) -> dict[str, str]:
    """Keep our report callback on whatever the shell enables (profile_tasks, say).

    ANSIBLE_CALLBACKS_ENABLED and ANSIBLE_CALLBACK_PLUGINS in the environment replace
    ansible.cfg's values: without this an admin timing tasks would silently switch off the
    report that deploy and certify read every host's result from.
    """
    enabled = [n.strip() for n in environ.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",")]
    plugins = [p for p in environ.get("ANSIBLE_CALLBACK_PLUGINS", "").split(os.pathsep) if p]
    ours = str(ansible / "callback_plugins")
    return {
        "ANSIBLE_CALLBACKS_ENABLED": ",".join(
            dict.fromkeys([REPORT_CALLBACK, *(n for n in enabled if n)])
        ),
        "ANSIBLE_CALLBACK_PLUGINS": os.pathsep.join(dict.fromkeys([ours, *plugins])),
    }


def _close_ssh_masters(control_dir: Path) -> None:
    """Ask each SSH master of this run to exit (bounded); an unanswered one ends on its own."""
    ssh = shutil.which("ssh")
    if ssh is None or not control_dir.is_dir():
        return
    for socket in sorted(control_dir.iterdir()):
        try:
            subprocess.run(
                [ssh, "-o", f"ControlPath={socket}", "-O", "exit", "dirac-release-host"],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            continue


def _stopped_before_any_host(code: int, hosts: list[dict[str, Any]], lines: list[str]) -> None:
    """A playbook that failed before reaching any host says why in Ansible's own words: a
    table of "not started" hosts would hide it (a vault without its password, a syntax
    error, a missing inventory)."""
    if code == 0 or not hosts or any(h["result"] != HostOutcome.NOT_STARTED for h in hosts):
        return
    errors = [line.strip() for line in lines if line.startswith("ERROR!")]
    shown = (errors or [line.strip() for line in lines[-3:] if line.strip()] or ["no output"])[0]
    if "vault" in shown.lower():
        raise BadInput(
            f"ansible-playbook stopped before any host: {shown[:300]}",
            fix="the environment's secrets_file is encrypted with ansible-vault: give Ansible "
            "its password, ANSIBLE_VAULT_PASSWORD_FILE=<file holding it>",
        )
    raise InfrastructureError(
        f"ansible-playbook stopped before any host (exit {code}): {shown[:300]}",
        fix="see Ansible's message; nothing was changed on the hosts",
    )


def run_playbook(
    config: ReleaseConfig,
    *,
    env_name: str,
    version: str | None,
    action: str,
    plan: bool = False,
    out: Path | None = None,
    echo: bool = True,
    extra_vars: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Render, then run one playbook on the environment's hosts; returns every host's outcome.

    The result is returned also when hosts failed (the caller shows the table first), and
    `check_outcome` turns it into the exit code.
    """
    from release.render import render_environment

    env = config.environment(env_name)
    ledger = config.ledger(config.product(env.product)[0], "environments")
    tag = parse_version_arg(version).tag if version is not None else None
    if tag is not None and action in ("install", "upgrade", "place"):
        _published(config, env_name, tag)
    secrets_file = config.resolve_path(env.secrets_file) if env.secrets_file else None
    if secrets_file is not None and not secrets_file.is_file():
        raise BadInput(
            f"environment {env_name}: secrets_file {secrets_file} does not exist",
            fix="create it with ansible-vault create, or remove secrets_file from release.toml",
        )
    # A rollback without a version goes back to each host's own previous version.
    rendered = render_environment(config, env_name, tag or "previous", out)
    if action == "place":
        # The role places what this very render wrote, on the environment's hosts.
        extra_vars = {
            "diracx_k3s_hosts": "dirac_servers",
            "diracx_k3s_source": str(Path(rendered["k8s"]["folder"]) / "manifests"),
            **(extra_vars or {}),
        }
    ansible = content_dir("ansible")
    command = [_ansible_playbook(), "-i", rendered["inventory"], str(ansible / PLAYBOOKS[action])]
    variables = (
        {"dirac_version": tag, **(extra_vars or {})}
        if version is not None
        else dict(extra_vars or {})
    )
    for key, value in variables.items():
        command += ["-e", f"{key}={value}"]
    if secrets_file is not None:
        command += ["-e", f"@{secrets_file}"]  # decrypted by ansible with its vault settings
    if plan:
        command += ["--check", "--diff"]
    report_dir = Path(tempfile.mkdtemp(prefix="dirac-release-report-"))
    report_path = report_dir / "report.jsonl"
    env_vars = dict(os.environ)
    env_vars.update(
        ANSIBLE_CONFIG=str(ansible / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        DIRAC_RELEASE_REPORT=str(report_path),
        **_ssh_multiplexing(os.environ, report_dir / "cp"),
        **_report_callback(os.environ, ansible),
    )
    lines: list[str] = []
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            cwd=ansible,
            env=env_vars,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in proc.stdout or ():
            lines.append(line)
            if echo and (
                line.startswith(("PLAY", "TASK", "fatal", "failed", "changed", "ok:", "skipping"))
                or "FAILED" in line
            ):
                print(line.rstrip()[:200], file=sys.stderr)
        code = proc.wait()
        if not report_path.is_file() and code in (0, 2):
            raise InfrastructureError(
                f"ansible-playbook ran (exit {code}) without dirac-release's report callback: "
                "no host result can be trusted",
                fix="check ansible.cfg and the ANSIBLE_CALLBACK* variables; the "
                f"{REPORT_CALLBACK} callback must load from {ansible / 'callback_plugins'}",
            )
        report = read_report(report_path)
    finally:
        _close_ssh_masters(report_dir / "cp")
        shutil.rmtree(report_dir, ignore_errors=True)
    recap = parse_recap("".join(lines))
    result = {
        "environment": env_name,
        "version": tag or "previous",
        "action": action,
        "plan": plan,
        "inventory": rendered["inventory"],
        "exit_code": code,
        "seconds": round(time.monotonic() - started, 1),
        "hosts": host_rows(list(env.hosts), recap, report),
        "output_tail": "".join(lines[-15:]),
    }
    _stopped_before_any_host(code, result["hosts"], lines)
    if action in ("verify", "place"):
        for row in result["hosts"]:
            row["facts"] = report.get(row["host"], {})
    # A k3s deploy records the placement and the wait together (release.deploy.k3s).
    if not plan and action not in ("verify", "place"):
        ledger.record(
            "deploy" if action != "rollback" else "rollback",
            {k: v for k, v in result.items() if k != "output_tail"},
        )
    return result


def deploy_environment(
    config: ReleaseConfig,
    *,
    env_name: str,
    version: str,
    install: bool = False,
    plan: bool = False,
    echo: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Deploy a version to an environment the way its runtime needs: a rolling upgrade of the
    hosts' runit services, or, for DiracX on k3s, the manifests placed and the rollout waited
    for (`install` means nothing there: placing is the same either way)."""
    if config.environment(env_name).runtime == "k3s":
        from release.deploy.k3s import deploy_k3s

        return deploy_k3s(config, env_name=env_name, version=version, plan=plan, echo=echo,
                          progress=progress)  # fmt: skip
    return run_playbook(config, env_name=env_name, version=version,
                        action="install" if install else "upgrade", plan=plan, echo=echo)  # fmt: skip


def rollback_environment(
    config: ReleaseConfig,
    *,
    env_name: str,
    to: str | None,
    plan: bool = False,
    echo: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Roll an environment back as its runtime needs: each runit host to its own previous
    version (or `to`), or on k3s the version deployed before (or `to`) placed again."""
    if config.environment(env_name).runtime == "k3s":
        from release.deploy.k3s import rollback_k3s

        return rollback_k3s(config, env_name=env_name, to=to, plan=plan, echo=echo,
                            progress=progress)  # fmt: skip
    return run_playbook(config, env_name=env_name, version=to, action="rollback", plan=plan,
                        echo=echo)  # fmt: skip


def check_outcome(result: dict[str, Any]) -> None:
    """Exit codes: 3 when a host was unreachable, 1 when a host failed (and was rolled back)."""
    hosts = result["hosts"]
    action, tag = result["action"], result["version"]
    unreachable = [h["host"] for h in hosts if h["result"] == HostOutcome.UNREACHABLE]
    if result["exit_code"] == 4 or unreachable:
        raise InfrastructureError(
            f"{', '.join(unreachable) or 'a host'} unreachable during {action}",
            fix=result["output_tail"],
        )
    if result["exit_code"] != 0:
        failed = [h["host"] for h in hosts if h["failed"]]
        rolled_back = [h["host"] for h in hosts if h["result"] == HostOutcome.ROLLED_BACK]
        raise CheckFailed(
            f"{action} of {'the previous version' if tag == 'previous' else tag} failed on "
            f"{', '.join(failed) or 'a host'}"
            + (
                f" ({', '.join(rolled_back)} rolled back to the previous version)"
                if rolled_back
                else ""
            ),
            fix=result["output_tail"],
        )
    if result.get("runtime") == "k3s":
        from release.deploy.k3s import check_rollout

        check_rollout(result)
