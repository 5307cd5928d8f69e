"""The cvmfs_server backend over SSH: a lab host plays the stratum-0 publisher node.

The host runs the cvmfs_server stand-in (tests/standin/) with python3; dirac-release runs in
the lab's client namespace and reaches the host only over SSH, as it reaches a real stratum-0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.lab import LabNetwork, lab_hosts
from tests.publishing import make_bundle

pytestmark = pytest.mark.lab

STANDIN = Path(__file__).resolve().parents[1] / "standin" / "cvmfs_server"
REPO = "vodemo.egi.eu"
CONFIG = """
[products.vodemo]
source = {{ git = "repo" }}

[repositories."{repo}"]
backend = "server"
host = "{host}"
user = "root"
ssh_key = "{key}"
ssh_options = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
stratum_root = "/var/lib/cvmfs-standin"
prefix = "vodemo"
links = ["latest"]
wait = 2

[build]
out = "dist"
"""


@pytest.fixture(scope="module")
def stratum0(lab_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNetwork]:
    work = tmp_path_factory.mktemp("stratum0")
    with lab_hosts(["cvmfs-stratum0"], lab_rootfs, work) as net:
        host = net[0]
        host.run("cat > /usr/local/bin/cvmfs_server && chmod 755 /usr/local/bin/cvmfs_server",
                 input=STANDIN.read_bytes())  # fmt: skip
        host.run(f"cvmfs_server mkfs -o root {REPO}")
        yield net


def publish(
    net: LabNetwork, site: Path, tag: str, config: str = "release.toml"
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DIRAC_RELEASE_", "CVMFS_STANDIN_"))
    }
    env["XDG_CACHE_HOME"] = str(site / "xdg")
    return subprocess.run(
        [*net.exec_prefix(), sys.executable, "-m", "release", "--config", str(site / config), "--json",
         "publish", "--version", tag],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_publish_over_ssh(stratum0: LabNetwork, tmp_path: Path) -> None:
    host = stratum0[0]
    (tmp_path / "release.toml").write_text(
        CONFIG.format(repo=REPO, host=host.address, key=host.ssh_key)
    )
    make_bundle(tmp_path / "dist", "v1.0.0")
    done = publish(stratum0, tmp_path, "v1.0.0")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "published" and result["backend"] == "server"
    listing = host.run(
        f"ls -A /cvmfs/{REPO}/vodemo/v1.0.0; readlink /cvmfs/{REPO}/vodemo/latest"
    ).stdout.decode()
    assert listing.split() == [".cvmfscatalog", "Linux-aarch64", "Linux-x86_64", "v1.0.0"]
    tags = host.run(f"cvmfs_server tag -l -x {REPO}").stdout.decode()
    assert any(line.startswith("vodemo-v1.0.0 ") for line in tags.splitlines())
    assert "in transaction" not in host.run("cvmfs_server list").stdout.decode()
    assert host.run(f"cvmfs_server check -s vodemo/v1.0.0 {REPO}", check=False).returncode == 0
    # The key's path and content never appear in what we print.
    assert str(host.ssh_key) not in done.stdout + done.stderr
    assert host.ssh_key.read_text().splitlines()[1] not in done.stdout + done.stderr

    again = publish(stratum0, tmp_path, "v1.0.0")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "already published"


def test_unreachable_publisher_is_exit_3(stratum0: LabNetwork, tmp_path: Path) -> None:
    host = stratum0[0]
    unreachable = host.address.rsplit(".", 1)[0] + ".250"  # inside the lab network, nobody there
    (tmp_path / "release.toml").write_text(
        CONFIG.format(repo=REPO, host=unreachable, key=host.ssh_key)
    )
    make_bundle(tmp_path / "dist", "v1.0.0")
    done = publish(stratum0, tmp_path, "v1.0.0")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "cannot reach the publisher node" in done.stderr
    assert "Traceback" not in done.stderr
