"""The cvmfs_server backend against the executable stand-in (tests/standin/cvmfs_server).

The stand-in keeps cvmfs_server's states, exit codes and output shapes; these tests drive it
exactly as production would drive the real tool on a stratum-0 (here: locally, no SSH).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from release.config import load_config
from release.errors import BadInput, InfrastructureError
from release.publish import publish_release, repository_status
from tests.publishing import make_bundle

STANDIN = Path(__file__).resolve().parents[1] / "standin" / "cvmfs_server"
REPO = "vodemo.egi.eu"

CONFIG = """
[products.vodemo]
source = {{ git = "repo" }}

[repositories."{repo}"]
backend = "server"
cvmfs_server = "{standin}"
mount_root = "{root}/cvmfs"
stratum_root = "{root}/standin-state"
spool_root = "{root}/spool"
prefix = "vodemo"
links = ["latest"]
wait = {wait}

[build]
out = "dist"
"""


@pytest.fixture
def node(tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A publisher node: the stand-in's state and mount in tmp_path, one repository."""
    monkeypatch.setenv("CVMFS_STANDIN_STATE", str(tmp_path / "standin-state"))
    monkeypatch.setenv("CVMFS_STANDIN_MOUNT", str(tmp_path / "cvmfs"))
    monkeypatch.setenv("CVMFS_STANDIN_NODE", "stratum0")
    (tmp_path / "release.toml").write_text(
        CONFIG.format(repo=REPO, standin=STANDIN, root=tmp_path, wait=1)
    )
    cvmfs("mkfs", "-o", "root", REPO)
    make_bundle(tmp_path / "dist", "v1.0.0")
    return tmp_path


