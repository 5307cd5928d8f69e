"""The toolkit works installed from its wheel, not only from a checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from release.build.uvtool import uv_binary, uv_env

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_the_demo_and_runs_it(tmp_path: Path) -> None:
    uv = uv_binary()
    env = uv_env()
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(tmp_path / "wheel"), str(ROOT)],
                   check=True, capture_output=True, env=env)  # fmt: skip
    wheel = next((tmp_path / "wheel").glob("dirac_release-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "release/resources/demo/release.toml" in names
    assert "release/resources/demo/product/pyproject.toml" in names
    assert "release/resources/demo/product/src/vodemo/cli.py" in names
    assert not any(name.startswith("tests/") for name in names)

    venv = tmp_path / "venv"
    subprocess.run(
        [uv, "venv", "--python", sys.executable, str(venv)],
        check=True,
        capture_output=True,
        env=env,
    )
    subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)],
                   check=True, capture_output=True, env=env)  # fmt: skip
    proc = subprocess.run(
        [str(venv / "bin" / "dirac-release"), "--json", "demo", "--workdir", str(tmp_path / "demo"), "--until", "version"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["tag"]["tag"] == "v1.0.0"
    assert [stage["stage"] for stage in result["stages"]] == ["version"]
    assert (tmp_path / "demo" / "product-repo" / "src" / "vodemo" / "cli.py").is_file()
