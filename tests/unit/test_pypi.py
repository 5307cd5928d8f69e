"""`dirac-release pypi`: what goes to PyPI is what the release ships, or nothing goes.

The real build of the demo product is prepared in tests/lab/test_build_lab.py; here the
refusals and the file-by-file comparison of a wheel with the bundles' manifests.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from release.cli import main
from release.errors import CheckFailed
from release.pypi import _check_in_bundles, wheel_files
from tests.publishing import write_config

SITE = "lib/python3.11/site-packages"


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("vodemo_dirac-1.0.0.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: vodemo-dirac\nVersion: 1.0.0\n")  # fmt: skip
        archive.writestr("vodemo_dirac-1.0.0.dist-info/RECORD", "differs once installed\n")
        archive.writestr("vodemo_dirac-1.0.0.data/scripts/x", "goes to bin/\n")
    return path


def _manifest(files: dict[str, bytes]) -> dict[str, object]:
    return {"files": [{"path": f"{SITE}/{name}", "sha256": hashlib.sha256(data).hexdigest()}
                      for name, data in files.items()]}  # fmt: skip


def test_the_wheel_must_be_the_one_in_every_bundle(tmp_path: Path) -> None:
    files = {"vodemo/__init__.py": b"VERSION = 1\n", "vodemo/cli.py": b"print('hi')\n"}
    files_of_wheel, meta = wheel_files(_wheel(tmp_path / "w.whl", files))
    # Only what lands in site-packages is compared: not RECORD, not .data/.
    assert set(files_of_wheel) == set(files) and meta == ("vodemo-dirac", "1.0.0")
    same = _manifest(files)
    _check_in_bundles(files_of_wheel, {"x86_64": same, "aarch64": same}, "3.11", "w.whl")
    changed = _manifest({**files, "vodemo/cli.py": b"print('other')\n"})
    with pytest.raises(CheckFailed, match=r"Linux-aarch64 bundle: 1 of its files .* vodemo/cli.py"):
        _check_in_bundles(files_of_wheel, {"x86_64": same, "aarch64": changed}, "3.11", "w.whl")


def test_only_a_product_built_from_git_and_asked_for_goes_to_pypi(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    code = main(["--config", str(config), "pypi", "--version", "v1.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and "products.vodemo.pypi" in err and "pypi = true" in err
    text = config.read_text().replace('source = { git = "repo" }', 'source = { index = "vodemo" }')
    config.write_text(text.replace('distribution = "vodemo-dirac"', "pypi = true"))
    code = main(["--config", str(config), "pypi", "--version", "v1.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and "already on PyPI" in err
    assert not (tmp_path / "dist").exists()
