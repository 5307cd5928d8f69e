"""`python -m release` is the same as `dirac-release`."""

import sys

from release.cli import main

sys.exit(main())
