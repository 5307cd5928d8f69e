"""Render an environment: the Ansible inventory and variables, pinned to one version, for
an environment that runs DiracX on k3s its manifests (release/render/k8s/), and when the
environment's product has VO images, their ContainerRoot for the site
(release/render/containers.py).

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
    """The variables render derives from release.toml for `env_name` pinned to `tag`.

    With `tag` "previous" (a rollback, each host to its own previous version) there is no
    one release, so no ContainerRoot either: `dirac_container_roots` is only there for a
    version, and only when the environment's product has images.
    """
    from release.render.containers import CONTAINER_ROOTS_VAR, container_roots_for
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
        # runit: the dirac_server role runs the services; k3s: DiracX comes from k8s/.
        "dirac_runtime": env.runtime,
        "ansible_user": env.ssh_user,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    if services:
        values["dirac_services"] = services
    roots = container_roots_for(config, env_name, tag) if tag != "previous" else {}
    if roots:
        values[CONTAINER_ROOTS_VAR] = roots
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
    config: ReleaseConfig,
    env_name: str,
    version: str,
    out: Path | None = None,
    *,
    full: bool = False,
    diff: bool = False,
) -> dict[str, Any]:
    """Write <out>/<env>/<tag>/: the inventory, for a k3s environment k8s/ too, and when the
    environment's product has VO images, site/container-roots.cfg.

    Everything is rendered and validated in memory first; a refusal (BadInput, exit 2) leaves
    the folder as it was. The files are then written into a staging folder beside the target
    and swapped in by renames, so a reader sees the old render or the new one, never a mix.
    `full` also templates the local chart with helm and validates its objects; `diff` adds
    what changed against the previous render of the environment. Returns what was written.
    """
    import yaml

    from release.render.containers import CONTAINER_ROOTS_VAR, SITE_FILE, site_config

    tag = version if version == "previous" else parse_version_arg(version).tag
    env = config.environment(env_name)
    k8s = None
    if env.runtime == "k3s" and tag != "previous":
        # A rollback to each host's previous version has no one version to pin the chart to.
        from release.render.k8s import check_chart_objects, render_k8s

        k8s = render_k8s(config, env_name, tag)
        if full:
            check_chart_objects(config, env_name, k8s)
    elif full:
        from release.errors import BadInput

        raise BadInput(
            f"render --full validates k3s manifests, and {env_name} runs DiracX as runit services",
            fix="render without --full",
        )
    derived = environment_vars(config, env_name, tag)
    values = {**_shipped_vars(env_name), **derived}
    if tag == "previous":
        del values["dirac_version"]  # each host goes back to its own previous version
    hosts = {name: {"ansible_host": address or name} for name, address in env.hosts.items()}
    inventory = {"all": {"children": {"dirac_servers": {"hosts": hosts}}}}
    base = (out or config.resolve_path("rendered")).absolute()
    target = base / env_name / tag
    # Names are checked when the configuration loads; this is the second line of defence
    # before anything below `base` is replaced.
    _check_inside(base, target, env_name, tag)
    header = (
        f"# Rendered by dirac-release for {env_name} {tag}; edit release.toml, not this file.\n"
    )
    files = {
        "inventory/hosts.yml": header + yaml.safe_dump(inventory, sort_keys=True),
        "inventory/group_vars/all.yml": header + yaml.safe_dump(values, sort_keys=True),
    }
    if k8s is not None:
        files.update({f"k8s/{name}": text for name, text in k8s.files.items()})
    roots: dict[str, dict[str, str]] = derived.get(CONTAINER_ROOTS_VAR) or {}
    if roots:
        files[SITE_FILE] = site_config(env_name, tag, env.platform, roots)
    changes = None
    if diff:
        from release.render.diff import diff_renders, previous_render, read_render

        before = previous_render(base / env_name, tag)
        changes = diff_renders(
            read_render(before),
            files,
            f"{env_name}/{before.name}" if before else "",
            f"{env_name}/{tag}",
        )
    _write_atomically(target, files, tag)
    result: dict[str, Any] = {
        "environment": env_name,
        "version": tag,
        "runtime": env.runtime,
        "inventory": str(target / "inventory" / "hosts.yml"),
        "vars": str(target / "inventory" / "group_vars" / "all.yml"),
        "hosts": {name: spec["ansible_host"] for name, spec in hosts.items()},
        "values": json.loads(json.dumps(values, default=str)),
    }
    if k8s is not None:
        result["k8s"] = {"folder": str(target / "k8s"), **k8s.summary()}
    if roots:
        # What a site sets: the file to copy from, and per VO the value for the environment's
        # architecture beside every architecture's (and the {arch} form, under "any").
        result["container_roots"] = {
            "file": str(target / SITE_FILE),
            "platform": env.platform,
            "container_root": {vo: per_arch[env.platform] for vo, per_arch in roots.items()},
            "per_arch": roots,
        }
    if changes is not None:
        result["diff"] = changes
    return result


def _write_atomically(target: Path, files: dict[str, str], tag: str) -> None:
    """Write `files` (relative path -> text) as the folder `target`, swapped in by renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{tag}-"))
    old: Path | None = None
    try:
        for name, text in sorted(files.items()):
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{tag}-old-"))
            target.replace(old / "render")
        staging.rename(target)
    except BaseException:
        if old is not None and not target.exists() and (old / "render").exists():
            (old / "render").replace(target)  # put the previous render back
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
