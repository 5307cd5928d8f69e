"""`dirac-release deploy` and `rollback` end to end: published versions, rendered inventory,
Ansible on real lab hosts, per-host results and exit codes, and the ledger."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.config import load_config
from release.lab import LabHost, LabNetwork, lab_hosts
from release.publish import init_repository, publish_release
from tests.conftest import lab_skip
from tests.publishing import make_bundle, service_files

pytestmark = pytest.mark.lab
REPO = "dirac.egi.eu"
CONFIG = """
[products.vodemo]
source = {{ git = "repo" }}

[products.vodemo.services.SystemAdministrator]
system = "Framework"
command = "bin/dirac-service"
environment = {{ DIRAC_SERVICE_PORT = "9162" }}
health = "http://127.0.0.1:9162/health"

[repositories."{repo}"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[environments.certification]
hosts = {{ {hosts} }}
ssh_key = "{key}"
batch = 1
"""


@pytest.fixture(scope="module")
def site(
    lab_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, LabNetwork]]:
    if shutil.which("ansible-playbook") is None:
        lab_skip("ansible-playbook is not installed (pip install ansible-core)")
    root = tmp_path_factory.mktemp("deploysite")
    (root / "release.toml").write_text(CONFIG.format(repo=REPO, hosts='cctbdirac01 = "x"', key="k"))
    config = load_config(root / "release.toml", environ={})
    init_repository(config, None)
    for version, fail_on in (("v1.0.0", ""), ("v1.0.1", ""), ("v1.0.2", "cctbdirac02")):
        make_bundle(
            root / "dist", version, files=service_files(version, fail_on), platforms=("x86_64",)
        )
    text = (root / "release.toml").read_text()
    (root / "release.toml").write_text(
        text.replace("[build]", "") + '\n[platforms.x86_64]\nglibc = "2.28"\n'
    )
    for version in ("v1.0.0", "v1.0.1", "v1.0.2"):
        publish_release(load_config(root / "release.toml", environ={}), version=version)
    stratum = root / "stratum" / REPO
    with lab_hosts(
        ["cctbdirac01", "cctbdirac02"],
        lab_rootfs,
        root / "hosts",
        binds=[(stratum, f"/cvmfs/{REPO}", True)],
    ) as net:
        hosts = ", ".join(f'{h.name} = "{h.address}"' for h in net)
        (root / "release.toml").write_text(
            CONFIG.format(repo=REPO, hosts=hosts, key=net[0].ssh_key)
            + '\n[platforms.x86_64]\nglibc = "2.28"\n'
        )
        yield root, net


def cli(
    site: tuple[Path, LabNetwork], *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    root, net = site
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env.update(extra_env or {})
    return subprocess.run(
        [*net.exec_prefix(), sys.executable, "-m", "release", "--config", str(root / "release.toml"), "--json", *args],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


def running(net: LabNetwork, name: str) -> str:
    host = next(h for h in net if h.name == name)
    return (
        host.run(
            "python3 -c \"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9162/health').read().decode())\""
        )
        .stdout.decode()
        .strip()
    )


def accepted_logins(host: LabHost) -> int:
    """SSH logins the host's sshd accepted so far (sshd -e logs to the console)."""
    return host.console_log.read_text(errors="replace").count("Accepted publickey")


def ssh_masters() -> list[str]:
    """Command lines of SSH processes that use a deploy run's connection-sharing sockets."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"ssh") and any(b"dirac-release-report-" in arg for arg in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def test_deploy_upgrade_failure_and_rollback(site: tuple[Path, LabNetwork]) -> None:
    root, net = site
    refused = cli(site, "deploy", "--env", "certification", "--version", "v1.0.0")
    assert refused.returncode == 1 and "a first installation is site.yml's job" in refused.stderr
    first = cli(site, "deploy", "--env", "certification", "--version", "v1.0.0", "--install")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    result = json.loads(first.stdout)
    assert [(h["host"], h["previous"], h["running"], h["result"]) for h in result["hosts"]] == [
        ("cctbdirac01", None, "v1.0.0", "installed"),
        ("cctbdirac02", None, "v1.0.0", "installed"),
    ]
    assert running(net, "cctbdirac01") == "v1.0.0" and running(net, "cctbdirac02") == "v1.0.0"

    logins = {host.name: accepted_logins(host) for host in net}
    # An admin's own callback (here junit; profile_tasks is the usual one) runs beside ours:
    # it replaces ansible.cfg's list, and without ours no host result would be read.
    junit = root / "junit"
    upgraded = cli(site, "deploy", "--env", "certification", "--version", "v1.0.1",
                   extra_env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.junit",
                              "JUNIT_OUTPUT_DIR": str(junit)})  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert len(list(junit.glob("*.xml"))) == 1
    # One SSH connection per host carried the whole upgrade (7 tasks on each host), and it
    # was closed with the run.
    assert {host.name: accepted_logins(host) - logins[host.name] for host in net} == {
        "cctbdirac01": 1,
        "cctbdirac02": 1,
    }
    assert ssh_masters() == []
    assert running(net, "cctbdirac01") == "v1.0.1" and running(net, "cctbdirac02") == "v1.0.1"
    assert {
        (h["previous"], h["running"], h["result"]) for h in json.loads(upgraded.stdout)["hosts"]
    } == {("v1.0.0", "v1.0.1", "upgraded")}

    broken = cli(site, "deploy", "--env", "certification", "--version", "v1.0.2")
    assert broken.returncode == 1, broken.stderr[-3000:]
    assert "failed on cctbdirac02" in broken.stderr and "rolled back" in broken.stderr
    assert running(net, "cctbdirac02") == "v1.0.1"  # rolled back, running the previous version
    # stdout stays one JSON document with every host's state, also when the run failed
    assert [
        (h["host"], h["previous"], h["running"], h["result"])
        for h in json.loads(broken.stdout)["hosts"]
    ] == [
        ("cctbdirac01", "v1.0.1", "v1.0.2", "upgraded"),
        ("cctbdirac02", "v1.0.1", "v1.0.1", "failed, rolled back"),
    ]

    never = cli(site, "deploy", "--env", "certification", "--version", "v9.9.9")
    assert never.returncode == 2 and "never published" in never.stderr

    back = cli(site, "rollback", "--env", "certification", "--to", "v1.0.0")
    assert back.returncode == 0, back.stderr[-3000:]
    assert running(net, "cctbdirac01") == "v1.0.0" and running(net, "cctbdirac02") == "v1.0.0"

    ledger = json.loads((root / "state" / "vodemo" / "environments" / "ledger.json").read_text())
    assert [(r["stage"], r["version"], r["exit_code"]) for r in ledger["records"]] == [
        ("deploy", "v1.0.0", 2), ("deploy", "v1.0.0", 0), ("deploy", "v1.0.1", 0), ("deploy", "v1.0.2", 2),
        ("rollback", "v1.0.0", 0),
    ]  # fmt: skip


def test_unreachable_host_is_exit_3(site: tuple[Path, LabNetwork]) -> None:
    root, net = site
    text = (root / "release.toml").read_text()
    dead = net[1].address.rsplit(".", 1)[0] + ".250"
    (root / "other.toml").write_text(text.replace(net[1].address, dead))
    proc = subprocess.run(
        [*net.exec_prefix(), sys.executable, "-m", "release", "--config", str(root / "other.toml"), "deploy",
         "--env", "certification", "--version", "v1.0.1"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "cctbdirac02 unreachable" in proc.stderr
