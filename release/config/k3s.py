"""[environments.<name>.k3s]: where and how DiracX runs when an environment runs it on k3s.

An environment runs DiracX either as runit services from the CVMFS bundle (the default, the
Ansible role dirac_server) or as the `diracx` Helm chart on k3s. For k3s the toolkit renders
manifests that k3s's helm-controller installs by itself; this table pins what those
manifests say: the chart (source and exact version), the namespace, the hostname and where
the environment's chart values are. Everything here is checked when release.toml loads, so a
bad name or an unpinned chart is refused before anything is rendered.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from release import names
from release.config.base import _Frozen

#: RFC 1123 label: what Kubernetes accepts for a namespace, a Service or a file k3s deploys.
RFC1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
#: RFC 1123 subdomain: dot-separated labels, at most 253 characters (most object names).
RFC1123_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*", re.ASCII
)
#: A chart version pinned to one release: SemVer 2, no range, no wildcard, no 'latest'.
PINNED_CHART_VERSION = re.compile(
    r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?", re.ASCII
)
#: A Kubernetes minor version as kubernetes-validate takes it.
KUBERNETES_VERSION = re.compile(r"1\.[0-9]{1,2}", re.ASCII)

RFC1123_FIX = (
    "use lower-case letters, digits and '-', starting and ending with a letter or digit "
    "(no '_', no capitals), at most 63 characters, e.g. 'diracx'"
)


def rfc1123_label(what: str, value: str) -> str:
    if not RFC1123_LABEL.fullmatch(value):
        raise names.BadValue(
            f"{what} {names.shown(value)} is not an RFC 1123 name (Kubernetes refuses it)",
            RFC1123_FIX,
        )
    return value


def rfc1123_subdomain(what: str, value: str) -> str:
    if len(value) > 253 or not RFC1123_SUBDOMAIN.fullmatch(value):
        raise names.BadValue(
            f"{what} {names.shown(value)} is not an RFC 1123 DNS name",
            "give a lower-case DNS name such as 'diracx.example.org' (letters, digits, '-' "
            "and '.', no '_')",
        )
    return value


class ChartPin(_Frozen):
    """The diracx chart: which repository, which chart, exactly which version.

    `version` is required and must be one exact SemVer version: k3s installs whatever a range
    or an empty version resolves to at the time it runs, so an unpinned chart would make two
    renders of one release install two different charts. `local` is the same chart on this
    machine (a folder or a packaged .tgz), used only by `render --full` to run `helm template`
    offline; it must be that very version.
    """

    repo: str = "https://diracgrid.github.io/diracx-charts"
    name: str = "diracx"
    version: str
    local: str | None = None

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not re.fullmatch(r"(https|oci)://[^\s/]+(/[^\s]*)?", value, re.ASCII):
            raise names.BadValue(
                f"chart repository {names.shown(value)} is not an https:// or oci:// URL",
                'give the chart repository\'s URL, e.g. repo = "https://diracgrid.github.io/diracx-charts"',
            )
        return value.rstrip("/")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return rfc1123_label("chart name", value)

    @field_validator("version")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not PINNED_CHART_VERSION.fullmatch(value.removeprefix("v")):
            raise names.BadValue(
                f"chart version {names.shown(value)} is not pinned to one release (a range, a "
                "wildcard or 'latest' installs whatever the repository serves that day)",
                'pin the exact chart version, e.g. version = "1.1.6"',
            )
        return value


class K3sSettings(_Frozen):
    """What the k3s manifests of one environment pin (see docs/stages/render.md)."""

    chart: ChartPin
    # The namespace DiracX is installed into (HelmChart.spec.targetNamespace).
    namespace: str = "diracx"
    # The Helm release, and the name of the HelmChart object and of its manifest file.
    release: str = "diracx"
    # The DNS name DiracX answers on (diracx.hostname); may instead be in the values file.
    hostname: str | None = None
    # The folder with values.yaml (and optionally traefik.yaml), relative to release.toml;
    # default: the shipped k8s/environments/<environment>/.
    values_dir: str | None = None
    # The Kubernetes version the objects are validated for (the k3s release's minor).
    kubernetes: str = "1.33"
    # Production checks (no developer mode...); default: the environment is named production.
    production: bool | None = Field(default=None, strict=True)
    # The Secret (in kube-system, next to the HelmChart) whose key values.yaml holds the
    # chart values that are secrets; Ansible creates it from the vault. Never rendered.
    values_secret: str = "diracx-secret-values"  # noqa: S105 - a name, not a secret
    # How long helm-controller lets one install or upgrade run.
    helm_timeout: int = Field(default=900, ge=60, le=7200, strict=True)
    # A kubeconfig for the cluster (relative to release.toml; e.g. the server's
    # /etc/rancher/k3s/k3s.yaml with its server: address made reachable). With it, `deploy`
    # waits for the rollout and rolls back a failed one; without it, deploy places the
    # manifests and says the rollout was not watched.
    kubeconfig: str | None = None
    # How long deploy waits for the install Job and the Deployments, in seconds.
    rollout_timeout: float = Field(default=900.0, gt=0, le=7200, strict=True)

    @field_validator("namespace", "release", "values_secret")
    @classmethod
    def _label(cls, value: str) -> str:
        return rfc1123_label("name", value)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        return None if value is None else rfc1123_subdomain("hostname", value)

    @field_validator("kubernetes")
    @classmethod
    def _kubernetes(cls, value: str) -> str:
        if not KUBERNETES_VERSION.fullmatch(value.removeprefix("v")):
            raise names.BadValue(
                f"Kubernetes version {names.shown(value)} is not a minor version like '1.33'",
                'give the minor version of the cluster\'s Kubernetes, e.g. kubernetes = "1.33"',
            )
        return value.removeprefix("v")
