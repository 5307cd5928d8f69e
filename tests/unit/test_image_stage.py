"""The pipeline's image stage: each VO image of the product built and published for the tag;
its verify reads the publication, so a damaged image is named and never trusted.

Real `image build` and `image publish` on the synthetic Debian bases of tests/image_trees.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from release.config import load_config
from release.errors import CheckFailed
from release.image.stage import ImageStage
from release.pipeline.contract import Context, StageStatus
from release.version import parse_version_arg
from tests.image_trees import image_site

CONFIG = """\
[products.DIRAC]
source = { index = "DIRAC" }
repository = "dirac.egi.eu"

[products.Other]
source = { index = "Other" }
repository = "dirac.egi.eu"

[build]
compression_level = 1

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[images.dteam]
product = "DIRAC"
base = { debian = "bookworm" }
"""
REPO = "dirac.egi.eu"


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    image_site(tmp_path, isolated_env, monkeypatch, REPO)
    (tmp_path / "release.toml").write_text(CONFIG)
    return tmp_path


def ctx(site: Path, product: str = "DIRAC", tag: str = "v9.0.0") -> Context:
    config = load_config(site / "release.toml", environ={})
    return Context(config, product, parse_version_arg(tag), live=False)


def test_the_stage_builds_publishes_and_verifies_the_publication(site: Path) -> None:
    stage = ImageStage()
    assert stage.verify(ctx(site)) == "the image of dteam was never published"
    [plan] = stage.plan(ctx(site))
    assert plan.startswith("build the image of dteam for aarch64, x86_64 and publish it")
    assert plan.endswith(f"/cvmfs/{REPO}/dirac/containers/dteam/.multiarch/{{arch}}/dteam:v9.0.0")
    result = stage.run(ctx(site))
    assert result.status is StageStatus.DONE
    images = result.evidence["images"]["dteam"]
    assert images["status"] == "published" and sorted(images["digests"]) == ["aarch64", "x86_64"]
    assert f"dteam (written; x86_64 {images['digests']['x86_64'][7:19]}" in result.summary
    assert stage.verify(ctx(site)) is None
    # Another tag has its own image: not published yet.
    assert stage.verify(ctx(site, tag="v9.0.1")) == "the image of dteam was never published"


def test_a_damaged_publication_is_named_and_a_rerun_refuses_it(site: Path) -> None:
    stage = ImageStage()
    stage.run(ctx(site))
    tree = site / "stratum" / REPO / "dirac/containers/dteam/dteam:v9.0.0/aarch64"
    victim = tree / "usr/bin/env"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size and mode: only reading it tells
    victim.write_bytes(bytes(data))
    problem = stage.verify(ctx(site))
    assert problem is not None and "aarch64" in problem and "usr/bin/env" in problem
    # The pipeline reruns a stage that does not verify: the publisher, which looks at sizes
    # and modes, answers "already published"; the stage does not take that for an answer.
    with pytest.raises(CheckFailed, match=r"already published but .*usr/bin/env"):
        stage.run(ctx(site))
    # A change the publisher sees by itself is refused by it.
    victim.write_bytes(bytes(data) + b"more")
    with pytest.raises(CheckFailed, match=r"no longer matches its manifests: .*usr/bin/env"):
        stage.run(ctx(site))


def test_a_product_without_images_has_nothing_to_do(site: Path) -> None:
    stage = ImageStage()
    assert stage.plan(ctx(site, "Other")) == [
        "no VO images: release.toml has no [images.<vo>] for Other"]  # fmt: skip
    result = stage.run(ctx(site, "Other"))
    assert result.status is StageStatus.DONE
    assert result.summary == "no VO images configured for Other"
    assert stage.verify(ctx(site, "Other")) is None
    assert not (site / "stratum" / REPO / "dirac" / "containers").exists()
