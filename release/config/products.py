"""What a product is built from and how it runs: [products.*], its source, services, platforms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from release import names
from release.config.base import _Frozen
from release.config.bases import BaseOverride


class GitSource(_Frozen):
    """A product built from a tag of a git repository (a local path or any git URL)."""

    git: str = Field(min_length=1)
    subdirectory: str | None = None

    @field_validator("subdirectory")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in Path(value).parts):
            raise ValueError("must be a path inside the repository, without '..'")
        return value

    @property
    def kind(self) -> Literal["git"]:
        return "git"


class IndexSource(_Frozen):
    """A product taken as released on the package index, by distribution name."""

    index: str = Field(min_length=1)

    @property
    def kind(self) -> Literal["index"]:
        return "index"


def _source_kind(value: Any) -> str:
    """Pick the source model by its key, so errors speak of one kind, not both."""
    if isinstance(value, Mapping):
        return "index" if "index" in value and "git" not in value else "git"
    return "index" if isinstance(value, IndexSource) else "git"


_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)


class Service(_Frozen):
    """A long-running process of a product, supervised by runit on the server hosts."""

    system: str = "DIRAC"

    @field_validator("system")
    @classmethod
    def _system(cls, value: str) -> str:
        return names.check("system", value)

    command: str = Field(min_length=1)
    environment: dict[str, str] = Field(default_factory=dict)
    health: str | None = None

    @field_validator("environment")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        # The run script says `export NAME=value` with NAME unquoted: anything but a shell
        # identifier there is either a broken script or a command run by the service.
        for name in value:
            if not _SHELL_NAME.fullmatch(name):
                raise names.BadValue(
                    f"environment variable name {names.shown(name)} is not a shell identifier",
                    "use letters, digits and '_', not starting with a digit, e.g. VODEMO_STATE",
                )
        return value

    @field_validator("command")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError(
                "must be relative to the installed version, like 'bin/vodemo-diracx --port 8000'"
            )
        return value


class Product(_Frozen):
    """One thing we release: DIRAC, DiracX, or a VO extension."""

    source: Annotated[
        Annotated[GitSource, Tag("git")] | Annotated[IndexSource, Tag("index")],
        Discriminator(_source_kind),
    ]
    distribution: str | None = None
    python: str = "3.11"
    requirements: tuple[str, ...] = ()
    exclude_newer: datetime | Literal["commit"] | None = "commit"
    smoke_imports: tuple[str, ...] | None = None
    #: Entry points of the bundle run by the smoke test, with arguments ("dirac-version").
    smoke_commands: tuple[str, ...] = ()
    repository: str | None = None
    services: dict[str, Service] = Field(default_factory=dict)
    #: The [bases.*] entry the product runs on: what it provides stays out of the bundle.
    base: str | None = None
    #: Extras of the product's distribution to install, e.g. ["server"] for DIRAC[server].
    extras: tuple[str, ...] = ()
    base_overrides: tuple[BaseOverride, ...] = ()
    #: The release workflow publishes the wheel (the one in the bundles) and an sdist to PyPI
    #: through trusted publishing; only for a product built from its git tag.
    pypi: bool = False

    @field_validator("smoke_commands")
    @classmethod
    def _commands(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import shlex

        for line in value:
            try:
                words = shlex.split(line)
            except ValueError as exc:
                raise ValueError(f"{names.shown(line)} is not a command line ({exc})") from None
            if not words or "/" in words[0]:
                raise names.BadValue(
                    f"smoke command {names.shown(line)} does not start with an entry point name",
                    'give the name of a script in the bundle\'s bin/, e.g. "dirac-version"',
                )
        return value

    @field_validator("extras")
    @classmethod
    def _extras(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for extra in value:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", extra, re.ASCII):
                raise names.BadValue(
                    f"extra {names.shown(extra)} is not an extra's name",
                    'give the names alone, e.g. extras = ["server"]',
                )
        return value

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, Service]) -> dict[str, Service]:
        for name in value:
            names.check("service", name)
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        source = data.get("source") if isinstance(data, Mapping) else None
        if isinstance(source, Mapping):
            kinds = [key for key in ("git", "index") if key in source]
            if len(kinds) != 1:
                raise ValueError(
                    "source: give exactly one of 'git' (build a tag into a wheel) "
                    "or 'index' (a released distribution)"
                )
        return data

    @field_validator("python")
    @classmethod
    def _python(cls, value: str) -> str:
        if not re.fullmatch(r"3\.(1[1-9]|[2-9][0-9])", value, re.ASCII):
            raise names.BadValue(
                f"{names.shown(value)} is not a supported runtime Python (3.11 or newer)",
                'give major.minor as a string, e.g. python = "3.11"',
            )
        return value

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from packaging.requirements import InvalidRequirement, Requirement

        for item in value:
            try:
                req = Requirement(item)
            except InvalidRequirement as exc:
                raise ValueError(
                    f"{names.shown(item)} is not a valid requirement ({names.clip(str(exc), 200)})"
                ) from None
            if req.url:
                raise ValueError(
                    f"{names.shown(item)}: direct URLs cannot be locked reproducibly; pin a version"
                )
        return value

    @field_validator("exclude_newer", mode="before")
    @classmethod
    def _commit_or_date(cls, value: Any) -> Any:
        if value is None or value == "commit" or isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
        raise ValueError('must be "commit" or a date-time such as 2026-10-01T00:00:00Z')

    @field_validator("exclude_newer")
    @classmethod
    def _aware(cls, value: datetime | str | None) -> datetime | str | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def distribution_name(self, product_name: str) -> str:
        if self.distribution:
            return self.distribution
        if isinstance(self.source, IndexSource):
            return self.source.index
        return product_name


class Platform(_Frozen):
    """A target architecture and the glibc baseline its wheels may need (manylinux)."""

    glibc: str = "2.28"

    @field_validator("glibc")
    @classmethod
    def _glibc(cls, value: str) -> str:
        match = re.fullmatch(r"2\.([0-9]{1,3})", value, re.ASCII)
        if not match or int(match.group(1)) < 17:
            raise names.BadValue(
                f"{names.shown(value)} is not a manylinux glibc baseline (2.17 or newer)",
                'give it as a string, e.g. glibc = "2.28"',
            )
        return value

    def python_platform(self, arch: str) -> str:
        """The target triple uv resolves for, e.g. aarch64-manylinux_2_28."""
        return f"{arch}-manylinux_{self.glibc.replace('.', '_')}"
