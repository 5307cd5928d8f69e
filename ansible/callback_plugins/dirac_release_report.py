# Callback plugin: per-host facts for dirac-release's deployment table, as JSON lines.
#
# Playbooks set the fact `dirac_report` (previous version, running version, result) at each
# point where a host's state is known; this plugin appends every such fact, and every failure
# or unreachable host, to the file named by DIRAC_RELEASE_REPORT. Reading a structured file
# instead of parsing the human output keeps the table correct whatever the stdout callback is.
# It also writes how long each task took on each host (from the task's start to that host's
# result), so that a slow deployment names its slow step. Without DIRAC_RELEASE_REPORT the
# plugin does nothing.
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: dirac_release_report
type: aggregate
short_description: write per-host dirac_report facts and failures as JSON lines
description:
  - Appends one JSON object per line to the file in DIRAC_RELEASE_REPORT.
requirements:
  - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dirac_release_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("DIRAC_RELEASE_REPORT", "")
        self._task_started: dict[str, float] = {}

    def _write(self, record: dict) -> None:
        if not self._path:
            return
        record["time"] = round(time.time(), 3)
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")

    def v2_playbook_on_start(self, playbook) -> None:
        # Proof that the plugin ran: a run with no host facts is then told from one whose
        # callback was never loaded.
        self._write({"event": "start", "playbook": os.path.basename(playbook._file_name)})

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._task_started[task._uuid] = time.monotonic()

    def _timing(self, result) -> None:
        started = self._task_started.get(result._task._uuid)
        if started is not None:
            self._write(
                {
                    "host": result._host.get_name(),
                    "event": "task",
                    "task": result._task.get_name(),
                    "seconds": round(time.monotonic() - started, 3),
                }
            )

    def v2_runner_on_ok(self, result) -> None:
        self._timing(result)
        facts = result._result.get("ansible_facts") or {}
        report = facts.get("dirac_report")
        if isinstance(report, dict):
            self._write({"host": result._host.get_name(), "event": "report", **report})

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        self._timing(result)
        if ignore_errors:
            return
        # no_log tasks arrive here already censored by Ansible.
        message = str(result._result.get("msg", ""))[:500]
        self._write(
            {
                "host": result._host.get_name(),
                "event": "failed",
                "task": result._task.get_name(),
                "msg": message,
            }
        )

    def v2_runner_on_unreachable(self, result) -> None:
        self._write(
            {
                "host": result._host.get_name(),
                "event": "unreachable",
                "task": result._task.get_name(),
                "msg": str(result._result.get("msg", ""))[:500],
            }
        )
