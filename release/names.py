"""One rule for the names in release.toml that become parts of paths.

Products, environments, hosts, services and their systems, links and every segment of a
repository prefix become folder or file names (`state/<product>/`, `rendered/<env>/`,
`<prefix>/<link>`, the runit service folders); repositories become `<stratum>/<repository>/`.
A name like `..`, `a/b`, `""` or one holding a NUL would write outside the folder it is meant
for, so such names are refused when the configuration is loaded, all with the same message:
what is wrong with the value (shown escaped and shortened), and the rule as the fix. The key
the name was found under is added by the configuration loader, which knows it.
"""

from __future__ import annotations

import re

MAX_NAME = 64
#: Characters of a value shown in a message; a longer value is cut and its length said, so a
#: 20 MB value never makes a 20 MB message.
MAX_SHOWN = 80
# A letter first; then letters, digits, '_', '.', '-'. ASCII only (\w would take
# any script's letters and digits, which make look-alike folder names).
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z", re.ASCII)
# A repository is a fully qualified domain name, as CVMFS requires: lowercase labels.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z", re.ASCII)

NAME_RULE = (
    f"a name starts with an ASCII letter and holds only ASCII letters, digits, '_', '.' and "
    f"'-', at most {MAX_NAME} characters (e.g. 'certification', 'DiracX', 'cctbdirac01')"
)
REPOSITORY_RULE = (
    "a repository name is a lowercase fully qualified domain name: labels of a-z, 0-9 and '-' "
    "joined by single dots, like 'vodemo.egi.eu'"
)


class BadValue(ValueError):
    """A refused value that knows how to be fixed; the loader puts `fix` on the fix line.

    It is a ValueError so pydantic reports it as a validation error of the key it was found
    under; `shows_value` tells the loader the message already quotes the value (shortened),
    so it does not add the value a second time.
    """

    shows_value = True

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` cut to `limit` characters with its full length said: for keys and messages."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def shown(value: object) -> str:
    """A value for a message: escaped (repr: no control character reaches a terminal) and short."""
    text = repr(value)
    if len(text) > MAX_SHOWN:
        length = len(value) if isinstance(value, str | bytes | list | tuple | dict) else len(text)
        return f"{text[:MAX_SHOWN]}... ({length} characters)"
    return text


def key_part(part: object) -> str:
    """One part of a key path for a message: as written when plain, else escaped and short."""
    text = str(part)
    if len(text) <= MAX_NAME and text.isprintable() and text.strip() == text:
        return text
    return shown(text)


def name_problem(value: object) -> str | None:
    """Why `value` cannot be a name that becomes a path, or None."""
    if not isinstance(value, str):
        return f"must be a text name, not {type(value).__name__}"
    if not value:
        return "is empty"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        return "contains a control character (NUL, line break, tab...)"
    if value in (".", "..") or "/" in value or "\\" in value:
        return "would leave its folder ('/', '\\', '.' and '..' are not names)"
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


def check_path_name(kind: str, value: object, *, repository: bool = False) -> str:
    """`value` itself when it is a good name; `BadValue` (a pydantic error) otherwise.

    Every name that becomes a path goes through here, so every refusal reads the same:
    "<kind> name <value> <problem>", with the rule as its fix.
    """
    problem = repository_problem(value) if repository else name_problem(value)
    if problem is not None or not isinstance(value, str):
        rule = REPOSITORY_RULE if repository else NAME_RULE
        raise BadValue(f"{kind} name {shown(value)} {problem}", f"rename it: {rule}")
    return value


#: The short name used by the configuration models.
check = check_path_name
