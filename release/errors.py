"""The toolkit's typed errors: the ones `cvmfs` defines, so that the publisher stands on its own.

`cvmfs/errors.py` holds the classes (and their exit codes); everything in `release` imports
them from here, as it always did.
"""

from __future__ import annotations

from cvmfs.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_INFRASTRUCTURE,
    EXIT_OK,
    BadInput,
    CheckFailed,
    ConfigError,
    InfrastructureError,
    ReleaseError,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "EXIT_INFRASTRUCTURE",
    "EXIT_OK",
    "BadInput",
    "CheckFailed",
    "ConfigError",
    "InfrastructureError",
    "ReleaseError",
]
