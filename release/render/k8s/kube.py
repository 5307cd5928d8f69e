"""Offline checks of Kubernetes objects: core kinds with kubernetes-validate, names by RFC 1123.

kubernetes-validate holds the API's JSON schemas per Kubernetes version, so a core object
(Namespace, Deployment, Secret...) is checked as the API server of the target version would
check its shape, without a cluster. It knows no CRD: HelmChart and HelmChartConfig go to
their own schemas (schemas.py), and a kind nobody has a schema for is reported as such.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from release.config.k3s import RFC1123_FIX, RFC1123_LABEL, RFC1123_SUBDOMAIN
from release.errors import BadInput
from release.jsonschema_loader import load_jsonschema
from release.render.k8s.schemas import CRD_SCHEMAS, check_crd_object

#: Kinds whose names are DNS labels (they become host names or path segments), not subdomains.
_LABEL_KINDS = frozenset({"Namespace", "Service"})


@dataclass
class Checked:
    """What a validation looked at: objects per kind, and kinds no schema knows."""

    kinds: dict[str, int] = field(default_factory=dict)
    without_schema: dict[str, int] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return sum(self.kinds.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "kinds": dict(sorted(self.kinds.items())),
            "without_schema": dict(sorted(self.without_schema.items())),
        }


def check_name(obj: Mapping[str, Any], source: str) -> None:
    """metadata.name and namespace as Kubernetes accepts them (RFC 1123)."""
    kind = str(obj.get("kind"))
    found = obj.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    name = str(metadata.get("name", ""))
    rule = RFC1123_LABEL if kind in _LABEL_KINDS else RFC1123_SUBDOMAIN
    if not rule.fullmatch(name) or len(name) > 253:
        raise BadInput(
            f"{kind} name {name!r} is not an RFC 1123 name (Kubernetes refuses it)",
            where=source,
            fix=RFC1123_FIX,
        )
    namespace = metadata.get("namespace")
    if namespace is not None and not RFC1123_LABEL.fullmatch(str(namespace)):
        raise BadInput(
            f"{kind} {name}: namespace {namespace!r} is not an RFC 1123 name",
            where=source,
            fix=RFC1123_FIX,
        )


#: What to change when one of our own manifests is refused (chart objects say their own fix).
OWN_FIX = "correct that field in the template (k8s/templates/) or the environment's values"


def check_core_object(
    obj: Mapping[str, Any], kubernetes: str, source: str, fix: str = OWN_FIX
) -> bool:
    """One object against the schemas of Kubernetes `kubernetes`; False when none knows its kind."""
    load_jsonschema()
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, VersionNotSupportedError

    try:
        kubernetes_validate.validate(dict(obj), kubernetes, strict=True)
    except SchemaNotFoundError:
        return False
    except VersionNotSupportedError:
        from kubernetes_validate.utils import latest_version

        raise BadInput(
            f"kubernetes-validate knows no Kubernetes {kubernetes}",
            where=source,
            fix=f"set k3s.kubernetes to a version it knows (up to {latest_version()}), or "
            "upgrade kubernetes-validate",
        ) from None
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path) or "(top level)"
        message = re.sub(r"\s+", " ", str(exc.message))[:300]
        if obj.get("kind") == "Secret":  # the message may quote the field's value
            message = f"{exc.validator} check failed (the value is not shown: a Secret)"
        raise BadInput(
            f"{obj.get('kind')} {_name_of(obj)} is not valid for Kubernetes {kubernetes}: "
            f"{path}: {message}",
            where=source,
            fix=fix,
        ) from None
    return True


def _name_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "?")) if isinstance(metadata, Mapping) else "?"


def check_objects(
    objects: Iterable[tuple[str, Mapping[str, Any]]],
    kubernetes: str,
    checked: Checked,
    fix: str = OWN_FIX,
) -> None:
    """Each (source, object): its name, then its schema (CRD schema or the API's)."""
    for source, obj in objects:
        if not isinstance(obj, Mapping) or not obj.get("kind") or not obj.get("apiVersion"):
            raise BadInput(
                "a document is not a Kubernetes object (no apiVersion or kind)",
                where=source,
                fix="every YAML document placed on k3s must be one object",
            )
        kind = str(obj["kind"])
        check_name(obj, source)
        if kind in CRD_SCHEMAS and str(obj["apiVersion"]) == "helm.cattle.io/v1":
            check_crd_object(obj, source)
        elif not check_core_object(obj, kubernetes, source, fix):
            checked.without_schema[kind] = checked.without_schema.get(kind, 0) + 1
        checked.kinds[kind] = checked.kinds.get(kind, 0) + 1
