"""`dirac-release github-release` through PyGithub against tests/github_fake.py.

The fake answers as GitHub's REST API documents it: drafts are invisible to the by-tag
lookup, a second asset of the same name is a 422, assets report their `digest` (or, as an
older server, do not: then they are downloaded and hashed).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.config import load_config
from release.errors import BadInput, CheckFailed
from release.ghrelease import github_release
from tests.github_fake import FakeGitHub
from tests.publishing import make_bundle, write_config

TOKEN = "ghp_test-token-never-printed"  # noqa: S105 (a test value)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_config(tmp_path)
    version_dir = make_bundle(tmp_path / "dist", "v1.0.0")
    tarball = version_dir / "vodemo-v1.0.0-Linux-x86_64.tar.gz"
    tarball.write_bytes(b"\x1f\x8b fake tarball bytes" * 100)
    sums = version_dir / "SHA256SUMS"
    sums.write_text(sums.read_text() + f"{hashlib.sha256(tarball.read_bytes()).hexdigest()}  "
                    f"{tarball.name}\n")  # fmt: skip
    return tmp_path


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    with FakeGitHub(owner="DIRACGrid", name="vodemo") as fake:
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        yield fake


def _release(site: Path, **kwargs: object) -> dict[str, object]:
    config = load_config(site / "release.toml", environ={})
    return github_release(config, version="v1.0.0", repository="DIRACGrid/vodemo", **kwargs)  # type: ignore[arg-type]


def test_the_release_is_made_once_with_checked_assets(site: Path, github: FakeGitHub) -> None:
    result = _release(site, notes="## v1.0.0\n")
    assert result["status"] == "created"
    (release,) = github.releases.values()
    assert release["draft"] is False and release["prerelease"] is False
    assert release["body"] == "## v1.0.0\n"
    names = sorted(a["name"] for a in release["assets"].values())
    assert names == ["SHA256SUMS", "vodemo-v1.0.0-Linux-aarch64.manifest.json",
                     "vodemo-v1.0.0-Linux-x86_64.manifest.json",
                     "vodemo-v1.0.0-Linux-x86_64.tar.gz", "vodemo-v1.0.0.cdx.json"]  # fmt: skip
    stored = {a["name"]: a["data"] for a in release["assets"].values()}
    # SHA256SUMS checks the other assets by the names they have on the release.
    for line in stored["SHA256SUMS"].decode().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256(stored[name]).hexdigest() == digest
    bom = json.loads(stored["vodemo-v1.0.0.cdx.json"])
    assert bom["bomFormat"] == "CycloneDX" and bom["metadata"]["component"]["version"] == "v1.0.0"
    # The uploaded SBOM passes CycloneDX's own schema (the library's strict validator).
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    validator = JsonStrictValidator(SchemaVersion.from_version(bom["specVersion"]))
    assert validator.validate_str(stored["vodemo-v1.0.0.cdx.json"].decode()) is None
    assert {c["purl"] for c in bom["components"]} >= {
        "pkg:pypi/vodemo-dirac@1.0.0",
        "pkg:pypi/pyyaml@6.0.2",
    }
    # A rerun changes nothing and uploads nothing.
    uploads = len([r for r in github.requests if r[0].startswith("/uploads")])
    again = _release(site, notes="## v1.0.0\n")
    assert again["status"] == "already published" and len(github.releases) == 1
    assert {a["action"] for a in again["assets"]} == {"kept (same sha256)"}  # type: ignore[attr-defined]
    assert len([r for r in github.requests if r[0].startswith("/uploads")]) == uploads


def test_an_sbom_the_schema_rejects_is_refused_before_github_is_asked(
    site: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from release.ghrelease import assets

    made = assets.sbom

    def broken(*args: object) -> dict[str, object]:
        document = made(*args)  # type: ignore[arg-type]
        document["components"][0]["type"] = "plugin"  # type: ignore[index]
        return document

    monkeypatch.setattr(assets, "sbom", broken)
    with pytest.raises(
        CheckFailed, match=r"not valid CycloneDX 1.5: \$.components\[0\].type: 'plugin'"
    ):
        _release(site)
    assert not github.requests and not github.releases


def test_a_failed_upload_leaves_a_draft_that_a_rerun_finishes(
    site: Path, github: FakeGitHub
) -> None:
    github.report_digest = False  # an older server: assets are downloaded and hashed
    github.corrupt = {"vodemo-v1.0.0.cdx.json"}
    with pytest.raises(CheckFailed, match=r"left a draft: vodemo-v1.0.0.cdx.json does not have"):
        _release(site)
    (release,) = github.releases.values()
    assert release["draft"] is True  # nobody saw a release with a broken file
    github.corrupt = set()
    result = _release(site)
    assert result["status"] == "updated" and len(github.releases) == 1
    actions = {a["name"]: a["action"] for a in result["assets"]}  # type: ignore[attr-defined]
    assert actions["vodemo-v1.0.0.cdx.json"] == "replaced"
    assert actions["SHA256SUMS"] == "kept (same sha256)"
    assert github.releases[1]["draft"] is False


def test_a_published_asset_is_never_swapped(site: Path, github: FakeGitHub) -> None:
    _release(site)
    tarball = site / "dist/v1.0.0/vodemo-v1.0.0-Linux-x86_64.tar.gz"
    tarball.write_bytes(b"other bytes")
    sums = site / "dist/v1.0.0/SHA256SUMS"
    lines = [ln for ln in sums.read_text().splitlines() if "tar.gz" not in ln]
    digest = hashlib.sha256(b"other bytes").hexdigest()
    sums.write_text("\n".join([*lines, f"{digest}  {tarball.name}"]) + "\n")
    with pytest.raises(
        CheckFailed, match=r"has an asset vodemo-v1\.0\.0-Linux-x86_64\.tar\.gz that"
    ):
        _release(site)


def test_without_a_token_or_with_a_bad_one(
    site: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    with pytest.raises(BadInput, match="needs a token: GITHUB_TOKEN is not set"):
        _release(site)
    assert github.requests == []
    bad = "ghp_wrong-and-secret"
    proc = subprocess.run(
        [sys.executable, "-m", "release", "--config", str(site / "release.toml"),
         "github-release", "--version", "v1.0.0", "--github", "DIRACGrid/vodemo"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "GITHUB_TOKEN": bad, "GITHUB_API_URL": github.url},
    )  # fmt: skip
    assert proc.returncode == 2 and "GitHub refused the token" in proc.stderr
    assert bad not in proc.stdout + proc.stderr and not github.releases
    planned = subprocess.run(
        [sys.executable, "-m", "release", "--config", str(site / "release.toml"), "--json",
         "github-release", "--version", "v1.0.0", "--github", "DIRACGrid/vodemo", "--plan"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "GITHUB_API_URL": github.url},
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert len(json.loads(planned.stdout)["assets"]) == 5 and not github.releases


def test_an_asset_uploaded_meanwhile_by_another_run_is_checked_not_duplicated(
    site: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one release race: the second's upload answers 422 (already_exists); the
    asset there is read back and must have our sha256, or the release stays a draft."""
    import release.ghrelease as ghrelease

    real_sync = ghrelease._sync_assets

    def racing(release: object, assets: list, result: dict, slug: str) -> None:  # type: ignore[type-arg]
        # The other run uploads SHA256SUMS just before this one lists the assets.
        sums = next(a for a in assets if a.name == "SHA256SUMS")
        release.upload_asset(str(sums.path), content_type="text/plain", name=sums.name)  # type: ignore[attr-defined]
        listed = release.get_assets  # type: ignore[attr-defined]
        release.get_assets = lambda: [a for a in listed() if a.name != "SHA256SUMS"]  # type: ignore[attr-defined]
        try:
            real_sync(release, assets, result, slug)
        finally:
            release.get_assets = listed  # type: ignore[attr-defined]

    monkeypatch.setattr(ghrelease, "_sync_assets", racing)
    result = _release(site)
    actions = {a["name"]: a["action"] for a in result["assets"]}  # type: ignore[attr-defined]
    assert actions["SHA256SUMS"] == "uploaded by another run"
    (release,) = github.releases.values()
    assert release["draft"] is False
    assert [a["name"] for a in release["assets"].values()].count("SHA256SUMS") == 1


