"""Secrets read for a run: validated by their shape only, and redacted from everything printed.

A secret that is malformed must be refused without ever appearing in the message, the
traceback or the evidence: the checks below describe a bad value by what it is (its length,
its number of lines, "looks like an SSH private key"), never by what it contains. Every secret
read or received during a run is remembered, so that `redact` can scrub it from any text
that leaves the process: error messages, check evidence, response snippets, debug tracebacks.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

from pydantic import SecretStr

from release.errors import BadInput

REDACTED = "[redacted]"
MAX_KEY_FILE_BYTES = 4096
KEY_LENGTH = (16, 1024)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}\Z", re.ASCII)
_PRIVATE_KEY_MARKERS = ("-----BEGIN", "PRIVATE KEY", "ssh-rsa ", "ssh-ed25519 ", "ecdsa-sha2-")
# Shorter values would match ordinary words in messages: nothing that short is a real secret.
_MIN_REDACTED = 8

_known: set[str] = set()
_lock = threading.Lock()


def remember(value: str) -> SecretStr:
    """Register a secret for redaction and wrap it so that repr() and str() hide it."""
    if len(value) >= _MIN_REDACTED:
        with _lock:
            _known.add(value)
    return SecretStr(value)


def redact(text: str) -> str:
    """`text` with every remembered secret replaced (longest first: no partial leftovers)."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def forget_all() -> None:
    """Drop every remembered secret (tests; a long-lived process between runs)."""
    with _lock:
        _known.clear()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _shape_problem(text: str) -> str | None:
    """What is wrong with a legacy-exchange key, in words that reveal nothing of it."""
    if not text:
        return "is empty"
    if any(marker in text for marker in _PRIVATE_KEY_MARKERS):
        return "looks like a PEM or SSH private key, not a legacy-exchange key"
    lines = re.split(r"\r\n|\r|\n", text)
    if len(lines) > 1:
        return f"has {len(lines)} lines; a legacy-exchange key is one line"
    if text.startswith("diracx:legacy:"):
        return "starts with 'diracx:legacy:'; store only the key, dirac-release adds the prefix"
    if any(c.isspace() for c in text):
        return "contains white space"
    if not _BASE64URL.match(text):
        return "contains characters outside base64url (A-Z a-z 0-9 - _, '=' padding)"
    low, high = KEY_LENGTH
    if not low <= len(text) <= high:
        return f"is {len(text)} characters long; a legacy-exchange key has {low} to {high}"
    return None


_KEY_FIX = (
    "put the base64url key DiracX was given (DIRACX_LEGACY_EXCHANGE_HASHED_API_KEY is its "
    "sha256), on one line, in that file, or set {env} instead"
)


def read_legacy_key_file(path: Path, *, env_name: str, setting: str) -> SecretStr:
    """The key in `path`: a regular file (a FIFO must not block the run), bounded, UTF-8."""
    where = str(path)
    fix = _KEY_FIX.format(env=env_name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BadInput(
            f"{setting}: cannot open the legacy-exchange key: {exc.strerror}", where=where, fix=fix
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(
                f"{setting}: the legacy-exchange key file is {_kind(info.st_mode)}",
                where=where,
                fix=fix,
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise BadInput(
                f"{setting}: the legacy-exchange key file is {info.st_size} bytes; "
                f"a key is one line of at most {KEY_LENGTH[1]} characters",
                where=where,
                fix=fix,
            )
        data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise BadInput(
            f"{setting}: cannot read the legacy-exchange key: {exc.strerror}", where=where, fix=fix
        ) from None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(
            f"{setting}: the legacy-exchange key file is not UTF-8 text", where=where, fix=fix
        ) from None
    return _checked(text, f"{setting}: the legacy-exchange key", where, fix)


def legacy_key_from_env(env_name: str, environ: dict[str, str] | None = None) -> SecretStr | None:
    """The key in `$env_name`, or None when unset or empty.

    The default name, DIRAC_RELEASE_LEGACY_KEY, is read through the table of the toolkit's
    variables like every other; a site's own name (`certify.legacy_key_env`) directly.
    """
    from release.config import overrides

    if env_name in overrides.BY_NAME:
        value = overrides.get(env_name, environ) or ""
    else:
        value = (os.environ if environ is None else environ).get(env_name, "")
    if not value.strip():
        return None
    return _checked(value, "the legacy-exchange key", f"${env_name}", _KEY_FIX.format(env=env_name))


def _checked(text: str, what: str, where: str, fix: str) -> SecretStr:
    # A key file ends with a line break; anything else around the key is refused.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    problem = _shape_problem(text)
    if problem is not None:
        # The value may still be a secret of some kind (an SSH key, a password): keep it out
        # of everything, the message included, and so is each of its lines.
        for part in (text, *text.splitlines()):
            remember(part.strip())
        raise BadInput(f"{what} {problem}", where=where, fix=fix)
    return remember(text)
