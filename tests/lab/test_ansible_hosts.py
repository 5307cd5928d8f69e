"""The Ansible roles and playbooks (ansible/) against real SSH lab hosts.

Two hosts (cctbdirac01, cctbdirac02) see a directory stratum read-only at /cvmfs/<repo>, holding
release bundles made like `dirac-release build` makes them (manifest included). The bundles'
`bin/dirac-service` is a tiny HTTP server that answers its own version on /health.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.lab import LabHost, LabNetwork, lab_hosts
from tests.conftest import lab_skip
from tests.publishing import make_bundle, service_files

pytestmark = pytest.mark.lab

HOSTS = ["cctbdirac01", "cctbdirac02"]
REPO = "dirac.egi.eu"
PREFIX = "dirac"
ARCH = "x86_64"
ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "ansible"
INVENTORY = ANSIBLE_DIR / "inventories" / "certification" / "hosts.yml"
PORT = 9162  # the certification group_vars' service (Framework/SystemAdministrator)
SERVICE = "Framework_SystemAdministrator"
PLAYBOOK_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stratum(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/cvmfs/dirac.egi.eu: v1.0.0 and v1.0.1 work; v1.0.2's service dies on cctbdirac02."""
    root = tmp_path_factory.mktemp("stratum") / REPO
    prefix = root / PREFIX
    for version, fail_on in (("v1.0.0", ""), ("v1.0.1", ""), ("v1.0.2", "cctbdirac02")):
        make_bundle(prefix, version, files=service_files(version, fail_on), platforms=(ARCH,))
        manifest = prefix / version / f"Linux-{ARCH}" / ".dirac-release" / "manifest.json"
        assert json.loads(manifest.read_text())["tag"] == version
    return root


@pytest.fixture(scope="module")
def lab(
    lab_rootfs: Path, stratum: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabNetwork]:
    if shutil.which("ansible-playbook") is None:
        lab_skip("ansible-playbook is not installed (pip install ansible-core)")
    work = tmp_path_factory.mktemp("ansiblelab")
    with lab_hosts(HOSTS, lab_rootfs, work, binds=[(stratum, f"/cvmfs/{REPO}", True)]) as net:
        yield net


@pytest.fixture(scope="module")
def lab_inventory(lab: LabNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second inventory that only puts the lab addresses and key over the placeholders."""
    path = tmp_path_factory.mktemp("inventory") / "lab.yml"
    hosts = {
        host.name: {
            "ansible_host": host.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(host.ssh_key),
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        for host in lab
    }
    path.write_text(json.dumps({"all": {"children": {"dirac_servers": {"hosts": hosts}}}}))
    return path


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.proc, self.seconds = proc, seconds
        self.output = proc.stdout + proc.stderr

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP per host: {'cctbdirac01': {'ok': 5, 'changed': 0, ...}}."""
        found: dict[str, dict[str, int]] = {}
        for line in self.proc.stdout.splitlines():
            match = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
            if match:
                found[match.group(1)] = {
                    k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))
                }
        return found

    def __str__(self) -> str:
        return f"rc={self.proc.returncode} ({self.seconds:.1f}s)\n" + self.output[-6000:]


def playbook(lab: LabNetwork, inventory: Path, name: str, *extra: str) -> Run:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ControlPersist=no -o StrictHostKeyChecking=no"
        " -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o ConnectTimeout=10",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(inventory.parent / "ansible-tmp"),
    }
    argv = [*lab.exec_prefix(), "ansible-playbook", "-i", str(INVENTORY), "-i", str(inventory),
            name, *extra]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(
        argv, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True,
        timeout=PLAYBOOK_TIMEOUT_S, check=False,
    )  # fmt: skip
    run = Run(proc, time.monotonic() - start)
    print(f"{name} {' '.join(extra)}: {run.seconds:.1f}s rc={proc.returncode}")
    return run


def sh(host: LabHost, command: str) -> str:
    return host.run(command).stdout.decode().strip()


def running_version(host: LabHost) -> str:
    """The version the running service runs, asked of its process (cwd), not of the pro link."""
    status = sh(host, f"sv status /opt/dirac/startup/{SERVICE}")
    match = re.search(r"^run: .*\(pid (\d+)\)", status)
    assert match, f"{host.name}: service not running: {status}"
    cwd = sh(host, f"readlink /proc/{match.group(1)}/cwd")
    match = re.fullmatch(rf"/opt/dirac/versions/([^/]+)/Linux-{ARCH}", cwd)
    assert match, f"{host.name}: service runs in {cwd}"
    return match.group(1)


def health(host: LabHost) -> str:
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=5).read().decode())"
    return sh(host, f'python3 -c "{code}"')


def link(host: LabHost, name: str) -> str:
    return sh(host, f"readlink /opt/dirac/{name}")


def installed(host: LabHost) -> set[str]:
    return set(sh(host, "ls /opt/dirac/versions").split())


# The tests below run in order on the same two hosts.


def test_site_installs_and_is_idempotent(lab: LabNetwork, lab_inventory: Path) -> None:
    first = playbook(lab, lab_inventory, "site.yml", "-e", "dirac_version=v1.0.0")
    assert first.proc.returncode == 0, str(first)
    for host in lab:
        assert running_version(host) == "v1.0.0"
        assert health(host) == "v1.0.0"
        assert link(host, "pro") == "versions/v1.0.0"
        assert "CVMFS_REPOSITORIES=dirac.egi.eu" in sh(host, "cat /etc/cvmfs/default.local")
        assert sh(host, "cat /opt/dirac/startup/*/run").count("exec /opt/dirac/pro/Linux-x86_64/")
    assert set(first.recap) == set(HOSTS), str(first)
    second = playbook(lab, lab_inventory, "site.yml", "-e", "dirac_version=v1.0.0")
    assert second.proc.returncode == 0, str(second)
    for name in HOSTS:
        assert second.recap[name]["changed"] == 0, str(second)
        assert second.recap[name]["failed"] == 0, str(second)
    # One runsvdir only, even after two runs.
    for host in lab:
        assert sh(host, "grep -l runsvdir /proc/[0-9]*/comm | wc -l") == "1"


