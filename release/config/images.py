"""[images.*]: one VO's container image for DIRAC's SingularityComputingElement.

DIRAC's SingularityComputingElement runs each job in a container whose root filesystem is a
plain folder, usually one on CVMFS. The image holds the OS a VO's jobs need, never DIRAC: the
release is seen through the bound `/cvmfs`, as the CE always does. So this table says which
OS base the image starts from (per architecture: both x86_64 and aarch64 worker nodes run the
same VO's jobs), which OS packages it must have, which host folders a site binds into it (the
CA certificates, the VOMS files) and its environment and labels; the release it is built for
is given on the command line and recorded in the image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from release import names
from release.config.base import PlatformName, _Frozen

#: Debian package names (Debian policy 5.6.7): lower case, digits, '+', '-', '.'.
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,99}\Z", re.ASCII)
#: An image name component (OCI distribution spec), without ':' or '/'.
_IMAGE_NAME = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*\Z", re.ASCII)
#: Environment variable names a shell can export.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z", re.ASCII)
#: OCI annotation keys: reverse domain notation (image-spec annotations.md).
_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9.-]*(\.[a-z0-9][a-z0-9_.-]*)+\Z", re.ASCII)
#: Folders of the image a bind target may not be: the container's own runtime mounts, and
#: /cvmfs, which every image gets anyway.
RESERVED_TARGETS = frozenset({"/", "/dev", "/proc", "/sys", "/cvmfs", "/tmp", "/.dirac-release"})  # noqa: S108
DEFAULT_BINDS = ("/etc/grid-security/certificates", "/etc/grid-security/vomsdir")


class DebianImageBase(_Frozen):
    """The Debian root filesystem this machine keeps per architecture (`base debian`).

    It is found at `release.base.debian.cached_path(arch)`; only bookworm exists there, so
    only bookworm is accepted.
    """

    debian: Literal["bookworm"]


class OciImageBase(_Frozen):
    """An OCI image archive per architecture (`oci-archive`: a tar of an OCI image layout),
    e.g. an EL9 image a site already certifies, exported with `skopeo copy ... oci-archive:`."""

    oci: dict[PlatformName, str] = Field(min_length=1)

    @field_validator("oci")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for arch, path in value.items():
            if not path.strip():
                raise names.BadValue(
                    f"oci.{arch} is empty",
                    f'give the archive of the {arch} image, e.g. oci.{arch} = "images/el9-{arch}.tar"',
                )
        return value


def _base_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "oci" if "oci" in value and "debian" not in value else "debian"
    return "oci" if isinstance(value, OciImageBase) else "debian"


def _absolute_folder(value: str, what: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or str(path) != value.rstrip("/") or (
        set(value) & set("\"'$`\\ ,:")
    ):  # fmt: skip
        raise names.BadValue(
            f"{what} {names.shown(value)} is not a plain absolute folder",
            'give where the container sees it, e.g. "/etc/grid-security/certificates" '
            "(no '..', spaces, quotes, ':' or ',': apptainer's --bind splits on them)",
        )
    return str(path)


class ImageSettings(_Frozen):
    """One VO's image: its base, the packages it must hold, the binds, env and labels."""

    #: The product whose release the image is built and certified for (default: the only one).
    product: str | None = None
    base: Annotated[
        Annotated[DebianImageBase, Tag("debian")] | Annotated[OciImageBase, Tag("oci")],
        Discriminator(_base_kind),
    ]
    #: The image's name in its CVMFS path (`containers/<vo>/<name>:<tag>`); default: the VO's.
    name: str | None = None
    #: Debian packages the image must have: checked against the base's dpkg status; those
    #: it lacks come from a base made once with them (release/image/build.py), so every
    #: build itself stays offline and reproducible.
    packages: tuple[str, ...] = ()
    #: Folders of the host a site binds into the container (absolute, as the container sees
    #: them): the image gets each one as an empty folder, so binding works on a read-only
    #: root filesystem.
    binds: tuple[str, ...] = DEFAULT_BINDS
    #: Environment of the image's config (PATH and LANG have defaults).
    env: dict[str, str] = Field(default_factory=dict)
    #: Extra labels (OCI annotations, reverse-domain keys); the build adds its own.
    labels: dict[str, str] = Field(default_factory=dict)
    #: What certification runs inside the image once the release's `diracosrc` (from the
    #: bound /cvmfs) is sourced: a command of the release (default: the product's first
    #: smoke command, else python importing its first smoke import).
    command: str | None = None

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        import shlex

        if value is None:
            return value
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise names.BadValue(
                f"command {names.shown(value)} cannot be split into words ({exc})",
                'close its quotes, e.g. command = "dirac-version"',
            ) from None
        if not words:
            raise names.BadValue("command is empty", 'give one, e.g. command = "dirac-version"')
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE_NAME.fullmatch(value):
            raise names.BadValue(
                f"image name {names.shown(value)} is not a plain image name",
                'lower-case letters, digits, ".", "_" and "-", starting with a letter or digit '
                '(no ":" or "/": the tag and the VO are added), e.g. name = "el9-worker"',
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_kind_of_base(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("base"), Mapping):
            kinds = [key for key in ("debian", "oci") if key in data["base"]]
            if len(kinds) > 1:
                raise names.BadValue(
                    "base: give one of 'debian' or 'oci', not both",
                    'base = { debian = "bookworm" } (the Debian base this machine keeps per '
                    'architecture) or base.oci = { x86_64 = "el9-x86_64.tar", aarch64 = '
                    '"el9-aarch64.tar" } (OCI image archives)',
                )
        return data

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for package in value:
            if not _DEBIAN_PACKAGE.match(package):
                raise names.BadValue(
                    f"package {names.shown(package)} is not a Debian package name",
                    'give names as apt knows them, e.g. packages = ["openssl", "python3"]',
                )
        if len(set(value)) != len(value):
            raise names.BadValue("packages lists a package twice", "list each package once")
        return value

    @field_validator("binds")
    @classmethod
    def _binds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(_absolute_folder(bind, "bind") for bind in value)
        for bind in out:
            if bind in RESERVED_TARGETS or bind.startswith(("/cvmfs/", "/proc/", "/dev/")):
                raise names.BadValue(
                    f"bind {names.shown(bind)} is a folder the runtime or the image owns",
                    "bind the CA and VOMS folders, e.g. binds = "
                    '["/etc/grid-security/certificates", "/etc/grid-security/vomsdir"]; '
                    "/cvmfs is always there",
                )
        if len(set(out)) != len(out):
            raise names.BadValue("binds lists a folder twice", "list each folder once")
        return out

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise names.BadValue(
                    f"env name {names.shown(name)} is not a variable name",
                    'e.g. env = { X509_CERT_DIR = "/etc/grid-security/certificates" }',
                )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_KEY.match(key):
                raise names.BadValue(
                    f"label {names.shown(key)} is not a reverse-domain key",
                    'e.g. labels = { "eu.egi.dteam.contact" = "admin@example.org" }',
                )
            if key.startswith(("org.opencontainers.", "org.diracgrid.")):
                raise names.BadValue(
                    f"label {names.shown(key)} is one the build writes itself",
                    "use a key of your own domain, e.g. eu.egi.dteam.contact",
                )
        return value

    def base_label(self) -> str:
        """How the base is named in tables, labels and messages."""
        if isinstance(self.base, DebianImageBase):
            return f"debian {self.base.debian}"
        return "oci archive"
