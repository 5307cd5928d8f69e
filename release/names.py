"""One rule for the names in release.toml that become parts of paths.

Products, environments, hosts, services and their systems, links and every segment of a
repository prefix become folder or file names (`state/<product>/`, `rendered/<env>/`,
`<prefix>/<link>`, the runit service folders); repositories become `<stratum>/<repository>/`.
A name like `..`, `a/b`, `""` or one holding a NUL would write outside the folder it is meant
for, so such names are refused when the configuration is loaded, all with the same message.
"""

from __future__ import annotations

import re

MAX_NAME = 64
MAX_SHOWN = 60
# A letter first; then letters, digits, '_', '.', '-'. ASCII only (\w would take
# any script's letters and digits, which make look-alike folder names).
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z", re.ASCII)
# A repository is a fully qualified domain name, as CVMFS requires: lowercase labels.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z", re.ASCII)


def shown(value: object) -> str:
    """A value for a message: printable, and short however long it is."""
    text = repr(value)
    if len(text) > MAX_SHOWN:
        return f"{text[:MAX_SHOWN]}... ({len(str(value))} characters)"
    return text


def name_problem(value: object) -> str | None:
    """Why `value` cannot be a name that becomes a path, or None."""
    if not isinstance(value, str):
        return f"must be a text name, not {type(value).__name__}"
    if not value:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character (NUL, line break, tab...)"
    if value in (".", "..") or "/" in value or "\\" in value:
        return "would leave its folder ('/', '\\\\', '.' and '..' are not names)"
    if len(value) > MAX_NAME:
        return f"is {len(value)} characters long (at most {MAX_NAME})"
    if not _PLAIN.match(value):
        return "must start with a letter and hold only ASCII letters, digits, '_', '.', '-'"
    return None


def repository_problem(value: object) -> str | None:
    """Why `value` cannot be a CVMFS repository name (an FQDN such as dirac.egi.eu), or None."""
    problem = name_problem(value)
    if problem is not None or not isinstance(value, str):
        return problem
    labels = value.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return "must be a fully qualified domain name in lowercase, like 'dirac.egi.eu'"
    return None


def check(kind: str, value: object, *, repository: bool = False) -> str:
    """`value` itself when it is a good name; ValueError (a pydantic error) otherwise."""
    problem = repository_problem(value) if repository else name_problem(value)
    if problem is not None or not isinstance(value, str):
        raise ValueError(f"{kind} name {shown(value)} {problem}")
    return value
