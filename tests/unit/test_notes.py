"""Release notes: the block parser, ancestry on a real git history, backports, the GitHub side.

The history is made here with git as DIRAC's is: an `integration` branch, a release branch
`rel-v1r0`, pull requests merged by merge commits and by squash, a fix swept from the release
branch into integration by cherry-pick, and a merge-up of the release branch. PyGithub reads
descriptions from tests/github_fake.py, a local server that answers as GitHub's REST API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from release.errors import BadInput, InfrastructureError
from release.notes import gather
from release.notes.ancestry import merged_pulls
from release.notes.blocks import parse_block
from release.notes.compose import Pull, as_dirac, as_markdown, compose
from tests.github_fake import FakeGitHub

TOKEN = "ghp_test-token-never-printed"  # noqa: S105 (a test value)


def notes_body(*lines: str) -> str:
    return "Some description.\r\n\r\nBEGINRELEASENOTES\r\n" + "\r\n".join(lines) + (
        "\r\nENDRELEASENOTES\r\n")  # fmt: skip


def test_a_block_is_parsed_with_systems_kinds_and_wrapped_lines() -> None:
    block = parse_block(notes_body("*WMS", "FIX: SandboxStore not able to", "  read big files",
                                   "NEW: a thing", "", "*Core", "BUGFIX: old spelling",
                                   "CHANGE: another"))  # fmt: skip
    assert block.problems == []
    assert [(e.system, e.kind, e.text) for e in block.entries] == [
        ("WorkloadManagement", "FIX", "SandboxStore not able to read big files"),
        ("WorkloadManagement", "NEW", "a thing"),
        ("Core", "FIX", "old spelling"),
        ("Core", "CHANGE", "another"),
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("no notes at all", "no BEGINRELEASENOTES ... ENDRELEASENOTES block"),
        ("BEGINRELEASENOTES\n*Core\nFIX: x\n", "line 1: BEGINRELEASENOTES has no ENDRELEASENOTES"),
        ("BEGINRELEASENOTES\nFIX: x\nENDRELEASENOTES", "line 2: FIX entry before any *System"),
        ("BEGINRELEASENOTES\n*Core\nFIXED: x\nENDRELEASENOTES",
         "line 3: FIXED: is not an entry kind (use NEW, CHANGE or FIX)"),
        ("BEGINRELEASENOTES\n*Core\nFIX:\nENDRELEASENOTES", "line 3: FIX: says nothing"),
        ("BEGINRELEASENOTES\n\nENDRELEASENOTES", "line 1: the block holds no entry"),
        ("BEGINRELEASENOTES\n*Core\nsome words\nENDRELEASENOTES",
         "line 3: 'some words' is neither a *System line nor a NEW/CHANGE/FIX entry"),
    ],
)  # fmt: skip
def test_a_bad_block_names_its_line(body: str, problem: str) -> None:
    assert problem in "; ".join(parse_block(body).problems)


class History:
    """A git repository made with the git command line, as a maintainer would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "integration")
        self.commit("start", "README")

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
        return subprocess.run(["git", "-C", str(self.path), *args], check=True, env=env,
                              capture_output=True, text=True, timeout=60).stdout.strip()  # fmt: skip

    def commit(self, message: str, name: str) -> str:
        (self.path / name).write_text(message + "\n")
        self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def merge_pr(self, number: int, into: str, name: str) -> str:
        """A feature branch from `into`, one commit, merged with GitHub's merge message."""
        self.git("checkout", "-q", "-b", f"pr{number}", into)
        self.commit(f"work of #{number}", name)
        self.git("checkout", "-q", into)
        self.git("merge", "-q", "--no-ff", f"pr{number}", "-m",
                 f"Merge pull request #{number} from user/pr{number}\n\ntitle {number}")  # fmt: skip
        return self.git("rev-parse", f"pr{number}")


