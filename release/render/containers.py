"""The ContainerRoot of each VO's image, pinned to the rendered version, for the site.

DIRAC's SingularityComputingElement runs a job in the folder its `ContainerRoot` option
names. `image publish` puts each VO's image of a release at a path that follows from
release.toml alone, so the render, which already pins one version to one environment, can
say that path too: in the group variables (`dirac_container_roots`, for playbooks that
configure a CE) and in `site/container-roots.cfg`, a file in DIRAC's CFG syntax that a site
administrator copies from. Both come from `release.image.publish.container_roots`, the same
function as `dirac-release image container-root`, so the render and the command can never
name different folders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from release.errors import BadInput

if TYPE_CHECKING:
    from release.config import ReleaseConfig

#: The group variable: VO -> architecture (and "any") -> ContainerRoot.
CONTAINER_ROOTS_VAR = "dirac_container_roots"
#: The site-configuration file, relative to the rendered folder.
SITE_FILE = "site/container-roots.cfg"
#: The key of the `{arch}` form: `{` opens a section in DIRAC's CFG syntax, so it cannot be a key.
ANY = "any"


def image_vos(config: ReleaseConfig, product: str) -> list[str]:
    """The VOs of [images] whose image is built for `product` (sorted).

    An image without `product` belongs to the only product. With several products it belongs
    to none that can be told, and a render cannot say whether that VO's jobs run this
    product's release: refused, as `image build` refuses it.
    """
    only = next(iter(config.products)) if len(config.products) == 1 else None
    vos: list[str] = []
    for vo, settings in sorted(config.images.items()):
        owner = settings.product or only
        if owner is None:
            raise BadInput(
                f"images.{vo} does not say which product its image is for, and "
                f"{config.path.name} defines several products ({', '.join(config.products)})",
                where=f"{config.path}: images.{vo}",
                fix=f'set product = "{product}" (or another product) in [images.{vo}]',
            )
        if owner == product:
            vos.append(vo)
    return vos


def container_roots_for(
    config: ReleaseConfig, env_name: str, tag: str
) -> dict[str, dict[str, str]]:
    """VO -> {architecture: ContainerRoot, ..., "any": the `{arch}` form} for the images of
    the environment's product at `tag`; empty when that product has no image.

    Every platform of release.toml is given (`image publish` publishes them all), in the
    repository `image publish` uses by default: the image's product's, which is the
    environment's product here. An environment whose own platform is not one of them is
    refused: its nodes would be sent to a tree that is never published.
    """
    if not config.images:
        return {}
    env = config.environment(env_name)
    product, _ = config.product(env.product)
    vos = image_vos(config, product)
    if not vos:
        return {}
    if env.platform not in config.platforms:
        raise BadInput(
            f"environment {env_name} runs on {env.platform}, but the images of {product} are "
            f"published for {', '.join(config.platforms)} only ([platforms] of release.toml)",
            where=f"{config.path}: environments.{env_name}.platform",
            fix=f"add [platforms.{env.platform}] to release.toml, or correct the platform of "
            f"{env_name}",
        )
    from release.image.publish import container_roots

    roots: dict[str, dict[str, str]] = {}
    for vo in vos:
        roots[vo] = {
            (ANY if entry["arch"] == "{arch}" else entry["arch"]): entry["container_root"]
            for entry in container_roots(config, version=tag, vo=vo)
        }
    return roots


#: The comment at the top of the site file: where it comes from and how a site uses it.
_HEADER = """\
# Rendered by dirac-release for {env} {tag}; edit release.toml, not this file.
#
# The ContainerRoot of DIRAC's SingularityComputingElement for the VO images of release
# {tag} ([images.<vo>] of release.toml, put on CVMFS by `dirac-release image publish`),
# one section per VO. A site sets the value as the ContainerRoot option of the CE or queue
# whose jobs run in the SingularityComputingElement (in its section under
# /Resources/Sites/<domain>/<site>/CEs/). The sections are named after VOs: copy the
# values from this file, do not merge it into the CS as it is.
#
# ContainerRoot: the value for worker nodes of {env}'s architecture ({platform}).
# Architectures: the value for each architecture; 'any' is the {{arch}} form, which only a
# DIRAC that puts the node's architecture in its place understands (DIRAC#8454). Any other
# DIRAC takes it literally: there, set the value of the nodes' architecture.
"""


def site_config(env_name: str, tag: str, platform: str, roots: dict[str, dict[str, str]]) -> str:
    """`site/container-roots.cfg`: one section per VO in DIRAC's CFG syntax.

    `ContainerRoot` is the value for the environment's architecture (what a site running
    that architecture sets); `Architectures` holds every architecture's value and the
    `{arch}` form under `any`. The sections are named after VOs, not CS paths: the file is
    what a site copies from, never a CS fragment to merge as is, and its header says so.
    """
    lines = _HEADER.format(env=env_name, tag=tag, platform=platform).splitlines()
    for vo, per_arch in sorted(roots.items()):
        lines += [vo, "{", f"  ContainerRoot = {per_arch[platform]}", "  Architectures", "  {"]
        arches = sorted(arch for arch in per_arch if arch != ANY)
        lines += [f"    {arch} = {per_arch[arch]}" for arch in [*arches, ANY]]
        lines += ["  }", "}"]
    return "\n".join(lines) + "\n"
