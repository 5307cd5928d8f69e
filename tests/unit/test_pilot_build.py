"""`dirac-release pilot build` on a tiny Pilot-like repository and a VO's modules repository."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest

from release.cli import main
from release.pilot.pilotjson import SCHEMA_PATH
from tests.pilot_repos import MYVO_COMMANDS, write_pilot_config

PILOT_FILES = ["dirac-pilot.py", "pilotCommands.py", "pilotTools.py", "proxyTools.py"]


@pytest.fixture
def config(tmp_path: Path, isolated_env: Path) -> Path:
    return write_pilot_config(tmp_path)[0]


def _build(config: Path, *extra: str) -> int:
    return main(["--config", str(config), "pilot", "build", "--version", "v1.0.0", *extra])


def _folder(config: Path, vo: str) -> Path:
    return config.parent / "dist" / "pilots" / vo / "v1.0.0"


def test_two_vos_get_their_own_folder_files_and_settings(config: Path) -> None:
    assert _build(config) == 0
    myvo, dteam = _folder(config, "myvo"), _folder(config, "dteam")
    assert sorted(p.name for p in myvo.iterdir()) == sorted(
        [*PILOT_FILES, "myvoCommands.py", "pilot.tar", "pilot.json", "checksums.sha512"]
    )
    assert sorted(p.name for p in dteam.iterdir()) == sorted(
        [*PILOT_FILES, "pilot.tar", "pilot.json", "checksums.sha512"]
    )
    assert (myvo / "myvoCommands.py").read_text() == MYVO_COMMANDS
    with tarfile.open(myvo / "pilot.tar") as tar:
        assert sorted(tar.getnames()) == sorted([*PILOT_FILES, "myvoCommands.py"])
    mine = json.loads((myvo / "pilot.json").read_text())
    theirs = json.loads((dteam / "pilot.json").read_text())
    assert mine["myvo"]["Pilot"]["CommandExtensions"] == "myvo"
    assert mine["myvo"]["Pilot"]["RemoteLogging"] == "True"
    assert mine["myvo"]["Pilot"]["Commands"]["HTCondorCE"] == ["CheckWorkerNode", "InstallDIRAC"]
    assert mine["CEs"] == {
        "ce01.example.org": {"Site": "LCG.Example.org", "GridCEType": "HTCondorCE"}
    }
    assert "myvo" not in theirs and "CommandExtensions" not in theirs["dteam"]["Pilot"]
    assert theirs["dteam"]["Pilot"]["RemoteLogging"] == "False"
    assert theirs["ConfigurationServers"] == ["dips://dteam.example.org:9135/Configuration/Server"]


def test_pilot_json_validates_and_names_the_release_first(config: Path) -> None:
    assert _build(config) == 0
    schema = json.loads(SCHEMA_PATH.read_text())
    for vo in ("myvo", "dteam"):
        document = json.loads((_folder(config, vo) / "pilot.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(document)
        for section in ("Defaults", vo):
            pilot = document[section]["Pilot"]
            # The Pilot's own parsing: the first comma-separated entry is the release.
            assert pilot["Version"].split(",", 1)[0].strip() == "v1.0.0"
            assert pilot["CVMFS_locations"].replace(" ", "").split(",") == ["/cvmfs/dirac.egi.eu"]


def test_fallback_versions_follow_the_release(config: Path) -> None:
    text = config.read_text().replace(
        "CheckVersion = false", 'CheckVersion = false\nVersion = ["v1.0.0", "v0.9.0"]'
    )
    config.write_text(text)
    assert _build(config, "--vo", "myvo") == 0
    document = json.loads((_folder(config, "myvo") / "pilot.json").read_text())
    assert document["myvo"]["Pilot"]["Version"] == "v1.0.0, v0.9.0"


def test_sha512sum_checks_every_file(config: Path) -> None:
    assert _build(config) == 0
    for vo in ("myvo", "dteam"):
        folder = _folder(config, vo)
        proc = subprocess.run(["sha512sum", "-c", "checksums.sha512"], cwd=folder,
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = (folder / "checksums.sha512").read_text().splitlines()
        listed = [line.split("  ", 1)[1] for line in lines]
        assert listed == sorted(p.name for p in folder.iterdir() if p.name != "checksums.sha512")


def test_same_inputs_give_the_same_bytes(config: Path, tmp_path: Path) -> None:
    assert _build(config, "--out", str(tmp_path / "one")) == 0
    assert _build(config, "--out", str(tmp_path / "two")) == 0
    for vo in ("myvo", "dteam"):
        for name in ("pilot.tar", "pilot.json", "checksums.sha512"):
            one = (tmp_path / "one" / vo / "v1.0.0" / name).read_bytes()
            assert one == (tmp_path / "two" / vo / "v1.0.0" / name).read_bytes(), name
    data = (tmp_path / "one" / "myvo" / "v1.0.0" / "pilot.tar").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert {(m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
            (0, 0, "", "", 0o644)
        }
        assert len({m.mtime for m in members}) == 1
        assert all(not m.pax_headers for m in members)
    assert b"mtime=" not in data and b"atime=" not in data and b"ctime=" not in data


def test_a_rebuild_leaves_the_folder_alone_and_json_says_so(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(config, "--vo", "dteam") == 0
    before = (_folder(config, "dteam") / "pilot.tar").stat().st_mtime_ns
    capsys.readouterr()
    assert _build(config, "--vo", "dteam", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    [build] = result["pilots"]
    assert build["status"] == "unchanged" and build["vo"] == "dteam" and build["tag"] == "v1.0.0"
    assert {f["name"] for f in build["files"]} >= {"pilot.tar", "pilot.json", "checksums.sha512"}
    assert (_folder(config, "dteam") / "pilot.tar").stat().st_mtime_ns == before
    assert not (config.parent / "dist" / "pilots" / "myvo").exists()


def test_a_changed_setting_replaces_the_folder(config: Path) -> None:
    assert _build(config, "--vo", "dteam") == 0
    config.write_text(config.read_text().replace("RemoteLogging = false", "RemoteLogging = true"))
    assert _build(config, "--vo", "dteam") == 0
    document = json.loads((_folder(config, "dteam") / "pilot.json").read_text())
    assert document["dteam"]["Pilot"]["RemoteLogging"] == "True"
    leftovers = [p.name for p in _folder(config, "dteam").parent.iterdir()]
    assert leftovers == ["v1.0.0"]


def test_modules_from_a_folder_and_from_a_local_path_give_the_same_pilot(
    tmp_path: Path, isolated_env: Path
) -> None:
    config, _ = write_pilot_config(tmp_path, modules_url=False)
    assert _build(config, "--vo", "myvo", "--out", str(tmp_path / "path")) == 0
    folder = config.parent / "pilot-modules"
    folder.mkdir()
    (folder / "myvoCommands.py").write_text(MYVO_COMMANDS)
    text = config.read_text()
    start = text.index("modules = {")
    end = text.index("\n", start)
    config.write_text(text[:start] + 'modules = { folder = "pilot-modules" }' + text[end:])
    assert _build(config, "--vo", "myvo", "--out", str(tmp_path / "folder")) == 0
    one = tmp_path / "path" / "myvo" / "v1.0.0"
    two = tmp_path / "folder" / "myvo" / "v1.0.0"
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert (one / "myvoCommands.py").read_bytes() == (two / "myvoCommands.py").read_bytes()


def test_a_url_is_cloned_into_the_cache(config: Path) -> None:
    assert _build(config, "--vo", "myvo") == 0
    clones = list((config.parent / "cache" / "pilot-repos").iterdir())
    assert len(clones) == 1 and (clones[0] / "HEAD").is_file()  # bare
    assert _build(config, "--vo", "myvo") == 0  # reuses the clone
