"""[bases.*]: the pinned environments products run on (DIRACOS2, or a Debian root filesystem).

A base gives what a bundle cannot carry: the interpreter and compiled grid libraries (gfal2,
M2Crypto's OpenSSL, MySQL's client). Pinning it by version, and recording what it provides
(`dirac-release base inspect`), makes a release's installation the same on every day.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from pydantic import Field, field_validator

from release import names
from release.config.base import PlatformName, _Frozen

#: A base version is a folder name on CVMFS (`<prefix>/diracos/<version>/`): DIRACOS2's
#: versions have no 'v' and start with a digit (2.62), so the name rule's letter-first is
#: relaxed here, nothing else.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z", re.ASCII)


class BasePlatform(_Frozen):
    """Where one platform of a base comes from on the machine that builds and publishes."""

    #: An installed prefix (DIRACOS2: bin/python3.X, lib/python3.X/site-packages) or a root
    #: filesystem (usr/bin/python3.X, usr/lib/python3/dist-packages): what `base inspect` reads.
    path: str | None = None
    #: The DIRACOS2 installer of this platform (DIRACOS-Linux-<arch>.sh), if there is one.
    installer: str | None = None


class Base(_Frozen):
    """One pinned base: a version, its Python, and per platform where it comes from."""

    version: str
    python: str = "3.11"
    #: The record `base inspect` writes and builds read (default: bases/<name>-<version>.json
    #: next to release.toml), kept in version control with the configuration.
    record: str | None = None
    #: Where bundles find the base at run time, `{arch}` for the architecture. Default: the
    #: base published beside the release in its repository, `<prefix>/diracos/<version>/`.
    location: str | None = None
    platforms: dict[PlatformName, BasePlatform] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value) or value in (".", ".."):
            raise names.BadValue(
                f"base version {names.shown(value)} cannot be a folder name",
                'give it as the installer names it, e.g. version = "2.62" (letters, digits, '
                "'.', '_', '+', '-', at most 64 characters)",
            )
        return value

    @field_validator("python")
    @classmethod
    def _python(cls, value: str) -> str:
        if not re.fullmatch(r"3\.[0-9]{1,2}", value, re.ASCII):
            raise names.BadValue(
                f"{names.shown(value)} is not a Python major.minor version",
                'give it as a string, e.g. python = "3.11"',
            )
        return value

    @field_validator("location")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and set(value) & set('"$`\\'):
            raise names.BadValue(
                f'base location {names.shown(value)} holds a shell character (" $ ` \\)',
                "give a plain absolute path; {arch} stands for the architecture",
            )
        if value is not None and not PurePosixPath(value).is_absolute():
            raise names.BadValue(
                f"base location {names.shown(value)} is not an absolute path",
                'give where hosts see it, e.g. location = "/cvmfs/dirac.egi.eu/diracos/2.62/'
                'Linux-{arch}"',
            )
        return value

    def record_name(self, name: str) -> str:
        return self.record or f"bases/{name}-{self.version}.json"

    def label(self, name: str) -> str:
        return f"{name} {self.version}"


class BaseOverride(_Frozen):
    """A requirement on a base-provided distribution accepted although the base misses it.

    Explicit and recorded in the manifest with its reason: DIRAC 9.1 declares M2Crypto>=0.50
    yet runs on 0.38, and a release manager who checked that says so here instead of the
    check being silently loosened for every release.
    """

    distribution: str = Field(min_length=1)
    reason: str = Field(min_length=10)
    #: Which releases of the product it applies to (a version specifier such as "~=9.1.0");
    #: all of them when absent.
    releases: str | None = None

    @field_validator("releases")
    @classmethod
    def _specifier(cls, value: str | None) -> str | None:
        if value is not None:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(value)
            except InvalidSpecifier:
                raise names.BadValue(
                    f"{names.shown(value)} is not a version specifier",
                    'e.g. releases = "~=9.1.0" or ">=9.1,<9.2"',
                ) from None
        return value

    def applies_to(self, version: str) -> bool:
        if self.releases is None:
            return True
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(self.releases).contains(version, prereleases=True)
