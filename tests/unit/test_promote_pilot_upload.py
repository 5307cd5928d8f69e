"""`promote` keeps the production VO's HTTPS pilot location in step with `pro`.

The directory stratum and pilot repositories of test_pilot_publish, the loopback HTTPS server
of tests/pilot_server.py; the production hosts are not there, so the deploy step is replaced
by one that records that it was reached and stops the promotion.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from release import deploy
from release.certify import published_digests
from release.config import load_config
from release.errors import BadInput, CheckFailed, ConfigError
from release.pilot import upload
from release.pilot.build import build_pilots
from release.promote import promote_release
from release.publish import publish_release
from tests.loopback import LoopbackServer
from tests.pilot_server import Store
from tests.publishing import make_bundle
from tests.unit.test_pilot_publish import prefix, write_site

TAG = "v1.0.0"


class DeployReached(Exception):
    pass


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path, pki: Path,
         server: tuple[LoopbackServer, Store], monkeypatch: pytest.MonkeyPatch) -> Path:  # fmt: skip
    monkeypatch.setattr(upload, "BACKOFF", (0.0, 0.0))
    path = write_site(tmp_path)
    for name in ("ca.pem", "client.pem", "client.key"):
        shutil.copy(pki / name, tmp_path / name)
    path.write_text(path.read_text().replace(
        "[pilots.myvo.settings]",
        f'upload = ["{server[0].url}/pilot/"]\nupload_cert = "client.pem"\n'
        'upload_key = "client.key"\nupload_ca = "ca.pem"\n\n[pilots.myvo.settings]',
    ))  # fmt: skip
    config = load_config(path, environ={})
    make_bundle(tmp_path / "dist", TAG)
    build_pilots(config, version=TAG)
    publish_release(config, version=TAG)
    config.ledger("vodemo", TAG).record(
        "certify", {"environment": "certification", "version": TAG, "passed": True,
                    "manifest_sha256": published_digests(config, "certification", TAG),
                    "checks": []},
    )  # fmt: skip
    return tmp_path


@pytest.fixture
def stop_at_deploy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reached: list[str] = []

    def deploy_environment(config: Any, **kwargs: Any) -> None:
        reached.append(kwargs["env_name"])
        raise DeployReached

    monkeypatch.setattr(deploy, "deploy_environment", deploy_environment)
    return reached


def _config(site: Path) -> Any:
    return load_config(site / "release.toml", environ={})


def test_the_plan_names_the_upload_and_sends_nothing(
    site: Path, server: tuple[LoopbackServer, Store]
) -> None:
    plan = promote_release(_config(site), version=TAG, plan=True)
    step = next(s for s in plan["steps"] if s["step"] == "pilot upload")
    assert step["result"] == f"{server[0].url}/pilot: would send 8 files"
    assert server[1].requests == [] and server[1].files == {}


def test_pro_moves_then_the_files_go_up_then_production_is_deployed(
    site: Path, server: tuple[LoopbackServer, Store], stop_at_deploy: list[str]
) -> None:
    config = _config(site)
    with pytest.raises(DeployReached):
        promote_release(config, version=TAG)
    assert stop_at_deploy == ["production"]
    assert os.readlink(prefix(site) / "pro") == TAG
    built = site / "dist" / "pilots" / "myvo" / TAG
    assert {k.rsplit("/", 1)[-1]: v for k, v in server[1].files.items()} == {
        p.name: p.read_bytes() for p in built.iterdir()
    }
    record = config.ledger("vodemo", TAG).records("promote")[-1]
    step = next(s for s in record["steps"] if s["step"] == "pilot upload")
    assert step["uploads"][0]["status"] == "sent" and len(step["uploads"][0]["verified"]) == 8


def test_a_server_storing_other_bytes_fails_the_promotion_before_deploy(
    site: Path, server: tuple[LoopbackServer, Store], stop_at_deploy: list[str]
) -> None:
    server[1].corrupt.add("pilot.json")
    config = _config(site)
    with pytest.raises(CheckFailed, match=r"serves other bytes than myvo.s built pilot\.json"):
        promote_release(config, version=TAG)
    assert stop_at_deploy == []
    record = config.ledger("vodemo", TAG).records("promote")[-1]
    assert record["passed"] is False and "pilot.json" in record["error"]


@pytest.mark.parametrize("change", ["edit", "remove"])
def test_files_that_are_not_the_published_ones_stop_before_pro_moves(
    site: Path, server: tuple[LoopbackServer, Store], stop_at_deploy: list[str], change: str
) -> None:
    built = site / "dist" / "pilots" / "myvo" / TAG
    config = _config(site)
    if change == "remove":
        shutil.rmtree(built)
        match = "the pilot files of myvo for v1.0.0 are not built"
    else:
        # Rebuilt with another setting: consistent in itself, but not what was certified.
        text = (
            (site / "release.toml")
            .read_text()
            .replace("dips://dirac.example.org:9135", "dips://other.example.org:9135")
        )
        (site / "release.toml").write_text(text)
        config = _config(site)
        build_pilots(config, version=TAG)
        match = r"not the ones published and certified \(checksums.sha512, pilot.json"
    with pytest.raises(BadInput, match=match):
        promote_release(config, version=TAG)
    assert not os.path.lexists(prefix(site) / "pro")
    assert not os.path.lexists(prefix(site) / "pilot")
    assert server[1].requests == [] and stop_at_deploy == []


def test_a_key_that_does_not_load_stops_before_pro_moves(
    site: Path, pki: Path, server: tuple[LoopbackServer, Store], stop_at_deploy: list[str]
) -> None:
    shutil.copy(pki / "otherca.key", site / "client.key")
    with pytest.raises(ConfigError):
        promote_release(_config(site), version=TAG)
    assert not os.path.lexists(prefix(site) / "pro")
    assert server[1].requests == []
