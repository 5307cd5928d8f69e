"""Render (inventory + variables pinned to a version) and the deploy stage's input checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from release.config import load_config
from release.deploy import parse_recap, run_playbook
from release.errors import BadInput
from release.publish import init_repository, publish_release
from release.render import render_environment
from tests.publishing import make_bundle, write_config

ENV = """
[products.vodemo.services.diracx]
system = "DiracX"
command = "bin/vodemo-diracx --port 8000"
environment = { VODEMO_STATE = "/opt/dirac/state" }
health = "http://127.0.0.1:8000/api/health/live"

[environments.certification]
hosts = { cctbdirac01 = "10.77.0.11", cctbdirac02 = "10.77.0.12" }
batch = 2
max_fail_percentage = 10
keep = 4
"""


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + ENV)
    return tmp_path


def test_render_pins_the_version_and_the_hosts(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    result = render_environment(config, "certification", "v1.0.0", site / "out")
    inventory = yaml.safe_load(Path(result["inventory"]).read_text())
    hosts = inventory["all"]["children"]["dirac_servers"]["hosts"]
    assert hosts == {
        "cctbdirac01": {"ansible_host": "10.77.0.11"},
        "cctbdirac02": {"ansible_host": "10.77.0.12"},
    }
    values = yaml.safe_load(Path(result["vars"]).read_text())
    assert values["dirac_version"] == "v1.0.0"
    assert values["dirac_repository"] == "vodemo.egi.eu" and values["dirac_prefix"] == "vodemo"
    assert values["dirac_batch"] == 2 and values["dirac_max_fail_percentage"] == 10
    assert values["dirac_keep_versions"] == 4 and values["dirac_arch"] == "x86_64"
    assert values["dirac_services"] == [
        {"name": "DiracX/diracx", "command": "bin/vodemo-diracx --port 8000",
         "environment": {"VODEMO_STATE": "/opt/dirac/state"}, "health_url": "http://127.0.0.1:8000/api/health/live"}
    ]  # fmt: skip
    assert Path(result["inventory"]).parent.parent == site / "out" / "certification" / "v1.0.0"
    # Defaults of the shipped inventory survive where release.toml is silent.
    assert "cvmfs_client_http_proxy" in values


def test_unknown_environment_and_unpublished_version_are_bad_input(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    with pytest.raises(BadInput, match="unknown environment 'prod'"):
        run_playbook(config, env_name="prod", version="v1.0.0", action="upgrade")
    init_repository(config, None)
    with pytest.raises(BadInput, match="never published"):
        run_playbook(config, env_name="certification", version="v1.0.0", action="upgrade")
    make_bundle(site / "dist", "v1.0.0")
    publish_release(config, version="v1.0.0")
    with pytest.raises(BadInput, match="never published"):
        run_playbook(config, env_name="certification", version="v1.0.1", action="upgrade")


RECAP = """\
PLAY RECAP *********************************************************************
cctbdirac01                : ok=25   changed=6    unreachable=0    failed=0    skipped=3    rescued=0    ignored=0
cctbdirac02                : ok=20   changed=4    unreachable=0    failed=1    skipped=2    rescued=1    ignored=0
cctbdirac03                : ok=0    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_recap_becomes_per_host_results() -> None:
    hosts = parse_recap("TASK [x] ***\nok: [cctbdirac01]\n\n" + RECAP)
    assert {name: h.result for name, h in hosts.items()} == {
        "cctbdirac01": "ok",
        "cctbdirac02": "failed, rolled back",
        "cctbdirac03": "unreachable",
    }
    assert hosts["cctbdirac01"].changed == 6
