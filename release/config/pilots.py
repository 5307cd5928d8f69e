"""[pilots.*]: one VO's pilot deployment (the Pilot's files, the VO's modules, pilot.json).

A pilot folder is what a grid job downloads and runs before anything of the release is on the
worker node, so everything that goes into it is pinned here: the Pilot source by a full commit
(a branch moves under the release and no one can say later what a pilot ran), the VO's modules
by a tag or a folder in the configuration's repository, and the VO's settings under the very
key names the Pilot reads in pilot.json, so an admin who knows the CS section knows this table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from release import names
from release.config.base import _Frozen

_COMMIT = re.compile(r"[0-9a-f]{40}\Z", re.ASCII)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z", re.ASCII)
_PIN_FIX = (
    "pin the full commit the release uses: run `git rev-parse <branch-or-tag>^{commit}` in the "
    'Pilot repository and write it, e.g. commit = "0123456789abcdef0123456789abcdef01234567"'
)


def _inside(value: str, what: str) -> str:
    """A folder inside a repository or next to release.toml: relative, no '..'."""
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise names.BadValue(
            f"{what} {names.shown(value)} must be a relative path without '..'",
            'give the folder inside the repository, e.g. path = "Pilot"',
        )
    return value


class PilotSource(_Frozen):
    """The Pilot's own repository (DIRACGrid/Pilot or a fork) at one pinned commit."""

    git: str = Field(min_length=1)
    commit: str
    #: The folder that holds dirac-pilot.py and its modules (every `*.py` in it is taken).
    path: str = "Pilot"

    @field_validator("commit")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not _COMMIT.match(value):
            raise names.BadValue(
                f"commit {names.shown(value)} is not a pinned commit (40 lower-case hex "
                "digits); a branch or tag name moves, so two builds of one release could "
                "ship different pilots",
                _PIN_FIX,
            )
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _inside(value, "path")


class GitModules(_Frozen):
    """The VO's pilot modules from a tag of their repository."""

    git: str = Field(min_length=1)
    tag: str = Field(min_length=1)
    #: The folder of the repository holding the modules ("" for its top).
    path: str = ""

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if value.startswith("-") or any(ch.isspace() for ch in value):
            raise names.BadValue(
                f"tag {names.shown(value)} cannot be a git tag name",
                'give the tag of the modules\' release, e.g. tag = "v1.2.0"',
            )
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _inside(value, "path") if value else value


class FolderModules(_Frozen):
    """The VO's pilot modules kept in a folder next to release.toml (reviewed with it)."""

    folder: str = Field(min_length=1)

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        return _inside(value, "folder")


class ReleaseModules(_Frozen):
    """The VO's pilot modules in a folder of the product's own repository, at the release's tag.

    The modules then change with the release and are certified with it: no second tag to keep
    in step, and a release can never go out with the modules of another one.
    """

    release: str = Field(min_length=1)

    @field_validator("release")
    @classmethod
    def _release(cls, value: str) -> str:
        return _inside(value, "release")


_UPLOAD_EXAMPLE = (
    'e.g. upload = ["https://dirac.example.org:8443/pilot"], upload_cert = "certs/hostcert.pem", '
    'upload_key = "certs/hostkey.pem", upload_ca = "certs/ca.pem"'
)


