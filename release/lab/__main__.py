"""`python -m release.lab`: the same as `dirac-release lab up`."""

from release.lab.cli import main

raise SystemExit(main())
