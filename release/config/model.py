"""The whole file: ReleaseConfig, its cross-references, and picking the entry a command is about."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from release import names
from release.config.base import DEFAULT_CONFIG_NAME, KNOWN_PLATFORMS, PlatformName, _Frozen
from release.config.bases import Base
from release.config.environments import Environment
from release.config.examples import EXAMPLES
from release.config.images import ImageSettings
from release.config.pilots import PilotDeployment, ReleaseModules
from release.config.products import Platform, Product
from release.config.repositories import Repository
from release.config.settings import BuildSettings, StateSettings
from release.config.suggest import close_match

if TYPE_CHECKING:
    from release.ledger import Ledger

T = TypeVar("T")


class ReleaseConfig(_Frozen):
    """A validated release.toml. `path` is where it came from, for messages and relative paths."""

    products: dict[str, Product]
    platforms: dict[PlatformName, Platform] = Field(
        default_factory=lambda: {name: Platform() for name in KNOWN_PLATFORMS}
    )
    build: BuildSettings = Field(default_factory=BuildSettings)
    repositories: dict[str, Repository] = Field(default_factory=dict)
    bases: dict[str, Base] = Field(default_factory=dict)
    environments: dict[str, Environment] = Field(default_factory=dict)
    pilots: dict[str, PilotDeployment] = Field(default_factory=dict)
    images: dict[str, ImageSettings] = Field(default_factory=dict)
    state: StateSettings = Field(default_factory=StateSettings)
    path: Path = Path(DEFAULT_CONFIG_NAME)

    #: Fields that are not keys of the file (`path` is where the file was read from).
    NOT_FILE_KEYS: ClassVar[frozenset[str]] = frozenset({"path"})

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

    #: What an entry of each named table is called in messages.
    _ENTRY_KINDS: ClassVar[dict[str, str]] = {"bases": "base", "environments": "environment",
                                               "pilots": "VO", "images": "VO"}  # fmt: skip

    @field_validator("bases", "environments", "pilots", "images")
    @classmethod
    def _entry_names(cls, value: dict[str, T], info: ValidationInfo) -> dict[str, T]:
        for name in value:
            names.check(cls._ENTRY_KINDS[str(info.field_name)], name)
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
        refs += [(f"products.{n}.base", p.base, self.bases) for n, p in self.products.items()]
        refs += [(f"images.{n}.product", i.product, self.products) for n, i in self.images.items()]
        refs += [
            (f"environments.{n}.repository", e.repository, self.repositories)
            for n, e in self.environments.items()
        ]
        refs += [
            (f"environments.{n}.product", e.product, self.products)
            for n, e in self.environments.items()
        ]
        refs += [(f"pilots.{n}.product", p.product, self.products) for n, p in self.pilots.items()]
        refs += [
            (f"environments.{n}.pilot", e.pilot, self.pilots) for n, e in self.environments.items()
        ]
        for key, value, table in refs:
            if value is not None and value not in table:
                raise names.BadValue(
                    f"{key} names {names.shown(value)}, which is not defined",
                    f"use one of the names defined: {', '.join(table) or 'none'}",
                )
        for vo, deployment in self.pilots.items():
            if not isinstance(deployment.modules, ReleaseModules):
                continue
            product_name = deployment.product or (
                next(iter(self.products)) if len(self.products) == 1 else None
            )
            product = self.products.get(product_name) if product_name else None
            if product is not None and product.source.kind != "git":
                raise names.BadValue(
                    f"pilots.{vo}.modules takes the folder {deployment.modules.release!r} "
                    f"of {product_name}'s repository at the release's tag, but {product_name} "
                    "is taken from the package index, not from a git repository",
                    'give the modules\' own repository: modules = { git = "...", tag = "v1.0.0", '
                    'path = "pilot" }, or a folder: modules = { folder = "vo-pilot" }',
                )
        for name, product in self.products.items():
            base = self.bases.get(product.base) if product.base else None
            if base is not None and base.python != product.python:
                raise names.BadValue(
                    f"products.{name} runs on Python {product.python} but its base "
                    f"{product.base} has Python {base.python}",
                    f"set products.{name}.python = {base.python!r}: a bundle runs on its "
                    "base's interpreter",
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
            close = close_match(name, table)
            hint = f"did you mean {close!r}? " if close else ""
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

    def product_pilots(self, product: str) -> list[str]:
        """The VOs of [pilots] whose pilot files install this product's releases."""
        return [vo for vo, p in self.pilots.items() if self.product(p.product)[0] == product]

    def product_images(self, product: str) -> list[str]:
        """The VOs of [images] whose image is built and certified for this product's releases."""
        return [vo for vo, i in self.images.items() if self.product(i.product)[0] == product]

    def environment_pilot(self, env_name: str) -> str | None:
        """The VO whose pilot files an environment runs: named, or its product's only VO."""
        from release.errors import BadInput

        env = self.environment(env_name)
        product = self.product(env.product)[0]
        vos = self.product_pilots(product)
        if env.pilot is not None:
            if env.pilot not in vos:
                raise BadInput(
                    f"environments.{env_name}.pilot names {env.pilot}, whose pilot files "
                    f"install {self.pilots[env.pilot].product or 'another product'}, not "
                    f"{product}",
                    where=str(self.path),
                    fix=f"name one of {product}'s VOs: {', '.join(vos) or 'none'}",
                )
            return env.pilot
        if len(vos) > 1:
            raise BadInput(
                f"{product} has pilot files for several VOs ({', '.join(vos)}) and "
                f"environment {env_name} does not say whose pilots it runs",
                where=f"{self.path}: environments.{env_name}",
                fix=f'set pilot = "{vos[0]}" (or another of them) in [environments.{env_name}]',
            )
        return vos[0] if vos else None

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
