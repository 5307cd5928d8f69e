"""The deploy stage: run the rolling upgrade with ansible-playbook, report per host, record it.

Ansible does the work (serial canary then batches, rollback of a failed host); this module
checks the inputs first (the environment exists, the version was published), renders the
inventory pinned to the version, streams Ansible's progress, and turns its recap into a table,
an exit code and a ledger record.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
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
PLAYBOOKS = {"install": "site.yml", "upgrade": "upgrade.yml", "rollback": "rollback.yml"}


@dataclass
class HostResult:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    rescued: int

    @property
    def result(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed and self.rescued:
            return "failed, rolled back"
        if self.failed:
            return "failed"
        return "ok"


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
    from cvmfs.factory import make_backend

    env = config.environment(env_name)
    product_name, product = config.product(env.product)
    repo_name, repo = config.repository(env.repository, product)
    backend = make_backend(config, repo_name, repo)
    tag_name = repo.tag_format.format(product=product_name, tag=tag, version=tag.removeprefix("v"))
    if tag_name not in {t.name for t in backend.tags()}:
        raise BadInput(
            f"{product_name} {tag} was never published to {repo_name}",
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
    """Render, then run one playbook on the environment's hosts; map the outcome to exit codes."""
    from release.render import render_environment

    env = config.environment(env_name)
    ledger = config.ledger(config.product(env.product)[0], "environments")
    tag = parse_version_arg(version).tag if version is not None else None
    if tag is not None and action != "rollback":
        _published(config, env_name, tag)
    # A rollback without a version goes back to each host's own previous version.
    rendered = render_environment(config, env_name, tag or "previous", out)
    ansible = content_dir("ansible")
    command = [_ansible_playbook(), "-i", rendered["inventory"], str(ansible / PLAYBOOKS[action])]
    variables = (
        {"dirac_version": tag, **(extra_vars or {})}
        if version is not None
        else dict(extra_vars or {})
    )
    for key, value in variables.items():
        command += ["-e", f"{key}={value}"]
    if plan:
        command += ["--check", "--diff"]
    env_vars = dict(os.environ)
    env_vars.update(
        ANSIBLE_CONFIG=str(ansible / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"
    )
    lines: list[str] = []
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
    hosts = parse_recap("".join(lines))
    result = {
        "environment": env_name,
        "version": tag or "previous",
        "action": action,
        "plan": plan,
        "inventory": rendered["inventory"],
        "exit_code": code,
        "hosts": [h.__dict__ | {"result": h.result} for h in hosts.values()],
    }
    if not plan:
        ledger.record("deploy" if action != "rollback" else "rollback", result)
    tail = "".join(lines[-15:])
    if code == 4 or any(h.unreachable for h in hosts.values()):
        raise InfrastructureError(
            f"{', '.join(h.host for h in hosts.values() if h.unreachable) or 'a host'} unreachable during {action}",
            fix=tail,
        )
    if code != 0:
        failed = [h.host for h in hosts.values() if h.failed]
        raise CheckFailed(
            f"{action} of {tag or 'the previous version'} failed on {', '.join(failed) or 'a host'}"
            + (
                " (rolled back to the previous version)"
                if any(h.rescued for h in hosts.values())
                else ""
            ),
            fix=tail,
        )
    return result