def cvmfs(*args: str, node: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if node:
        env["CVMFS_STANDIN_NODE"] = node
    return subprocess.run(
        [sys.executable, str(STANDIN), *args], capture_output=True, text=True, env=env, check=False
    )


def publish(node: Path, tag: str = "v1.0.0") -> dict[str, object]:
    return publish_release(load_config(node / "release.toml", environ={}), version=tag)


def tags() -> dict[str, list[str]]:
    out = cvmfs("tag", "-l", "-x", REPO).stdout
    return {line.split(" ")[0]: line.split(" ", 6) for line in out.splitlines()}


def test_publish_through_cvmfs_server(node: Path) -> None:
    result = publish(node)
    assert result["status"] == "published", result
    assert result["backend"] == "server"
    mount = node / "cvmfs" / REPO / "vodemo"
    assert sorted(p.name for p in (mount / "v1.0.0").iterdir()) == [
        ".cvmfscatalog",
        "Linux-aarch64",
        "Linux-x86_64",
    ]
    assert os.readlink(mount / "latest") == "v1.0.0"
    published = tags()
    assert "vodemo-v1.0.0" in published and "trunk" in published
    assert int(published["vodemo-v1.0.0"][3]) == result["revision"]
    assert "manifests sha256" in published["vodemo-v1.0.0"][6]
    assert cvmfs("check", "-s", "vodemo/v1.0.0", REPO).returncode == 0
    assert "in transaction" not in cvmfs("list").stdout
    status = repository_status(load_config(node / "release.toml", environ={}), None)
    assert status["versions"] == ["v1.0.0"] and status["links"] == {"latest": "v1.0.0"}
    assert status["whitelist_expires"] is not None


def test_missing_lease_parent_is_created_in_its_own_revision(node: Path) -> None:
    """A lease needs its parent published (ENOENT otherwise): vo/ is created first, at the root."""
    text = (node / "release.toml").read_text().replace('prefix = "vodemo"', 'prefix = "vo/dirac"')
    (node / "release.toml").write_text(text)
    result = publish(node)
    assert result["status"] == "published"
    assert any("created /vo/dirac in its own revision" in n for n in result["notes"])  # type: ignore[union-attr]
    assert (node / "cvmfs" / REPO / "vo" / "dirac" / "v1.0.0" / "Linux-x86_64").is_dir()
    revisions = sorted(
        int(fields[3]) for name, fields in tags().items() if not name.startswith("trunk")
    )
    assert len(revisions) == 1 and int(tags()["trunk"][3]) == revisions[0]


def test_republish_is_a_no_op_and_no_empty_revision(node: Path) -> None:
    first = publish(node)
    again = publish(node)
    assert again["status"] == "already published"
    assert again["revision"] == first["revision"]
    assert int(tags()["trunk"][3]) == first["revision"]


def test_someone_elses_transaction_is_never_aborted(node: Path) -> None:
    assert cvmfs("transaction", REPO).returncode == 0  # an admin's, on this node
    with pytest.raises(InfrastructureError) as caught:
        publish(node)
    assert caught.value.exit_code == 3
    assert "not opened by dirac-release" in caught.value.message
    assert "in transaction" in cvmfs("list").stdout  # still open: not ours to abort
    assert not (node / "cvmfs" / REPO / "vodemo" / "v1.0.0").exists()
    cvmfs("abort", "-f", REPO)
    assert publish(node)["status"] == "published"


def test_another_nodes_lease_makes_us_wait_then_fail_busy(node: Path) -> None:
    publish(node)  # /vodemo exists now
    make_bundle(node / "dist", "v1.0.1")
    assert cvmfs("transaction", f"{REPO}/vodemo", node="gateway-peer").returncode == 0
    started = time.monotonic()
    with pytest.raises(InfrastructureError, match="is busy"):
        publish(node, "v1.0.1")
    assert time.monotonic() - started < 30
    assert "vodemo-v1.0.1" not in tags()
    cvmfs("abort", "-f", REPO, node="gateway-peer")
    assert publish(node, "v1.0.1")["status"] == "published"


def test_bad_bundle_is_refused_before_any_transaction(node: Path) -> None:
    (node / "dist" / "v1.0.0" / "Linux-aarch64" / "lib" / "pkg" / "mod002.py").write_bytes(
        b"changed"
    )
    with pytest.raises(BadInput, match="does not match its manifest"):
        publish(node)
    assert "in transaction" not in cvmfs("list").stdout
    assert not (node / "cvmfs" / REPO / "vodemo").exists()


def test_failure_inside_the_transaction_aborts_it(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staged tree that does not verify aborts our transaction: nothing becomes visible."""
    from cvmfs.backends import server

    real = server.ServerBackend.compare

    def corrupt(self: server.ServerBackend, path: str, manifest: dict[str, object]) -> list[str]:
        target = Path(path) / "lib" / "pkg" / "mod003.py"
        if target.exists():
            target.write_bytes(b"bit rot")
        return real(self, path, manifest)

    monkeypatch.setattr(server.ServerBackend, "compare", corrupt)
    from release.errors import CheckFailed

    with pytest.raises(CheckFailed, match="staged tree differs"):
        publish(node)
    assert "in transaction" not in cvmfs("list").stdout
    assert not (node / "cvmfs" / REPO / "vodemo" / "v1.0.0").exists()
    assert "vodemo-v1.0.0" not in tags()


def test_killed_publisher_is_recovered_by_the_rerun(node: Path) -> None:
    marker = node / "reached"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env |= {"DIRAC_RELEASE_FAILPOINT": "synced", "DIRAC_RELEASE_FAILPOINT_FILE": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "release", "--config", str(node / "release.toml"), "publish", "--version", "v1.0.0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert "in transaction" in cvmfs("list").stdout  # the crash left our transaction open
    owner = json.loads((node / "spool" / REPO / "dirac-release-transaction.json").read_text())
    assert owner["owner"]["publication"] == "vodemo-v1.0.0"
    result = publish(node)
    assert result["status"] == "published"
    assert any("aborted the stale transaction" in n for n in result["notes"])  # type: ignore[union-attr]
    assert "in transaction" not in cvmfs("list").stdout


def test_whitelist_about_to_expire_is_warned(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVMFS_STANDIN_WHITELIST_DAYS", "0.2")
    cvmfs("mkfs", "-o", "root", "soon.egi.eu")
    text = (node / "release.toml").read_text().replace(f'"{REPO}"', '"soon.egi.eu"')
    (node / "release.toml").write_text(text)
    result = publish(node)
    assert any("whitelist of soon.egi.eu expires in" in n for n in result["notes"])  # type: ignore[union-attr]


def test_repository_missing_on_the_node_is_bad_input(node: Path) -> None:
    text = (node / "release.toml").read_text().replace(f'"{REPO}"', '"absent.egi.eu"')
    (node / "release.toml").write_text(text)
    with pytest.raises(BadInput, match="does not exist on the server backend"):
        publish(node)
    assert "absent.egi.eu" not in cvmfs("list").stdout
