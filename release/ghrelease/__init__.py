"""`dirac-release github-release`: a version's GitHub release, made idempotently.

The release is created as a draft, its notes set, every asset uploaded (an asset already
there with the same sha256 is kept; a draft's asset with other content is replaced), then
the assets are read back from the API and each one's digest compared with ours; only then is
the draft published, as a pre-release when the version is one. A rerun finds the release by
its tag (drafts included: GitHub's by-tag lookup does not show drafts, so the list is read),
so it never makes a second release or a second copy of an asset. A published release whose
asset differs from the bundles is refused: what people may have downloaded is never swapped.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from release.config import ReleaseConfig
from release.errors import BadInput, CheckFailed
from release.ghrelease.assets import Asset, make_assets
from release.github_api import TOKEN_VARIABLE, Unprocessable, call, client


def _digest_of(remote: Any) -> str | None:
    """The sha256 GitHub reports for an asset (`digest: "sha256:..."`), or None."""
    digest = getattr(remote, "digest", None)
    if isinstance(digest, str) and digest.startswith("sha256:"):
        return digest.removeprefix("sha256:")
    return None


def _remote_sha256(remote: Any, what: str) -> str:
    """The asset's sha256: as GitHub reports it, else by downloading it."""
    digest = _digest_of(remote)
    if digest is not None:
        return digest
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "asset"
        call(f"downloading {what}", lambda: remote.download_asset(str(path)))
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()


def _find(repo: Any, tag: str, slug: str) -> Any | None:
    def look() -> Any | None:
        for release in repo.get_releases():
            if release.tag_name == tag:
                return release
        return None

    return call(f"listing the releases of {slug}", look, repository=slug)


def _image_layouts(
    config: ReleaseConfig, product: str, tag: str
) -> tuple[dict[str, Path], list[str]]:
    """Asset name -> OCI layout of each built image of the product's VOs; the ones not built."""
    from release.image.build import output_root

    layouts: dict[str, Path] = {}
    unbuilt: list[str] = []
    root = output_root(config, None)
    for vo, settings in config.images.items():
        if config.product(settings.product)[0] != product:
            continue
        for arch in sorted(config.platforms):
            layout = root / vo / tag / "oci" / arch
            if (layout / "index.json").is_file():
                layouts[f"{vo}-{tag}-oci-{arch}.tar"] = layout
            else:
                unbuilt.append(f"{vo} {arch}")
    return layouts, unbuilt


def github_release(
    config: ReleaseConfig,
    *,
    version: str,
    product_name: str | None = None,
    repository: str,
    notes: str = "",
    plan: bool = False,
) -> dict[str, Any]:
    from cvmfs.bundles import load_bundles
    from release.targets import for_product
    from release.version import parse_version_arg

    started = time.monotonic()
    target = for_product(config, product_name)
    release_version = parse_version_arg(version)
    tag = release_version.tag
    out = config.resolve_path(config.build.out).absolute()
    bundles = load_bundles(out, target.product_name, tag, list(config.platforms))
    tarballs = sorted((out / tag).glob("*.tar.gz"))
    images, unbuilt = _image_layouts(config, target.product_name, tag)
    assets = make_assets(out / tag / "github-release", target.product_name, tag, bundles.trees,
                         bundles.manifests, tarballs, images)  # fmt: skip
    result: dict[str, Any] = {
        "product": target.product_name,
        "tag": tag,
        "repository": repository,
        "prerelease": release_version.is_prerelease,
        "assets": [
            {"name": a.name, "sha256": a.sha256, "size": a.size, "action": "planned"}
            for a in assets
        ],
        "status": "planned",
        "notes": [
            f"not attached, not built: the image of {name} (dirac-release image build "
            f"--vo {name.split(' ')[0]} --version {tag})"
            for name in unbuilt
        ],
    }
    if plan:
        result["seconds"] = round(time.monotonic() - started, 3)
        return result
    if not os.environ.get(TOKEN_VARIABLE):
        raise BadInput(
            f"making a GitHub release needs a token: {TOKEN_VARIABLE} is not set",
            fix=f"set {TOKEN_VARIABLE} (in GitHub Actions: env: {TOKEN_VARIABLE}: ${{{{ github.token }}}} "
            "with contents: write)",
        )
    gh = client()
    repo = call(f"reading repository {repository}", lambda: gh.get_repo(repository),
                repository=repository)  # fmt: skip
    release = _find(repo, tag, repository)
    title = f"{target.product_name} {tag}"
    if release is None:
        release = call(
            f"creating the draft release {tag} of {repository}",
            lambda: repo.create_git_release(tag, title, notes, draft=True,
                                            prerelease=release_version.is_prerelease),
            repository=repository,
        )  # fmt: skip
        result["status"] = "created"
    elif release.draft:
        call(f"updating the draft release {tag}",
             lambda: release.update_release(title, notes, draft=True,
                                            prerelease=release_version.is_prerelease),
             repository=repository)  # fmt: skip
        result["status"] = "updated"
    else:
        result["status"] = "already published"
    _sync_assets(release, assets, result, repository)
    _verify_assets(release, assets, repository)
    if release.draft:
        call(f"publishing the release {tag}",
             lambda: release.update_release(title, notes, draft=False,
                                            prerelease=release_version.is_prerelease),
             repository=repository)  # fmt: skip
    result["url"] = release.html_url
    result["seconds"] = round(time.monotonic() - started, 3)
    config.ledger(target.product_name, tag).record(
        "github-release",
        {k: result[k] for k in ("repository", "status", "url", "prerelease")}
        | {"assets": {a["name"]: a["sha256"] for a in result["assets"]}},
    )
    return result


