"""The pilot inputs kept by git object: reused when intact, never trusted when not."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import git
import pytest

from release.cli import main
from release.pilot import source_cache
from tests.pilot_repos import MYVO_COMMANDS, commit_files, write_pilot_config


@pytest.fixture
def config(tmp_path: Path, isolated_env: Path) -> Path:
    return write_pilot_config(tmp_path, modules_url=False)[0]


def _build(config: Path) -> int:
    return main(["--config", str(config), "pilot", "build", "--version", "v1.0.0"])


def _module(config: Path) -> bytes:
    return (config.parent / "dist" / "pilots" / "myvo" / "v1.0.0" / "myvoCommands.py").read_bytes()


def _cache(config: Path) -> Path:
    return config.parent / "cache" / source_cache.FOLDER


def _without_objects(repo: Path) -> None:
    """The repository keeps its refs but can no longer give a single object."""
    shutil.rmtree(repo / ".git" / "objects")
    (repo / ".git" / "objects").mkdir()


def test_blob_id_is_gits() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert source_cache.blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_a_rebuild_reads_no_git_object(config: Path, tmp_path: Path) -> None:
    assert _build(config) == 0
    first = _module(config)
    _without_objects(tmp_path / "MyVOPilot")
    _without_objects(tmp_path / "Pilot")
    shutil.rmtree(config.parent / "dist")
    assert _build(config) == 0
    assert _module(config) == first == MYVO_COMMANDS.encode()


def _entries(config: Path) -> list[Path]:
    return sorted(_cache(config).rglob("*.json"))


def _edit_kept(config: Path, name: str, data: bytes) -> int:
    """Change one kept file's bytes, its recorded blob id untouched."""
    edited = 0
    for entry in _entries(config):
        kept = json.loads(entry.read_text())
        if name in kept["files"]:
            kept["files"][name]["data"] = base64.b64encode(data).decode()
            entry.write_text(json.dumps(kept))
            edited += 1
    return edited


def test_a_damaged_entry_is_read_again_from_git(config: Path) -> None:
    assert _build(config) == 0
    assert _edit_kept(config, "myvoCommands.py", b"class Evil: pass\n") == 1
    shutil.rmtree(config.parent / "dist")
    assert _build(config) == 0
    assert _module(config) == MYVO_COMMANDS.encode()


def test_a_damaged_entry_without_git_objects_is_refused_not_used(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(config) == 0
    assert _edit_kept(config, "myvoCommands.py", b"# edited\n") == 1
    _without_objects(tmp_path / "MyVOPilot")
    shutil.rmtree(config.parent / "dist")
    assert _build(config) == 2
    assert not (config.parent / "dist" / "pilots" / "myvo" / "v1.0.0").exists()
    assert "tag v1.0.0 is not in" in capsys.readouterr().err


def test_a_moved_tag_gives_the_new_modules(config: Path, tmp_path: Path) -> None:
    assert _build(config) == 0
    repo = git.Repo(tmp_path / "MyVOPilot")
    changed = MYVO_COMMANDS + "\n\nclass Extra(object):\n    pass\n"
    commit_files(repo, {"pilot/myvoCommands.py": changed}, "more")
    repo.create_tag("v1.0.0", force=True)
    assert _build(config) == 0
    assert _module(config) == changed.encode()


def test_an_annotated_tag_is_followed_to_its_commit(config: Path, tmp_path: Path) -> None:
    repo = git.Repo(tmp_path / "MyVOPilot")
    changed = MYVO_COMMANDS + "\n\nclass Annotated(object):\n    pass\n"
    commit = commit_files(repo, {"pilot/myvoCommands.py": changed}, "annotated")
    repo.create_tag("v1.0.0", message="the modules, v1.0.0", force=True)
    assert repo.tags["v1.0.0"].tag is not None  # a tag object, not a lightweight tag
    assert _build(config) == 0
    assert _module(config) == changed.encode()
    built = json.loads(
        (config.parent / "dist" / "pilots" / "myvo" / "v1.0.0" / "pilot.json").read_text()
    )
    assert built["myvo"]["Pilot"]["Version"].startswith("v1.0.0")
    assert commit == repo.tags["v1.0.0"].commit.hexsha
