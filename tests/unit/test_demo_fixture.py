"""The demo's configuration is edited as a TOML document: valid, with its comments kept."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from release.config import load_config
from release.demo import fixture


def test_the_embedded_configuration_is_written_as_shipped() -> None:
    text = fixture.demo_config_text()
    assert "# The embedded demo release" in text
    data = tomllib.loads(text)
    assert data["environments"]["certification"]["hosts"] == {"cctbdirac01": "", "cctbdirac02": ""}


def test_lab_hosts_key_platforms_and_source_are_set_in_place(tmp_path: Path) -> None:
    key = tmp_path / "lab" / "id_ed25519"
    text = fixture.demo_config_text(
        hosts={"certification": {"cctbdirac01": "10.77.0.11", "cctbdirac02": "10.77.0.12"},
               "production": {"diracprod01": "10.77.0.13"}},
        ssh_key=key, platforms=["x86_64"], source="elsewhere",
    )  # fmt: skip
    # The comments that explain the file to a person stay where they were.
    assert "# A directory stratum in the demo folder stands in for /cvmfs/vodemo.egi.eu" in text
    data = tomllib.loads(text)
    assert data["environments"]["certification"]["hosts"]["cctbdirac02"] == "10.77.0.12"
    assert data["environments"]["production"]["ssh_key"] == str(key)
    assert list(data["platforms"]) == ["x86_64"]
    assert data["products"]["vodemo"]["source"]["git"] == "elsewhere"
    (tmp_path / "release.toml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "release.toml", environ={})
    assert config.environment("certification").hosts == {
        "cctbdirac01": "10.77.0.11", "cctbdirac02": "10.77.0.12"}  # fmt: skip
    assert sorted(config.platforms) == ["x86_64"]


def test_an_unknown_platform_is_refused() -> None:
    with pytest.raises(ValueError, match="no platform"):
        fixture.demo_config_text(platforms=["riscv64"])


def test_the_demo_pilot_is_pinned_to_the_commit_the_fixture_makes(tmp_path: Path) -> None:
    """The demo's stand-in Pilot lives in its product repository; release.toml pins the commit
    of v1.0.0, which the fixed files and date make the same everywhere. A change to the
    product's files changes that commit: then put the new one in release/resources/demo/release.toml."""
    commit = fixture.prepare_repository(tmp_path / "repo")
    pinned = tomllib.loads(fixture.demo_config_text())["pilots"]["vodemo"]["pilot"]["commit"]
    assert pinned == commit, f"release/resources/demo/release.toml must pin {commit}"