@pytest.fixture
def history(tmp_path: Path) -> History:
    h = History(tmp_path / "repo")
    h.merge_pr(9, "integration", "nine")  # before the previous release: not in its notes
    h.git("tag", "v1.0.0a1")
    h.git("branch", "rel-v1r0")
    h.merge_pr(10, "integration", "ten")
    fix = h.merge_pr(11, "rel-v1r0", "eleven")  # a fix on the release branch
    # The sweep bot cherry-picks it into integration as #12.
    h.git("checkout", "-q", "-b", "sweep12", "integration")
    h.git("cherry-pick", "-x", fix)
    h.git("checkout", "-q", "integration")
    h.git("merge", "-q", "--no-ff", "sweep12", "-m", "Merge pull request #12 from bot/sweep12")
    h.commit("Add the squashed thing (#13)", "thirteen")  # a squash merge
    h.merge_pr(14, "rel-v1r0", "fourteen")  # merged on the release branch only
    h.git("checkout", "-q", "integration")
    h.git("tag", "v1.0.0a2")
    return h


def test_pull_requests_are_selected_by_ancestry(history: History) -> None:
    merged = merged_pulls(history.path, "v1.0.0a1", "v1.0.0a2")
    assert [m.number for m in merged] == [10, 12, 13]  # not 9 (older), 11 or 14 (elsewhere)
    # After a merge-up of the release branch, its pull requests are in integration too.
    history.git(
        "merge", "-q", "--no-ff", "rel-v1r0", "-m", "Merge branch rel-v1r0 into integration"
    )
    history.git("tag", "v1.0.0a3")
    both = merged_pulls(history.path, "v1.0.0a1", "v1.0.0a3")
    assert sorted(m.number for m in both) == [10, 11, 12, 13, 14]
    assert sorted(m.number for m in merged_pulls(history.path, "v1.0.0a2", "v1.0.0a3")) == [11, 14]
    with pytest.raises(BadInput, match=r"--from 'v0.9' is not a tag or commit of") as err:
        merged_pulls(history.path, "v0.9", "v1.0.0a3")
    assert "latest: v1.0.0a1, v1.0.0a2, v1.0.0a3" in str(err.value.fix)


def test_backports_are_reported_once() -> None:
    fix = notes_body("*DMS", "FIX: the fix")
    notes = compose("v1.0.0a3", [
        Pull(11, "Fix it", fix),
        Pull(12, "[sweep:integration] Fix it", "Sweep #11 `Fix it` to `integration`.\n\n" + fix),
        Pull(15, "Same words, other PR", notes_body("*DataManagement", "FIX:  The  fix")),
        Pull(16, "No notes", "just a description"),
        Pull(17, "[sweep:rel-v1r0] Other", notes_body("*Core", "NEW: kept: #18 is not here")
             .replace("Some description.", "Sweep #18 `Other`.")),
    ])  # fmt: skip
    assert [(e.text, n) for e, n in notes.entries] == [
        ("the fix", 11),
        ("kept: #18 is not here", 17),
    ]
    assert sorted(notes.dropped) == [
        "#12: a sweep of #11, which this release holds",
        "#15: FIX 'The  fix' repeats #11",
    ]
    assert notes.without_notes == [16]
    assert as_dirac(notes) == (
        "[v1.0.0a3]\n\n*Core\n\nNEW: (#17) kept: #18 is not here\n\n"
        "*DataManagement\n\nFIX: (#11) the fix\n"
    )
    assert "- **FIX** the fix ([#11](https://github.com/DIRACGrid/DIRAC/pull/11))" in as_markdown(
        notes, "DIRACGrid/DIRAC"
    )


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    with FakeGitHub() as fake:
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        yield fake


