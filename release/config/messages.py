"""Pydantic's errors said in the words of the file: key path, problem, fix, example."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from release import names
from release.config.base import KNOWN_PLATFORMS
from release.config.examples import EXAMPLES
from release.config.keys import owner_keys
from release.config.suggest import close_match


def _is_key(part: object) -> bool:
    text = str(part)
    return not text.startswith(
        ("function-", "GitSource", "IndexSource", "literal[", "[")
    ) and text not in (
        "datetime",
        "str",
        "int",
    )


def _format(error: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(key path, message, fix or None) for one pydantic error, in the words of the file.

    Keys and values from the file are shown escaped and shortened (names.key_part,
    names.shown): a 20 MB key or value must not make a 20 MB message.
    """
    # Drop pydantic's own loc parts (union branches, validators, '[key]'): keep the file's keys.
    raw = [part for part in error["loc"] if _is_key(part)]
    source_kind = None
    for index in range(len(raw) - 1):
        tags = {
            "source": ("git", "index"),
            "modules": ("git", "folder"),
            "base": ("debian", "oci"),
        }.get(str(raw[index]), ())
        if raw[index + 1] in tags and index + 2 < len(raw):
            source_kind = raw.pop(index + 1)  # the discriminator's tag, not a key of the file
            break
    loc = tuple(raw)
    key = ".".join(names.key_part(part) for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        return key, unknown_key_message(loc, source_kind), None
    if kind == "missing":
        return key, "required key is missing", None
    if kind == "literal_error" and loc and loc[0] == "platforms":
        return key, f"unknown platform; supported: {', '.join(KNOWN_PLATFORMS)}", None
    cause = (error.get("ctx") or {}).get("error")
    message = str(error["msg"]).removeprefix("Value error, ")
    if isinstance(cause, names.BadValue):
        # Our own refusals quote the value (shortened) and know their fix.
        return key, names.clip(message, 600), cause.fix
    if (
        "input" in error
        and kind not in ("model_type", "dict_type")
        and not isinstance(error["input"], dict)
    ):
        message = f"{names.clip(message, 400)} (got {names.shown(error['input'])})"
    return key, names.clip(message, 600), None


def _suggested_key(key: str, message: str) -> str:
    """For a misspelt key, the example of the key it was probably meant to be."""
    if "did you mean '" in message:
        return key.rsplit(".", 1)[0] + "." + message.split("did you mean '", 1)[1].split("'", 1)[0]
    return key


def _example_for(key: str) -> str | None:
    for part in reversed(key.split(".")):
        if part in EXAMPLES:
            return EXAMPLES[part]
    return None


def unknown_key_message(loc: tuple[Any, ...], variant: str | None = None) -> str:
    """'unknown key', a 'did you mean' and the keys of the model that owns the table."""
    known = owner_keys([str(part) for part in loc[:-1]], variant)
    close = close_match(str(loc[-1]), known) if loc else None
    valid = f"valid keys here: {', '.join(known) or 'none'}"
    return f"unknown key; did you mean {close!r}? ({valid})" if close else f"unknown key ({valid})"