def test_built_images_go_along_as_oci_archives_and_unbuilt_ones_are_named(
    site: Path, github: FakeGitHub, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from release.image.archive import read_archive
    from release.image.build import build_images
    from tests.image_trees import debian_base

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    debian_base(isolated_env, "x86_64")
    config_path = site / "release.toml"
    config_path.write_text(
        config_path.read_text() + '\n[images.dteam]\nbase = { debian = "bookworm" }\n'
    )
    config = load_config(config_path, environ={})
    [built] = build_images(config, version="v1.0.0", arches=["x86_64"])
    result = _release(site)
    name = "dteam-v1.0.0-oci-x86_64.tar"
    assert name in {a["name"] for a in result["assets"]}  # type: ignore[attr-defined]
    assert result["notes"] == [  # aarch64 was not built: said, not silently left out
        "not attached, not built: the image of dteam aarch64 (dirac-release image build "
        "--vo dteam --version v1.0.0)"
    ]
    (release,) = github.releases.values()
    stored = {a["name"]: a["data"] for a in release["assets"].values()}
    archive = site / "downloaded.tar"
    archive.write_bytes(stored[name])
    image, tar = read_archive(archive, "x86_64", "test")  # what a site's tools read
    tar.close()
    assert image.manifest_digest == built.manifest_digest
    assert f"  {name}" in stored["SHA256SUMS"].decode()
    # The same layout gives the same archive bytes.
    from release.ghrelease.assets import oci_archive

    oci_archive(built.layout, site / "again.tar")
    assert (site / "again.tar").read_bytes() == stored[name]
