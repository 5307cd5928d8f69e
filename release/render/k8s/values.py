"""The chart values of one k3s environment: its values file merged with the release's pins.

The environment owns its values file (k8s/environments/<env>/values.yaml, or the folder
`values_dir` names); the release owns the pins: the DiracX image tag is the version being
rendered and the hostname comes from release.toml. A values file that sets a pinned key to
something else is refused rather than silently overridden: whoever wrote it expected it to
count. Secret values are refused too: a rendered manifest is a plain file on the k3s server
and the HelmChart object is readable by anyone who can read kube-system, so secrets reach
the chart only through the Secret named in `valuesSecrets`, which Ansible creates from vault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from release.config import K3sSettings, ReleaseConfig
from release.content import content_dir
from release.errors import BadInput

#: Key names whose values are secrets. Compared without '_', '-', '.' and case, so
#: DIRACX_LEGACY_EXCHANGE_HASHED_API_KEY, rootPassword and aws_secret_access_key all match.
_SECRET_WORDS = ("password", "passwd", "secret", "apikey", "privatekey", "accesskey",
                 "credential", "token", "clientsecret")  # fmt: skip
#: ...unless the key names a Secret or a file, or says what a token is (not the token itself).
_NOT_SECRET = re.compile(
    r"(secretname|existingsecret|existing.*secret|secretref|secretkeyref|tokenissuer|"
    r"keystore|minutes|seconds|ttl)$"
)
#: Values that can only be secret material, whatever their key.
_SECRET_TEXT = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bdiracx:legacy:[A-Za-z0-9_-]{8}")
#: Values that say where a secret is instead of being it: a file, an empty placeholder.
_REFERENCE = re.compile(r"(file|secret)://\S*", re.ASCII)


@dataclass(frozen=True)
class EnvironmentValues:
    """The merged values of one environment and where they came from (for messages)."""

    values: dict[str, Any]
    traefik: dict[str, Any] | None
    values_file: Path
    traefik_file: Path | None


def values_folder(config: ReleaseConfig, env_name: str, settings: K3sSettings) -> Path:
    """The folder with values.yaml (and traefik.yaml): values_dir, or the shipped one."""
    if settings.values_dir is not None:
        folder = config.resolve_path(settings.values_dir)
        fix = f"create it, or correct environments.{env_name}.k3s.values_dir in {config.path}"
    else:
        folder = content_dir("k8s") / "environments" / env_name
        shipped = sorted(p.name for p in folder.parent.iterdir() if p.is_dir())
        fix = (
            f"set environments.{env_name}.k3s.values_dir in {config.path} to a folder holding "
            f"values.yaml (shipped environments: {', '.join(shipped) or 'none'})"
        )
    if not (folder / "values.yaml").is_file():
        raise BadInput(
            f"k3s environment {env_name} has no chart values: {folder / 'values.yaml'} does "
            "not exist",
            where=str(config.path),
            fix=fix,
        )
    return folder


def load_mapping(path: Path) -> dict[str, Any]:
    """A YAML file holding one mapping (an empty file is an empty mapping)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise BadInput(
            f"not valid YAML{at}: {getattr(exc, 'problem', None) or exc}",
            where=str(path),
            fix="check the indentation and quoting on that line",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read it: {exc}", where=str(path), fix="check the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(
            f"holds a {type(data).__name__}, not a mapping of chart values",
            where=str(path),
            fix="write the values as keys at the top level, e.g. 'ingress:' on the first line",
        )
    return data


def release_pins(settings: K3sSettings, tag: str) -> dict[tuple[str, ...], str]:
    """Key path -> value the release sets: the DiracX image tag and, if given, the hostname."""
    pins: dict[tuple[str, ...], str] = {("global", "images", "tag"): tag}
    if settings.hostname is not None:
        pins[("diracx", "hostname")] = settings.hostname
    return pins


def apply_pins(
    values: dict[str, Any], pins: Mapping[tuple[str, ...], str], values_file: Path, env_name: str
) -> dict[str, Any]:
    """A copy of `values` with the pins set; a pinned key the file sets differently is refused."""
    merged: dict[str, Any] = json.loads(json.dumps(values))  # a deep copy of plain YAML data
    for path, wanted in pins.items():
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise BadInput(
                    f"{'.'.join(path[: path.index(part) + 1])} must be a mapping (it holds "
                    f"{path[-1]}), not {type(child).__name__}",
                    where=str(values_file),
                    fix=f"write it as a mapping, or remove it: the release sets {'.'.join(path)}",
                )
            node = child
        found = node.get(path[-1])
        if found is not None and found != wanted:
            source = (
                "the version being rendered"
                if path[-1] == "tag"
                else f"environments.{env_name}.k3s.hostname in release.toml"
            )
            raise BadInput(
                f"{'.'.join(path)} is {found!r} here, but the release pins it to {wanted!r} "
                f"({source})",
                where=str(values_file),
                fix=f"remove {'.'.join(path)} from this file: the release sets it",
            )
        node[path[-1]] = wanted
    return merged


def _is_secret_key(key: str) -> bool:
    plain = re.sub(r"[-_.\s]", "", key).lower()
    return any(word in plain for word in _SECRET_WORDS) and not _NOT_SECRET.search(plain)


def _carries_value(value: Any) -> bool:
    """Whether a value under a secret-looking key is secret content.

    Empty values and references (file://, secret://) are not; nor are mappings and lists,
    which are looked into instead (initSecrets is a feature switch, sqlDbs.default holds a
    rootPassword).
    """
    if value is None or isinstance(value, bool | dict | list):
        return False
    if isinstance(value, str):
        return bool(value.strip()) and not _REFERENCE.fullmatch(value.strip())
    return True


def secret_paths(values: Any, path: str = "") -> Iterator[str]:
    """Key paths of `values` that hold a secret value, JSON held in strings included.

    A setting such as DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS is JSON text whose
    aws_secret_access_key is a credential: such strings are parsed and looked into.
    """
    if isinstance(values, dict):
        for key, value in values.items():
            here = f"{path}.{key}" if path else str(key)
            if _is_secret_key(str(key)) and _carries_value(value):
                yield here
                continue
            yield from secret_paths(value, here)
    elif isinstance(values, list):
        for index, value in enumerate(values):
            yield from secret_paths(value, f"{path}[{index}]")
    elif isinstance(values, str):
        if _SECRET_TEXT.search(values):
            yield path
            return
        text = values.strip()
        if text[:1] in "{[" and len(text) < 100_000:
            try:
                inner = json.loads(text)
            except ValueError:
                return
            for found in secret_paths(inner, ""):
                yield f"{path}[{found}]" if found else path


def refuse_secrets(values: dict[str, Any], source: Path, settings: K3sSettings) -> None:
    found = list(secret_paths(values))
    if found:
        listed = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise BadInput(
            f"secret value(s) in the chart values at {listed}: a rendered manifest is a plain "
            "file on the k3s server, it must never hold one (the values are not shown here)",
            where=str(source),
            fix=f"move them into the values.yaml key of the Secret {settings.values_secret} in "
            "kube-system (created by Ansible from the vault; the HelmChart reads it through "
            "valuesSecrets) and remove them from this file",
        )


def environment_values(
    config: ReleaseConfig, env_name: str, settings: K3sSettings, tag: str
) -> EnvironmentValues:
    """The environment's values with the release's pins, refused if they hold a secret."""
    folder = values_folder(config, env_name, settings)
    values_file = folder / "values.yaml"
    raw = load_mapping(values_file)
    refuse_secrets(raw, values_file, settings)
    merged = apply_pins(raw, release_pins(settings, tag), values_file, env_name)
    traefik_file = folder / "traefik.yaml"
    traefik = None
    if traefik_file.is_file():
        traefik = load_mapping(traefik_file)
        refuse_secrets(traefik, traefik_file, settings)
    return EnvironmentValues(
        merged, traefik, values_file, traefik_file if traefik is not None else None
    )
