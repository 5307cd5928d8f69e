"""DiracX on k3s: the manifests of one environment for one release, rendered and validated.

k3s installs charts by itself from HelmChart objects placed in its auto-deploy folder
(/var/lib/rancher/k3s/server/manifests/), so deploying needs no cluster access from here:
this module renders the files, validates every one offline, and Ansible places them. What
it writes under rendered/<env>/<tag>/k8s/:

- manifests/<namespace>-namespace.yaml: the Namespace;
- manifests/<release>.yaml: the HelmChart of the diracx chart, chart source and version
  pinned, values = the environment's values + the release's pins, failurePolicy abort;
- manifests/diracx-traefik-config.yaml: the HelmChartConfig tuning k3s's traefik (when the
  environment has a traefik.yaml);
- secrets.yaml: the names (never the values) of the Secrets the chart expects, for Ansible.

Nothing is written by this module: `render_k8s` returns the files, already validated, and
release.render writes them with the inventory in one atomic rename.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release.config import Environment, K3sSettings, ReleaseConfig
from release.errors import BadInput
from release.render.k8s.kube import Checked, check_objects
from release.render.k8s.manifests import MANAGED_BY, render_template, to_yaml
from release.render.k8s.schemas import check_values
from release.render.k8s.values import EnvironmentValues, environment_values

MANIFESTS = "manifests"
SECRETS_FILE = "secrets.yaml"


@dataclass
class RenderedK8s:
    """The files of one environment's k8s/ folder (relative path -> text) and what was checked."""

    files: dict[str, str]
    values: dict[str, Any]
    secrets: list[dict[str, Any]]
    checked: Checked
    values_file: Path
    chart: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "files": sorted(self.files),
            "secrets": [s["name"] for s in self.secrets],
            "validated": self.checked.as_dict(),
            "values_file": str(self.values_file),
            "chart": self.chart,
            **self.extra,
        }


def k3s_settings(config: ReleaseConfig, env_name: str) -> K3sSettings | None:
    """The [k3s] table of an environment that runs DiracX on k3s, else None."""
    env: Environment = config.environment(env_name)
    return env.k3s if env.runtime == "k3s" else None


def is_production(env_name: str, settings: K3sSettings) -> bool:
    return settings.production if settings.production is not None else env_name == "production"


def expected_secrets(values: dict[str, Any], settings: K3sSettings) -> list[dict[str, Any]]:
    """The Secrets the chart reads by name with these values: who provides each, never its data.

    Defaults are the chart's (ingress, mysql and initSecrets are on unless the values say no).
    """

    def section(key: str, within: dict[str, Any] = values) -> dict[str, Any]:
        found = within.get(key)
        return found if isinstance(found, dict) else {}

    def enabled(key: str) -> bool:
        return section(key).get("enabled", True) is not False

    found: list[dict[str, Any]] = [
        {
            "name": settings.values_secret,
            "namespace": "kube-system",
            "keys": ["values.yaml"],
            "provided_by": "ansible-vault",
            "why": "chart values that are secrets (helm-controller reads it: valuesSecrets)",
        }
    ]
    ingress = section("ingress")
    if enabled("ingress") and ingress.get("tlsSecretName"):
        found.append({
            "name": str(ingress["tlsSecretName"]),
            "namespace": settings.namespace,
            "keys": ["tls.crt", "tls.key"],
            "provided_by": "ansible-vault (or the site's certificate manager)",
            "why": f"the TLS certificate of {section('diracx').get('hostname')}",
        })  # fmt: skip
    if enabled("mysql"):
        auth = section("auth", section("mysql"))
        found.append({
            "name": str(auth.get("existingSecret") or "mysql-secret"),
            "namespace": settings.namespace,
            "keys": ["mysql-root-password", "mysql-password", "mysql-replication-password"],
            "provided_by": "the chart's init-secrets job" if enabled("initSecrets")
            else "ansible-vault",
            "why": "passwords of the in-cluster MySQL",
        })  # fmt: skip
    return found


def _labels(env_name: str, tag: str) -> dict[str, str]:
    return {**MANAGED_BY, "dirac-release/environment": env_name, "dirac-release/version": tag}


def _documents(rendered: dict[str, str]) -> Iterator[tuple[str, Any]]:
    import yaml

    for name, text in sorted(rendered.items()):
        for document in yaml.safe_load_all(text):
            if document is not None:
                yield f"k8s/{name}", document


