"""Release facts read from real (temporary) git repositories built with GitPython.

History of the main fixture (oldest first; ``T0`` = 2024-01-01T00:00:00Z)::

    c1  v7r3p38 (legacy, lightweight)
    c2  v8.0.0 (annotated)                    --- s1 v8.0.99 (side branch, unreachable from main)
    c3  v8.0.1rc1 (lightweight) + v8.0.1 (annotated), same commit; also 8.0.1 (no v)
    c4  v8.0.2 (lightweight) + v9.0.0.dev1 + latest (not release tags)
    c5  (untagged HEAD of main)

Each commit's committer date is ``T0 + n days`` and its author date an hour earlier, so a test
that confuses the two fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import git
import pytest

from release.errors import EXIT_BAD_INPUT, BadInput
from release.gitinfo import (
    TagInfo,
    is_dirty,
    latest_tag,
    open_repo,
    read_tag,
    release_tags,
)
from release.version import parse_tag

T0 = 1704067200  # 2024-01-01T00:00:00Z
DAY = 86400


def commit_file(repo: git.Repo, name: str, content: str, when: int) -> git.Commit:
    """Commit one file with pinned dates: committer at ``when``, author an hour before."""
    path = Path(repo.working_tree_dir or ".") / name
    path.write_text(content)
    repo.index.add([name])
    return repo.index.commit(
        f"change {name}",
        author_date=f"{when - 3600} +0000",
        commit_date=f"{when} +0200",
    )


def new_repo(root: Path) -> git.Repo:
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Release Tester")
        config.set_value("user", "email", "tester@example.org")
        config.set_value("tag", "gpgSign", "false")
        config.set_value("commit", "gpgSign", "false")
    return repo


@dataclass(frozen=True)
class History:
    path: Path
    repo: git.Repo
    commits: dict[str, git.Commit]


@pytest.fixture
def history(tmp_path: Path) -> History:
    path = tmp_path / "DIRAC"
    repo = new_repo(path)
    c = {}
    c["c1"] = commit_file(repo, "README", "one\n", T0 + 1 * DAY)
    repo.create_tag("v7r3p38", ref=c["c1"])
    c["c2"] = commit_file(repo, "README", "two\n", T0 + 2 * DAY)
    repo.create_tag("v8.0.0", ref=c["c2"], message="DIRAC v8.0.0")

    main = repo.active_branch
    side = repo.create_head("side", c["c2"])
    side.checkout()
    c["s1"] = commit_file(repo, "SIDE", "side\n", T0 + 10 * DAY)
    repo.create_tag("v8.0.99", ref=c["s1"], message="never merged")
    main.checkout()

    c["c3"] = commit_file(repo, "README", "three\n", T0 + 3 * DAY)
    repo.create_tag("v8.0.1rc1", ref=c["c3"])
    repo.create_tag("v8.0.1", ref=c["c3"], message="DIRAC v8.0.1")
    repo.create_tag("8.0.1", ref=c["c3"])
    c["c4"] = commit_file(repo, "README", "four\n", T0 + 4 * DAY)
    repo.create_tag("v8.0.2", ref=c["c4"])
    repo.create_tag("v9.0.0.dev1", ref=c["c4"])
    repo.create_tag("latest", ref=c["c4"])
    c["c5"] = commit_file(repo, "README", "five\n", T0 + 5 * DAY)
    return History(path=path, repo=repo, commits=c)


# --- read_tag --------------------------------------------------------------------------------


def test_annotated_tag_resolves_to_its_commit_not_the_tag_object(history: History) -> None:
    info = read_tag(history.path, "v8.0.1")
    tag_object = history.repo.tags["v8.0.1"].tag
    assert tag_object is not None  # it really is annotated
    assert info.commit == history.commits["c3"].hexsha
    assert info.commit != tag_object.hexsha
    assert info.tree == history.commits["c3"].tree.hexsha
    assert info.version == parse_tag("v8.0.1")


def test_lightweight_tag_resolves(history: History) -> None:
    info = read_tag(history.path, "v8.0.2")
    assert history.repo.tags["v8.0.2"].tag is None  # it really is lightweight
    assert info.commit == history.commits["c4"].hexsha
    assert len(info.commit) == 40


def test_commit_time_is_the_committer_time_of_the_tagged_commit(history: History) -> None:
    # Annotated tags are created "now"; the commit was made on 2024-01-04 (committer clock).
    assert read_tag(history.path, "v8.0.1").commit_time == T0 + 3 * DAY
    assert read_tag(history.path, "v8.0.2").commit_time == T0 + 4 * DAY
    assert read_tag(history.path, "v8.0.99").commit_time == T0 + 10 * DAY


def test_previous_tag_skips_legacy_tags(history: History) -> None:
    # Only the legacy v7r3p38 lies behind v8.0.0.
    assert read_tag(history.path, "v8.0.0").previous_tag is None


def test_previous_tag_ignores_unreachable_side_branch(history: History) -> None:
    # v8.0.99 has a higher version but is not in v8.0.1's history.
    assert read_tag(history.path, "v8.0.1").previous_tag == "v8.0.0"


def test_previous_tag_excludes_tags_on_the_same_commit(history: History) -> None:
    # v8.0.1 is higher and reachable, but names the same sources as v8.0.1rc1.
    assert read_tag(history.path, "v8.0.1rc1").previous_tag == "v8.0.0"
    # From v8.0.2, both tags on c3 are candidates; the higher version wins.
    assert read_tag(history.path, "v8.0.2").previous_tag == "v8.0.1"


def test_previous_tag_on_side_branch(history: History) -> None:
    assert read_tag(history.path, "v8.0.99").previous_tag == "v8.0.0"


def test_as_dict_is_json_ready(history: History) -> None:
    import json

    data = json.loads(json.dumps(read_tag(history.path, "v8.0.1rc1").as_dict()))
    assert data == {
        "tag": "v8.0.1rc1",
        "version": "8.0.1rc1",
        "series": "8.0",
        "prerelease": True,
        "channels": ["certification"],
        "commit": history.commits["c3"].hexsha,
        "commit_time": T0 + 3 * DAY,
        "previous_tag": "v8.0.0",
        "tree": history.commits["c3"].tree.hexsha,
    }


def test_missing_tag_is_bad_input_with_nearest_tags(history: History) -> None:
    with pytest.raises(BadInput) as info:
        read_tag(history.path, "v8.0.3")
    error = info.value
    assert error.exit_code == EXIT_BAD_INPUT
    assert "v8.0.3" in error.message
    assert "does not exist" in error.message
    assert error.fix is not None
    assert "v8.0.2" in error.fix
    assert "v7r3p38" not in error.fix
    assert "v9.0.0.dev1" not in error.fix


def test_missing_tag_lists_at_most_five_nearest(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "many")
    for n in range(1, 13):
        commit = commit_file(repo, "f", f"{n}\n", T0 + n * DAY)
        repo.create_tag(f"v1.0.{n * 10}", ref=commit)
    with pytest.raises(BadInput) as info:
        read_tag(tmp_path / "many", "v1.0.55")
    assert info.value.fix is not None
    listed = [w.strip(".,") for w in info.value.fix.split() if w.startswith("v1.0.")]
    assert listed == ["v1.0.30", "v1.0.40", "v1.0.50", "v1.0.60", "v1.0.70"]


def test_missing_tag_in_tagless_repo_suggests_fetching_tags(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "bare-history")
    commit_file(repo, "f", "x\n", T0)
    with pytest.raises(BadInput) as info:
        read_tag(tmp_path / "bare-history", "v1.0.0")
    assert info.value.fix is not None
    assert "git fetch --tags" in info.value.fix


@pytest.mark.parametrize("tag", ["v7r3p38", "8.0.1", "v9.0.0.dev1", "latest"])
def test_existing_but_invalid_tag_is_refused_by_policy(history: History, tag: str) -> None:
    assert tag in [t.name for t in history.repo.tags]
    with pytest.raises(BadInput) as info:
        read_tag(history.path, tag)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "does not exist" not in info.value.message


# --- release_tags / latest_tag ---------------------------------------------------------------


def test_release_tags_sorted_by_version_skipping_invalid(history: History) -> None:
    tags = release_tags(history.path)
    assert [name for _version, name in tags] == [
        "v8.0.0",
        "v8.0.1rc1",
        "v8.0.1",
        "v8.0.2",
        "v8.0.99",
    ]
    assert all(version.tag == name for version, name in tags)


def test_latest_tag_from_head_ignores_side_branch_and_invalid_tags(history: History) -> None:
    info = latest_tag(history.path)
    assert isinstance(info, TagInfo)
    assert info.tag == "v8.0.2"
    assert info.commit == history.commits["c4"].hexsha
    assert info.previous_tag == "v8.0.1"
    assert info.commit_time == T0 + 4 * DAY


def test_latest_tag_of_named_branch(history: History) -> None:
    info = latest_tag(history.path, "side")
    assert info is not None
    assert info.tag == "v8.0.99"
    assert info.previous_tag == "v8.0.0"
    main_info = latest_tag(history.path, "main")
    assert main_info is not None
    assert main_info.tag == "v8.0.2"


def test_latest_and_previous_compare_versions_not_names(tmp_path: Path) -> None:
    # git lists tags by name, where "v1.0.9" sorts after both "v1.0.10" and "v1.0.11rc1".
    repo = new_repo(tmp_path / "order")
    for n, tag in enumerate(["v1.0.9", "v1.0.10", "v1.0.11rc1"], start=1):
        repo.create_tag(tag, ref=commit_file(repo, "f", f"{n}\n", T0 + n * DAY))
    info = latest_tag(tmp_path / "order")
    assert info is not None
    assert info.tag == "v1.0.11rc1"
    assert info.previous_tag == "v1.0.10"
    assert read_tag(tmp_path / "order", "v1.0.10").previous_tag == "v1.0.9"


def test_latest_tag_is_none_when_only_legacy_tags_are_reachable(history: History) -> None:
    branch = history.repo.create_head("old", history.commits["c1"])
    assert latest_tag(history.path, branch.name) is None


def test_latest_tag_of_unknown_branch_is_bad_input(history: History) -> None:
    with pytest.raises(BadInput) as info:
        latest_tag(history.path, "rel-v9r9")
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "rel-v9r9" in info.value.message


def test_latest_tag_refuses_option_like_branch(history: History) -> None:
    with pytest.raises(BadInput):
        latest_tag(history.path, "--all")


def test_latest_tag_in_repo_without_commits(tmp_path: Path) -> None:
    new_repo(tmp_path / "empty")
    with pytest.raises(BadInput, match="HEAD"):
        latest_tag(tmp_path / "empty")


# --- open_repo -------------------------------------------------------------------------------


def test_open_repo_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist") as info:
        open_repo(tmp_path / "nowhere")
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert info.value.where == str(tmp_path / "nowhere")


def test_open_repo_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not a git repository") as info:
        open_repo(tmp_path)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert info.value.fix is not None


def test_open_repo_does_not_climb_to_an_enclosing_repository(history: History) -> None:
    sub = history.path / "sub"
    sub.mkdir()
    with pytest.raises(BadInput, match="not a git repository"):
        read_tag(sub, "v8.0.1")


def test_open_repo_accepts_str_and_path(history: History) -> None:
    assert Path(str(open_repo(str(history.path)).working_tree_dir)) == history.path
    assert open_repo(history.path).head.commit == history.commits["c5"]


# --- is_dirty --------------------------------------------------------------------------------


def test_fresh_checkout_is_clean(history: History) -> None:
    assert is_dirty(history.path) is False


def test_modified_tracked_file_is_dirty(history: History) -> None:
    (history.path / "README").write_text("edited\n")
    assert is_dirty(history.path) is True


def test_staged_change_is_dirty(history: History) -> None:
    (history.path / "README").write_text("staged\n")
    history.repo.index.add(["README"])
    assert is_dirty(history.path) is True


def test_untracked_file_is_dirty(history: History) -> None:
    (history.path / "stray.py").write_text("print('hi')\n")
    assert is_dirty(history.path) is True


def test_ignored_file_is_not_dirty(history: History) -> None:
    commit_file(history.repo, ".gitignore", "*.log\n", T0 + 6 * DAY)
    assert is_dirty(history.path) is False
    (history.path / "build.log").write_text("noise\n")
    assert is_dirty(history.path) is False
    (history.path / "build.txt").write_text("not ignored\n")
    assert is_dirty(history.path) is True


def test_is_dirty_on_non_repository(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        is_dirty(tmp_path)


def test_latest_tag_of_a_maintenance_branch_stays_in_its_series(tmp_path: Path) -> None:
    """rel-v8r0's history may hold a 9.0 pre-release (merged); its latest release is still 8.0.x."""
    repo = new_repo(tmp_path / "maint")
    repo.create_tag("v8.0.44", ref=commit_file(repo, "f", "1\n", T0 + DAY))
    repo.create_tag("v9.0.0a28", ref=commit_file(repo, "f", "2\n", T0 + 2 * DAY))
    repo.git.branch("rel-v8r0")
    info = latest_tag(tmp_path / "maint", "rel-v8r0")
    assert info is not None and info.tag == "v8.0.44"
    assert latest_tag(tmp_path / "maint", "main") is not None
    assert latest_tag(tmp_path / "maint", "main").tag == "v9.0.0a28"  # type: ignore[union-attr]
