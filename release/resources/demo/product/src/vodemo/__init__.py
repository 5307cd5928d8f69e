"""VODemoDIRAC: the demo VO extension released by dirac-release."""

from importlib.metadata import version as _version

__version__ = _version("vodemo-dirac")
VO = "vodemo"
