"""Pilot files published with their release, checked first, and moved with `pro` by promotion.

A directory stratum, synthetic bundles (tests/publishing.py) and the small Pilot-like and VO
repositories of tests/pilot_repos.py; the pilot folders are made by `pilot build` itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from release.config import load_config
from release.errors import BadInput
from release.pilot.build import build_pilots
from release.promote import production_pilot, promote_release
from release.publish import init_repository, publish_release
from tests.pilot_repos import make_pilot_repo, make_vo_repo
from tests.publishing import make_bundle

CONFIG = """\
[products.vodemo]
source = {{ git = "repo" }}
distribution = "vodemo-dirac"

[repositories."vodemo.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"
links = ["latest"]

[build]
out = "dist"
cache_dir = "cache"

[environments.certification]
hosts = {{ cctbdirac01 = "10.77.0.11" }}
pilot = "myvo"

[environments.production]
hosts = {{ diracprod01 = "10.77.0.21" }}
{production_pilot}

[pilots.myvo]
pilot = {{ git = "{pilot}", commit = "{commit}" }}
modules = {{ git = "{modules}", tag = "v1.0.0", path = "pilot" }}

[pilots.myvo.settings]
Commands = {{ Defaults = ["CheckWorkerNode", "InstallDIRAC", "MyVOConfigure"] }}
CommandExtensions = ["myvo"]
ConfigurationServers = ["dips://dirac.example.org:9135/Configuration/Server"]

[pilots.dteam]
pilot = {{ git = "{pilot}", commit = "{commit}" }}

[pilots.dteam.settings]
Commands = {{ Defaults = ["CheckWorkerNode", "InstallDIRAC"] }}
ConfigurationServers = ["dips://dteam.example.org:9135/Configuration/Server"]
"""


def write_site(tmp: Path, production_pilot: str = 'pilot = "myvo"') -> Path:
    _, commit = make_pilot_repo(tmp / "Pilot")
    make_vo_repo(tmp / "MyVOPilot")
    path = tmp / "release.toml"
    path.write_text(CONFIG.format(pilot=tmp / "Pilot", commit=commit,
                                  modules=(tmp / "MyVOPilot").as_uri(),
                                  production_pilot=production_pilot))  # fmt: skip
    init_repository(load_config(path, environ={}), None)
    return path


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    path = write_site(tmp_path)
    config = load_config(path, environ={})
    for tag in ("v1.0.0", "v1.1.0"):
        make_bundle(tmp_path / "dist", tag)
        build_pilots(config, version=tag)
    return tmp_path


def config_of(site: Path):  # type: ignore[no-untyped-def]
    return load_config(site / "release.toml", environ={})


def prefix(site: Path) -> Path:
    return site / "stratum" / "vodemo.egi.eu" / "dirac"


def test_pilot_files_go_out_in_the_release_transaction(site: Path) -> None:
    result = publish_release(config_of(site), version="v1.0.0")
    assert result["status"] == "published" and result["revision"] == 1  # one transaction
    assert "/cvmfs/vodemo.egi.eu/dirac/v1.0.0/pilot/myvo" in result["paths"]
    assert set(result["pilots"]) == {"myvo", "dteam"}
    for vo in ("myvo", "dteam"):
        published = prefix(site) / "v1.0.0" / "pilot" / vo
        built = site / "dist" / "pilots" / vo / "v1.0.0"
        for name in ("checksums.sha512", "pilot.json", "pilot.tar"):
            assert (published / name).read_bytes() == (built / name).read_bytes()
        # What the wrapper does with a folder: every file against checksums.sha512.
        check = subprocess.run(["sha512sum", "-c", "checksums.sha512"], cwd=published,
                               capture_output=True, text=True, check=False)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        digest = hashlib.sha512((built / "checksums.sha512").read_bytes()).hexdigest()
        assert result["pilots"][vo]["checksums_sha512"] == digest
    document = json.loads((prefix(site) / "v1.0.0/pilot/myvo/pilot.json").read_text())
    assert document["myvo"]["Pilot"]["Version"].split(",")[0] == "v1.0.0"
    # Nothing moved the production link yet: pilots keep what they run until promotion.
    assert not os.path.lexists(prefix(site) / "pilot")
    again = publish_release(config_of(site), version="v1.0.0")
    assert again["status"] == "already published" and again["revision"] == 1


def test_a_byte_changed_after_the_build_is_refused_before_anything_opens(site: Path) -> None:
    tar = site / "dist" / "pilots" / "myvo" / "v1.0.0" / "pilot.tar"
    data = bytearray(tar.read_bytes())
    data[600] ^= 1
    tar.write_bytes(bytes(data))
    with pytest.raises(BadInput, match=r"differ from checksums\.sha512 for pilot\.tar") as caught:
        publish_release(config_of(site), version="v1.0.0")
    assert "pilot build --vo myvo --version v1.0.0" in (caught.value.fix or "")
    assert not (prefix(site) / "v1.0.0").exists()
    assert not list((site / "stratum").rglob("*.lock"))


def test_unbuilt_or_tampered_folders_are_named(site: Path) -> None:
    folder = site / "dist" / "pilots" / "dteam" / "v1.1.0"
    (folder / "extra.py").write_text("print('not listed')\n")
    with pytest.raises(BadInput, match=r"not in checksums.sha512: extra.py"):
        publish_release(config_of(site), version="v1.1.0")
    make_bundle(site / "dist", "v1.2.0")
    with pytest.raises(BadInput, match=r"pilot files of myvo for v1\.2\.0 are not built"):
        publish_release(config_of(site), version="v1.2.0")
    assert not (prefix(site) / "v1.1.0").exists() and not (prefix(site) / "v1.2.0").exists()


def test_a_published_release_never_gets_other_pilot_files(site: Path) -> None:
    config = config_of(site)
    publish_release(config, version="v1.0.0")
    # The VO's settings change and the same release's pilots are rebuilt: other bytes.
    text = (site / "release.toml").read_text()
    (site / "release.toml").write_text(
        text.replace("dteam.example.org:9135", "dteam2.example.org:9135")
    )
    build_pilots(config_of(site), version="v1.0.0", vo="dteam")
    with pytest.raises(
        BadInput, match=r"already published .* not with these files at /dirac/v1\.0\.0/pilot/dteam"
    ):
        publish_release(config_of(site), version="v1.0.0")


def test_promotion_moves_the_pilot_link_with_pro_in_one_revision(site: Path) -> None:
    from cvmfs.promotion import move_link
    from release.certify import published_manifests

    config = config_of(site)
    for tag in ("v1.0.0", "v1.1.0"):
        publish_release(config, version=tag)
    for tag in ("v1.0.0", "v1.1.0"):
        backend, layout, manifests = published_manifests(config, "production", tag)
        companions = production_pilot(config, "production", tag, backend, layout)
        assert list(companions) == ["pilot"]
        revision = backend.status().revision
        moved = move_link(backend, layout, tag, {a: m for a, m in manifests.items() if m},
                          companions=companions)  # fmt: skip
        assert moved["status"] == "moved"
        assert backend.status().revision == revision + 1  # pro and pilot in one publication
        assert os.readlink(prefix(site) / "pro") == tag
        assert os.readlink(prefix(site) / "pilot") == f"{tag}/pilot/myvo"
        # Where the wrapper looks (<cvmfs>/<project>dirac/pilot) is now this release's files.
        document = json.loads((prefix(site) / "pilot" / "pilot.json").read_text())
        assert document["myvo"]["Pilot"]["Version"].split(",")[0] == tag
    assert moved["companions"] == {
        "pilot": {"from": "v1.0.0/pilot/myvo", "to": "v1.1.0/pilot/myvo"}
    }
    # Nothing left to do once both links are where they should be; a moved pilot link alone
    # is put back with pro.
    backend, layout, manifests = published_manifests(config, "production", "v1.1.0")
    present = {a: m for a, m in manifests.items() if m}
    companions = production_pilot(config, "production", "v1.1.0", backend, layout)
    assert (
        move_link(backend, layout, "v1.1.0", present, companions=companions)["status"]
        == "already there"
    )
    os.remove(prefix(site) / "pilot")
    os.symlink("v1.0.0/pilot/dteam", prefix(site) / "pilot")
    again = move_link(backend, layout, "v1.1.0", present, companions=companions)
    assert again["status"] == "moved" and os.readlink(prefix(site) / "pilot") == "v1.1.0/pilot/myvo"


def test_promote_plan_names_the_pilot_link(site: Path) -> None:
    from release.certify import published_digests

    config = config_of(site)
    publish_release(config, version="v1.0.0")
    config.ledger("vodemo", "v1.0.0").record(
        "certify", {"environment": "certification", "version": "v1.0.0", "passed": True,
                    "manifest_sha256": published_digests(config, "certification", "v1.0.0"),
                    "checks": []},
    )  # fmt: skip
    plan = promote_release(config, version="v1.0.0", plan=True)
    link = next(s for s in plan["steps"] if s["step"] == "pro link")
    assert "pilot -> v1.0.0/pilot/myvo (was absent)" in link["result"]
    assert any("point /dirac/pilot -> v1.0.0/pilot/myvo" in a for a in link["actions"])
    assert not os.path.lexists(prefix(site) / "pilot")


def test_which_vo_production_runs_must_be_said_when_there_are_several(
    tmp_path: Path, isolated_env: Path
) -> None:
    config = load_config(write_site(tmp_path, production_pilot=""), environ={})
    with pytest.raises(
        BadInput, match=r"several VOs .*myvo, dteam.* environment production"
    ) as caught:
        config.environment_pilot("production")
    assert 'pilot = "myvo"' in (caught.value.fix or "")
    assert config.environment_pilot("certification") == "myvo"
    text = (
        (tmp_path / "release.toml")
        .read_text()
        .replace(
            'pilot = "myvo"\n\n[environments.production]',
            'pilot = "nobody"\n\n[environments.production]',
        )
    )
    (tmp_path / "release.toml").write_text(text)
    from release.errors import ConfigError

    with pytest.raises(ConfigError, match=r"environments\.certification\.pilot names 'nobody'"):
        load_config(tmp_path / "release.toml", environ={})


def test_a_release_published_without_its_pilot_files_is_not_promoted(site: Path) -> None:
    from release.certify import published_manifests

    config = config_of(site)
    publish_release(config, version="v1.0.0")
    backend, layout, _ = published_manifests(config, "production", "v1.0.0")
    # As if published before pilots were configured: the folder is not there.
    import shutil

    shutil.rmtree(prefix(site) / "v1.0.0" / "pilot")
    with pytest.raises(BadInput, match="published without the pilot files of myvo"):
        production_pilot(config, "production", "v1.0.0", backend, layout)


def test_the_report_shows_the_pilot_files_digests(site: Path) -> None:
    from release.report import collect, html_page, markdown

    config = config_of(site)
    # What build_release records (its pilot step without the wrapper script, which needs the
    # package index: tests/unit/test_pilot_wrapper.py), then the publication.
    built = {vo: hashlib.sha512((site / "dist/pilots" / vo / "v1.0.0/checksums.sha512")
                                .read_bytes()).hexdigest() for vo in ("myvo", "dteam")}  # fmt: skip
    config.ledger("vodemo", "v1.0.0").record("build", {"platforms": [], "pilots": built})
    publish_release(config, version="v1.0.0")
    data = collect(config, "vodemo", "v1.0.0")
    assert [p["vo"] for p in data["pilots"]] == ["dteam", "myvo"]
    myvo = data["pilots"][1]
    assert myvo["built_sha512"] == myvo["published_sha512"] == built["myvo"]
    assert myvo["path"] == "/cvmfs/vodemo.egi.eu/dirac/v1.0.0/pilot/myvo"
    assert f"| myvo | {built['myvo'][:16]} | {built['myvo'][:16]} |" in markdown(data)
    assert "<h2>Pilot files</h2>" in html_page(data) and built["dteam"][:16] in html_page(data)