def test_site_refuses_a_version_not_on_cvmfs(lab: LabNetwork, lab_inventory: Path) -> None:
    run = playbook(
        lab, lab_inventory, "site.yml", "-e", "dirac_version=v9.9.9", "--limit", HOSTS[0]
    )
    assert run.proc.returncode != 0, str(run)
    assert "v9.9.9 is not visible on cctbdirac01" in run.output, str(run)
    assert running_version(lab[0]) == "v1.0.0"


def test_upgrade_rolls_to_the_new_version(lab: LabNetwork, lab_inventory: Path) -> None:
    run = playbook(lab, lab_inventory, "upgrade.yml", "-e", "dirac_version=v1.0.1")
    assert run.proc.returncode == 0, str(run)
    # serial [1, batch]: the canary runs alone first.
    assert run.output.count("PLAY [Upgrade DIRAC servers]") == 2, str(run)
    for host in lab:
        assert running_version(host) == "v1.0.1"
        assert health(host) == "v1.0.1"
        assert link(host, "pro") == "versions/v1.0.1"
        assert link(host, "previous") == "versions/v1.0.0"
        assert {"v1.0.0", "v1.0.1"} <= installed(host)


def test_failed_upgrade_rolls_the_host_back(lab: LabNetwork, lab_inventory: Path) -> None:
    run = playbook(lab, lab_inventory, "upgrade.yml", "-e", "dirac_version=v1.0.2",
                   "-e", "dirac_server_up_timeout=8")  # fmt: skip
    assert run.proc.returncode != 0, str(run)
    assert run.recap["cctbdirac01"]["failed"] == 0, str(run)
    assert run.recap["cctbdirac02"]["failed"] == 1, str(run)
    assert "Upgrade of cctbdirac02 to v1.0.2 failed" in run.output, str(run)
    assert "rolled back to v1.0.1, which runs again" in run.output, str(run)
    canary, second = lab
    assert running_version(canary) == "v1.0.2"
    assert health(canary) == "v1.0.2"
    assert running_version(second) == "v1.0.1"
    assert health(second) == "v1.0.1"
    assert link(second, "pro") == "versions/v1.0.1"


def test_rollback_to_a_named_version(lab: LabNetwork, lab_inventory: Path) -> None:
    run = playbook(lab, lab_inventory, "rollback.yml", "-e", "dirac_version=v1.0.0")
    assert run.proc.returncode == 0, str(run)
    for host in lab:
        assert running_version(host) == "v1.0.0"
        assert health(host) == "v1.0.0"
        assert link(host, "pro") == "versions/v1.0.0"


def test_rollback_refuses_a_version_not_installed(lab: LabNetwork, lab_inventory: Path) -> None:
    run = playbook(lab, lab_inventory, "rollback.yml", "-e", "dirac_version=v0.0.9")
    assert run.proc.returncode != 0, str(run)
    assert "Cannot roll cctbdirac01 back to v0.0.9" in run.output, str(run)
    assert running_version(lab[0]) == "v1.0.0"


def test_rollback_to_the_previous_version(lab: LabNetwork, lab_inventory: Path) -> None:
    before = {host.name: link(host, "previous").removeprefix("versions/") for host in lab}
    run = playbook(lab, lab_inventory, "rollback.yml")
    assert run.proc.returncode == 0, str(run)
    for host in lab:
        assert running_version(host) == before[host.name]
        assert link(host, "previous") == "versions/v1.0.0"


def test_a_damaged_version_is_named_and_repaired(lab: LabNetwork, lab_inventory: Path) -> None:
    host = lab.host("cctbdirac02")
    tree = f"/opt/dirac/versions/v1.0.0/Linux-{ARCH}"
    sh(host, f"sed -i s/v1.0.0/v1.0.X/ {tree}/diracosrc")  # same size: only the sha256 tells
    run = playbook(lab, lab_inventory, "rollback.yml", "-e", "dirac_version=v1.0.0",
                   "--limit", host.name)  # fmt: skip
    assert run.proc.returncode != 0, str(run)
    assert "diracosrc: sha256 differs from the manifest" in run.output, str(run)
    assert running_version(host) == "v1.0.1"
    # Installing it again repairs the copy from CVMFS.
    run = playbook(
        lab, lab_inventory, "site.yml", "-e", "dirac_version=v1.0.0", "--limit", host.name
    )
    assert run.proc.returncode == 0, str(run)
    assert sh(host, f"cat {tree}/diracosrc") == "export DIRAC_VERSION=v1.0.0"
    assert running_version(host) == "v1.0.0"


def test_old_versions_are_pruned_but_never_pro_or_previous(
    lab: LabNetwork, lab_inventory: Path
) -> None:
    host = lab.host("cctbdirac01")
    assert link(host, "pro") == "versions/v1.0.2"
    assert installed(host) == {"v1.0.0", "v1.0.1", "v1.0.2"}
    run = playbook(lab, lab_inventory, "site.yml", "-e", "dirac_version=v1.0.1",
                   "-e", "dirac_keep_versions=1", "--limit", host.name)  # fmt: skip
    assert run.proc.returncode == 0, str(run)
    assert link(host, "pro") == "versions/v1.0.1"
    assert link(host, "previous") == "versions/v1.0.2"
    assert installed(host) == {"v1.0.1", "v1.0.2"}
    assert running_version(host) == "v1.0.1"
