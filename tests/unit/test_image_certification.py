"""Certification of a release's VO images (release/image/certification.py): which published
tree is checked, with what bound at /cvmfs and which command; what fails, what cannot run here,
and that only an image whose checks passed is named as certified.

Images are built by the real `image build` from the synthetic Debian bases of
tests/image_trees.py and published by the real publisher; running a tree needs root and real
programs, so `check_tree` is replaced here by one that records what it was asked and answers
as told (the real run is tests/lab/test_image.py and the demo's certification in
tests/lab/test_demo_pipeline.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from release.config import ReleaseConfig, load_config
from release.image import check
from release.image.build import build_images
from release.image.certification import default_command, image_check_groups
from release.image.publish import publish_images
from tests.image_trees import image_site

CONFIG = """\
[products.DIRAC]
source = {{ index = "DIRAC" }}
repository = "dirac.egi.eu"
{product_extra}

[build]
compression_level = 1

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[images.dteam]
base = {{ debian = "bookworm" }}
{image_extra}

[environments.certification]
hosts = {{ cctbdirac01 = "" }}
{env_extra}
"""
REPO = "dirac.egi.eu"
TAG = "v9.0.0"


def _config(site: Path, *, product_extra: str = "", image_extra: str = "",
            env_extra: str = "") -> ReleaseConfig:  # fmt: skip
    (site / "release.toml").write_text(CONFIG.format(
        product_extra=product_extra, image_extra=image_extra, env_extra=env_extra))  # fmt: skip
    return load_config(site / "release.toml", environ={})


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return image_site(tmp_path, isolated_env, monkeypatch, REPO)


class Recorder:
    """check_tree's stand-in: records each call, passes unless told which arch fails."""

    def __init__(self, failing: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failing = failing

    def __call__(self, tree: Path, arch: str, **kwargs: Any) -> check.CheckResult:
        self.calls.append({"tree": tree, "arch": arch, **kwargs})
        result = check.CheckResult(tree=tree, arch=arch, how="natively")
        ok = arch != self.failing
        result.steps.append(check.CheckStep("uname -m", True, arch))
        result.steps.append(check.CheckStep(f"run {kwargs['command']}", ok,
                                            "ran" if ok else "exit 1: ImportError"))  # fmt: skip
        return result


def _publish(config: ReleaseConfig) -> dict[str, Any]:
    build_images(config, version=TAG)
    [published] = publish_images(config, version=TAG)
    return published


def _run(config: ReleaseConfig) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    certified: dict[str, dict[str, str]] = {}
    checks = {}
    for group in image_check_groups(config, "certification", TAG, certified):
        for found in group():
            checks[found.name] = found
    return checks, certified


def test_each_published_tree_runs_the_release_from_the_bound_cvmfs(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(site, image_extra='command = "dirac-version --json"')
    published = _publish(config)
    recorder = Recorder()
    monkeypatch.setattr(check, "check_tree", recorder)
    monkeypatch.setattr(check, "runner_problem", lambda arch: None)
    checks, certified = _run(config)
    assert {name: c.result for name, c in checks.items()} == {
        "image dteam aarch64": "passed", "image dteam x86_64": "passed"}  # fmt: skip
    # The digests of what was published, per architecture: the same as the build's.
    assert certified == {"dteam": published["digests"]}
    stratum = site / "stratum"
    by_arch = {call["arch"]: call for call in recorder.calls}
    for arch in ("x86_64", "aarch64"):
        call = by_arch[arch]
        # The published tree, not the build output; the repositories bound at /cvmfs.
        assert call["tree"] == stratum / REPO / "dirac/containers/dteam" / f"dteam:{TAG}" / arch
        assert call["cvmfs"] == stratum
        assert call["source"] == f"/cvmfs/{REPO}/dirac/{TAG}/Linux-{arch}/diracosrc"
        assert call["command"] == "dirac-version --json"
        assert call["os_id"] == "debian"
        assert call["env"]["PATH"].startswith("/")  # the image's own Env, from its layout
        assert "files verified" in checks[f"image dteam {arch}"].evidence


def test_a_failing_image_fails_and_is_not_certified(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(site)
    published = _publish(config)
    monkeypatch.setattr(check, "check_tree", Recorder(failing="aarch64"))
    monkeypatch.setattr(check, "runner_problem", lambda arch: None)
    checks, certified = _run(config)
    failed = checks["image dteam aarch64"]
    assert failed.result == "failed" and "ImportError" in failed.evidence
    assert checks["image dteam x86_64"].result == "passed"
    assert certified == {"dteam": {"x86_64": published["digests"]["x86_64"]}}


def test_an_image_not_published_fails_with_the_command_that_publishes_it(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(site)
    recorder = Recorder()
    monkeypatch.setattr(check, "check_tree", recorder)
    checks, certified = _run(config)
    for arch in ("x86_64", "aarch64"):
        found = checks[f"image dteam {arch}"]
        assert found.result == "failed"
        assert f"dirac-release image publish --vo dteam --version {TAG}" in found.evidence
    assert certified == {} and recorder.calls == []


def test_a_published_file_changed_afterwards_fails_before_anything_runs(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(site)
    _publish(config)
    tree = site / "stratum" / REPO / "dirac/containers/dteam" / f"dteam:{TAG}" / "x86_64"
    victim = tree / "usr/bin/env"  # its own bytes (others are shared with aarch64's tree)
    victim.chmod(0o755)
    victim.write_bytes(victim.read_bytes() + b"tampered")
    recorder = Recorder()
    monkeypatch.setattr(check, "check_tree", recorder)
    monkeypatch.setattr(check, "runner_problem", lambda arch: None)
    checks, certified = _run(config)
    found = checks["image dteam x86_64"]
    assert found.result == "failed" and "usr/bin/env" in found.evidence
    assert [call["arch"] for call in recorder.calls] == ["aarch64"]  # x86_64 never ran
    assert set(certified["dteam"]) == {"aarch64"}


def test_an_image_that_cannot_run_here_is_unreachable_not_passed(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(site)
    _publish(config)
    monkeypatch.setattr(check, "check_tree", Recorder())
    monkeypatch.setattr(
        check, "runner_problem",
        lambda arch: "qemu-user cannot run aarch64 here" if arch == "aarch64" else None,
    )  # fmt: skip
    checks, certified = _run(config)
    found = checks["image dteam aarch64"]
    assert found.result == "unreachable" and "qemu-user" in found.evidence
    assert set(certified["dteam"]) == {"x86_64"}


def test_images_false_skips_them_and_says_where(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(site, env_extra="certify = { images = false }")
    recorder = Recorder()
    monkeypatch.setattr(check, "check_tree", recorder)
    checks, certified = _run(config)
    [found] = checks.values()
    assert found.result == "skipped"
    assert found.evidence == "environments.certification.certify.images = false"
    assert certified == {} and recorder.calls == []


def test_the_command_defaults_to_the_products_smoke_test(site: Path) -> None:
    config = _config(site)
    assert default_command(config, "dteam", "DIRAC") == "python3.11 -c 'import sys'"
    config = _config(site, product_extra='smoke_imports = ["DIRAC", "gfal2"]')
    assert default_command(config, "dteam", "DIRAC") == "python3.11 -c 'import DIRAC'"
    config = _config(site, product_extra='smoke_commands = ["dirac-platform", "dirac-version"]')
    assert default_command(config, "dteam", "DIRAC") == "dirac-platform"
    config = _config(site, image_extra='command = "dirac-info"',
                     product_extra='smoke_commands = ["dirac-platform"]')  # fmt: skip
    assert default_command(config, "dteam", "DIRAC") == "dirac-info"


@pytest.mark.parametrize("command", ['""', '"dirac-version \'unclosed"'])
def test_a_bad_command_is_refused_on_load(site: Path, command: str) -> None:
    from release.errors import BadInput

    with pytest.raises(BadInput) as caught:
        _config(site, image_extra=f"command = {command}")
    assert "command" in caught.value.message


def test_the_report_says_where_each_published_image_was_certified(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from release.report import collect, markdown

    config = _config(site)
    published = _publish(config)
    monkeypatch.setattr(check, "check_tree", Recorder(failing="aarch64"))
    monkeypatch.setattr(check, "runner_problem", lambda arch: None)
    _checks, certified = _run(config)
    ledger = config.ledger("DIRAC", TAG)
    ledger.record("certify", {"environment": "certification", "passed": False, "checks": [],
                              "images": certified})  # fmt: skip
    rows = {i["arch"]: i for i in collect(config, "DIRAC", TAG)["images"]}
    # A certification that did not pass certifies nothing, not even the arch that ran.
    assert rows["x86_64"]["certified"] == rows["aarch64"]["certified"] == []
    ledger.record("certify", {"environment": "certification", "passed": True, "checks": [],
                              "images": certified})  # fmt: skip
    data = collect(config, "DIRAC", TAG)
    rows = {i["arch"]: i for i in data["images"]}
    assert rows["x86_64"]["certified"] == ["certification"]
    assert rows["aarch64"]["certified"] == []
    digest = published["digests"]["x86_64"][:19]
    assert f"| dteam | x86_64 | {digest} | {digest} | certification |" in markdown(data)
    assert "| aarch64 |" in markdown(data) and "| not certified |" in markdown(data)
