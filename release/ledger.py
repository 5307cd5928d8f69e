"""The release ledger: what each stage did to one version of one product, in order.

Append-only JSON, one file per release, written atomically under a lock. It is how a pipeline
that died resumes where it stopped, and (later) how `promote` refuses a release that was never
certified. Records hold facts and digests, never secrets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "dirac-release/ledger/v1"


class Ledger:
    def __init__(self, state_dir: Path, product: str, tag: str) -> None:
        self.path = state_dir / product / tag / "ledger.json"
        self.product = product
        self.tag = tag

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"schema": SCHEMA, "product": self.product, "tag": self.tag, "records": []}
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            from release.errors import InfrastructureError

            raise InfrastructureError(
                f"{self.path} is not a dirac-release ledger",
                fix="move it away; the ledger is rebuilt from the next stage that runs",
            )
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / ".ledger.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def record(self, stage: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append one stage record; returns it."""
        entry = {"stage": stage, "at": datetime.now(UTC).isoformat(timespec="seconds"), **data}
        with self._locked():
            ledger = self._read()
            ledger["records"].append(entry)
            tmp = self.path.with_name(f".ledger.{os.getpid()}.tmp")
            tmp.write_text(
                json.dumps(ledger, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8"
            )
            tmp.replace(self.path)
        return entry

    def records(self, stage: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self._read()["records"] if stage is None or r["stage"] == stage]

    def latest(self, stage: str) -> dict[str, Any] | None:
        found = self.records(stage)
        return found[-1] if found else None
