"""JSON Schema checks of what kubernetes-validate cannot know: k3s's CRDs and our chart values.

The schemas live in k8s/schemas/ (HelmChart and HelmChartConfig written from the CRDs'
documented fields; the diracx values dirac-release sets or relies on). A failure becomes a
BadInput naming the object or file, the key path and what to change.

jsonschema is imported here, through `release.jsonschema_loader`, and only when a render needs it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.content import content_dir
from release.errors import BadInput
from release.jsonschema_loader import load_jsonschema

if TYPE_CHECKING:
    from jsonschema.protocols import Validator


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """k8s/schemas/<name>.schema.json, read once per process."""
    path = content_dir("k8s") / "schemas" / f"{name}.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator(name: str) -> Validator:
    jsonschema = load_jsonschema()
    document = schema(name)
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    validator: Validator = cls(document)
    return validator


def key_path(parts: Any) -> str:
    """jsonschema's path as the dotted key path a person would write."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def problems(name: str, instance: Any) -> list[tuple[str, str]]:
    """(key path, message) for each way `instance` breaks schema `name`, in a stable order."""
    found = []
    for error in _validator(name).iter_errors(instance):
        path = list(error.absolute_path)
        message = error.message
        if error.validator == "required" and isinstance(error.validator_value, list):
            held = error.instance if isinstance(error.instance, dict) else {}
            missing = [k for k in error.validator_value if k not in held]
            if missing:
                path.append(missing[0])
                message = "required key is missing"
        elif error.validator == "additionalProperties":
            message = f"unknown field: {message}"
        if len(message) > 300:
            message = message[:300] + "..."
        found.append((key_path(path), message))
    return sorted(set(found))


CRD_SCHEMAS = {"HelmChart": "helmchart", "HelmChartConfig": "helmchartconfig"}


def check_crd_object(obj: Mapping[str, Any], source: str) -> None:
    """A HelmChart or HelmChartConfig against the schema of its CRD."""
    name = CRD_SCHEMAS[str(obj.get("kind"))]
    found = problems(name, obj)
    if found:
        raise BadInput(
            f"{obj.get('kind')} does not match its CRD's schema: "
            + "; ".join(f"{path}: {message}" for path, message in found[:5]),
            where=source,
            fix=f"correct those fields (k8s/schemas/{name}.schema.json lists the fields "
            "helm-controller knows and their types)",
        )


#: What to change when a key of the values we own is wrong.
VALUE_FIXES: dict[str, Callable[[str, str], str]] = {
    "diracx.hostname": lambda env, file: (
        f"set environments.{env}.k3s.hostname in release.toml (a DNS name such as "
        f"'diracx.example.org'), or diracx.hostname in {file}"
    ),
    "developer.enabled": lambda env, file: (
        f"remove developer.enabled from {file} (or set it to false): developer mode mounts "
        "sources and reloads code, it never runs in production"
    ),
}


def check_values(
    values: Mapping[str, Any], *, production: bool, env_name: str, values_file: Path
) -> None:
    """The merged chart values against the schema of the values we own."""
    found = problems("diracx-values", values)
    if production:
        found += problems("diracx-values-production", values)
    if not found:
        return
    fixes = [
        VALUE_FIXES[path](env_name, str(values_file)) for path, _ in found if path in VALUE_FIXES
    ]
    fixes.append(
        f"correct the key(s) in {values_file} (the types are in "
        "k8s/schemas/diracx-values.schema.json; settings are environment variables: strings, "
        "so quote true, false and numbers)"
    )
    raise BadInput(
        "chart values of "
        + env_name
        + " are not valid: "
        + "; ".join(f"{path}: {message}" for path, message in found[:8]),
        where=str(values_file),
        fix="\n".join(dict.fromkeys(fixes)),
    )