def _sync_assets(release: Any, assets: list[Asset], result: dict[str, Any], slug: str) -> None:
    remote = {a.name: a for a in call("listing the release's assets",
                                      lambda: list(release.get_assets()), repository=slug)}  # fmt: skip
    actions = {entry["name"]: entry for entry in result["assets"]}
    for asset in assets:
        existing = remote.get(asset.name)
        if existing is not None:
            same = (
                existing.size == asset.size and _remote_sha256(existing, asset.name) == asset.sha256
            )
            if same:
                actions[asset.name]["action"] = "kept (same sha256)"
                continue
            if not release.draft:
                raise CheckFailed(
                    f"the published release {release.tag_name} of {slug} has an asset "
                    f"{asset.name} that differs from the bundles",
                    fix="a published release's files are never swapped: investigate who changed "
                    "it, or release a new version",
                )
            call(
                f"deleting the outdated asset {asset.name}", existing.delete_asset, repository=slug
            )
        try:
            call(f"uploading {asset.name}",
                 lambda a=asset: release.upload_asset(str(a.path), content_type=a.content_type,  # type: ignore[misc]
                                                      name=a.name),
                 repository=slug)  # fmt: skip
        except Unprocessable:
            # Another run uploaded an asset of that name meanwhile; the check below decides
            # whether it is ours.
            actions[asset.name]["action"] = "uploaded by another run"
            continue
        actions[asset.name]["action"] = "replaced" if existing is not None else "uploaded"
    ours = {a.name for a in assets}
    extra = sorted(set(remote) - ours)
    if extra:
        result["notes"].append(f"left alone: assets not made by dirac-release: {', '.join(extra)}")


def _verify_assets(release: Any, assets: list[Asset], slug: str) -> None:
    """Read the assets back; every one of ours is there, uploaded, with our sha256."""
    remote = {a.name: a for a in call("listing the release's assets",
                                      lambda: list(release.get_assets()), repository=slug)}  # fmt: skip
    problems = []
    for asset in assets:
        found = remote.get(asset.name)
        if found is None:
            problems.append(f"{asset.name} is missing")
        elif getattr(found, "state", "uploaded") != "uploaded":
            problems.append(f"{asset.name} is {found.state}")
        elif _remote_sha256(found, asset.name) != asset.sha256:
            problems.append(f"{asset.name} does not have the sha256 uploaded")
    if problems:
        raise CheckFailed(
            f"the release {release.tag_name} of {slug} was left a draft: " + "; ".join(problems),
            fix="run the command again: it keeps what is right and uploads the rest",
        )
