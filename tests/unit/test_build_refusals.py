"""Bad input to the build is refused before any work, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.build import build_release
from release.config import load_config
from release.demo import fixture as demo
from release.errors import BadInput


@pytest.fixture
def demo_config(tmp_path: Path, isolated_env: Path) -> Path:
    """The demo configuration next to a real tagged repository (no index access needed)."""
    demo.prepare_repository(tmp_path / demo.REPO_NAME)
    path = tmp_path / "release.toml"
    path.write_text(demo.demo_config_text())
    return path


def leftovers(root: Path) -> list[str]:
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name not in {demo.REPO_NAME, "release.toml", "xdg-cache"}
    )


def test_dirty_work_tree_is_refused(demo_config: Path, tmp_path: Path) -> None:
    repo = tmp_path / demo.REPO_NAME
    (repo / "README.md").write_text("local edit\n")
    with pytest.raises(BadInput) as caught:
        build_release(load_config(demo_config, environ={}), version="v1.0.0")
    assert "uncommitted or untracked changes" in caught.value.message
    assert caught.value.fix is not None and "--allow-dirty" in caught.value.fix
    assert leftovers(tmp_path) == []


def test_untracked_file_counts_as_dirty(demo_config: Path, tmp_path: Path) -> None:
    (tmp_path / demo.REPO_NAME / "notes.txt").write_text("x")
    with pytest.raises(BadInput, match="uncommitted or untracked"):
        build_release(load_config(demo_config, environ={}), version="v1.0.0")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"version": "v7r3p38"}, "legacy"),
        ({"version": "v1.0.0a2"}, "v1.0.0a2"),  # no such tag in the repository
        ({"version": "v1.0.0", "platform": "ppc64le"}, "unknown platform"),
        ({"version": "v1.0.0", "product_name": "DIRAC"}, "unknown product"),
        ({"version": "v1.0.0", "out": Path("/proc/dirac-release-out")}, "cannot write"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    demo_config: Path, tmp_path: Path, kwargs: dict[str, object], words: str
) -> None:
    with pytest.raises(BadInput) as caught:
        build_release(load_config(demo_config, environ={}), **kwargs)  # type: ignore[arg-type]
    assert caught.value.exit_code == 2
    assert words in caught.value.render()
    assert leftovers(tmp_path) == []


def test_output_under_a_file_is_refused(demo_config: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(BadInput, match="is not a folder"):
        build_release(load_config(demo_config, environ={}), version="v1.0.0", out=blocker / "out")


def test_demo_repository_is_reproducible(tmp_path: Path) -> None:
    first = demo.prepare_repository(tmp_path / "a")
    second = demo.prepare_repository(tmp_path / "b")
    assert first == second  # fixed dates and identity: the same commit every time
    assert demo.prepare_repository(tmp_path / "a") == first  # reused, not recreated
    (tmp_path / "a" / "README.md").write_text("changed")
    assert demo.prepare_repository(tmp_path / "a") == first  # a dirty copy is recreated
    assert (tmp_path / "a" / "README.md").read_text() != "changed"
