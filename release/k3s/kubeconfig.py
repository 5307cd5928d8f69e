"""The kubeconfig of a rollout wait: the one file named, checked before the client reads it.

Why our own checks first: the `kubernetes` client's loader reads `KUBECONFIG`-style lists
(a path with `:` is several files), falls back to `~/.kube/config`, and words some errors with
the file's content. Here only the file given is read; a broken one is refused with the key at
fault (exit 2); and its secrets (token, password, client key) are registered for redaction
before anything could print them. The checks name keys and line numbers, never values.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from release.errors import BadInput

MAX_BYTES = 1024 * 1024
_SECRET_KEYS = ("token", "password", "client-key-data")
_FIX = (
    "give the kubeconfig of the k3s server: /etc/rancher/k3s/k3s.yaml on the server, copied "
    "with its server: address changed from 127.0.0.1 to the server's name"
)


@dataclass(frozen=True)
class Kubeconfig:
    """What was checked: the file, the context used and the API server it points at."""

    path: Path
    context: str
    server: str


def read_kubeconfig(path: Path, context: str | None = None) -> Kubeconfig:
    """Check `path` as a kubeconfig (and `context` in it, default its current-context).

    Raises BadInput (exit 2) for a missing, unreadable, oversized, non-YAML or incomplete file.
    """
    where = f"kubeconfig {path}"
    if os.pathsep in str(path):
        raise BadInput(
            f"the path holds '{os.pathsep}': the kubernetes client would read it as a list of files",
            where=where,
            fix="copy the kubeconfig to a path without it",
        )
    data = _load(path, where)
    name = context if context is not None else data.get("current-context")
    if not isinstance(name, str) or not name:
        raise BadInput(
            "no current-context is set",
            where=where,
            fix="set current-context: in the file, or name the context to use (--context)",
        )
    ctx = _named(data, "contexts", "context", name, where).get("context")
    if not isinstance(ctx, dict):
        raise BadInput(f"context {name!r} has no context: mapping", where=where, fix=_FIX)
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not isinstance(cluster_name, str) or not isinstance(user_name, str):
        raise BadInput(f"context {name!r} must name a cluster: and a user:", where=where, fix=_FIX)
    cluster = _named(data, "clusters", "cluster", cluster_name, where).get("cluster")
    server = cluster.get("server") if isinstance(cluster, dict) else None
    parts = urlsplit(server) if isinstance(server, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise BadInput(
            f"cluster {cluster_name!r} has no server: https://HOST:PORT",
            where=where,
            fix="set clusters[].cluster.server to the API server's URL, e.g. "
            "https://cctbdirac01.cern.ch:6443",
        )
    if parts.username is not None or parts.password is not None:
        raise BadInput(
            f"the server URL of cluster {cluster_name!r} carries user:password@",
            where=where,
            fix="remove them from the URL; credentials belong under users[].user",
        )
    user = _named(data, "users", "user", user_name, where).get("user")
    _remember_secrets(user)
    return Kubeconfig(path=path, context=name, server=str(server).rstrip("/"))


def _load(path: Path, where: str) -> dict[str, Any]:
    import yaml

    try:
        if not path.is_file():
            problem = "does not exist" if not path.exists() else "is not a regular file"
            raise BadInput(problem, where=where, fix=_FIX)
        if path.stat().st_size > MAX_BYTES:
            raise BadInput(f"is larger than {MAX_BYTES // 1024} KiB", where=where, fix=_FIX)
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise BadInput(
            "cannot be read (permission denied)",
            where=where,
            fix="run as a user who may read it, or copy it (mode 0600) where you can",
        ) from None
    except UnicodeDecodeError:
        raise BadInput("is not UTF-8 text", where=where, fix=_FIX) from None
    except OSError as exc:
        raise BadInput(f"cannot be read: {exc.strerror}", where=where, fix=_FIX) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The problem in words and its line, never the snippet (it may be a token's line).
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise BadInput(f"is not valid YAML{line}: {problem}", where=where, fix=_FIX) from None
    if not isinstance(data, dict):
        raise BadInput("is not a kubeconfig (not a YAML mapping)", where=where, fix=_FIX)
    return data


def _named(data: dict[str, Any], key: str, inner: str, name: str, where: str) -> dict[str, Any]:
    """The entry called `name` of the list `key` (clusters, contexts, users)."""
    entries = data.get(key)
    if not isinstance(entries, list):
        raise BadInput(f"has no {key}: list", where=where, fix=_FIX)
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            if not isinstance(entry.get(inner), dict):
                raise BadInput(f"{key} entry {name!r} has no {inner}: mapping", where=where,
                               fix=_FIX)  # fmt: skip
            return entry
    known = sorted(str(e.get("name")) for e in entries if isinstance(e, dict))
    raise BadInput(
        f"names {inner} {name!r}, which is not in {key}: (there: {', '.join(known) or 'none'})",
        where=where,
        fix=_FIX,
    )


def _remember_secrets(user: Any) -> None:
    """Register the user's secrets for redaction: whatever prints later cannot show them."""
    from release.credentials import remember

    if not isinstance(user, dict):
        return
    for key in _SECRET_KEYS:
        value = user.get(key)
        if isinstance(value, str) and value:
            remember(value)
            if key == "client-key-data":
                try:
                    decoded = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    continue
                for line in decoded.splitlines():
                    if line and not line.startswith("-----"):
                        remember(line)
