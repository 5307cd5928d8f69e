"""Every refusal of `pilot build`: exit 2, what, where and how to fix, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from release.cli import main
from tests.pilot_repos import commit_files, write_pilot_config


@pytest.fixture
def config(tmp_path: Path, isolated_env: Path) -> Path:
    return write_pilot_config(tmp_path)[0]


def _refused(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """Run the build of every VO; assert exit 2 and an untouched output; return stderr."""
    code = main(["--config", str(config), "pilot", "build", "--version", "v1.0.0", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not (config.parent / "dist").exists(), "a refused build wrote something"
    return err


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("ref", ["master", "v1.0.0", "efe82a7", "HEAD"])
def test_a_branch_tag_or_short_commit_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str], ref: str
) -> None:
    text = config.read_text()
    start = text.index('commit = "') + len('commit = "')
    config.write_text(text[:start] + ref + text[text.index('"', start) :])
    err = _refused(config, capsys)
    assert "pilots.myvo.pilot.commit" in err and "not a pinned commit" in err
    assert "git rev-parse" in err  # the fix


def test_a_commit_missing_from_the_repository_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config.read_text()
    start = text.index('commit = "') + len('commit = "')
    config.write_text(text[:start] + "0" * 40 + text[start + 40 :])
    err = _refused(config, capsys)
    assert "pilots.myvo.pilot.commit" in err and "is not in" in err


def test_a_vo_module_named_like_a_pilot_module_is_refused(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import git

    repo = git.Repo(tmp_path / "MyVOPilot")
    commit_files(repo, {"pilot/pilotTools.py": "class CommandBase(object):\n    pass\n"}, "own")
    repo.create_tag("v1.0.1")
    _edit(config, 'tag = "v1.0.0"', 'tag = "v1.0.1"')
    err = _refused(config, capsys)
    assert "pilots.myvo.modules" in err and "pilotTools.py" in err
    assert "drops the VO's" in err and "rename the VO's module" in err


def test_a_command_no_module_defines_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, '"InstallDIRAC", "MyVOConfigure"]', '"InstalDIRAC", "MyVOConfigure"]')
    err = _refused(config, capsys)
    assert "pilots.myvo.settings.Commands.Defaults" in err
    assert "'InstalDIRAC' is defined by no pilot module" in err
    assert "did you mean 'InstallDIRAC'?" in err


def test_a_vo_command_without_its_extension_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, 'CommandExtensions = ["myvo"]\n', "")
    err = _refused(config, capsys)
    assert "'MyVOConfigure' is defined by no pilot module" in err
    assert "myvoCommands.py defines it" in err and "add 'myvo' to CommandExtensions" in err


def test_an_extension_without_its_module_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, 'CommandExtensions = ["myvo"]', 'CommandExtensions = ["myvo", "other"]')
    err = _refused(config, capsys)
    assert "pilots.myvo.settings.CommandExtensions" in err and "no otherCommands.py" in err


def test_a_version_list_not_starting_with_the_release_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, "CheckVersion = false", 'CheckVersion = false\nVersion = ["v0.9.0", "v1.0.0"]')
    err = _refused(config, capsys)
    assert "pilots.myvo.settings.Version" in err and "not with the release being built" in err
    assert '["v1.0.0", "v0.9.0", "v1.0.0"]' not in err  # the example lists the release once


def test_one_refused_vo_writes_no_other_vo(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, 'Commands = { Defaults = ["CheckWorkerNode", "InstallDIRAC"] }',
          'Commands = { Defaults = ["CheckWorkerNode", "Nothing"] }')  # fmt: skip
    err = _refused(config, capsys)  # myvo is fine, dteam is not: neither is written
    assert "pilots.dteam.settings.Commands.Defaults" in err


def test_a_prefix_the_pilot_would_not_find_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, "CheckVersion = false", 'CheckVersion = false\nProject = "MyVO"')
    err = _refused(config, capsys, "--vo", "myvo")
    assert "pilots.myvo.settings.Project" in err and "/cvmfs/dirac.egi.eu/myvodirac/" in err
    assert "leave Project out, or publish DIRAC under" in err


def test_an_unknown_vo_gets_a_suggestion(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(config, capsys, "--vo", "myvoo")
    assert "unknown VO 'myvoo'" in err and "did you mean 'myvo'?" in err


def test_a_misspelt_setting_is_refused_at_load_with_the_key_meant(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, "RemoteLogging = true", "RemoteLoging = true")
    err = _refused(config, capsys)
    assert "pilots.myvo.settings.RemoteLoging: unknown key; did you mean 'RemoteLogging'?" in err


def test_a_wrong_type_is_refused_at_load(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(config, "RemoteLogging = true", 'RemoteLogging = "yes"')
    err = _refused(config, capsys)
    assert "pilots.myvo.settings.RemoteLogging" in err


def test_modules_need_exactly_one_kind(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(config, 'path = "pilot" }', 'path = "pilot", folder = "x" }')
    err = _refused(config, capsys)
    assert "pilots.myvo.modules" in err and "exactly one of 'git'" in err


def test_a_misspelt_modules_key_names_the_keys_of_its_kind(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(config, 'tag = "v1.0.0"', 'tga = "v1.0.0"')
    err = _refused(config, capsys)
    assert (
        "pilots.myvo.modules.tga: unknown key" in err and "valid keys here: git, tag, path" in err
    )


def test_an_unknown_product_is_refused(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(config, 'product = "DIRAC"', 'product = "DIRC"')
    err = _refused(config, capsys)
    assert "pilots.myvo.product names 'DIRC', which is not defined" in err


def test_json_errors_say_where_and_how(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(config, '"InstallDIRAC", "MyVOConfigure"]', '"Nothing", "MyVOConfigure"]')
    code = main(["--config", str(config), "pilot", "build", "--version", "v1.0.0", "--json"])
    assert code == 2
    error = json.loads(capsys.readouterr().out)
    assert error["error"] == "BadInput" and error["exit_code"] == 2
    assert error["where"].endswith("pilots.myvo.settings.Commands.Defaults") and error["fix"]


def test_a_missing_local_repository_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _edit(config, f'git = "{tmp_path / "Pilot"}"', f'git = "{tmp_path / "NoPilot"}"')
    err = _refused(config, capsys)
    assert "pilots.myvo.pilot.git" in err and "does not exist" in err


def test_a_refusal_keeps_an_earlier_folder_as_it_was(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "pilot", "build", "--version", "v1.0.0"]) == 0
    folder = config.parent / "dist" / "pilots" / "myvo" / "v1.0.0"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _edit(config, "RemoteLogging = true", "RemoteLogging = false")
    _edit(config, '"InstallDIRAC", "MyVOConfigure"]', '"Nothing", "MyVOConfigure"]')
    capsys.readouterr()
    assert main(["--config", str(config), "pilot", "build", "--version", "v1.0.0"]) == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["v1.0.0"]
