"""umoci, an independent OCI implementation, reads what the writer makes (skipped without it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from release.deflate import Deflate
from release.image import oci
from tests.image_trees import DOC_TIME, make_rootfs

UMOCI = shutil.which("umoci")
pytestmark = pytest.mark.skipif(UMOCI is None, reason="umoci is not installed (apt-get install "
                                "umoci); the lab test requires it")  # fmt: skip


def umoci(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(UMOCI), *args], capture_output=True, text=True, timeout=120,
                          check=True)  # fmt: skip


def test_umoci_stats_and_unpacks_the_layout(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "root", "x86_64")
    os.unlink(root / "dev/initctl")  # umoci --rootless could not make a FIFO either way
    entries = oci.tree_entries(root, add_dirs=("/cvmfs",))
    oci.write_image(tmp_path / "layout", arch="x86_64", entries=entries, mtime=DOC_TIME,
                    env=["PATH=/usr/bin:/bin"], labels={"org.diracgrid.image.vo": "dteam"},
                    ref="v1.0.0", deflate=Deflate())  # ISA-L, the default  # fmt: skip
    stat = json.loads(umoci("stat", "--json", "--image", f"{tmp_path / 'layout'}:v1.0.0").stdout)
    assert len(stat["history"]) == 1
    umoci("unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:v1.0.0", str(tmp_path / "b"))
    rootfs = tmp_path / "b" / "rootfs"
    assert (rootfs / "etc/os-release").read_text() == (root / "etc/os-release").read_text()
    assert (rootfs / "usr/bin/python3").stat().st_ino == (rootfs / "usr/bin/a-python").stat().st_ino
    assert os.readlink(rootfs / "lib64/ld.so") == "/usr/lib/ld.so"
    assert (rootfs / "cvmfs").is_dir()
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert "PATH=/usr/bin:/bin" in config["process"]["env"]
