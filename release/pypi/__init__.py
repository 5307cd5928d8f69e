"""The product's own distributions for PyPI, checked to be what the release ships.

A product built from its git tag (DIRAC) goes to PyPI as the very wheel that is installed in
its CVMFS bundles, plus an sdist of the same commit. `prepare_pypi` makes them (both cached by
commit: the build is reproducible), and refuses to hand over anything that is not the
release: every file of the wheel must be in each bundle with the sha256 its manifest records,
and both files' metadata must name the product's distribution and the tag's version. The
upload itself is the release workflow's `pypi` job, through PyPI's trusted publishing (an
OIDC token minted for that job; no PyPI secret exists anywhere).
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from release.config import GitSource, ReleaseConfig
from release.errors import BadInput, CheckFailed

PYPI_DIR = "pypi"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _metadata(text: str) -> tuple[str, str]:
    parsed = HeaderParser().parsestr(text)
    return str(parsed.get("Name", "")), str(parsed.get("Version", ""))


def wheel_files(wheel: Path) -> tuple[dict[str, str], tuple[str, str]]:
    """The files the wheel installs into site-packages (path -> sha256), and its metadata's
    (name, version). Its .dist-info is left out of the files: an installer rewrites RECORD
    and adds INSTALLER, so those differ in any installed tree; `.data/` goes elsewhere."""
    files: dict[str, str] = {}
    meta = ("", "")
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            top = info.filename.split("/", 1)[0]
            if top.endswith(".dist-info"):
                if info.filename == f"{top}/METADATA":
                    meta = _metadata(archive.read(info).decode("utf-8", errors="replace"))
                continue
            if top.endswith(".data"):
                continue
            files[info.filename] = _sha256(archive.read(info))
    return files, meta


def sdist_metadata(sdist: Path) -> tuple[str, str]:
    """(name, version) from the sdist's top-level PKG-INFO."""
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            parts = member.name.split("/")
            if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    return _metadata(handle.read().decode("utf-8", errors="replace"))
    return ("", "")


def _check_in_bundles(
    files: dict[str, str], manifests: dict[str, dict[str, Any]], python: str, wheel: str
) -> None:
    site = f"lib/python{python}/site-packages"
    for arch, manifest in sorted(manifests.items()):
        listed = {e["path"]: e.get("sha256") for e in manifest.get("files", [])}
        differ = [path for path, digest in sorted(files.items())
                  if listed.get(f"{site}/{path}") != digest]  # fmt: skip
        if differ:
            raise CheckFailed(
                f"{wheel} is not the wheel installed in the Linux-{arch} bundle: "
                f"{len(differ)} of its files differ or are missing there, e.g. {differ[0]}",
                fix="build the release again from the same tag (dirac-release build), then "
                "prepare the PyPI files: both must come from one commit",
            )


def prepare_pypi(
    config: ReleaseConfig, *, version: str, product_name: str | None = None
) -> dict[str, Any]:
    """Write <out>/<tag>/pypi/ (the wheel and the sdist, nothing else: the upload takes the
    folder whole) and record their sha256 in the ledger; see above."""
    from cvmfs.bundles import load_bundles
    from release.build.source import build_sdist, build_wheel, resolve_source
    from release.version import parse_version_arg

    name, product = config.product(product_name)
    if not isinstance(product.source, GitSource):
        raise BadInput(
            f"{name} is installed from the package index ({product.source.index}): it is "
            "already on PyPI, nothing of it is built here",
            where=f"products.{name}.source",
            fix="only a product built from its git tag (source = { git = ... }) goes to PyPI",
        )
    if not product.pypi:
        raise BadInput(
            f"{name} is not published to PyPI by this release",
            where=f"products.{name}.pypi",
            fix=f"set pypi = true under [products.{name}] (and register the release workflow "
            "as the project's trusted publisher on PyPI)",
        )
    release_version = parse_version_arg(version)
    tag = release_version.tag
    out = config.resolve_path(config.build.out).absolute()
    bundles = load_bundles(out, name, tag, sorted(config.platforms))
    cache_dir = config.resolve_path(config.build.cache_dir)
    source = resolve_source(config, name, product, release_version, allow_dirty=False)
    source = build_wheel(source, product, cache_dir)
    if source.find_links is None:
        raise CheckFailed(f"{name} {tag}: no wheel was built")
    (wheel,) = sorted(source.find_links.glob("*.whl"))
    sdist = build_sdist(source, product, cache_dir)
    files, wheel_meta = wheel_files(wheel)
    _check_in_bundles(files, bundles.manifests, product.python, wheel.name)
    distribution = product.distribution_name(name)
    from packaging.utils import canonicalize_name

    for path, (meta_name, meta_version) in ((wheel, wheel_meta), (sdist, sdist_metadata(sdist))):
        if canonicalize_name(meta_name) != canonicalize_name(distribution) or (
            meta_version != str(release_version.version)
        ):
            raise CheckFailed(
                f"{path.name} says it is {meta_name or '?'} {meta_version or '?'}, "
                f"not {distribution} {release_version.version}",
                fix="the project's metadata must follow the tag (setuptools_scm / hatch-vcs); "
                "fix it and tag again",
            )
    dest = out / tag / PYPI_DIR
    dest.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for path in (sdist, wheel):
        data = path.read_bytes()
        target = dest / path.name
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        written[path.name] = _sha256(data)
    # The folder is what the upload takes whole (every file in it): nothing else may be there.
    for stale in dest.iterdir():
        if stale.name not in written:
            stale.unlink()
    result = {
        "product": name,
        "tag": tag,
        "folder": str(dest),
        "files": written,
        "wheel_in_bundles": sorted(bundles.manifests),
        "wheel_files": len(files),
    }
    config.ledger(name, tag).record("pypi", {k: v for k, v in result.items() if k != "folder"})
    return result
