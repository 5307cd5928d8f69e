"""Crashes and races: a killed publisher never leaves a partial version, and a rerun finishes.

Real processes: the publisher runs as `python -m release publish`, pauses at a named step
boundary (DIRAC_RELEASE_FAILPOINT) and is killed there with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from release.config import load_config
from release.publish import init_repository, repository_status
from tests.publishing import make_bundle, write_config

BOUNDARIES = ["opened", "synced", "verified", "published"]


def env(site: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    base["XDG_CACHE_HOME"] = str(site / "xdg")
    return base | extra


def start(site: Path, tag: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "release", "--config", str(site / "release.toml"), "--json", "publish", "--version", tag],
        env=env(site, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def run(site: Path, tag: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "release", "--config", str(site / "release.toml"), "--json", "publish", "--version", tag],
        env=env(site), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    write_config(tmp_path, wait=1)
    init_repository(load_config(tmp_path / "release.toml", environ={}), None)
    make_bundle(tmp_path / "dist", "v1.0.0")
    return tmp_path


def kill_at(site: Path, tag: str, boundary: str) -> None:
    marker = site / f"reached-{boundary}"
    proc = start(
        site, tag, DIRAC_RELEASE_FAILPOINT=boundary, DIRAC_RELEASE_FAILPOINT_FILE=str(marker)
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), (
            f"never reached {boundary}: {proc.poll()} {proc.stderr.read() if proc.stderr else ''}"
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_killed_publisher_never_shows_a_partial_version(site: Path, boundary: str) -> None:
    kill_at(site, "v1.0.0", boundary)
    root = site / "stratum" / "vodemo.egi.eu" / "vodemo"
    version = root / "v1.0.0"
    if boundary == "published":
        # Killed after publishing, before its last check and the ledger: complete and tagged.
        assert sorted(p.name for p in version.iterdir()) == [
            ".cvmfscatalog",
            "Linux-aarch64",
            "Linux-x86_64",
        ]
    else:
        assert not version.exists(), "a partial version is visible"
        status = repository_status(load_config(site / "release.toml", environ={}), None)
        assert status["tags"] == []
        assert (
            len(status["transactions"]) == 1 and "its process is gone" in status["transactions"][0]
        )
    rerun = run(site, "v1.0.0")
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert result["status"] in ("published", "already published")
    if boundary != "published":
        assert any("discarded the unpublished staging" in note for note in result["notes"]), result[
            "notes"
        ]
    assert sorted(p.name for p in version.iterdir()) == [
        ".cvmfscatalog",
        "Linux-aarch64",
        "Linux-x86_64",
    ]
    status = repository_status(load_config(site / "release.toml", environ={}), None)
    assert [t["name"] for t in status["tags"]] == ["vodemo-v1.0.0"] and status["transactions"] == []
    ledger = json.loads((site / "state/vodemo/v1.0.0/ledger.json").read_text())
    assert [r["stage"] for r in ledger["records"]] == ["publish"]


def test_killed_while_committing_is_rolled_forward(site: Path) -> None:
    """A journal written but not applied (crash inside the publish step) is finished, not lost."""
    from cvmfs.backends.base import Owner
    from cvmfs.backends.directory import DirectoryBackend
    from cvmfs.bundles import load_bundles

    backend = DirectoryBackend("vodemo.egi.eu", site / "stratum")
    bundles = load_bundles(site / "dist", "vodemo", "v1.0.0", ["x86_64", "aarch64"])
    txn = backend.open("vodemo", Owner.me("vodemo-v1.0.0"), 1)
    for arch, tree in bundles.trees.items():
        txn.sync_tree(f"vodemo/v1.0.0/Linux-{arch}", tree, bundles.manifests[arch])
    txn.mark_catalog("vodemo/v1.0.0")
    journal = {"moves": txn._moves(), "links": [["vodemo", "latest", "v1.0.0"]], "removes": [], "revision": 1,
               "timestamp": 0, "tag": {"name": "vodemo-v1.0.0", "description": "x", "digest": bundles.digest}}  # fmt: skip
    (txn.dir / "journal.json").write_text(json.dumps(journal))
    # Pretend the owner died: rewrite the lock with a pid that does not exist.
    lock = json.loads(backend.lock_path.read_text())
    lock["owner"]["pid"], lock["pid_start"] = 2**22 + 7, "0"
    backend.lock_path.write_text(json.dumps(lock))
    rerun = run(site, "v1.0.0")
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert result["status"] == "already published"
    assert (
        any("finished the publication" in note for note in result["notes"])
        or not backend.lock_path.exists()
    )
    assert (site / "stratum/vodemo.egi.eu/vodemo/v1.0.0/Linux-aarch64/bin/vodemo-info").exists()


def test_stale_transaction_of_another_publication_is_reported_not_touched(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.1")
    kill_at(site, "v1.0.1", "synced")
    blocked = run(site, "v1.0.0")
    assert blocked.returncode == 3
    assert (
        "its process is gone" in blocked.stderr
        and "dirac-release cvmfs abort --repository vodemo.egi.eu --stale" in blocked.stderr
    )
    assert not (site / "stratum/vodemo.egi.eu/vodemo/v1.0.0").exists()
    cleared = subprocess.run(
        [sys.executable, "-m", "release", "--config", str(site / "release.toml"), "cvmfs", "abort", "--stale"],
        env=env(site), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr
    assert run(site, "v1.0.0").returncode == 0


def test_two_publishers_at_once_never_interleave(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.1")
    write_config(site, wait=60)
    marker = site / "first-holds-the-lock"
    first = start(site, "v1.0.0", DIRAC_RELEASE_FAILPOINT="synced", DIRAC_RELEASE_FAILPOINT_FILE=str(marker),
                  DIRAC_RELEASE_FAILPOINT_PAUSE="1.5")  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = start(site, "v1.0.1")  # starts while the first is mid-transaction
    outs = [p.communicate(timeout=120) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert codes == [0, 0], outs
    notes = [json.loads(out)["notes"] for out, _err in outs]
    assert any("waited for another publisher" in n for ns in notes for n in ns)
    root = site / "stratum" / "vodemo.egi.eu" / "vodemo"
    for tag in ("v1.0.0", "v1.0.1"):
        assert sorted(p.name for p in (root / tag).iterdir()) == [
            ".cvmfscatalog",
            "Linux-aarch64",
            "Linux-x86_64",
        ]
        assert (
            json.loads((root / tag / "Linux-x86_64/.dirac-release/manifest.json").read_text())[
                "tag"
            ]
            == tag
        )
    status = repository_status(load_config(site / "release.toml", environ={}), None)
    assert sorted(t["revision"] for t in status["tags"]) == [1, 2]


def test_busy_repository_fails_with_exit_3_after_a_bounded_wait(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.1")
    marker = site / "reached"
    holder = start(
        site, "v1.0.1", DIRAC_RELEASE_FAILPOINT="synced", DIRAC_RELEASE_FAILPOINT_FILE=str(marker)
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        blocked = run(site, "v1.0.0")
        assert time.monotonic() - started < 30
        assert blocked.returncode == 3, blocked.stderr
        assert "is busy" in blocked.stderr and "publishing vodemo-v1.0.1" in blocked.stderr
        assert not (site / "stratum/vodemo.egi.eu/vodemo/v1.0.0").exists()
    finally:
        holder.kill()
        holder.communicate(timeout=30)
