"""Certification of a release's VO images: each published tree verified and run.

An image is built for one release and certified with it. For every VO whose image belongs to
the product, and every architecture, certification takes the tree *as published* (what a
site's SingularityComputingElement will run), checks every file against its manifest, then
runs it (release.image.check: natively or under qemu-user) with the repositories bound at
/cvmfs: the architecture and OS are the declared ones, the release's `diracosrc` is sourced
from the bound /cvmfs and a command of the release runs. Only an image whose checks all pass
is named in the certification record; a failing one fails the certification, so neither it
nor its release is promoted.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from release.certify.checks import (
    SKIPPED,
    Check,
    CheckFailure,
    Unreachable,
    run_check,
)

if TYPE_CHECKING:
    from release.config import ReleaseConfig, Repository
    from release.targets import Target

GROUP = "image"


def mount_root(config: ReleaseConfig, repo_name: str, repo: Repository) -> Path | None:
    """The folder in which this machine sees the repository as `<folder>/<repo_name>`, or None.

    A directory stratum is read where it is; a `server` repository through its publisher
    node's mount when that node is this one, else through a CVMFS client mount at /cvmfs.
    """
    if repo.backend == "directory":
        return config.resolve_path(repo.path or ".")
    from release.targets import server_node

    node = server_node(config, repo)
    for root in ([Path(node.mount_root)] if node.host is None else []) + [Path("/cvmfs")]:
        if (root / repo_name).is_dir():
            return root
    return None


def default_command(config: ReleaseConfig, vo: str, product_name: str) -> str:
    """`[images.<vo>] command`, else the product's first smoke command, else its python
    importing its first smoke import (or just starting)."""
    settings = config.images[vo]
    if settings.command:
        return settings.command
    product = config.products[product_name]
    if product.smoke_commands:
        return product.smoke_commands[0]
    python = f"python{product.python}"
    if product.smoke_imports:
        return shlex.join([python, "-c", f"import {product.smoke_imports[0]}"])
    return shlex.join([python, "-c", "import sys"])


def image_check_groups(
    config: ReleaseConfig, env_name: str, tag: str, certified: dict[str, dict[str, str]]
) -> list[Callable[[], list[Check]]]:
    """One group of checks per VO image and architecture (they run beside the other groups):
    each adds the image's manifest digest to `certified[vo][arch]` when it passed."""
    from release.targets import for_environment

    env = config.environment(env_name)
    target = for_environment(config, env_name)
    vos = config.product_images(target.product_name)
    if not vos:
        return []
    if not env.certify.images:
        return [lambda: [Check(GROUP, f"image {vo}", env_name, SKIPPED,
                               f"environments.{env_name}.certify.images = false", 0.0)
                         for vo in vos]]  # fmt: skip
    groups: list[Callable[[], list[Check]]] = []
    for vo in vos:
        for arch in sorted(config.platforms):

            def group(vo: str = vo, arch: str = arch) -> list[Check]:
                return [_check_one(config, target, vo, arch, tag, certified)]

            groups.append(group)
    return groups


def _check_one(
    config: ReleaseConfig,
    target: Target,
    vo: str,
    arch: str,
    tag: str,
    certified: dict[str, dict[str, str]],
) -> Check:
    from release.image.publish import _repository, image_entry, image_layout, image_name
    from release.targets import make_backend

    repo_name, repo = _repository(config, vo, None)
    layout = image_layout(repo_name, repo.prefix, vo)
    entry = image_entry(image_name(config, vo), tag)
    rel = layout.platform_dir(entry, arch)
    shown = layout.client_path(rel)

    def body() -> str:
        from release.errors import ReleaseError
        from release.image.check import check_tree, runner_problem
        from release.image.oci import read_layout_image

        try:
            backend = make_backend(config, repo_name, repo)
            manifest = backend.read_manifest(rel)
        except ReleaseError as exc:
            raise Unreachable(exc.message) from None
        if manifest is None:
            raise CheckFailure(
                f"not published: dirac-release image publish --vo {vo} --version {tag}"
            )
        record = manifest.get("image") or {}
        if manifest.get("platform") != arch or record.get("tag") != tag:
            raise CheckFailure(f"the manifest there is for {record.get('tag')} "
                               f"{manifest.get('platform')}")  # fmt: skip
        problems = backend.verify_published(rel, manifest)
        if problems:
            raise CheckFailure(f"{len(problems)} problem(s): {'; '.join(problems[:3])}")
        problem = runner_problem(arch)
        if problem:
            raise Unreachable(f"the {arch} image cannot be run here: {problem}")
        images_root = mount_root(config, repo_name, repo)
        release_root = mount_root(config, target.repo_name, target.repo)
        if images_root is None or release_root is None:
            raise Unreachable(f"/cvmfs/{repo_name} is not mounted on this machine (the image "
                              "check runs the published tree)")  # fmt: skip
        tree = images_root / repo_name / rel
        try:
            _manifest, image_config, _digest = read_layout_image(
                images_root / repo_name / layout.version_dir(entry) / "oci" / arch
            )
            lines = (image_config.get("config") or {}).get("Env") or []
        except (OSError, ValueError, KeyError, IndexError):
            raise CheckFailure("its OCI layout is not published beside it") from None
        source = f"/cvmfs/{target.repo_name}/{target.layout.platform_dir(tag, arch)}/diracosrc"
        result = check_tree(
            tree, arch, cvmfs=release_root,
            os_id="debian" if str(record.get("base", "")).startswith("debian:") else None,
            source=source, command=default_command(config, vo, target.product_name),
            env=dict(line.split("=", 1) for line in lines if "=" in line) or None,
        )  # fmt: skip
        steps = "; ".join(f"{s.name}: {s.detail}" for s in result.steps)
        if not result.passed:
            failed = [s for s in result.steps if not s.passed]
            raise CheckFailure(
                f"{result.how}: " + "; ".join(f"{s.name}: {s.detail}" for s in failed)
            )
        digest = str(record.get("manifest_digest", ""))
        certified.setdefault(vo, {})[arch] = digest
        return (f"{len(manifest['files'])} files verified, manifest {digest[:19]}; "
                f"{result.how}: {steps}")  # fmt: skip

    return run_check(GROUP, f"image {vo} {arch}", shown, body)
