"""Render an environment: the Ansible inventory and variables, pinned to one version.

The shipped inventory (ansible/inventories/<env>/) gives the defaults; release.toml's
environment gives the hosts and their settings; the version is written in, so a rendered
folder describes exactly one deployment and can be reviewed before it runs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from release.config import ReleaseConfig
from release.content import content_dir
from release.version import parse_version_arg


def environment_vars(config: ReleaseConfig, env_name: str, tag: str) -> dict[str, Any]:
    from release.targets import for_environment

    env = config.environment(env_name)
    target = for_environment(config, env_name)
    product_name, product, repo_name, repo = (
        target.product_name, target.product, target.repo_name, target.repo)  # fmt: skip
    services = [
        {
            "name": f"{service.system}/{name}",
            "command": service.command,
            "environment": dict(service.environment),
            **({"health_url": service.health} if service.health else {}),
        }
        for name, service in product.services.items()
    ]
    values: dict[str, Any] = {
        "dirac_product": product_name,
        "dirac_version": tag,
        "dirac_repository": repo_name,
        "dirac_prefix": repo.prefix,
        "dirac_arch": env.platform,
        "dirac_batch": env.batch,
        "dirac_max_fail_percentage": env.max_fail_percentage,
        "dirac_keep_versions": env.keep,
        "ansible_user": env.ssh_user,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    if services:
        values["dirac_services"] = services
    if env.ssh_key:
        values["ansible_ssh_private_key_file"] = str(config.resolve_path(env.ssh_key))
    values.update(env.vars)
    return values


def _shipped_vars(env_name: str) -> dict[str, Any]:
    import yaml

    shipped = content_dir("ansible") / "inventories" / env_name / "group_vars" / "all.yml"
    if not shipped.is_file():
        return {}
    data = yaml.safe_load(shipped.read_text(encoding="utf-8")) or {}
    return dict(data)


def _check_inside(base: Path, target: Path, env_name: str, tag: str) -> None:
    """Refuse a target that is not a plain folder strictly inside `base`.

    The target is deleted and replaced below; a link anywhere on its way (rendered/<env>
    pointing elsewhere) or a name that climbs out must never make that delete reach a
    folder the user did not give to render.
    """
    from release.errors import BadInput

    resolved_base = base.resolve()
    resolved = target.resolve()
    if not resolved.is_relative_to(resolved_base) or resolved == resolved_base:
        raise BadInput(
            f"rendering {env_name} {tag} would write outside {base} (to {resolved})",
            where=str(target),
            fix="use plain names for environments in release.toml, and no links in "
            f"{base} that lead out of it",
        )
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise BadInput(
            f"{target} is not a folder rendered by dirac-release (it is a link or a file)",
            where=str(target),
            fix="move it away, then render again",
        )


def render_environment(
    config: ReleaseConfig, env_name: str, version: str, out: Path | None = None
) -> dict[str, Any]:
    """Write <out>/<env>/<tag>/inventory/{hosts.yml,group_vars/all.yml}; returns what was written."""
    import yaml

    tag = version if version == "previous" else parse_version_arg(version).tag
    env = config.environment(env_name)
    values = {**_shipped_vars(env_name), **environment_vars(config, env_name, tag)}
    if tag == "previous":
        del values["dirac_version"]  # each host goes back to its own previous version
    hosts = {name: {"ansible_host": address or name} for name, address in env.hosts.items()}
    inventory = {"all": {"children": {"dirac_servers": {"hosts": hosts}}}}
    base = (out or config.resolve_path("rendered")).absolute()
    target = base / env_name / tag
    # Names are checked when the configuration loads; this is the second line of defence
    # before anything below `base` is replaced.
    _check_inside(base, target, env_name, tag)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{tag}-"))
    header = (
        f"# Rendered by dirac-release for {env_name} {tag}; edit release.toml, not this file.\n"
    )
    (staging / "inventory" / "group_vars").mkdir(parents=True)
    (staging / "inventory" / "hosts.yml").write_text(
        header + yaml.safe_dump(inventory, sort_keys=True), encoding="utf-8"
    )
    (staging / "inventory" / "group_vars" / "all.yml").write_text(
        header + yaml.safe_dump(values, sort_keys=True), encoding="utf-8"
    )
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return {
        "environment": env_name,
        "version": tag,
        "inventory": str(target / "inventory" / "hosts.yml"),
        "vars": str(target / "inventory" / "group_vars" / "all.yml"),
        "hosts": {name: spec["ansible_host"] for name, spec in hosts.items()},
        "values": json.loads(json.dumps(values, default=str)),
    }
