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


def _control_char_path(value: Any, path: str = "") -> str | None:
    """The key path of the first string holding NUL (or another C0 control but tab/newline)."""
    if isinstance(value, str):
        return path if any(ord(c) < 32 and c not in "\t\n\r" for c in value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and any(ord(c) < 32 for c in key):
                return f"{path}.{names.shown(key)}".lstrip(".")
            found = _control_char_path(item, f"{path}.{key}".lstrip("."))
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _control_char_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_chars(cls, data: Any) -> Any:
        # A NUL in a path makes every file call raise; in a command or URL it is never meant.
        where = _control_char_path({k: v for k, v in data.items() if k != "path"}
                                   if isinstance(data, Mapping) else data)  # fmt: skip
        if where is not None:
            raise ValueError(f"{where or 'a value'} contains a NUL or control character")
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
        if not re.fullmatch(r"3\.(1[1-9]|[2-9]\d)", value):
            raise ValueError(f"{value!r} is not a supported runtime Python (3.11 or newer)")
        return value

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from packaging.requirements import InvalidRequirement, Requirement

        for item in value:
            try:
                req = Requirement(item)
            except InvalidRequirement as exc:
                raise ValueError(f"{item!r} is not a valid requirement ({exc})") from None
            if req.url:
                raise ValueError(
                    f"{item!r}: direct URLs cannot be locked reproducibly; pin a version"
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
        match = re.fullmatch(r"2\.(\d+)", value)
        if not match or int(match.group(1)) < 17:
            raise ValueError(f"{value!r} is not a manylinux glibc baseline (2.17 or newer)")
        return value

    def python_platform(self, arch: str) -> str:
        """The target triple uv resolves for, e.g. aarch64-manylinux_2_28."""
        return f"{arch}-manylinux_{self.glibc.replace('.', '_')}"


class Repository(_Frozen):
    """A CVMFS repository that releases are published to, and how to reach it."""

    backend: Literal["directory", "server"] = "directory"
    prefix: str = "dirac"
    links: tuple[str, ...] = ()
    keep: int = Field(default=5, ge=1, strict=True)
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
        if len(value) > 255:
            raise ValueError(f"prefix {names.shown(value)} is longer than 255 characters")
        if value.startswith("/") or not value:
            raise ValueError(
                "must be a relative path inside the repository, like 'dirac' or 'lhcb/dirac'"
            )
        for segment in value.split("/"):
            names.check("prefix segment", segment)
        return value

    @field_validator("links")
    @classmethod
    def _links(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from packaging.version import InvalidVersion, Version

        for name in value:
            names.check("link", name)
            if name == "pro":
                raise ValueError(
                    "'pro' is moved only by promotion; list only the links publish moves"
                )
            try:
                Version(name)
            except InvalidVersion:
                continue
            raise ValueError(
                f"link name {names.shown(name)} looks like a version: a release folder of that "
                "name would collide with it; use a word like 'latest'"
            )
        return value

    @field_validator("tag_format")
    @classmethod
    def _tag_format(cls, value: str) -> str:
        import string

        allowed = ("product", "tag", "version")
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"tag_format {names.shown(value)}: {exc}") from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in allowed or spec or conversion:
                raise ValueError(
                    f"tag_format placeholder {{{names.shown(field)[1:-1]}"
                    f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                    f"is not allowed; use only {{product}}, {{tag}} or {{version}}, bare"
                )
        if not any(field in ("tag", "version") for _, field, _, _ in parsed):
            raise ValueError(
                "tag_format must contain {tag} or {version}: every release needs its own CVMFS tag"
            )
        example = value.format(product="DIRAC", tag="v9.0.0a29", version="9.0.0a29")
        names.check("tag_format gives a tag", example)
        return value

    @model_validator(mode="after")
    def _backend_needs(self) -> Repository:
        if self.backend == "directory" and not self.path:
            raise ValueError("the directory backend needs 'path', the stratum folder")
        return self


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
    keep: int = Field(default=3, ge=1, strict=True)
    ssh_user: str = "root"
    ssh_key: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    # A YAML file of extra variables, normally encrypted with ansible-vault (secrets such as
    # dirac_server_secret_files); ansible-playbook decrypts it with its own vault settings
    # (ANSIBLE_VAULT_PASSWORD_FILE), dirac-release never reads it.
    secrets_file: str | None = None
    certify: CertifySettings = Field(default_factory=CertifySettings)

    @field_validator("hosts")
    @classmethod
    def _unique(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for name, address in value.items():
            names.check("host", name)
            target = address or name
            if target in seen:
                raise ValueError(
                    f"duplicate host: {name} and {seen[target]} both point to {target}"
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
                raise ValueError(
                    f"{key} names {value!r}, which is not defined (defined: {', '.join(table) or 'none'})"
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


def _format(error: Mapping[str, Any]) -> tuple[str, str]:
    """(key path, message) for one pydantic error, in the words of the file."""
    # Drop pydantic's own loc parts (union branches, validators, '[key]'): keep the file's keys.
    raw = [part for part in error["loc"] if _is_key(part)]
    source_kind = None
    for index in range(len(raw) - 1):
        if raw[index] == "source" and raw[index + 1] in ("git", "index") and index + 2 < len(raw):
            source_kind = raw.pop(index + 1)  # the discriminator's tag, not a key of the file
            break
    loc = tuple(raw)
    key = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        known = (
            list((GitSource if source_kind == "git" else IndexSource).model_fields)
            if source_kind
            else _known_keys(loc)
        )
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return key, f"unknown key{hint}; valid keys here: {', '.join(known)}"
    if kind == "missing":
        return key, "required key is missing"
    if kind == "literal_error" and loc and loc[0] == "platforms":
        return key, f"unknown platform; supported: {', '.join(KNOWN_PLATFORMS)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if (
        "input" in error
        and kind not in ("model_type", "dict_type")
        and not isinstance(error["input"], dict)
    ):
        message = f"{message} (got {names.shown(error['input'])})"
    return key, message


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
    try:
        return ReleaseConfig.model_validate({**data, "path": path})
    except ValidationError as exc:
        errors = [_format(err) for err in exc.errors()]
        errors = [
            (key, f"{message} (set by {from_env[key]})" if key in from_env else message)
            for key, message in errors
        ]
        seen: set[str] = set()
        lines: list[str] = []
        fixes: list[str] = []
        for key, message in errors:
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"{key}: {message}")
            example = _example_for(_suggested_key(key, message))
            if example and example not in fixes:
                fixes.append(example)
        fix = None
        if fixes:
            body = "\n".join(
                "\n".join(f"  {line}" for line in example.splitlines()) for example in fixes
            )
            fix = "example of a right value:\n" + body
        raise ConfigError(
            "; ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines),
            where=str(path),
            fix=fix,
        ) from None


MAX_CONFIG_BYTES = 4 * 1024 * 1024


def _read_config(path: Path) -> str:
    """The file's text: a regular file (a FIFO or device must not block), bounded, UTF-8."""
    import stat

    missing_fix = (
        "pass --config PATH, create release.toml here, or try the embedded demo: dirac-release demo"
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            "configuration file not found", where=str(path), fix=missing_fix
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(
            f"cannot open the configuration: {getattr(exc, 'strerror', None) or exc}",
            where=names.shown(str(path)),
            fix=missing_fix,
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError(f"the configuration is {kind}", where=str(path), fix=missing_fix)
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"the configuration is {info.st_size} bytes; a release.toml is far smaller "
                f"(at most {MAX_CONFIG_BYTES})",
                where=str(path),
            )
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the configuration: {exc.strerror}", where=str(path)
        ) from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the configuration is not UTF-8 text (byte {exc.start})",
            where=str(path),
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
