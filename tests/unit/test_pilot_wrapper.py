"""The real pilot wrapper (DIRAC's PilotWrapper.py, from the DIRAC wheel) runs a built folder.

The wrapper is what a grid job really starts with: it downloads checksums.sha512, pilot.json
and pilot.tar from a location, unpacks the tar, checks every file against the checksums and
runs dirac-pilot.py. Here the location is the built folder as a `file:` URL, so the run is
offline once the wheel is here. PilotWrapper.py imports nothing of DIRAC: it is loaded alone,
by file path, and the rest of the wheel is never imported. Marked `lab`: it needs the package
index for the wheel (skipped with the reason where the index is unreachable, a failure with
DIRAC_RELEASE_REQUIRE_LAB=1).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from release.cli import main
from tests.conftest import lab_skip
from tests.pilot_repos import write_pilot_config

pytestmark = pytest.mark.lab

WRAPPER = "DIRAC/WorkloadManagementSystem/Utilities/PilotWrapper.py"


@pytest.fixture(scope="module")
def pilot_wrapper(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """DIRAC's PilotWrapper.py, fetched the way the build fetches it (release.pilot.wrapper)."""
    from release.config import load_config
    from release.errors import InfrastructureError
    from release.pilot.wrapper import wrapper_generator

    site = tmp_path_factory.mktemp("wrapper-cache")
    (site / "release.toml").write_text(
        '[products.DIRAC]\nsource = { index = "DIRAC" }\n[build]\ncache_dir = "cache"\n'
    )
    try:
        generator, version = wrapper_generator(
            load_config(site / "release.toml", environ={}), "DIRAC>=9.1,<10"
        )
    except InfrastructureError as exc:
        lab_skip(f"the DIRAC wheel could not be fetched from the package index: {exc.message}")
    assert version.startswith("9.") and generator.name == "PilotWrapper.py"
    spec = importlib.util.spec_from_file_location("PilotWrapper", generator)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def folder(tmp_path: Path, isolated_env: Path) -> Path:
    config, _ = write_pilot_config(tmp_path)
    assert (
        main(["--config", str(config), "pilot", "build", "--vo", "myvo", "--version", "v1.0.0"])
        == 0
    )
    return config.parent / "dist" / "pilots" / "myvo" / "v1.0.0"


def _run(wrapper: ModuleType, folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = wrapper.pilotWrapperScript(pilotOptions="--setup=Test", location=f"file:{folder}")
    work = tmp_path / "job"
    work.mkdir()
    (work / "wrapper.sh").write_text(script)
    grid = {}
    for name in ("X509_CERT_DIR", "X509_VOMS_DIR", "X509_VOMSES"):
        grid[name] = str(tmp_path / "grid" / name)
        os.makedirs(grid[name])
    env = {**os.environ, **grid}
    env.pop("X509_USER_PROXY", None)
    return subprocess.run(["bash", "wrapper.sh"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_the_wrapper_checks_every_file_and_starts_the_pilot(
    pilot_wrapper: ModuleType, folder: Path, tmp_path: Path
) -> None:
    proc = _run(pilot_wrapper, folder, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    listed = [
        line.split("  ", 1)[1] for line in (folder / "checksums.sha512").read_text().splitlines()
    ]
    for name in listed:
        assert f"Checking {name!r} for checksum" in proc.stdout
    assert proc.stdout.count("Checksum matched") == len(listed)
    assert "Checksum mismatch" not in proc.stderr
    assert "dirac-pilot.py started with --setup=Test --pilotUUID" in proc.stdout
    assert "files: dirac-pilot.py myvoCommands.py pilotCommands.py" in proc.stdout


def test_one_changed_byte_in_pilot_tar_stops_the_wrapper(
    pilot_wrapper: ModuleType, folder: Path, tmp_path: Path
) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    data = bytearray((changed / "pilot.tar").read_bytes())
    data[-1] ^= 0x01  # the tar's final padding: it still unpacks, its checksum no longer matches
    (changed / "pilot.tar").write_bytes(bytes(data))
    proc = _run(pilot_wrapper, changed, tmp_path)
    assert proc.returncode != 0
    assert "Checksum mismatch for file 'pilot.tar'" in proc.stderr
    assert "dirac-pilot.py started" not in proc.stdout