def _upload_location(value: str) -> str:
    """An HTTPS folder the pilot files are PUT into: nothing a URL could smuggle or leak.

    Credentials in the URL would be printed in every progress line and the ledger (so they
    are refused before the value is ever quoted in a message), and a query or fragment would
    make `<location>/<file>` a different URL than the one a wrapper reads.
    """
    netloc = value.partition("://")[2].split("/", 1)[0]
    if "@" in netloc:
        raise names.BadValue(
            "an upload location holds credentials (user:password@); they would be printed "
            "with the URL",
            "authenticate with upload_cert and upload_key (the host certificate) instead",
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise names.BadValue(f"upload location {names.shown(value)} is not a URL ({exc})",
                             _UPLOAD_EXAMPLE) from exc  # fmt: skip
    if parts.scheme != "https" or not parts.hostname:
        raise names.BadValue(
            f"upload location {names.shown(value)} is not an https:// URL with a host; the "
            "pilot files go only over TLS with the client certificate",
            _UPLOAD_EXAMPLE,
        )
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise names.BadValue(
            f"upload location {names.shown(value)} has a query or fragment",
            "give the folder alone; each file is PUT to <location>/<file name>",
        )
    if port == 0 or any(ch.isspace() for ch in value):
        raise names.BadValue(f"upload location {names.shown(value)} is not a usable URL",
                             _UPLOAD_EXAMPLE)  # fmt: skip
    return value.rstrip("/")


def _modules_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        kinds = [key for key in ("folder", "release") if key in value]
        return kinds[0] if len(kinds) == 1 and "git" not in value else "git"
    if isinstance(value, ReleaseModules):
        return "release"
    return "folder" if isinstance(value, FolderModules) else "git"


class ComputingElement(_Frozen):
    """One entry of pilot.json's `CEs`: which site a CE belongs to and its type."""

    Site: str = Field(min_length=1)
    GridCEType: str | None = None
    LocalCEType: str | None = None


def _commands_text(value: tuple[str, ...], key: str) -> tuple[str, ...]:
    for name in value:
        if not _IDENTIFIER.match(name):
            raise names.BadValue(
                f"{key} entry {names.shown(name)} is not a Python name",
                "give the class or module names alone, e.g. "
                'Commands = { Defaults = ["CheckWorkerNode", "InstallDIRAC"] }',
            )
    return value


class PilotSettings(_Frozen):
    """The VO's pilot settings: its `<vo>/Pilot` section, and the top-level keys of pilot.json.

    Keys are spelt as the Pilot reads them. Lists are written the way the Pilot parses them
    (comma-separated strings where it splits on ',', lists where it takes a list).
    """

    # The VO's Pilot section.
    Project: str | None = None
    CheckVersion: bool | None = Field(default=None, strict=True)
    #: Command class names per grid CE type ("Defaults" for any other type), in run order.
    Commands: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: Module prefixes the Pilot searches for commands first: "myvo" -> myvoCommands.py.
    CommandExtensions: tuple[str, ...] = ()
    #: Release versions, best first: the release being built must be the first; when
    #: absent, the build writes the release alone.
    Version: tuple[str, ...] | None = None
    #: CVMFS locations tried after the release's own repository.
    CVMFS_locations: tuple[str, ...] = ()
    pilotFileServer: str | None = None
    RemoteLogging: bool | None = Field(default=None, strict=True)
    RemoteLoggerURL: str | None = None
    RemoteLoggerCEsWhiteList: tuple[str, ...] | None = None
    RemoteLoggerTimerInterval: int | None = Field(default=None, ge=0, strict=True)
    RemoteLoggerBufsize: int | None = Field(default=None, ge=1, strict=True)
    PilotLogLevel: str | None = None
    UploadSE: str | None = None
    UploadPath: str | None = None
    GenericPilotGroup: str | None = None
    GenericPilotDN: str | None = None
    # The top level of pilot.json.
    CEs: dict[str, ComputingElement] = Field(default_factory=dict)
    ConfigurationServers: tuple[str, ...] = ()
    GenericPilotDNs: tuple[str, ...] = ()
    DefaultSetup: str | None = None
    PreferredURLPatterns: tuple[str, ...] | None = None

    @field_validator("Commands")
    @classmethod
    def _commands(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for ce_type, commands in value.items():
            if not ce_type or any(ch.isspace() or ch in ",/" for ch in ce_type):
                raise names.BadValue(
                    f"Commands key {names.shown(ce_type)} is not a CE type",
                    "key the lists by the CEs' GridCEType (e.g. HTCondorCE, AREX), or "
                    "Defaults for any other type",
                )
            if not commands:
                raise names.BadValue(
                    f"Commands.{names.key_part(ce_type)} lists no command",
                    "list the commands to run in order, or leave the CE type out",
                )
            _commands_text(commands, "Commands")
        return value

    @field_validator("CommandExtensions")
    @classmethod
    def _extensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _commands_text(value, "CommandExtensions")

    @field_validator("Version")
    @classmethod
    def _versions(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or any("," in v or not v.strip() for v in value)):
            raise names.BadValue(
                f"Version {names.shown(list(value))} must list versions, one per entry",
                "leave Version out (the build writes the release), or list the release "
                'first, e.g. Version = ["v9.0.0", "v8.0.55"]',
            )
        return value

    @field_validator("CVMFS_locations")
    @classmethod
    def _locations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for location in value:
            if not PurePosixPath(location).is_absolute() or "," in location:
                raise names.BadValue(
                    f"CVMFS location {names.shown(location)} is not an absolute path",
                    'e.g. CVMFS_locations = ["/cvmfs/grid.cern.ch"]',
                )
        return value


class PilotDeployment(_Frozen):
    """One VO's pilot folder: which release, which Pilot commit, which modules, which settings."""

    #: The product whose release the pilot installs (default: the only product).
    product: str | None = None
    pilot: PilotSource
    modules: (
        Annotated[
            Annotated[GitModules, Tag("git")]
            | Annotated[FolderModules, Tag("folder")]
            | Annotated[ReleaseModules, Tag("release")],
            Discriminator(_modules_kind),
        ]
        | None
    ) = None
    settings: PilotSettings = Field(default_factory=PilotSettings)
    #: The DIRAC (a requirement of the package index) whose PilotWrapper.py writes the wrapper
    #: script for these pilot files, as the VO's SiteDirector would; the build makes it and
    #: certification runs it on every host.
    wrapper: str = Field(default="DIRAC>=9.1,<10", min_length=1)
    #: HTTPS folders `dirac-release pilot upload` PUTs the built files into (what DIRAC's
    #: PilotSyncAgent calls UploadLocations), e.g. the pilotFileServer's pilot folder.
    upload: tuple[str, ...] = ()
    #: The client certificate (PEM, relative to release.toml) the upload authenticates with.
    upload_cert: str | None = None
    #: Its private key (PEM, unencrypted, relative to release.toml): read by the TLS library
    #: alone, never by dirac-release, never printed.
    upload_key: str | None = None
    #: The CA file or hashed CA folder (like /etc/grid-security/certificates) that signs the
    #: servers' certificates; default: the system's trusted CAs.
    upload_ca: str | None = None

    @field_validator("upload")
    @classmethod
    def _upload(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        locations = tuple(_upload_location(location) for location in value)
        if len(set(locations)) != len(locations):
            raise names.BadValue("upload lists a location twice",
                                 "list each HTTPS folder once")  # fmt: skip
        return locations

    @model_validator(mode="after")
    def _upload_credentials(self) -> PilotDeployment:
        if self.upload and not (self.upload_cert and self.upload_key):
            raise names.BadValue(
                "upload needs upload_cert and upload_key (the client certificate the server "
                "authorizes, as the PilotSyncAgent uses the host certificate)",
                _UPLOAD_EXAMPLE,
            )
        given = [k for k in ("upload_cert", "upload_key", "upload_ca") if getattr(self, k)]
        if given and not self.upload:
            raise names.BadValue(f"{', '.join(given)} given without upload locations",
                                 _UPLOAD_EXAMPLE)  # fmt: skip
        return self

    @field_validator("modules", mode="before")
    @classmethod
    def _one_kind_of_modules(cls, modules: Any) -> Any:
        if isinstance(modules, Mapping):
            kinds = [key for key in ("git", "folder", "release") if key in modules]
            if len(kinds) != 1:
                raise names.BadValue(
                    "give exactly one of 'git' (with 'tag'), 'folder' or 'release'",
                    "'git' takes the modules from a tag of their repository, 'folder' from a "
                    "folder next to release.toml, 'release' from a folder of the product's "
                    "repository at the tag being released",
                )
        return modules
