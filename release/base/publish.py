"""`dirac-release base publish`: a pinned base into the repository its releases are read from.

The base goes to `<prefix>/diracos/<version>/Linux-<arch>/`, where a bundle's diracosrc
looks for it (`$DIRAC_RELEASE_PREFIX/../../diracos/<version>/...`), in one transaction with
its installers under `<prefix>/installSource/DIRACOS-Linux-<arch>.sh`, the stable names
pilots fetch. Published once per version: a rerun is a checked no-op, the same version with
other content is refused, as for a release. The stable installer names follow the newest
base version published, so publishing an older base (to rebuild an old release) never
takes them back.
"""

from __future__ import annotations

from typing import Any

from release.base.publishable import INSTALL_SOURCE, product_name, stage_base
from release.config import ReleaseConfig

BASES_FOLDER = "diracos"


def _newer_or_same(version: str, than: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) >= Version(than)
    except InvalidVersion:
        return version == than


def publish_base(
    config: ReleaseConfig,
    name: str,
    arches: list[str],
    *,
    repository: str | None = None,
    plan: bool = False,
    step: Any = None,
) -> dict[str, Any]:
    from cvmfs.bundles import BundleSet
    from cvmfs.layout import Layout
    from cvmfs.publisher import publish
    from release.build import manifest as mf
    from release.targets import make_backend

    base = config.bases[name]
    say = step or (lambda _text: None)
    # The repository the releases on this base are read from, unless one is named.
    users = [p for p in config.products.values() if p.base == name]
    repo_name, repo = config.repository(repository, users[0] if users else None)
    say("laying out the base")
    staged, installers = stage_base(config, name, arches)
    bundles = BundleSet(
        product=product_name(name),
        tag=base.version,
        version_dir=next(iter(staged.values())).tree.parent,
        trees={arch: s.tree for arch, s in staged.items()},
        manifests={arch: s.manifest for arch, s in staged.items()},
        manifest_sha256={
            arch: mf.manifest_digest(mf.manifest_path(s.tree)) for arch, s in staged.items()
        },
    )
    backend = make_backend(config, repo_name, repo)
    layout = Layout(repo_name, f"{repo.prefix}/{BASES_FOLDER}")
    notes: list[str] = []
    extras = {}
    if installers is not None:
        rel = f"{repo.prefix}/{INSTALL_SOURCE}"
        current = backend.read_manifest(rel) if backend.status().exists else None
        held = str(current.get("tag")) if current else None
        if held is None or _newer_or_same(base.version, held):
            extras[rel] = installers
        else:
            notes.append(f"/{rel} keeps the installers of {name} {held}, newer than {base.version}")
    publication = publish(
        backend,
        layout,
        bundles,
        tag_name=repo.tag_format.format(
            product=product_name(name), tag=base.version, version=base.version
        ),
        wait_s=repo.wait,
        plan=plan,
        step=say,
        extras=extras,
        lease=repo.prefix if extras else None,
    )
    for arch, s in sorted(staged.items()):
        if s.relinked:
            notes.append(
                f"Linux-{arch}: {s.relinked} absolute link(s) made relative inside the base"
            )
        if s.left_out:
            notes.append(
                f"Linux-{arch}: left out {len(s.left_out)} device node(s)/FIFO(s) "
                f"({', '.join(s.left_out[:4])}): a container runtime provides them"
            )
        if s.mount_points:
            notes.append(
                f"Linux-{arch}: mount point(s) the root filesystem lacked, added empty: "
                f"{', '.join('/' + m for m in s.mount_points)}"
            )
        if s.normalised:
            notes.append(
                f"Linux-{arch}: {len(s.normalised)} file(s) published as 755/644 "
                f"(set-uid and other modes are not served by CVMFS): {', '.join(s.normalised[:3])}"
            )
        if s.private:
            notes.append(
                f"Linux-{arch}: {len(s.private)} file(s) that only their owner could read are "
                f"world-readable on CVMFS, as everything there: {', '.join(s.private[:3])}"
            )
    result = {
        "base": name,
        "version": base.version,
        "platforms": sorted(staged),
        "installers": sorted(extras),
        **publication.as_dict(),
    }
    result["notes"] = [*result["notes"], *notes]
    return result
