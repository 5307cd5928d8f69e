"""Named pause points at the publication's step boundaries, for crash tests.

With DIRAC_RELEASE_FAILPOINT=<name>, the process writes <name> to DIRAC_RELEASE_FAILPOINT_FILE
when it reaches that boundary and then waits (bounded, DIRAC_RELEASE_FAILPOINT_PAUSE seconds,
default 60) to be killed by the test, so a real SIGKILL lands exactly between two steps; after
the pause it carries on (races are tested that way). Without the variable this is a no-op.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_S = 60.0


def reached(name: str) -> None:
    if os.environ.get("DIRAC_RELEASE_FAILPOINT") != name:
        return
    marker = os.environ.get("DIRAC_RELEASE_FAILPOINT_FILE")
    if marker:
        Path(marker).write_text(name, encoding="utf-8")
    deadline = time.monotonic() + float(os.environ.get("DIRAC_RELEASE_FAILPOINT_PAUSE", PAUSE_S))
    while time.monotonic() < deadline:
        time.sleep(0.05)
