"""Deploy reads every host's result from its own Ansible callback, whatever the shell enables.

ANSIBLE_CALLBACKS_ENABLED in the environment replaces ansible.cfg's list: an admin timing
tasks with profile_tasks once switched our report off, and deploy printed `None (ok)` for
hosts it had upgraded. Run here with a real ansible-playbook on a local play.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from release.content import content_dir
from release.deploy import REPORT_CALLBACK, _report_callback, read_report

PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait a little
      ansible.builtin.command: sleep 0.3
      changed_when: false
    - name: Report
      ansible.builtin.set_fact:
        dirac_report: {previous: v1.0.0, running: v1.0.1, target: v1.0.1, result: upgraded}
"""


def test_our_callback_is_kept_beside_the_shells() -> None:
    ansible = Path("/opt/x/ansible")
    env = _report_callback(
        {"ANSIBLE_CALLBACKS_ENABLED": "profile_tasks, timer", "ANSIBLE_CALLBACK_PLUGINS": "/p"},
        ansible,
    )
    assert env["ANSIBLE_CALLBACKS_ENABLED"] == f"{REPORT_CALLBACK},profile_tasks,timer"
    assert env["ANSIBLE_CALLBACK_PLUGINS"] == f"/opt/x/ansible/callback_plugins{os.pathsep}/p"
    alone = _report_callback({}, ansible)
    assert alone["ANSIBLE_CALLBACKS_ENABLED"] == REPORT_CALLBACK
    assert alone["ANSIBLE_CALLBACK_PLUGINS"] == "/opt/x/ansible/callback_plugins"


def test_a_real_playbook_reports_with_another_callback_enabled(tmp_path: Path) -> None:
    playbook = shutil.which("ansible-playbook")
    if playbook is None:
        pytest.skip("ansible-playbook is not installed")
    (tmp_path / "play.yml").write_text(PLAY)
    report = tmp_path / "report.jsonl"
    shell = {
        **os.environ,
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.junit",
        "JUNIT_OUTPUT_DIR": str(tmp_path / "junit"),
        "ANSIBLE_CONFIG": str(content_dir("ansible") / "ansible.cfg"),
        "DIRAC_RELEASE_REPORT": str(report),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
    }
    env = {**shell, **_report_callback(shell, content_dir("ansible"))}
    proc = subprocess.run(
        [playbook, "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    facts = read_report(report)
    # Each task's time on the host; the slowest first (the sleep), for the ledger's reader.
    slowest = facts["localhost"].pop("slowest")
    assert [name for name, _ in slowest] == ["Wait a little", "Report"]
    assert slowest[0][1] >= 0.3 and slowest[1][1] < slowest[0][1]
    assert facts == {
        "localhost": {
            "previous": "v1.0.0", "running": "v1.0.1", "target": "v1.0.1", "result": "upgraded",
        }
    }  # fmt: skip
    assert len(list((tmp_path / "junit").glob("*.xml"))) == 1  # the shell's callback ran too
    # The plugin marks its start, so a report file exists even for a play with no facts.
    assert '"event": "start"' in report.read_text().splitlines()[0]


def test_a_playbook_stopped_before_any_host_says_why() -> None:
    """A vault without its password stops Ansible before any host: the error names Ansible's
    message and the fix, instead of a table of hosts "not started"."""
    from release.deploy import HostOutcome, _stopped_before_any_host
    from release.errors import BadInput, InfrastructureError

    hosts = [{"host": h, "result": HostOutcome.NOT_STARTED} for h in ("a", "b")]
    vault = ["ERROR! Attempting to decrypt but no vault secrets found\n"]
    with pytest.raises(BadInput, match="no vault secrets found") as err:
        _stopped_before_any_host(1, hosts, vault)
    assert "ANSIBLE_VAULT_PASSWORD_FILE" in str(err.value.fix)
    with pytest.raises(InfrastructureError, match=r"\(exit 4\): ERROR! the playbook could not"):
        _stopped_before_any_host(4, hosts, ["ERROR! the playbook could not be found\n"])
    # A run that reached a host, or succeeded, is left to the host table.
    _stopped_before_any_host(1, [*hosts[:1], {"host": "c", "result": HostOutcome.FAILED}], vault)
    _stopped_before_any_host(0, hosts, vault)
