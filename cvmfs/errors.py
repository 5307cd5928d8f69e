"""Typed errors that carry their own exit code.

The CLI maps every expected failure to one of four exit codes (see docs/concepts.md) so that
GitHub Actions, nox and admins can tell "you typed something wrong" from "the grid is down"
without parsing text. Stage code raises these; nothing below the CLI prints or exits.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 3


class ReleaseError(Exception):
    """An expected failure with a message meant for a person, and optionally a fix."""

    exit_code = EXIT_INFRASTRUCTURE

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix

    def render(self) -> str:
        """One readable block: what was wrong, where, and how to fix it."""
        lines = [f"{self.where}: {self.message}" if self.where else self.message]
        if self.fix:
            lines.extend(f"  {line}" for line in self.fix.splitlines())
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "where": self.where,
            "fix": self.fix,
            "exit_code": self.exit_code,
        }


class BadInput(ReleaseError):
    """The user asked for something that cannot be right (tag, platform, path, ...)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """release.toml (or an override) does not describe a valid release."""


class CheckFailed(ReleaseError):
    """A verification ran and found a real problem in the result."""

    exit_code = EXIT_CHECK_FAILED


class InfrastructureError(ReleaseError):
    """Something outside our control failed: the package index, git, a host, a disk."""

    exit_code = EXIT_INFRASTRUCTURE
