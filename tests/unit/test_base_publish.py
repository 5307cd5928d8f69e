"""Publishing a base: laid out as CVMFS serves it, in one verified transaction, once.

The bases here are small folders laid out as the real ones (a root filesystem with absolute
links, a set-uid program, a FIFO and empty mount points; a DIRACOS2-like prefix with its own
diracosrc and installer). tests/lab/test_dirac_on_debian_base.py publishes the real Debian
base and runs DIRAC from the published repository inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvmfs.backends.directory import DirectoryBackend
from release.base.publish import publish_base
from release.base.record import inspect_and_record
from release.config import ReleaseConfig, load_config
from release.errors import BadInput
from release.publish import collect_garbage
from tests.unit.test_bases import make_prefix, make_rootfs

CONFIG = """
[products.DIRAC]
source = {{ index = "DIRAC" }}
base = "debian"
repository = "dirac.egi.eu"

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"
keep = 1

[bases.debian]
version = "{version}"
platforms.x86_64 = {{ path = "rootfs-amd64" }}
platforms.aarch64 = {{ path = "prefix-arm64", installer = "DIRACOS-Linux-aarch64.sh" }}
"""


def _config(tmp_path: Path, version: str = "12.8") -> ReleaseConfig:
    (tmp_path / "release.toml").write_text(CONFIG.format(version=version))
    config = load_config(tmp_path / "release.toml", environ={})
    inspect_and_record(config, "debian", ["x86_64", "aarch64"])
    return config


@pytest.fixture
def site(tmp_path: Path) -> Path:
    rootfs = make_rootfs(tmp_path / "rootfs-amd64")
    (rootfs / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (rootfs / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(b"not elf")
    (rootfs / "lib64").mkdir()
    (rootfs / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    (rootfs / "usr/bin/passwd").write_text("#!/bin/sh\n")
    (rootfs / "usr/bin/passwd").chmod(0o4755)
    (rootfs / "etc").mkdir()
    (rootfs / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (rootfs / "etc/shadow").chmod(0o640)
    (rootfs / "proc").mkdir()
    os.mkfifo(rootfs / "dev-initctl")
    prefix = make_prefix(tmp_path / "prefix-arm64")
    (prefix / "diracosrc").write_text(f'export PATH="{prefix}/bin:$PATH"\n')
    (prefix / "bin/python3").symlink_to(prefix / "bin/python3.11")  # conda writes such links
    (tmp_path / "DIRACOS-Linux-aarch64.sh").write_text("#!/bin/sh\necho installer 12.8\n")
    DirectoryBackend("dirac.egi.eu", tmp_path / "stratum").init()
    return tmp_path


def test_a_base_is_published_as_clients_use_it(site: Path) -> None:
    config = _config(site)
    result = publish_base(config, "debian", ["x86_64", "aarch64"])
    assert result["status"] == "published" and result["tag"] == "base-debian-12.8"
    repo = site / "stratum/dirac.egi.eu/dirac"
    amd64 = repo / "diracos/12.8/Linux-x86_64"
    # The root filesystem's absolute link now resolves inside the published base.
    link = amd64 / "lib64/ld-linux-x86-64.so.2"
    assert os.readlink(link) == "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert link.read_bytes() == b"not elf"
    assert not (amd64 / "dev-initctl").exists()  # a FIFO is the running system's
    assert (amd64 / "proc/.dirac-release-keep").is_file()  # the mount point stays
    # The mount points a container binds into exist although the source lacked them (as
    # debootstrap's minbase lacks /mnt); nothing is written into the source for that.
    for name in ("dev", "mnt", "run", "sys", "tmp"):
        assert (amd64 / name / ".dirac-release-keep").is_file(), name
    assert not (site / "rootfs-amd64/mnt").exists()
    assert not (arm64_prefix := repo / "diracos/12.8/Linux-aarch64/mnt").exists(), arm64_prefix
    assert not (amd64 / "usr/bin/passwd").stat().st_mode & 0o7000  # no set-uid on CVMFS
    assert (amd64 / "diracosrc").is_file()
    arm64 = repo / "diracos/12.8/Linux-aarch64"
    assert os.readlink(arm64 / "bin/python3") == "python3.11"
    assert (arm64 / "diracosrc").read_text() == (site / "prefix-arm64/diracosrc").read_text()
    installer = repo / "installSource/DIRACOS-Linux-aarch64.sh"
    assert installer.read_text().endswith("installer 12.8\n") and os.access(installer, os.X_OK)
    notes = "\n".join(result["notes"])
    assert "left out 1 device node(s)/FIFO(s) (dev-initctl)" in notes
    assert "usr/bin/passwd (4755)" in notes and "etc/shadow" in notes
    assert "1 absolute link(s) made relative" in notes
    assert (
        "mount point(s) the root filesystem lacked, added empty: /dev, /mnt, /run, /sys, /tmp"
        in notes
    )
    # Once per version: a rerun is a checked no-op, and retention never takes a base away.
    again = publish_base(config, "debian", ["x86_64", "aarch64"])
    assert (again["status"], again["revision"]) == ("already published", result["revision"])
    assert "diracos" not in collect_garbage(config, None, plan=True)["remove"]


def test_the_root_filesystem_diracosrc_says_where_it_runs(site: Path) -> None:
    publish_base(_config(site), "debian", ["x86_64"])
    rc = site / "stratum/dirac.egi.eu/dirac/diracos/12.8/Linux-x86_64/diracosrc"
    proc = subprocess.run(["bash", "-c", f"source {rc}; echo rc=$?"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert "rc=1" in proc.stdout
    assert "is a root filesystem and this shell does not run in it" in proc.stderr
    assert "apptainer exec --bind /cvmfs" in proc.stderr


def test_a_changed_base_under_a_published_version_is_refused(site: Path) -> None:
    config = _config(site)
    publish_base(config, "debian", ["x86_64", "aarch64"])
    (site / "rootfs-amd64/usr/bin/passwd").write_text("#!/bin/sh\necho changed\n")
    with pytest.raises(BadInput, match=r"already published .* with other content") as err:
        publish_base(config, "debian", ["x86_64", "aarch64"])
    assert "differs for: x86_64" in err.value.message


def test_a_link_leaving_a_prefix_is_refused_before_anything_is_opened(site: Path) -> None:
    (site / "prefix-arm64/etc").mkdir()
    (site / "prefix-arm64/etc/ssl").symlink_to("/etc/ssl")
    config = _config(site)
    tags = (site / "stratum/.dirac-release/dirac.egi.eu/tags.json").read_text()
    with pytest.raises(BadInput, match=r"absolute link\(s\) that leave it: etc/ssl -> /etc/ssl"):
        publish_base(config, "debian", ["x86_64", "aarch64"])
    assert (site / "stratum/.dirac-release/dirac.egi.eu/tags.json").read_text() == tags
    assert not (site / "stratum/dirac.egi.eu/dirac").exists()


def test_the_stable_installer_names_follow_the_newest_base(site: Path) -> None:
    publish_base(_config(site, "12.8"), "debian", ["x86_64", "aarch64"])
    (site / "DIRACOS-Linux-aarch64.sh").write_text("#!/bin/sh\necho installer 12.7\n")
    older = publish_base(_config(site, "12.7"), "debian", ["x86_64", "aarch64"])
    assert older["status"] == "published" and older["installers"] == []
    assert any("keeps the installers of debian 12.8" in n for n in older["notes"])
    installer = site / "stratum/dirac.egi.eu/dirac/installSource/DIRACOS-Linux-aarch64.sh"
    assert installer.read_text().endswith("installer 12.8\n")
    # Both versions are there, sharing the files that did not change.
    published = site / "stratum/dirac.egi.eu/dirac/diracos"
    assert sorted(p.name for p in published.iterdir()) == ["12.7", "12.8"]
    a, b = (published / v / "Linux-x86_64/etc/shadow" for v in ("12.7", "12.8"))
    assert a.stat().st_ino == b.stat().st_ino


def test_the_command_plans_and_refuses_with_exit_2(site: Path) -> None:
    _config(site)
    cli = [sys.executable, "-m", "release", "--config", str(site / "release.toml"), "base"]
    plan = subprocess.run([*cli, "publish", "--plan", "--json"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    assert any("installSource" in a for a in actions)
    assert not (site / "stratum/dirac.egi.eu/dirac").exists()
    bad = subprocess.run([*cli, "publish", "--repository", "nowhere"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--until", "deploy"], "the DIRAC demo ends after publish"),
        (["--tag", "v1.0.1"], "--tag is for the demo product"),
    ],
)
def test_the_dirac_demo_refuses_what_it_does_not_do(
    tmp_path: Path, args: list[str], problem: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "release", "demo", "--product", "DIRAC", "--workdir",
         str(tmp_path / "demo"), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and problem in proc.stderr, proc.stderr
    assert not (tmp_path / "demo").exists()


def test_the_base_itself_is_never_written_through(site: Path) -> None:
    """Staged files are hardlinks into the base: what the publication writes (a manifest, a
    diracosrc) replaces them instead of writing into the base."""
    carried = site / "rootfs-amd64/.dirac-release/manifest.json"
    carried.parent.mkdir()
    carried.write_text("a manifest the base carried\n")
    (site / "rootfs-amd64/diracosrc").write_text("# the base's own\n")
    publish_base(_config(site), "debian", ["x86_64"])
    assert carried.read_text() == "a manifest the base carried\n"
    assert (site / "rootfs-amd64/diracosrc").read_text() == "# the base's own\n"
    published = site / "stratum/dirac.egi.eu/dirac/diracos/12.8/Linux-x86_64"
    assert json.loads((published / ".dirac-release/manifest.json").read_text())["tag"] == "12.8"