def render_k8s(config: ReleaseConfig, env_name: str, tag: str) -> RenderedK8s:
    """Render and validate the k8s/ files of a k3s environment; BadInput on anything wrong."""
    settings = k3s_settings(config, env_name)
    if settings is None:
        raise BadInput(
            f"environment {env_name} runs DiracX as runit services, not on k3s",
            where=str(config.path),
            fix=f'set runtime = "k3s" and a [environments.{env_name}.k3s] table to render '
            "k3s manifests for it",
        )
    values: EnvironmentValues = environment_values(config, env_name, settings, tag)
    check_values(
        values.values,
        production=is_production(env_name, settings),
        env_name=env_name,
        values_file=values.values_file,
    )
    header = (
        f"Rendered by dirac-release for {env_name} {tag}; edit release.toml or "
        f"{values.values_file.name} of the environment, not this file."
    )
    labels = _labels(env_name, tag)
    chart = settings.chart
    files = {
        f"{MANIFESTS}/{settings.namespace}-namespace.yaml": render_template(
            "namespace.yaml.j2", header=header, namespace=settings.namespace, labels=labels
        ),
        f"{MANIFESTS}/{settings.release}.yaml": render_template(
            "helmchart.yaml.j2",
            header=header,
            release=settings.release,
            namespace=settings.namespace,
            labels=labels,
            chart=chart,
            timeout=f"{settings.helm_timeout}s",
            values_secret=settings.values_secret,
            values=to_yaml(values.values),
        ),
    }
    if values.traefik is not None:
        files[f"{MANIFESTS}/diracx-traefik-config.yaml"] = render_template(
            "helmchartconfig.yaml.j2",
            header=header,
            name="traefik",
            labels=labels,
            values=to_yaml(values.traefik),
        )
    checked = Checked()
    check_objects(_documents(files), settings.kubernetes, checked)
    if checked.without_schema:  # our own manifests are all of kinds we have schemas for
        raise BadInput(
            f"no schema knows the kind(s) {', '.join(checked.without_schema)} of the templates "
            f"for Kubernetes {settings.kubernetes}",
            where=str(_templates_dir()),
            fix="use core kinds, HelmChart or HelmChartConfig (helm.cattle.io/v1) in k8s/templates/",
        )
    _check_house_rules(_documents(files), settings)
    for name in files:
        _check_file_name(name)
    secrets = expected_secrets(values.values, settings)
    files[SECRETS_FILE] = (
        f"# {header}\n# The Secrets the diracx chart expects, by name: their values come from "
        "the Ansible vault or the site, never from here.\n" + to_yaml({"secrets": secrets})
    )
    return RenderedK8s(
        files=files,
        values=values.values,
        secrets=secrets,
        checked=checked,
        values_file=values.values_file,
        chart={"repo": chart.repo, "name": chart.name, "version": chart.version},
    )


def _templates_dir() -> Path:
    from release.content import content_dir

    return content_dir("k8s") / "templates"


def _check_house_rules(documents: Iterator[tuple[str, Any]], settings: K3sSettings) -> None:
    """What the CRD allows but a release must not do: an unpinned chart, failurePolicy other
    than abort (k3s's default, reinstall, uninstalls DiracX when an upgrade fails)."""
    for source, obj in documents:
        if obj.get("kind") != "HelmChart":
            continue
        spec = obj.get("spec") or {}
        if spec.get("version") != settings.chart.version or spec.get("chartContent"):
            raise BadInput(
                f"the HelmChart's chart is not pinned to {settings.chart.version} "
                f"(spec.version is {spec.get('version')!r})",
                where=source,
                fix="render spec.version from the chart pin in release.toml "
                "(k8s/templates/helmchart.yaml.j2), and no chartContent",
            )
        if spec.get("failurePolicy") != "abort":
            raise BadInput(
                f"the HelmChart's failurePolicy is {spec.get('failurePolicy')!r}, not 'abort'",
                where=source,
                fix="keep failurePolicy: abort in k8s/templates/helmchart.yaml.j2: reinstall "
                "uninstalls the release (and DiracX's data) when an upgrade fails",
            )


def _check_file_name(name: str) -> None:
    """k3s names an Addon object after each manifest file: the stem must be an RFC 1123 name."""
    from release.config.k3s import RFC1123_FIX, RFC1123_SUBDOMAIN

    stem = Path(name).name.removesuffix(".yaml")
    if not RFC1123_SUBDOMAIN.fullmatch(stem):
        raise BadInput(
            f"manifest file name {name!r} is not an RFC 1123 name: k3s cannot deploy it",
            where=name,
            fix=RFC1123_FIX,
        )


def check_chart_objects(config: ReleaseConfig, env_name: str, rendered: RenderedK8s) -> None:
    """`render --full`: every object the pinned chart templates out, through the same checks."""
    from release.render.k8s.helm import helm_template, local_chart, require_helm

    settings = k3s_settings(config, env_name)
    if settings is None:  # render_k8s refused it already
        return
    chart = local_chart(config, env_name, settings)
    helm = require_helm()
    objects = helm_template(helm, chart, settings, rendered.values)
    checked = Checked()
    check_objects(
        ((f"helm template {chart.name}: {_kind_name(obj)}", obj) for obj in objects),
        settings.kubernetes,
        checked,
        fix=f"the chart renders an object Kubernetes {settings.kubernetes} refuses: change "
        "the environment's values, the chart version, or k3s.kubernetes if the cluster runs "
        "a newer Kubernetes",
    )
    rendered.extra["chart_objects"] = {"helm": str(helm), **checked.as_dict()}


def _kind_name(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "?"
    found = obj.get("metadata")
    metadata = found if isinstance(found, dict) else {}
    return f"{obj.get('kind', '?')}/{metadata.get('name', '?')}"
