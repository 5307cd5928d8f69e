"""dirac-release: build, publish, deploy, certify and promote DIRAC-family releases."""

__version__ = "0.1.0"
