"""Every DIRAC_RELEASE_* variable is in the one table, misspellings are refused, docs match.

The scan is what keeps the table whole: a new variable read (or set, or exported) anywhere
in the source tree fails here until it is declared, documented and given a reader.
Misspelt names in this file are built from parts, so the scan does not find them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from release.config import BuildSettings, StateSettings, load_config, overrides
from release.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["release", "cvmfs", "ansible", "tests", "bench", "noxfile.py"]
NAME = re.compile(r"DIRAC_RELEASE_[A-Z0-9_]+")
P = overrides.PREFIX

BASE = '[products.vodemo]\nsource = { index = "vodemo-dirac" }\n'


def source_files() -> list[Path]:
    found: list[Path] = []
    for top in SCANNED:
        path = ROOT / top
        found += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [p for p in found if "__pycache__" not in p.parts]


def test_every_variable_in_the_source_tree_is_in_the_table() -> None:
    seen: dict[str, Path] = {}
    for path in source_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary file (an archive of the demo, an image)
        for name in NAME.findall(text):
            seen.setdefault(name, path)
    missing = {name: str(path.relative_to(ROOT)) for name, path in seen.items()
               if name not in overrides.BY_NAME}  # fmt: skip
    assert not missing, f"declare these in release/config/overrides.py: {missing}"
    assert "DIRAC_RELEASE_JOBS" in seen  # the scan does find the names


def test_the_table_is_consistent_with_the_models() -> None:
    """A config override names a real key, and a strict number field gets the number parser."""
    models = {"build": BuildSettings, "state": StateSettings}
    assert len(overrides.BY_NAME) == len(overrides.TABLE)
    for entry in overrides.TABLE:
        assert entry.name.startswith(P) and NAME.fullmatch(entry.name)
        assert entry.does and entry.value and entry.used_by
        if entry.key is not None:
            assert entry.kind == "config"
            field = models[entry.key[0]].model_fields[entry.key[1]]
            parser = overrides._whole_number if field.annotation is int else overrides._text
            assert entry.parse is parser, entry.name


def test_the_documentation_shows_the_table() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    start, end = "<!-- overrides table: start -->\n", "<!-- overrides table: end -->"
    assert start in text and end in text
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == overrides.markdown(), (
        "regenerate the table in docs/configuration.md from "
        "python -c 'from release.config import overrides; print(overrides.markdown())'"
    )
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        unknown = set(NAME.findall(doc.read_text(encoding="utf-8"))) - set(overrides.BY_NAME)
        assert not unknown, (doc, unknown)


def test_a_read_goes_through_the_table() -> None:
    assert overrides.get("JOBS", {P + "JOBS": "4"}) == "4"
    assert overrides.get("JOBS", {P + "JOBS": ""}) is None  # empty means unset, as everywhere
    with pytest.raises(LookupError, match="not in"):
        overrides.get("NOT_DECLARED", {})
    with pytest.raises(LookupError, match="exported"):
        overrides.get("PREFIX", {})  # an output of a bundle, never an input


def write(tmp_path: Path) -> Path:
    path = tmp_path / "release.toml"
    path.write_text(BASE, encoding="utf-8")
    return path


@pytest.mark.parametrize(("typo", "meant"), [("JOB", "JOBS"), ("CAHCE", "CACHE"),
                                             ("CVMFS_HOTS", "CVMFS_HOST")])  # fmt: skip
def test_a_misspelt_variable_is_refused_with_the_name_meant(
    tmp_path: Path, typo: str, meant: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path), environ={P + typo: "4"})
    error = caught.value
    assert error.exit_code == 2
    assert f"{P}{typo} is not a variable dirac-release knows" in error.message
    assert error.fix is not None and f"did you mean {P}{meant}?" in error.fix


def test_known_variables_of_every_kind_are_accepted(tmp_path: Path) -> None:
    """A shell that sourced a bundle's diracosrc, or CI's test switches, is not refused."""
    environ = {entry.name: "1" for entry in overrides.TABLE if entry.key is None}
    assert load_config(write(tmp_path), environ=environ).build.jobs == 2


def cli(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(P)}
    env |= {P + name: value for name, value in variables.items()}
    return subprocess.run([sys.executable, "-m", "release", "--config", str(write(tmp_path)),
                           "config"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=env, check=False)  # fmt: skip


def test_the_cli_refuses_a_misspelt_variable_with_exit_2(tmp_path: Path) -> None:
    proc = cli(tmp_path, JOB="4")
    assert proc.returncode == 2, proc.stderr
    assert f"{P}JOB is not a variable" in proc.stderr and f"did you mean {P}JOBS?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cli_refuses_a_bad_value_naming_the_variable(tmp_path: Path) -> None:
    proc = cli(tmp_path, JOBS="abc")
    assert proc.returncode == 2, proc.stderr
    assert f"{P}JOBS='abc' is not a whole number" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cli_applies_a_good_value(tmp_path: Path) -> None:
    proc = cli(tmp_path, JOBS="4")
    assert proc.returncode == 0, proc.stderr
    assert '"jobs": 4' in proc.stdout or "jobs = 4" in proc.stdout or "4" in proc.stdout


def test_the_toolkit_reads_no_variable_directly() -> None:
    """release/ reads DIRAC_RELEASE_* through overrides.get (cvmfs reads its test hooks itself)."""
    direct = re.compile(r"environ(?:\.get\(|\[)\s*(?:[\"']DIRAC_RELEASE_|[A-Z_]+_ENV\b)")
    found = [str(path.relative_to(ROOT)) for path in (ROOT / "release").rglob("*.py")
             if direct.search(path.read_text(encoding="utf-8"))]  # fmt: skip
    assert not found, f"read these through release.config.overrides.get: {found}"
