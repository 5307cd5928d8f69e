"""vodemo-info: prove the bundle works by loading DiracX's compiled dependencies."""

import json
import platform
import sys


def main() -> int:
    import cryptography
    import pydantic_core

    import diracx.core

    import vodemo

    info = {
        "vo": vodemo.VO,
        "vodemo": vodemo.__version__,
        "diracx_core": getattr(diracx.core, "__version__", "unknown"),
        "pydantic_core": pydantic_core.__version__,
        "cryptography": cryptography.__version__,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    json.dump(info, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0
