"""[pilots.<vo>] in release.toml: what is accepted, what is refused when the file is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.config import load_config
from release.config.pilots import FolderModules, GitModules
from release.errors import ConfigError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HEAD = f"""\
[products.DIRAC]
source = {{ index = "DIRAC" }}

[pilots.dteam]
pilot = {{ git = "https://github.com/DIRACGrid/Pilot.git", commit = "{COMMIT}" }}
"""


def _load(tmp_path: Path, extra: str = "") -> object:
    path = tmp_path / "release.toml"
    path.write_text(HEAD + extra)
    return load_config(path, environ={})


def test_a_minimal_table_takes_the_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path)
    deployment = config.pilots["dteam"]  # type: ignore[attr-defined]
    assert deployment.pilot.path == "Pilot" and deployment.modules is None
    assert deployment.product is None and deployment.settings.Commands == {}


@pytest.mark.parametrize(
    ("modules", "kind"),
    [('{ git = "../MyVO", tag = "v1.0.0" }', GitModules), ('{ folder = "pilot" }', FolderModules)],
)
def test_modules_come_from_a_tag_or_a_folder(tmp_path: Path, modules: str, kind: type) -> None:
    config = _load(tmp_path, f"modules = {modules}\n")
    assert isinstance(config.pilots["dteam"].modules, kind)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('modules = { folder = "../elsewhere" }', "relative path without '..'"),
        ('modules = { git = "x", tag = "-x" }', "cannot be a git tag name"),
        ('settings = { Commands = { "" = ["CheckWorkerNode"] } }', "is not a CE type"),
        ("settings = { Commands = { Defaults = [] } }", "lists no command"),
        ('settings = { Commands = { Defaults = ["Check WorkerNode"] } }', "is not a Python name"),
        ('settings = { Version = ["v1.0.0, v0.9.0"] }', "one per entry"),
        ('settings = { CVMFS_locations = ["cvmfs/x"] }', "is not an absolute path"),
        ("settings = { RemoteLoggerTimerInterval = -1 }", "greater than or equal to 0"),
        ('settings = { CEs = { "ce.example.org" = { GridCEType = "HTCondorCE" } } }', "Site"),
    ],
)
def test_bad_values_are_refused_with_the_key(tmp_path: Path, extra: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, extra + "\n")
    assert "pilots.dteam" in caught.value.message and words in caught.value.render()


def test_a_vo_name_follows_the_name_rule(tmp_path: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(HEAD.replace("[pilots.dteam]", '[pilots."../x"]'))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "VO name '../x'" in caught.value.message
