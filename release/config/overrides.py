"""Every DIRAC_RELEASE_* environment variable, in one table: what it does, its value, who reads it.

Why one table: a variable read ad hoc with os.environ is undocumented and a typo in its name
(JOB=4 for JOBS=4) is silently ignored. Here each name is declared once; the toolkit reads
them through `get` (which refuses a name not in the table), the loader refuses any
DIRAC_RELEASE_* name that is not in it (exit 2, with a "did you mean"), docs/configuration.md
shows `markdown()`, and a test checks that every DIRAC_RELEASE_* string in the source tree is
listed here.

Unknown names are an error, not a warning: the prefix belongs to this toolkit, so an unknown
name is a misspelling of one of ours, and a warning scrolls past in CI while the release is
built with the value the admin meant to change. The bundle's own variables (kind "output")
are known names, so a shell that sourced an installed diracosrc can still run the toolkit.

cvmfs/ does not import release: it reads its test hooks (FAILPOINT*) itself and the table
only lists them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from release import names
from release.config.suggest import close_match
from release.errors import ConfigError

PREFIX = "DIRAC_RELEASE_"

#: config: overrides a key of release.toml; toolkit: read by a command; test: read by the test
#: suite or a test hook; plumbing: set by the toolkit for a child process; output: exported by
#: an installed bundle's diracosrc, never read by the toolkit; runtime: read by an installed
#: bundle's diracosrc, never by the toolkit.
Kind = Literal["config", "toolkit", "test", "plumbing", "output", "runtime"]


def _text(name: str, text: str) -> str:
    return text


def _whole_number(name: str, text: str) -> int:
    """The config's numbers are strict: only ASCII digits, never a float or a word."""
    if not re.fullmatch(r"[0-9]{1,6}", text.strip(), re.ASCII):
        raise ConfigError(
            f"{name}={names.shown(text)} is not a whole number",
            where=f"${name}",
            fix=f"set it to a number, e.g. {name}=2, or unset it to use release.toml",
        )
    return int(text)


@dataclass(frozen=True)
class Override:
    """One variable. `parse` turns its text into the value (ConfigError names the variable)."""

    name: str
    kind: Kind
    does: str
    value: str
    used_by: str
    key: tuple[str, str] | None = None
    parse: Callable[[str, str], Any] = _text


TABLE: tuple[Override, ...] = (
    Override("DIRAC_RELEASE_OUT", "config", "overrides `build.out`", "a path",
             "release/config (loading)", ("build", "out")),
    Override("DIRAC_RELEASE_CACHE", "config", "overrides `build.cache_dir`", "a path",
             "release/config (loading)", ("build", "cache_dir")),
    Override("DIRAC_RELEASE_JOBS", "config", "overrides `build.jobs`",
             "a whole number, 1 to 16", "release/config (loading)", ("build", "jobs"),
             _whole_number),
    Override("DIRAC_RELEASE_COMPRESSION_LEVEL", "config", "overrides `build.compression_level`",
             "a whole number, 0 to 9", "release/config (loading)",
             ("build", "compression_level"), _whole_number),
    Override("DIRAC_RELEASE_STATE", "config", "overrides `state.dir`", "a path",
             "release/config (loading)", ("state", "dir")),
    Override("DIRAC_RELEASE_CVMFS_HOST", "config",
             "overrides `host` of every `backend = \"server\"` repository (setting it makes a "
             "repository without `host` use SSH); read when the backend is made, so "
             "`dirac-release config` does not show it", "a host name or address",
             "the server backend's factory (release/targets.py)"),
    Override("DIRAC_RELEASE_CVMFS_SSH_KEY", "config",
             "overrides `ssh_key` of every `backend = \"server\"` repository (for CI, where the "
             "key is written from a secret); read when the backend is made",
             "a path, used as given", "the server backend's factory (release/targets.py)"),
    Override("DIRAC_RELEASE_LEGACY_KEY", "toolkit",
             "the DiracX legacy-exchange key for `certify`, unless `certify.legacy_key_file` is "
             "set (the name is the default of `certify.legacy_key_env`)", "the key (a secret)",
             "release/credentials.py (certify)"),
    Override("DIRAC_RELEASE_DEBUG", "toolkit",
             "`1` prints the (redacted) traceback of an unexpected error", "`1` or unset",
             "release/cli.py"),
    Override("DIRAC_RELEASE_AARCH64_SYSROOT", "toolkit",
             "an aarch64 root filesystem with `python3.X` (made by `dirac-release sysroot`); "
             "when set, the aarch64 smoke test runs under qemu-user (see "
             "[stages/build.md](stages/build.md#smoke-tests))",
             "a path", "release/build/smoke.py"),
    Override("DIRAC_RELEASE_REQUIRE_LAB", "test",
             "`1` turns every skipped lab test into a failure (set by `.ci/run`)",
             "`1` or unset", "tests/conftest.py"),
    Override("DIRAC_RELEASE_FAILPOINT", "test",
             "makes `publish` pause at the named step boundary so a crash test can kill it "
             "there; never set it in production (see "
             "[stages/publish.md](stages/publish.md#testing))", "a step name",
             "cvmfs/failpoints.py"),
    Override("DIRAC_RELEASE_FAILPOINT_FILE", "test",
             "the file `publish` writes the failpoint's name to when it reaches it",
             "a path", "cvmfs/failpoints.py"),
    Override("DIRAC_RELEASE_FAILPOINT_PAUSE", "test",
             "how long `publish` waits at the failpoint", "seconds (a number)",
             "cvmfs/failpoints.py"),
    Override("DIRAC_RELEASE_REPORT", "plumbing",
             "the file Ansible's callback plugin appends one JSON line per host result to; "
             "set by `deploy` for ansible-playbook, whatever the shell had", "a path",
             "release/deploy (sets), ansible/callback_plugins/dirac_release_report.py (reads)"),
    Override("DIRAC_RELEASE_PREFIX", "output",
             "exported by an installed bundle's `diracosrc`: the installed version's folder",
             "a path", "release/build/layout.py (writes diracosrc)"),
    Override("DIRAC_RELEASE_BASE", "runtime",
             "read by the `diracosrc` of a bundle built on a base: the folder holding the "
             "base's own `diracosrc`, the only place looked at when set (otherwise the base "
             "is looked for beside the release in its repository)", "a path",
             "release/build/layout.py (writes diracosrc)"),
    Override("DIRAC_RELEASE_BASE_PREFIX", "output",
             "exported by the `diracosrc` of a bundle built on a base: the base's folder it "
             "sourced", "a path", "release/build/layout.py (writes diracosrc)"),
    Override("DIRAC_RELEASE_PRODUCT", "output",
             "exported by an installed bundle's `diracosrc`: the product's name", "a name",
             "release/build/layout.py (writes diracosrc)"),
    Override("DIRAC_RELEASE_VERSION", "output",
             "exported by an installed bundle's `diracosrc`: the release's version",
             "a version", "release/build/layout.py (writes diracosrc)"),
)  # fmt: skip

