"""What every model of release.toml shares: frozen, no unknown keys, no control characters.

Kept apart from the models so the loader can run the same control-character scan over the
whole file (naming the key) that the models run over values built in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from release import names

PlatformName = Literal["x86_64", "aarch64"]
KNOWN_PLATFORMS: tuple[PlatformName, ...] = ("x86_64", "aarch64")
DEFAULT_CONFIG_NAME = "release.toml"


#: Tables whose keys are names that become paths: their keys are judged by the name rule
#: (release/names.py), so they get its message rather than the generic one below.
NAME_TABLES = frozenset(
    {"products", "repositories", "environments", "hosts", "services", "bases", "pilots", "images"}
)

CONTROL_PROBLEM = "contains a control character (NUL, line break, tab...)"
CONTROL_FIX = (
    "remove the control character: a NUL in a path makes every file call fail, and in a "
    "command, URL or name it is never meant (write \\u escapes only for printable text)"
)


def _has_control(text: str, *, allow_space_controls: bool) -> bool:
    allowed = "\t\n\r" if allow_space_controls else ""
    return any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text)


def _control_char_path(value: Any, path: str = "", parent: str = "") -> tuple[str, str] | None:
    """(key path, shown value) of the first string or key holding NUL or another control.

    Tabs and line breaks are allowed in values (a command may span lines), never in keys.
    Keys of NAME_TABLES are left to the name rule. Recursion is bounded by the TOML parser's
    own nesting limit, which refuses deeper files before this runs.
    """
    if isinstance(value, str):
        if _has_control(value, allow_space_controls=True):
            return path or "(top level)", names.shown(value)
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            part = names.key_part(key)
            here = f"{path}.{part}".lstrip(".")
            if (
                isinstance(key, str)
                and parent not in NAME_TABLES
                and _has_control(key, allow_space_controls=False)
            ):
                return here, names.shown(key)
            found = _control_char_path(item, here, str(key))
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _control_char_path(item, f"{path}.{index}", parent)
            if found is not None:
                return found
    return None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_chars(cls, data: Any, info: ValidationInfo) -> Any:
        # A NUL in a path makes every file call raise; in a command or URL it is never meant.
        # parse_config scans the whole file itself (naming the key, next to the other
        # errors) and says so in the context; this guards models built in code.
        # `path` of the top model is a Path, not text from the file.
        if info.context and info.context.get("control_checked"):
            return data
        found = _control_char_path({k: v for k, v in data.items() if k != "path"}
                                   if isinstance(data, Mapping) else data)  # fmt: skip
        if found is not None:
            where, value = found
            raise names.BadValue(f"{where}: {value} {CONTROL_PROBLEM}", CONTROL_FIX)
        return data


def _ssh_target(what: str, value: str | None) -> str | None:
    """An address or user that ends up as an ssh argument: never an option, never split.

    `ssh -oProxyCommand=...` runs a command; an address starting with '-' would be read as
    such an option by ssh (or by Ansible's ssh connection) rather than as a host.
    """
    if value and (value.startswith("-") or any(ch.isspace() for ch in value)):
        raise names.BadValue(
            f"{what} {names.shown(value)} starts with '-' or contains a space",
            "give a host name or an IP address, like 'cctbdirac01.in2p3.fr' or '10.0.0.1'",
        )
    return value


def stamp(value: datetime) -> str:
    """RFC 3339 in UTC, the form uv's --exclude-newer and our JSON use."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
