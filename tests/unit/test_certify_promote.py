"""Certification records and the promotion gate, on a directory stratum (no lab hosts).

The smoke checks against a real DiracX on lab hosts are in tests/lab/test_diracx_hosts.py;
here: the CVMFS checks, unreachable targets, the reports, the gate's refusals and `pro`.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from release.certify import (
    certify_release,
    check_outcome,
    published_digests,
    published_manifests,
)
from release.certify.report import markdown, write_junit
from release.config import load_config
from release.errors import BadInput, ConfigError, InfrastructureError
from release.promote import promote_release
from release.publish import init_repository, publish_release
from tests.publishing import make_bundle, write_config

ENV = """
[environments.certification]
hosts = { cctbdirac01 = "10.77.0.11" }

[environments.certification.certify]
vos = ["vodemo"]
health_timeout = 2

[environments.production]
hosts = { diracprod01 = "10.77.0.21" }
"""


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    path = write_config(tmp_path, extra=ENV)
    config = load_config(path, environ={})
    init_repository(config, None)
    for tag in ("v1.0.0", "v1.1.0a1"):
        make_bundle(tmp_path / "dist", tag)
        publish_release(config, version=tag)
    return tmp_path


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nobody listens once the socket is closed


def fake_certification(site: Path, tag: str, *, passed: bool = True) -> None:
    config = load_config(site / "release.toml", environ={})
    digests = published_digests(config, "certification", tag)
    checks = [{"group": "diracx", "name": "openapi title", "target": "http://h", "seconds": 0.1,
               "result": "passed" if passed else "failed", "evidence": "title Dirac"}]  # fmt: skip
    config.ledger("vodemo", tag).record(
        "certify", {"environment": "certification", "version": tag, "passed": passed,
                    "manifest_sha256": digests, "checks": checks},
    )  # fmt: skip


def test_unreachable_diracx_is_exit_3_and_recorded(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    record = certify_release(config, env_name="certification", version="v1.0.0", url=dead_url())
    results = {(c["group"], c["name"]): c["result"] for c in record["checks"]}
    assert results[("cvmfs", "Linux-x86_64 verifies")] == "passed"
    assert results[("cvmfs", "Linux-aarch64 verifies")] == "passed"
    assert results[("diracx", "health live")] == "unreachable"
    assert ("hosts", "runs v1.0.0") not in results  # --url: the hosts are not checked
    assert not record["passed"] and set(record["manifest_sha256"]) == {"x86_64", "aarch64"}
    # One digest for the bundle in every stage: what certify vouches for is the manifest's
    # line in the build's SHA256SUMS, and what the publisher reported.
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (site / "dist" / "v1.0.0" / "SHA256SUMS").read_text().splitlines()
    )
    published = config.ledger("vodemo", "v1.0.0").latest("publish") or {}
    for arch in ("x86_64", "aarch64"):
        listed = sums[f"Linux-{arch}/.dirac-release/manifest.json"]
        assert record["manifest_sha256"][arch] == listed == published["manifests"][arch]
    with pytest.raises(InfrastructureError, match="could not reach"):
        check_outcome(record)
    assert config.ledger("vodemo", "v1.0.0").latest("certify") == record
    tree = ET.parse(write_junit(record, site / "junit.xml")).getroot()  # noqa: S314 (our own file)
    suite = tree.find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("failures") == "0"
    assert "FAILED" in markdown(record) and "UNREACHABLE" in markdown(record)


def test_damaged_publication_fails_the_cvmfs_check(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    target = (
        site / "stratum" / "vodemo.egi.eu" / "vodemo" / "v1.0.0" / "Linux-aarch64" / "diracosrc"
    )
    damaged = target.with_name("damaged")
    damaged.write_bytes(target.read_bytes() + b"#")
    os.replace(damaged, target)
    record = certify_release(config, env_name="certification", version="v1.0.0", url=dead_url())
    check = next(c for c in record["checks"] if c["name"] == "Linux-aarch64 verifies")
    assert check["result"] == "failed" and "diracosrc" in check["evidence"]
    assert "aarch64" not in record["manifest_sha256"]


def test_token_settings_go_together(tmp_path: Path, isolated_env: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + ENV.replace('vos = ["vodemo"]', 'vos = []\nuser = "demo"'))
    with pytest.raises(ConfigError, match="user, vo and group go together"):
        load_config(path, environ={})


def test_promotion_gate(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    stratum = site / "stratum" / "vodemo.egi.eu" / "vodemo"
    with pytest.raises(BadInput, match="pre-release"):
        promote_release(config, version="v1.1.0a1")
    with pytest.raises(BadInput, match="never certified on certification"):
        promote_release(config, version="v1.0.0")
    fake_certification(site, "v1.0.0", passed=False)
    with pytest.raises(BadInput, match="did not pass: openapi title on http://h"):
        promote_release(config, version="v1.0.0")
    fake_certification(site, "v1.0.0")
    # The published manifest changes after the certification (its tree still verifies).
    manifest = stratum / "v1.0.0" / "Linux-x86_64" / ".dirac-release" / "manifest.json"
    original = manifest.read_bytes()
    changed = manifest.with_name("changed")
    changed.write_bytes(original.replace(b'"commit": "' + b"0" * 40, b'"commit": "' + b"1" * 40))
    os.replace(changed, manifest)
    with pytest.raises(BadInput, match="changed after their certification"):
        promote_release(config, version="v1.0.0")
    changed.write_bytes(original)
    os.replace(changed, manifest)
    plan = promote_release(config, version="v1.0.0", plan=True)
    assert [s["step"] for s in plan["steps"]] == ["gate", "pro link", "deploy", "certify"]
    assert "would run upgrade.yml on diracprod01" in plan["steps"][2]["result"]
    assert not (stratum / "pro").exists()  # a plan changes nothing


def test_pro_moves_in_one_verified_transaction(site: Path) -> None:
    from cvmfs.layout import Layout
    from cvmfs.promotion import move_link
    from release.targets import make_backend

    config = load_config(site / "release.toml", environ={})
    _, repo = config.repository(None, config.product(None)[1])
    backend = make_backend(config, "vodemo.egi.eu", repo)
    layout = Layout("vodemo.egi.eu", "vodemo")
    _, _, manifests = published_manifests(config, "certification", "v1.0.0")
    present = {arch: m for arch, m in manifests.items() if m}
    revision = backend.status().revision
    moved = move_link(backend, layout, "v1.0.0", present)
    assert moved["status"] == "moved" and moved["from"] is None
    assert os.readlink(site / "stratum" / "vodemo.egi.eu" / "vodemo" / "pro") == "v1.0.0"
    assert backend.status().revision == revision + 1
    again = move_link(backend, layout, "v1.0.0", present)
    assert again["status"] == "already there" and backend.status().revision == revision + 1
    with pytest.raises(BadInput, match="not published"):
        move_link(backend, layout, "v9.9.9", present)


def test_every_group_of_checks_runs_at_once_and_is_reported_in_order() -> None:
    """Three groups meet at a barrier: run one after the other, they never would."""
    import threading

    from release.certify import _concurrently
    from release.certify.checks import PASSED, Check

    barrier = threading.Barrier(3, timeout=10)

    def group(name: str) -> list[Check]:
        barrier.wait()
        return [Check(name, "check", f"http://{name}", PASSED, name, 0.0)]

    found = _concurrently([lambda: group("cvmfs"), lambda: group("hosts"), lambda: group("dx")])
    assert [c.group for checks in found for c in checks] == ["cvmfs", "hosts", "dx"]

    def broken() -> list[Check]:
        raise ValueError("bug in a group")

    with pytest.raises(ValueError, match="bug in a group"):
        _concurrently([broken, lambda: []])


def test_certify_checks_the_stratum_and_the_hosts_at_once(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """certify_release itself runs its groups together: the stratum's check waits for the
    hosts' check to start, and the record keeps them in the order cvmfs, hosts."""
    import threading

    import release.certify as certify
    from release.certify.checks import PASSED, Check

    barrier = threading.Barrier(2, timeout=10)
    real_cvmfs = certify._cvmfs_checks

    def cvmfs(*args: object) -> list[Check]:
        barrier.wait()
        return real_cvmfs(*args)  # type: ignore[arg-type]

    def hosts(config: object, env_name: str, tag: str) -> list[Check]:
        barrier.wait()
        return [Check("hosts", "runs v1.0.0", "cctbdirac01", PASSED, "pro -> v1.0.0", 0.0)]

    monkeypatch.setattr(certify, "_cvmfs_checks", cvmfs)
    monkeypatch.setattr(certify, "host_checks", hosts)
    config = load_config(site / "release.toml", environ={})
    record = certify_release(config, env_name="certification", version="v1.0.0")
    groups = [c["group"] for c in record["checks"]]
    assert groups[:2] == ["cvmfs", "cvmfs"] and groups[2] == "hosts"
    assert record["counts"]["passed"] == 3 and len(record["manifest_sha256"]) == 2
