"""`modules = { release = "<folder>" }`: the VO's modules from the product's own repository, at
the tag of the release being built, so they go out and are certified with that release."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from release.cli import main
from release.config import load_config
from release.errors import ConfigError
from tests.pilot_repos import MYVO_COMMANDS, commit_files, make_pilot_repo

CONFIG = """\
[products.vodemo]
source = {{ {source} }}
distribution = "vodemo-dirac"

[repositories."vodemo.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[build]
out = "dist"
cache_dir = "cache"

[pilots.myvo]
pilot = {{ git = "Pilot", commit = "{commit}" }}
modules = {{ release = "vo-pilot" }}

[pilots.myvo.settings]
Commands = {{ Defaults = ["CheckWorkerNode", "InstallDIRAC", "MyVOConfigure"] }}
CommandExtensions = ["myvo"]
ConfigurationServers = ["dips://dirac.example.org:9135/Configuration/Server"]
"""
NEWER = MYVO_COMMANDS + "\n\nclass MyVOCleanup(CommandBase):\n    pass\n"


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    _, commit = make_pilot_repo(tmp_path / "Pilot")
    product = git.Repo.init(tmp_path / "product", initial_branch="main")
    commit_files(product, {"vo-pilot/myvoCommands.py": MYVO_COMMANDS, "README.md": "x\n"}, "one")
    product.create_tag("v1.0.0")
    commit_files(product, {"vo-pilot/myvoCommands.py": NEWER}, "two")
    product.create_tag("v1.1.0")
    (tmp_path / "release.toml").write_text(CONFIG.format(source='git = "product"', commit=commit))
    return tmp_path


def _build(site: Path, tag: str) -> int:
    return main(["--config", str(site / "release.toml"), "pilot", "build", "--version", tag,
                 "--json"])  # fmt: skip


def test_each_release_gets_the_modules_of_its_own_tag(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tag, text in (("v1.0.0", MYVO_COMMANDS), ("v1.1.0", NEWER)):
        assert _build(site, tag) == 0
        folder = site / "dist" / "pilots" / "myvo" / tag
        assert (folder / "myvoCommands.py").read_text() == text
        built = json.loads(capsys.readouterr().out)
        modules = built["pilots"][0]["modules"]
        assert modules["ref"] == tag and modules["origin"] == "product"
        assert modules["commit"] == git.Repo(site / "product").tags[tag].commit.hexsha


def test_a_release_not_tagged_yet_is_refused_with_nothing_written(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(site, "v1.2.0") == 2
    err = capsys.readouterr().err
    assert "vodemo's repository has no tag v1.2.0" in err and "pilots.myvo.modules" in err
    assert not (site / "dist" / "pilots" / "myvo" / "v1.2.0").exists()


def test_a_missing_folder_at_the_tag_is_refused(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (site / "release.toml").read_text().replace('release = "vo-pilot"', 'release = "nope"')
    (site / "release.toml").write_text(text)
    assert _build(site, "v1.0.0") == 2
    assert "has no folder 'nope'" in capsys.readouterr().err


def test_a_product_from_the_index_has_no_folder_to_take(site: Path) -> None:
    text = (site / "release.toml").read_text().replace('git = "product"', 'index = "vodemo-dirac"')
    (site / "release.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"pilots\.myvo\.modules takes the folder 'vo-pilot'"):
        load_config(site / "release.toml", environ={})


@pytest.mark.parametrize("modules", ['{ release = "../up" }', '{ release = "a", folder = "b" }'])
def test_bad_release_folders_are_refused_on_load(site: Path, modules: str) -> None:
    text = (site / "release.toml").read_text().replace('{ release = "vo-pilot" }', modules)
    (site / "release.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_config(site / "release.toml", environ={})
