"""Publishing to a real directory stratum: atomic, idempotent, verified, refused on bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from release.config import load_config
from release.errors import BadInput
from release.publish import collect_garbage, init_repository, publish_release, repository_status
from tests.publishing import du, make_bundle, write_config


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    write_config(tmp_path)
    init_repository(load_config(tmp_path / "release.toml", environ={}), None)
    return tmp_path


def publish(site: Path, tag: str, **kwargs: object) -> dict[str, object]:
    return publish_release(load_config(site / "release.toml", environ={}), version=tag, **kwargs)  # type: ignore[arg-type]


def visible(site: Path) -> Path:
    return site / "stratum" / "vodemo.egi.eu" / "vodemo"


def test_publish_makes_both_platforms_visible_at_once(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.0")
    result = publish(site, "v1.0.0")
    assert result["status"] == "published" and result["revision"] == 1
    assert result["tag"] == "vodemo-v1.0.0"
    assert result["paths"] == [
        "/cvmfs/vodemo.egi.eu/vodemo/v1.0.0/Linux-x86_64",
        "/cvmfs/vodemo.egi.eu/vodemo/v1.0.0/Linux-aarch64",
    ]
    root = visible(site)
    assert sorted(p.name for p in (root / "v1.0.0").iterdir()) == [
        ".cvmfscatalog",
        "Linux-aarch64",
        "Linux-x86_64",
    ]
    assert os.readlink(root / "latest") == "v1.0.0"
    assert not (root / "pro").exists()  # pro moves only by promotion
    assert (root / "v1.0.0/Linux-x86_64/lib/current.py").is_symlink()
    assert os.access(root / "v1.0.0/Linux-x86_64/bin/vodemo-info", os.X_OK)
    status = repository_status(load_config(site / "release.toml", environ={}), None)
    assert status["versions"] == ["v1.0.0"] and status["links"] == {"latest": "v1.0.0"}
    assert [t["name"] for t in status["tags"]] == ["vodemo-v1.0.0"]
    assert status["transactions"] == []
    ledger = json.loads((site / "state/vodemo/v1.0.0/ledger.json").read_text())
    assert ledger["records"][-1]["stage"] == "publish" and ledger["records"][-1]["revision"] == 1


def test_republish_is_a_no_op(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.0")
    publish(site, "v1.0.0")
    again = publish(site, "v1.0.0")
    assert again["status"] == "already published" and again["revision"] == 1
    status = repository_status(load_config(site / "release.toml", environ={}), None)
    assert status["revision"] == 1  # no empty revision


def test_same_tag_other_content_is_refused(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.0")
    publish(site, "v1.0.0")
    shutil.rmtree(site / "dist")
    make_bundle(site / "dist", "v1.0.0", files={"bin/x": b"#!/bin/sh\necho other\n"})
    with pytest.raises(BadInput, match=r"already published .* with other content"):
        publish(site, "v1.0.0")


def test_plan_changes_nothing(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.0")
    before = sorted(str(p) for p in (site / "stratum").rglob("*"))
    result = publish(site, "v1.0.0", plan=True)
    assert result["status"] == "planned"
    assert any("publish with tag vodemo-v1.0.0" in action for action in result["actions"])  # type: ignore[union-attr]
    assert sorted(str(p) for p in (site / "stratum").rglob("*")) == before


def test_shared_files_are_stored_once(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.0")
    publish(site, "v1.0.0")
    stored = du(site / "stratum")
    files = {f"lib/pkg/mod{i:03d}.py": f"# shared module {i}\n".encode() * 200 for i in range(40)}
    files["lib/pkg/__init__.py"] = b"VERSION = 2\n"
    make_bundle(site / "dist", "v1.0.1", files=files)
    publish(site, "v1.0.1")
    new_bytes = du(site / "stratum") - stored
    v101 = sum(len(v) for v in files.values()) * 2
    assert new_bytes < 0.1 * v101, (new_bytes, v101)
    assert os.readlink(visible(site) / "latest") == "v1.0.1"


def nothing_of(site: Path, tag: str) -> None:
    assert not (visible(site) / tag).exists()
    state = site / "stratum" / ".dirac-release" / "vodemo.egi.eu"
    assert not (state / "transaction.json").exists()
    assert list((state / "txn").iterdir()) == []


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("edit", "does not match its manifest"),
        ("tag", "holds vodemo v1.0.0"),
        ("abs-link", "outside the bundle"),
        ("dotdot", "unsafe path"),
        ("platform", "platform aarch64 is missing"),
        ("sums", "does not match SHA256SUMS"),
    ],
)
def test_bad_bundles_are_refused_and_nothing_is_published(
    site: Path, damage: str, words: str
) -> None:
    version_dir = make_bundle(site / "dist", "v1.0.0")
    tree = version_dir / "Linux-x86_64"
    tag = "v1.0.0"
    if damage == "edit":
        (tree / "lib/pkg/mod001.py").write_bytes(b"# tampered\n" * 400)
    elif damage == "tag":
        shutil.copytree(version_dir, site / "dist" / "v1.0.1")
        tag = "v1.0.1"
    elif damage in ("abs-link", "dotdot"):
        manifest = json.loads((tree / ".dirac-release/manifest.json").read_text())
        entry = (
            {"path": "lib/evil", "link": "/etc/passwd"}
            if damage == "abs-link"
            else {"path": "lib/../../x", "size": 1, "sha256": "0" * 64, "mode": "644"}
        )
        manifest["files"].append(entry)
        (tree / ".dirac-release/manifest.json").write_text(json.dumps(manifest))
        # SHA256SUMS follows the edit, as a careless re-hash would: the path check must still refuse.
        digest = hashlib.sha256((tree / ".dirac-release/manifest.json").read_bytes()).hexdigest()
        sums = (version_dir / "SHA256SUMS").read_text().splitlines()
        sums = [
            f"{digest}  Linux-x86_64/.dirac-release/manifest.json" if "x86_64" in s else s
            for s in sums
        ]
        (version_dir / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    elif damage == "platform":
        shutil.rmtree(version_dir / "Linux-aarch64")
    elif damage == "sums":
        (version_dir / "SHA256SUMS").write_text(
            "0" * 64 + "  Linux-x86_64/.dirac-release/manifest.json\n"
        )
    with pytest.raises(BadInput) as caught:
        publish(site, tag)
    assert caught.value.exit_code == 2
    assert words in caught.value.render()
    nothing_of(site, tag)


def test_unknown_repository_is_refused(site: Path) -> None:
    make_bundle(site / "dist", "v1.0.0")
    with pytest.raises(BadInput, match=r"unknown repository 'lhcb\.cern\.ch'"):
        publish(site, "v1.0.0", repository="lhcb.cern.ch")


def test_missing_bundles_say_how_to_build(site: Path) -> None:
    with pytest.raises(BadInput) as caught:
        publish(site, "v1.0.0")
    assert (
        caught.value.fix is not None and "dirac-release build --version v1.0.0" in caught.value.fix
    )


def test_retention_keeps_newest_per_series_and_linked(tmp_path: Path, isolated_env: Path) -> None:
    write_config(tmp_path, keep=2)
    config = load_config(tmp_path / "release.toml", environ={})
    init_repository(config, None)
    for tag in ("v1.0.0", "v1.0.1", "v1.0.2", "v1.0.3", "v2.0.0a1"):
        make_bundle(tmp_path / "dist", tag)
        publish_release(config, version=tag)
    root = tmp_path / "stratum" / "vodemo.egi.eu" / "vodemo"
    (root / "pro").symlink_to("v1.0.0")  # as promotion would have left it
    plan = collect_garbage(config, None, plan=True)
    assert plan["remove"] == ["v1.0.1"]
    assert "a link points to it (pro)" in plan["reasons"]["v1.0.0"]
    assert (root / "v1.0.1").exists()  # plan changed nothing
    done = collect_garbage(config, None, plan=False)
    assert done["status"] == "removed"
    assert sorted(p.name for p in root.iterdir()) == [
        "latest",
        "pro",
        "v1.0.0",
        "v1.0.2",
        "v1.0.3",
        "v2.0.0a1",
    ]
    assert collect_garbage(config, None, plan=False)["status"] == "nothing to remove"
