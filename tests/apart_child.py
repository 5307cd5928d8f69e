"""A child for tests/unit/test_apart.py: answers, or fails in the ways a real child can."""

from __future__ import annotations

from typing import Any

from release.apart import serve
from release.errors import BadInput, ConfigError


def _handle(request: dict[str, Any]) -> Any:
    if request["do"] == "bad input":
        raise BadInput("the layer lists /etc twice", where="entries", fix="list it once")
    if request["do"] == "config":
        raise ConfigError("build.jobs: not a number")
    if request["do"] == "crash":
        raise OSError("No space left on device")
    return {"twice": request["n"] * 2}


if __name__ == "__main__":
    serve(_handle)
