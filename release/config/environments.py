"""[environments.*] and their [certify] table: the hosts upgraded together and how to check them."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from release import names
from release.config.base import PlatformName, _Frozen, _ssh_target


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
