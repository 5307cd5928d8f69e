"""The one options resolver: release.toml plus DIRAC_RELEASE_* overrides into frozen models.

Every stage takes a `ReleaseConfig`, never raw TOML, so a typo is caught once, up front, with
the file, the key, what is wrong and an example of a right value, before anything is built or
touched.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from release import names
from release.errors import ConfigError

if TYPE_CHECKING:
    from release.ledger import Ledger

T = TypeVar("T")

PlatformName = Literal["x86_64", "aarch64"]
KNOWN_PLATFORMS: tuple[PlatformName, ...] = ("x86_64", "aarch64")
DEFAULT_CONFIG_NAME = "release.toml"

#: Right values shown next to an error, keyed by the last element of the key path.
EXAMPLES: dict[str, str] = {
    "git": 'source = { git = "https://github.com/DIRACGrid/DIRAC.git" }',
    "index": 'source = { index = "diracx" }',
    "source": 'source = { git = "../MyVODIRAC" }  or  source = { index = "diracx" }',
    "subdirectory": 'subdirectory = "src/python"',
    "distribution": 'distribution = "DIRAC"',
    "python": 'python = "3.11"',
    "requirements": 'requirements = ["diracx-client==0.7.0", "gfal2-python>=1.12"]',
    "exclude_newer": 'exclude_newer = "commit"  or  exclude_newer = 2026-10-01T00:00:00Z',
    "glibc": 'glibc = "2.28"',
    "platforms": '[platforms.x86_64]\nglibc = "2.28"\n\n[platforms.aarch64]\nglibc = "2.28"',
    "products": '[products.DIRAC]\nsource = { git = "https://github.com/DIRACGrid/DIRAC.git" }',
    "out": 'out = "dist"',
    "cache_dir": 'cache_dir = "~/.cache/dirac-release"',
    "compression_level": "compression_level = 3",
    "jobs": "jobs = 2",
    "dir": '[state]\ndir = "state"',
    "repositories": '[repositories."dirac.egi.eu"]\nbackend = "directory"\npath = "stratum"\nprefix = "dirac"',
    "backend": 'backend = "directory"  or  backend = "server"',
    "prefix": 'prefix = "dirac"',
    "links": 'links = ["latest"]',
    "keep": "keep = 5",
    "tag_format": 'tag_format = "{product}-{tag}"',
    "wait": "wait = 120",
    "path": 'path = "stratum"',
    "environments": '[environments.certification]\nhosts = { cctbdirac01 = "cctbdirac01.in2p3.fr", cctbdirac02 = "cctbdirac02.in2p3.fr" }',
    "hosts": 'hosts = { cctbdirac01 = "cctbdirac01.in2p3.fr" }',
    "services": '[products.vodemo.services.diracx]\ncommand = "bin/vodemo-diracx --port 8000"\nhealth = "http://127.0.0.1:8000/api/health/live"',
    "command": 'command = "bin/vodemo-diracx --port 8000"',
    "batch": "batch = 1",
    "max_fail_percentage": "max_fail_percentage = 0",
    "repository": 'repository = "dirac.egi.eu"',
    "smoke_imports": 'smoke_imports = ["DIRAC", "M2Crypto"]',
}


#: Tables whose keys are names that become paths: their keys are judged by the name rule
#: (release/names.py), so they get its message rather than the generic one below.
NAME_TABLES = frozenset({"products", "repositories", "environments", "hosts", "services"})

CONTROL_PROBLEM = "contains a control character (NUL, line break, tab...)"
CONTROL_FIX = (
    "remove the control character: a NUL in a path makes every file call fail, and in a "
    "command, URL or name it is never meant (write \\u escapes only for printable text)"
)


def _has_control(text: str, *, allow_space_controls: bool) -> bool:
    allowed = "\t\n\r" if allow_space_controls else ""
    return any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text)


def _control_char_path(value: Any, path: str = "", parent: str = "") -> tuple[str, str] | None:
    """(key path, shown value) of the first string or key holding NUL or another control.

    Tabs and line breaks are allowed in values (a command may span lines), never in keys.
    Keys of NAME_TABLES are left to the name rule. Recursion is bounded by the TOML parser's
    own nesting limit, which refuses deeper files before this runs.
    """
    if isinstance(value, str):
        if _has_control(value, allow_space_controls=True):
            return path or "(top level)", names.shown(value)
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            part = names.key_part(key)
            here = f"{path}.{part}".lstrip(".")
            if (
                isinstance(key, str)
                and parent not in NAME_TABLES
                and _has_control(key, allow_space_controls=False)
            ):
                return here, names.shown(key)
            found = _control_char_path(item, here, str(key))
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _control_char_path(item, f"{path}.{index}", parent)
            if found is not None:
                return found
    return None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_chars(cls, data: Any, info: ValidationInfo) -> Any:
        # A NUL in a path makes every file call raise; in a command or URL it is never meant.
        # parse_config scans the whole file itself (naming the key, next to the other
        # errors) and says so in the context; this guards models built in code.
        # `path` of the top model is a Path, not text from the file.
        if info.context and info.context.get("control_checked"):
            return data
        found = _control_char_path({k: v for k, v in data.items() if k != "path"}
                                   if isinstance(data, Mapping) else data)  # fmt: skip
        if found is not None:
            where, value = found
            raise names.BadValue(f"{where}: {value} {CONTROL_PROBLEM}", CONTROL_FIX)
        return data


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


def _ssh_target(what: str, value: str | None) -> str | None:
    """An address or user that ends up as an ssh argument: never an option, never split.

    `ssh -oProxyCommand=...` runs a command; an address starting with '-' would be read as
    such an option by ssh (or by Ansible's ssh connection) rather than as a host.
    """
    if value and (value.startswith("-") or any(ch.isspace() for ch in value)):
        raise names.BadValue(
            f"{what} {names.shown(value)} starts with '-' or contains a space",
            "give a host name or an IP address, like 'cctbdirac01.in2p3.fr' or '10.0.0.1'",
        )
    return value


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
    repository: str | None = None
    services: dict[str, Service] = Field(default_factory=dict)

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


class Repository(_Frozen):
    """A CVMFS repository that releases are published to, and how to reach it."""

    backend: Literal["directory", "server"] = "directory"
    prefix: str = "dirac"
    links: tuple[str, ...] = ()
    keep: int = Field(default=5, ge=1, le=1000, strict=True)
    tag_format: str = "{product}-{tag}"
    wait: float = Field(default=120.0, ge=0, le=7200, strict=True)
    # directory backend: the stratum folder that holds <repository>/ (like /cvmfs)
    path: str | None = None
    # server backend: cvmfs_server on this node, or on `host` over SSH
    host: str | None = None
    user: str | None = None
    ssh_key: str | None = None
    ssh_options: tuple[str, ...] = ()
    cvmfs_server: str = "cvmfs_server"
    mount_root: str = "/cvmfs"
    stratum_root: str = "/srv/cvmfs"
    spool_root: str = "/var/spool/cvmfs"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        fix = "a relative path inside the repository, like 'dirac' or 'lhcb/dirac'"
        if len(value) > 255:
            raise names.BadValue(
                f"prefix {names.shown(value)} is longer than 255 characters", f"use {fix}"
            )
        if value.startswith("/") or not value:
            raise names.BadValue(f"prefix {names.shown(value)} must be {fix}", f"use {fix}")
        for segment in value.split("/"):
            names.check("prefix segment", segment)
        return value

    @field_validator("links")
    @classmethod
    def _links(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            names.check("link", name)
            if name == "pro":
                raise ValueError(
                    "'pro' is moved only by promotion; list only the links publish moves"
                )
            if _looks_like_release(name):
                raise names.BadValue(
                    f"link name {names.shown(name)} looks like a release version or tag: a "
                    "release folder of that name would collide with it",
                    "name links with a word that is not a version, like 'latest'",
                )
        if len(set(value)) != len(value):
            twice = sorted({name for name in value if value.count(name) > 1})
            raise names.BadValue(
                f"link {names.shown(twice[0])} is listed twice", "list each link once"
            )
        return value

    @field_validator("tag_format")
    @classmethod
    def _tag_format(cls, value: str) -> str:
        """Only bare {product}, {tag}, {version}: str.format would otherwise reach attributes
        and items of the values (or fail with a traceback at publish time), and a format
        without {tag} or {version} gives every release the same CVMFS tag."""
        import string

        allowed = ("product", "tag", "version")
        fix = 'use only {product}, {tag} and {version}, bare, e.g. tag_format = "{product}-{tag}"'
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise names.BadValue(
                f"tag_format {names.shown(value)} is not a format: {exc}",
                fix + " (write {{ and }} for literal braces)",
            ) from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in allowed or spec or conversion:
                written = (
                    "{" + field + (f"!{conversion}" if conversion else "")
                    + (f":{spec}" if spec else "") + "}"
                )  # fmt: skip
                raise names.BadValue(
                    f"tag_format placeholder {names.shown(written)} is not allowed",
                    fix,
                )
        if not any(field in ("tag", "version") for _, field, _, _ in parsed):
            raise names.BadValue(
                f"tag_format {names.shown(value)} contains neither {{tag}} nor {{version}}: "
                "every release needs its own CVMFS tag",
                fix,
            )
        example = value.format(product="DIRAC", tag="v9.0.0a29", version="9.0.0a29")
        problem = names.name_problem(example)
        if problem is not None:
            raise names.BadValue(
                f"tag_format {names.shown(value)} gives the tag {names.shown(example)}, which "
                f"{problem}",
                fix,
            )
        return value

    @model_validator(mode="after")
    def _links_are_not_tags(self) -> Repository:
        """A link that reads as this repository's tag of some release is refused.

        Tags and links are different namespaces to CVMFS, but people (and `cvmfs` listings)
        read them side by side: `latest` next to `vodemo-v1.0.0` is clear, a link named like a
        tag is a release that is not one.
        """
        pattern = _tag_pattern(self.tag_format)
        for name in self.links:
            if pattern is not None and pattern.fullmatch(name):
                raise names.BadValue(
                    f"link name {names.shown(name)} reads as a tag of tag_format "
                    f"{names.shown(self.tag_format)}: it would be taken for a release",
                    "name links with a word that is not a version, like 'latest'",
                )
        return self

    @field_validator("host", "user")
    @classmethod
    def _ssh_args(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _ssh_target(str(info.field_name), value)

    @model_validator(mode="after")
    def _backend_needs(self) -> Repository:
        if self.backend == "directory" and not self.path:
            raise ValueError("the directory backend needs 'path', the stratum folder")
        return self


# Release-like spellings: a PEP 440 version with or without 'v' (what a version folder is
# named, before or after normalisation), and the legacy vXrY[pZ] DIRAC tags.
_VERSION_LIKE = r"[vV]?[0-9][0-9A-Za-z.!+_-]*"
_LEGACY_LIKE = r"[vV][0-9]+r[0-9]+(?:p[0-9]+)?(?:-pre[0-9]+)?"


def _looks_like_release(name: str) -> bool:
    """Whether `name` could be (or be mistaken for) a release folder in the prefix.

    Wider than PEP 440 on purpose: 'v1.2.3.x' or 'v2-beta' is no valid version but reads as
    one, and a name that starts with a digit or 'v' + digit is never a useful link name.
    """
    return bool(
        re.fullmatch(_LEGACY_LIKE, name, re.ASCII | re.IGNORECASE)
        or re.fullmatch(_VERSION_LIKE, name, re.ASCII)
    )


def _tag_pattern(tag_format: str) -> re.Pattern[str] | None:
    """A regex matching what `tag_format` gives for any product and release (None if invalid)."""
    import string

    parts: list[str] = []
    try:
        for literal, field, _spec, _conversion in string.Formatter().parse(tag_format):
            parts.append(re.escape(literal))
            if field == "product":
                parts.append(r"[A-Za-z][A-Za-z0-9_.-]*")
            elif field in ("tag", "version"):
                parts.append(_VERSION_LIKE)
            elif field is not None:
                return None
    except ValueError:
        return None
    return re.compile("".join(parts), re.ASCII)


def _default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "dirac-release")


class BuildSettings(_Frozen):
    """Where bundles go and how they are packed."""

    out: str = "dist"
    cache_dir: str = Field(default_factory=_default_cache)
    compression_level: int = Field(default=3, ge=0, le=9, strict=True)
    jobs: int = Field(default=2, ge=1, le=16, strict=True)


class CertifySettings(_Frozen):
    """What `dirac-release certify` checks on an environment's DiracX."""

    # The DiracX URL: one URL (an ingress), or per host with {address} / {host} in it.
    url: str | None = None
    # The expected token issuer; default: the URL.
    issuer: str | None = None
    vos: tuple[str, ...] = ()
    # Who the token is for (legacy exchange): user, VO, group.
    user: str | None = None
    vo: str | None = None
    group: str | None = None
    # The legacy-exchange key: from this file, or from this environment variable.
    legacy_key_file: str | None = None
    legacy_key_env: str = "DIRAC_RELEASE_LEGACY_KEY"
    # Whether DiracX task workers run (then submitted jobs must reach a final state).
    workers: bool = Field(default=False, strict=True)
    health_timeout: float = Field(default=60.0, gt=0, le=900, strict=True)
    job_timeout: float = Field(default=300.0, gt=0, le=3600, strict=True)

    @model_validator(mode="after")
    def _token_target(self) -> CertifySettings:
        given = [name for name in ("user", "vo", "group") if getattr(self, name)]
        if given and len(given) != 3:
            raise ValueError("user, vo and group go together (who the token is for)")
        return self


class Environment(_Frozen):
    """A set of server hosts upgraded together: certification, production."""

    product: str | None = None
    repository: str | None = None
    platform: PlatformName = "x86_64"
    hosts: dict[str, str] = Field(min_length=1)
    batch: int = Field(default=1, ge=1, strict=True)
    max_fail_percentage: int = Field(default=0, ge=0, le=100, strict=True)
    keep: int = Field(default=3, ge=1, le=1000, strict=True)
    ssh_user: str = "root"
    ssh_key: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    # A YAML file of extra variables, normally encrypted with ansible-vault (secrets such as
    # dirac_server_secret_files); ansible-playbook decrypts it with its own vault settings
    # (ANSIBLE_VAULT_PASSWORD_FILE), dirac-release never reads it.
    secrets_file: str | None = None
    certify: CertifySettings = Field(default_factory=CertifySettings)

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, value: str) -> str:
        return _ssh_target("ssh_user", value) or value

    @field_validator("hosts")
    @classmethod
    def _unique(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for name, address in value.items():
            names.check("host", name)
            _ssh_target(f"host {name}'s address", address)
            target = address or name
            if target in seen:
                raise ValueError(
                    f"duplicate host: {name} and {seen[target]} both point to {names.shown(target)}"
                )
            seen[target] = name
        return value


class StateSettings(_Frozen):
    """Where the ledger of each release is kept."""

    dir: str = "state"


class ReleaseConfig(_Frozen):
    """A validated release.toml. `path` is where it came from, for messages and relative paths."""

    products: dict[str, Product]
    platforms: dict[PlatformName, Platform] = Field(
        default_factory=lambda: {name: Platform() for name in KNOWN_PLATFORMS}
    )
    build: BuildSettings = Field(default_factory=BuildSettings)
    repositories: dict[str, Repository] = Field(default_factory=dict)
    environments: dict[str, Environment] = Field(default_factory=dict)
    state: StateSettings = Field(default_factory=StateSettings)
    path: Path = Path(DEFAULT_CONFIG_NAME)

    @field_validator("products")
    @classmethod
    def _names(cls, value: dict[str, Product]) -> dict[str, Product]:
        if not value:
            raise ValueError("at least one product is needed")
        for name in value:
            names.check("product", name)
        return value

    @field_validator("repositories")
    @classmethod
    def _repository_names(cls, value: dict[str, Repository]) -> dict[str, Repository]:
        for name in value:
            names.check("repository", name, repository=True)
        return value

    @field_validator("environments")
    @classmethod
    def _environment_names(cls, value: dict[str, Environment]) -> dict[str, Environment]:
        for name in value:
            names.check("environment", name)
        return value

    @field_validator("platforms")
    @classmethod
    def _some(cls, value: dict[str, Platform]) -> dict[str, Platform]:
        if not value:
            raise ValueError("at least one platform is needed")
        return value

    @model_validator(mode="after")
    def _references(self) -> ReleaseConfig:
        refs: list[tuple[str, str | None, Mapping[str, object]]] = [
            (f"products.{n}.repository", p.repository, self.repositories)
            for n, p in self.products.items()
        ]
        refs += [
            (f"environments.{n}.repository", e.repository, self.repositories)
            for n, e in self.environments.items()
        ]
        refs += [
            (f"environments.{n}.product", e.product, self.products)
            for n, e in self.environments.items()
        ]
        for key, value, table in refs:
            if value is not None and value not in table:
                raise names.BadValue(
                    f"{key} names {names.shown(value)}, which is not defined",
                    f"use one of the names defined: {', '.join(table) or 'none'}",
                )
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    def resolve_path(self, value: str) -> Path:
        """Paths in the file are relative to the file, not to wherever the command runs."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def ledger(self, product: str, tag: str) -> Ledger:
        from release.ledger import Ledger

        return Ledger(self.resolve_path(self.state.dir), product, tag)

    def _pick(
        self, kind: str, table: Mapping[str, T], name: str | None, choose: str, plural: str
    ) -> tuple[str, T]:
        """The named entry of a table, or its only one; errors say what exists."""
        from release.errors import BadInput

        if name is None:
            if len(table) == 1:
                return next(iter(table.items()))
            if not table:
                raise BadInput(
                    f"{self.path} defines no {kind}", fix="add one, e.g.\n" + EXAMPLES[plural]
                )
            raise BadInput(f"{self.path} defines several {plural} ({', '.join(table)})", fix=choose)
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BadInput(
                f"unknown {kind} {name!r}",
                where=str(self.path),
                fix=f"{hint}{plural} in this file: {', '.join(table) or 'none'}",
            )
        return name, table[name]

    def product(self, name: str | None) -> tuple[str, Product]:
        """The product a command is about: the named one, or the only one."""
        first = next(iter(self.products), "DIRAC")
        return self._pick(
            "product",
            self.products,
            name,
            f"choose one with --product, e.g. --product {first}",
            "products",
        )

    def repository(
        self, name: str | None, product: Product | None = None
    ) -> tuple[str, Repository]:
        """The repository a command is about: named, the product's, or the only one."""
        name = name or (product.repository if product else None)
        return self._pick(
            "repository",
            self.repositories,
            name,
            "choose one with --repository, or set products.<name>.repository",
            "repositories",
        )

    def environment(self, name: str) -> Environment:
        return self._pick(
            "environment", self.environments, name, "choose one with --env", "environments"
        )[1]

    def platform_names(self, choice: str) -> list[PlatformName]:
        """Expand a --platform choice ('all' or one name) against the configured platforms."""
        from release.errors import BadInput

        if choice == "all":
            return list(self.platforms)
        if choice not in self.platforms:
            raise BadInput(
                f"unknown platform {choice!r}",
                fix=f"choose one of: {', '.join([*self.platforms, 'all'])}",
            )
        return [choice]


#: Environment overrides: variable -> key path in the file.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "DIRAC_RELEASE_OUT": ("build", "out"),
    "DIRAC_RELEASE_CACHE": ("build", "cache_dir"),
    "DIRAC_RELEASE_JOBS": ("build", "jobs"),
    "DIRAC_RELEASE_COMPRESSION_LEVEL": ("build", "compression_level"),
    "DIRAC_RELEASE_STATE": ("state", "dir"),
}


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply overrides; also return key path -> variable, so errors can name the variable."""
    used: dict[str, str] = {}
    for var, keys in ENV_OVERRIDES.items():
        if environ.get(var):
            section = data.setdefault(keys[0], {})
            if isinstance(section, dict):
                section = dict(section)
                section[keys[1]] = _typed(var, keys, environ[var])
                data[keys[0]] = section
                used[".".join(keys)] = var
    return data, used


def _typed(var: str, keys: tuple[str, ...], text: str) -> Any:
    """An override's text as its field's type: the fields are strict, so convert explicitly."""
    models: dict[str, type[BaseModel]] = {"build": BuildSettings, "state": StateSettings}
    if models[keys[0]].model_fields[keys[1]].annotation is not int:
        return text
    if not re.fullmatch(r"[0-9]{1,6}", text.strip(), re.ASCII):
        raise ConfigError(
            f"{var}={names.shown(text)} is not a whole number",
            where=f"${var}",
            fix=f"set it to a number, e.g. {var}=2, or unset it to use release.toml",
        )
    return int(text)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys valid where an unknown key was found, for a 'did you mean'."""
    model: type[BaseModel] = ReleaseConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            continue
        annotation = field.annotation
        for candidate in (
            Environment,
            Service,
            Product,
            Platform,
            BuildSettings,
            StateSettings,
            Repository,
            GitSource,
            IndexSource,
        ):
            if annotation is candidate or candidate.__name__ in str(annotation):
                model = candidate
                break
    if model is Product and loc and loc[-2:-1] == ("source",):
        return ["git", "index", "subdirectory"]
    return [name for name in model.model_fields if model is not ReleaseConfig or name != "path"]


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
        if raw[index] == "source" and raw[index + 1] in ("git", "index") and index + 2 < len(raw):
            source_kind = raw.pop(index + 1)  # the discriminator's tag, not a key of the file
            break
    loc = tuple(raw)
    key = ".".join(names.key_part(part) for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = (
            list((GitSource if source_kind == "git" else IndexSource).model_fields)
            if source_kind
            else _known_keys(loc)
        )
        last = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(last, known, n=1) if len(last) <= 100 else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return key, f"unknown key{hint}; valid keys here: {', '.join(known)}", None
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


def parse_config(
    data: dict[str, Any], path: Path, environ: Mapping[str, str] | None = None
) -> ReleaseConfig:
    """Validate already-parsed TOML; errors name `path` and the key."""
    data, from_env = _apply_env(dict(data), os.environ if environ is None else environ)
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


def stamp(value: datetime) -> str:
    """RFC 3339 in UTC, the form uv's --exclude-newer and our JSON use."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
