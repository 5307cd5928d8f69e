"""The bundle layout: relocatable entry points and a diracosrc that activates the bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from release.build.layout import entry_points, site_packages, write_diracosrc, write_entry_points
from release.build.source import ProductSource
from release.version import parse_tag

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def fake_bundle(tree: Path) -> Path:
    """A site-packages with one distribution, an entry point and a .pth hook."""
    site = tree / site_packages(PY)
    (site / "demo_pkg").mkdir(parents=True)
    (site / "demo_pkg" / "__init__.py").write_text(
        "import json, os, sys\n"
        "def main():\n"
        "    print(json.dumps({'argv': sys.argv[1:], 'hook': os.environ.get('HOOKED'),"
        " 'file': __file__}))\n"
        "    return 3\n"
    )
    info = site / "demo_pkg-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(
        "[console_scripts]\ndemo-tool = demo_pkg:main\nDemo_Upper = demo_pkg:main [extra]\n"
        "[gui_scripts]\nignored = demo_pkg:main\n"
    )
    (site / "hook.pth").write_text("import os; os.environ['HOOKED'] = 'yes'\n")
    return site


def test_entry_points_are_read_from_dist_info(tmp_path: Path) -> None:
    site = fake_bundle(tmp_path / "tree")
    assert entry_points(site) == {"demo-tool": "demo_pkg:main", "Demo_Upper": "demo_pkg:main"}


def test_generated_script_runs_from_anywhere_and_runs_pth_hooks(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    site = fake_bundle(tree)
    names = write_entry_points(site, tree / "bin", PY)
    assert names == ["Demo_Upper", "demo-tool"]
    script = tree / "bin" / "demo-tool"
    assert script.read_text().startswith(f"#!/usr/bin/env python{PY}\n")
    assert str(tmp_path) not in script.read_text()  # relocatable: no build path inside
    moved = tmp_path / "elsewhere"
    tree.rename(moved)
    proc = subprocess.run(
        [sys.executable, str(moved / "bin" / "demo-tool"), "a", "b"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["argv"] == ["a", "b"]
    assert out["hook"] == "yes"
    assert out["file"].startswith(str(moved))


def test_diracosrc_activates_the_bundle_in_bash(tmp_path: Path) -> None:
    tree = tmp_path / "v1.0.0" / "Linux-x86_64"
    site = fake_bundle(tree)
    write_entry_points(site, tree / "bin", PY)
    source = ProductSource(
        name="vodemo", distribution="vodemo", version=parse_tag("v1.0.0"), kind="git", location="r"
    )
    write_diracosrc(tree, source, PY)
    script = (
        f"source {tree}/diracosrc && cd / && "
        'echo "$DIRAC_RELEASE_PREFIX|$DIRAC_RELEASE_VERSION|$PYTHONPATH" && command -v demo-tool'
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/keep"},
    )
    assert proc.returncode == 0, proc.stderr
    prefix, version, pythonpath = proc.stdout.splitlines()[0].split("|")
    assert prefix == str(tree.resolve())
    assert version == "1.0.0"
    assert pythonpath == f"{tree.resolve()}/{site_packages(PY)}:/keep"
    assert proc.stdout.splitlines()[1] == f"{tree.resolve()}/bin/demo-tool"
    assert subprocess.run(["sh", "-n", str(tree / "diracosrc")]).returncode == 0