BY_NAME: dict[str, Override] = {entry.name: entry for entry in TABLE}


def entry(name: str) -> Override:
    """The table's entry for `name` (with or without the prefix); a name not in it is a bug."""
    full = name if name.startswith(PREFIX) else PREFIX + name
    try:
        return BY_NAME[full]
    except KeyError:
        raise LookupError(f"{full} is not in release/config/overrides.py's table") from None


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's text when set and not empty, checked by its parser; else None."""
    found = entry(name)
    if found.kind == "output":
        raise LookupError(f"{found.name} is exported to a bundle's users, not read by the toolkit")
    text = (os.environ if environ is None else environ).get(found.name)
    if not text:
        return None
    found.parse(found.name, text)
    return text


def check_names(environ: Mapping[str, str]) -> None:
    """Refuse a DIRAC_RELEASE_* variable the toolkit does not know: it is a misspelling."""
    for name in environ:
        if not name.startswith(PREFIX) or name in BY_NAME:
            continue
        close = close_match(name, BY_NAME)
        shown = name if re.fullmatch(r"[A-Z0-9_]{1,100}", name, re.ASCII) else names.shown(name)
        settable = ", ".join(e.name for e in TABLE if e.kind in ("config", "toolkit"))
        hint = f"did you mean {close}? " if close else ""
        raise ConfigError(
            f"{shown} is not a variable dirac-release knows; it would be ignored",
            where=f"${shown}",
            fix=f"{hint}unset it, or use one of: {settable} "
            "(all are listed in docs/configuration.md)",
        )


def apply(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's data with the config overrides set in `environ` applied.

    Also returns key path -> variable, so an error about that key can name the variable.
    """
    check_names(environ)
    used: dict[str, str] = {}
    for found in TABLE:
        if found.key is None or not environ.get(found.name):
            continue
        table, key = found.key
        section = data.setdefault(table, {})
        if isinstance(section, dict):
            section = dict(section)
            section[key] = found.parse(found.name, environ[found.name])
            data[table] = section
            used[f"{table}.{key}"] = found.name
    return data, used


def markdown() -> str:
    """The table as docs/configuration.md shows it (a test keeps the two identical)."""
    lines = [
        "| Variable | Kind | Effect | Value | Used by |",
        "|---|---|---|---|---|",
    ]
    for found in TABLE:
        lines.append(
            f"| `{found.name}` | {found.kind} | {found.does} | {found.value} | {found.used_by} |"
        )
    return "\n".join(lines) + "\n"
