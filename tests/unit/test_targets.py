"""The target lookup: environment -> product -> repository -> backend, and the CVMFS tag name,
answered in one place for every stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.config import load_config
from release.errors import BadInput
from release.publish import init_repository, publish_release
from release.targets import for_environment, for_product
from tests.publishing import make_bundle, write_config

ENV = """
[environments.certification]
hosts = { cctbdirac01 = "10.77.0.11" }
"""


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    path = write_config(tmp_path, extra=ENV)
    text = path.read_text().replace(
        'prefix = "vodemo"', 'prefix = "vodemo"\ntag_format = "{product}-{version}"'
    )
    path.write_text(text)
    init_repository(load_config(path, environ={}), None)
    make_bundle(tmp_path / "dist", "v1.0.0a3")
    return tmp_path


def test_an_environment_leads_to_its_product_repository_and_backend(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    target = for_environment(config, "certification")
    assert (target.product_name, target.repo_name, target.env_name) == (
        "vodemo", "vodemo.egi.eu", "certification")  # fmt: skip
    assert target.layout.platform_dir("v1.0.0a3", "x86_64") == "vodemo/v1.0.0a3/Linux-x86_64"
    assert target.backend().status().exists
    assert for_product(config).repo_name == target.repo_name
    with pytest.raises(BadInput):
        for_environment(config, "nowhere")


def test_the_tag_name_is_the_one_the_publisher_wrote(site: Path) -> None:
    config = load_config(site / "release.toml", environ={})
    publication = publish_release(config, version="v1.0.0a3")
    target = for_environment(config, "certification")
    assert target.tag_name("v1.0.0a3") == "vodemo-1.0.0a3" == publication["tag"]
    assert target.tag_name("v1.0.0a3") in {tag.name for tag in target.backend().tags()}
