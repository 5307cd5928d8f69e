"""[environments.*] and their [certify] table: the hosts upgraded together and how to check them."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from release import names
from release.config.base import PlatformName, _Frozen, _ssh_target
from release.config.k3s import K3sSettings

#: What `dirac-release render` sets from release.toml itself. `vars` may not set them: a stray
#: entry would silently replace the version the pipeline pinned, or the hosts' SSH settings.
RESERVED_VARS = frozenset({
    "dirac_product", "dirac_version", "dirac_repository", "dirac_prefix", "dirac_arch",
    "dirac_batch", "dirac_max_fail_percentage", "dirac_keep_versions", "dirac_services",
    "dirac_runtime", "dirac_container_roots",
    "ansible_user", "ansible_python_interpreter", "ansible_ssh_private_key_file",
})  # fmt: skip
#: An Ansible variable name (what Jinja can reach as a plain name).
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}", re.ASCII)
K3S_EXAMPLE = (
    'runtime = "k3s"\n'
    "[environments.certification.k3s]\n"
    'chart = { repo = "https://diracgrid.github.io/diracx-charts", version = "1.1.6" }\n'
    'hostname = "cctbdirac01.in2p3.fr"'
)


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
    # Whether the product's VO images (release.toml [images]) are verified and run here; an
    # image is certified with its release, so a release certified with images = false leaves
    # its images uncertified (the record says so).
    images: bool = Field(default=True, strict=True)
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
    # Hosts upgraded at once after the canary; more than the hosts there are means all of them.
    batch: int = Field(default=1, ge=1, le=1000, strict=True)
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
    # Where DiracX runs: runit services from the bundle (Ansible's dirac_server role), or the
    # diracx Helm chart on k3s, pinned by the [k3s] table (`render` then writes manifests too).
    runtime: Literal["runit", "k3s"] = "runit"
    k3s: K3sSettings | None = None
    #: The VO of [pilots] whose pilot files this environment's pilots run (default: the only
    #: VO of the environment's product): promote moves `<prefix>/pilot` to that VO's files.
    pilot: str | None = None

    @model_validator(mode="after")
    def _runtime_settings(self) -> Environment:
        if self.runtime == "k3s" and self.k3s is None:
            raise names.BadValue(
                "runtime = 'k3s' needs a [k3s] table (the chart and its pinned version)",
                "add it, e.g.\n" + K3S_EXAMPLE,
            )
        if self.runtime == "runit" and self.k3s is not None:
            raise names.BadValue(
                "a [k3s] table is given but runtime is 'runit' (the default), so it would be "
                "ignored",
                'set runtime = "k3s" in this environment, or remove its [k3s] table',
            )
        return self

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, value: str) -> str:
        return _ssh_target("ssh_user", value) or value

    @field_validator("vars")
    @classmethod
    def _vars(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not _VAR_NAME.fullmatch(key):
                raise ValueError(
                    f"{names.shown(key)} is not an Ansible variable name (letters, digits and _, "
                    "not starting with a digit)"
                )
            if key in RESERVED_VARS:
                raise ValueError(
                    f"{key} is set by dirac-release itself from release.toml (the version from "
                    "the tag, the rest from this environment's own keys): remove it from vars"
                )
        return value

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