def test_every_page_is_read_and_only_as_far_as_needed(history: History, github: FakeGitHub) -> None:
    for number in range(1, 260):  # three pages of 100, newest first
        github.add_pull(number, f"PR {number}", None)
    github.add_pull(10, "Ten", notes_body("*Core", "NEW: ten"))
    github.add_pull(12, "[sweep:integration] Eleven", "Sweep #11\n" + notes_body("*Core", "FIX: e"))
    github.add_pull(13, "Thirteen", notes_body("*WMS", "CHANGE: thirteen"))
    notes = gather(history.path, "v1.0.0a1", "v1.0.0a2", "DIRACGrid/DIRAC")
    assert sorted((n, e.kind) for e, n in notes.entries) == [
        (10, "NEW"),
        (12, "FIX"),
        (13, "CHANGE"),
    ]
    assert len(github.pages_read()) == 3  # pages 1-3 hold #259..#10; nothing after #10
    assert all(auth for _path, _query, auth in github.requests)


def test_the_command_writes_notes_and_check_names_the_line(
    history: History, github: FakeGitHub, tmp_path: Path
) -> None:
    github.add_pull(10, "Ten", notes_body("*Core", "NEW: ten"))
    github.add_pull(12, "Sweep", None)
    github.add_pull(13, "Thirteen", "BEGINRELEASENOTES\n*Core\nFIXES: x\nENDRELEASENOTES")
    cli = [sys.executable, "-m", "release", "notes", "--repo", str(history.path),
           "--github", "DIRACGrid/DIRAC"]  # fmt: skip
    made = subprocess.run([*cli, "--from", "v1.0.0a1", "--to", "v1.0.0a2", "--output",
                           str(tmp_path / "release.notes")], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "release.notes").read_text() == "[v1.0.0a2]\n\n*Core\n\nNEW: (#10) ten\n"
    assert "no notes block: #12" in made.stderr
    assert "#13: line 3: FIXES: is not an entry kind" in made.stderr
    check = subprocess.run([*cli, "check", "--pr", "13"], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert check.returncode == 1
    assert (
        "pull request #13 of DIRACGrid/DIRAC: line 3: FIXES: is not an entry kind" in check.stderr
    )
    good = subprocess.run([*cli, "--json", "check", "--pr", "10"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert good.returncode == 0 and json.loads(good.stdout)["entries"] == 1
    for proc in (made, check, good):
        assert TOKEN not in proc.stdout + proc.stderr


def test_github_errors_are_clear_and_never_show_the_token(
    history: History, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    github.add_pull(10, "Ten", notes_body("*Core", "NEW: ten"))
    # A rate limit that resets within the bound is waited for once.
    github.rate_limited, github.rate_reset_in = 1, 1.0
    notes = gather(history.path, "v1.0.0a1", "v1.0.0a2", "DIRACGrid/DIRAC")
    assert [n for _e, n in notes.entries] == [10]
    assert "#13: GitHub has no pull request with this number" in notes.dropped
    # One that resets later is an error saying when.
    github.rate_limited, github.rate_reset_in = 5, 3600.0
    with pytest.raises(InfrastructureError, match=r"rate limit was reached .* it resets at"):
        gather(history.path, "v1.0.0a1", "v1.0.0a2", "DIRACGrid/DIRAC")
    github.rate_limited = 0
    bad = "ghp_a-wrong-secret-token"
    monkeypatch.setenv("GITHUB_TOKEN", bad)
    proc = subprocess.run(
        [sys.executable, "-m", "release", "notes", "--repo", str(history.path), "--github",
         "DIRACGrid/DIRAC", "--from", "v1.0.0a1", "--to", "v1.0.0a2"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "DIRAC_RELEASE_DEBUG": "1"},
    )  # fmt: skip
    assert proc.returncode == 2 and "GitHub refused the token" in proc.stderr
    assert bad not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "release", "notes", "--repo", str(history.path), "--github",
         "DIRACGrid/Nothing", "--from", "v1.0.0a1", "--to", "v1.0.0a2"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "GITHUB_TOKEN": TOKEN},
    )  # fmt: skip
    assert (
        missing.returncode == 2 and "GitHub has no repository DIRACGrid/Nothing" in missing.stderr
    )
