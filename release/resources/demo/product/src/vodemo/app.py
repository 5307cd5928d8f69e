"""The DiracX application vodemo-diracx serves, made once the S3 server beside it answers.

uvicorn imports this factory, then calls it: DiracX's import (seconds of CPU) happens first,
while moto's S3 server, started just before, comes up; the wait for S3 (DiracX creates its
sandbox bucket when it starts) is then usually already over.
"""

from __future__ import annotations

import os
from typing import Any

from diracx.testing.routers import create_app as _diracx_app

from vodemo.server import S3_WAIT, wait_for_s3


def create_app() -> Any:
    waiting = os.environ.pop(S3_WAIT, "")
    if waiting:
        pid, url = waiting.split(" ", 1)
        wait_for_s3(int(pid), url)
    return _diracx_app()
