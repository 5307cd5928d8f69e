"""Reading release.toml and validating it: one ConfigError naming file, keys, fixes and examples.

Every stage takes a `ReleaseConfig`, never raw TOML, so a typo is caught once, up front,
before anything is built or touched.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from release import names
from release.config import overrides
from release.config.base import CONTROL_FIX, CONTROL_PROBLEM, _control_char_path
from release.config.messages import _example_for, _format, _suggested_key
from release.config.model import ReleaseConfig
from release.errors import ConfigError


def parse_config(
    data: dict[str, Any], path: Path, environ: Mapping[str, str] | None = None
) -> ReleaseConfig:
    """Validate already-parsed TOML; errors name `path` and the key."""
    data, from_env = overrides.apply(dict(data), os.environ if environ is None else environ)
    found = _control_char_path(data)
    control = None
    if found is not None:
        set_by = f" (set by {from_env[found[0]]})" if found[0] in from_env else ""
        control = (found[0], f"{found[1]} {CONTROL_PROBLEM}{set_by}", CONTROL_FIX)
    try:
        config = ReleaseConfig.model_validate(
            {**data, "path": path}, context={"control_checked": True}
        )
    except ValidationError as exc:
        errors = [_format(err) for err in exc.errors()]
        errors = [
            (key, f"{message} (set by {from_env[key]})" if key in from_env else message, fix)
            for key, message, fix in errors
        ]
        # A control character under a key already reported (a name refused by the name
        # rule says so itself) is not reported twice.
        if control is not None and not any(
            control[0] == key or control[0].startswith(key + ".") for key, _, _ in errors if key
        ):
            errors.insert(0, control)
        seen: set[tuple[str, str]] = set()
        lines: list[str] = []
        fixes: list[str] = []
        examples: list[str] = []
        for key, message, fix in errors:
            if (key, message) in seen:
                continue
            seen.add((key, message))
            lines.append(f"{key}: {message}" if key else message)
            if fix and fix not in fixes:
                fixes.append(fix)
            example = _example_for(_suggested_key(key, message))
            if example and example not in examples:
                examples.append(example)
        if len(lines) > 20:  # a file full of mistakes: the first ones, and how many more
            lines = [*lines[:20], f"... and {len(lines) - 20} more"]
        parts = list(fixes)
        if examples:
            body = "\n".join(
                "\n".join(f"  {line}" for line in example.splitlines()) for example in examples
            )
            parts.append("example of a right value:\n" + body)
        raise ConfigError(
            "; ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines),
            where=str(path),
            fix="\n".join(parts) or None,
        ) from None
    if control is not None:
        raise ConfigError(f"{control[0]}: {control[1]}", where=str(path), fix=CONTROL_FIX)
    return config


MAX_CONFIG_BYTES = 4 * 1024 * 1024


def _read_config(path: Path) -> str:
    """The file's text: a regular file (a FIFO or device must not block), bounded, UTF-8."""
    import stat

    missing_fix = (
        "pass --config PATH, create release.toml here, or try the embedded demo: dirac-release demo"
    )
    where = (
        str(path) if str(path).isprintable() and len(str(path)) <= 200 else names.shown(str(path))
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError("configuration file not found", where=where, fix=missing_fix) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        # A socket cannot even be opened (ENXIO): say what it is, not the errno's words.
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            mode = None
        problem = (
            "the configuration is not a regular file"
            if mode is not None and not stat.S_ISREG(mode)
            else f"cannot open the configuration: {getattr(exc, 'strerror', None) or exc}"
        )
        raise ConfigError(problem, where=where, fix=missing_fix) from None
    too_large = (
        f"the configuration is larger than {MAX_CONFIG_BYTES} bytes; a release.toml is far smaller"
    )
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError(f"the configuration is {kind}", where=where, fix=missing_fix)
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(too_large, where=where, fix="check that --config names release.toml")
        # Read to the end, never past the bound: files in /proc say size 0 and have content.
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(too_large, where=where, fix="check that --config names release.toml")
        data = b"".join(chunks)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the configuration: {exc.strerror or exc}",
            where=where,
            fix="check that --config names a readable release.toml",
        ) from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the configuration is not UTF-8 text (byte {exc.start})",
            where=where,
            fix="save release.toml as UTF-8",
        ) from None


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> ReleaseConfig:
    """Read and validate a release.toml."""
    path = Path(path)
    text = _read_config(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"not valid TOML: {exc}",
            where=str(path),
            fix="check quoting and brackets on that line; strings need double quotes",
        ) from None
    except RecursionError:
        raise ConfigError(
            "not valid TOML: arrays or tables nested too deeply",
            where=str(path),
            fix="a release.toml nests a few levels at most; check the brackets",
        ) from None
    return parse_config(data, path, environ)
