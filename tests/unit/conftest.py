"""Fixtures shared by several unit test modules (defined where they are documented)."""

from tests.pilot_server import pki, server  # noqa: F401 - the pilot upload server, for pytest
