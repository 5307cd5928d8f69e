"""The command line: exit codes, clear errors without tracebacks, and JSON for machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from release.cli import main


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    return subprocess.run(
        [sys.executable, "-m", "release", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


@pytest.mark.parametrize(
    ("tag", "words"),
    [
        ("v7r3p38", "legacy"),
        ("8.0.44", "v8.0.44"),
        ("v9.0.0.dev3", "dev"),
        ("v9.0.0+local", "local"),
        ("vfoo", "PEP 440"),
    ],
)
def test_bad_tags_exit_2_with_a_message_and_no_traceback(tag: str, words: str) -> None:
    proc = run("version", "--tag", tag)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr


def test_good_tag_json() -> None:
    proc = run("version", "--tag", "v9.0.0a29", "--branch", "integration", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["version"] == "9.0.0a29"
    assert data["channels"] == ["certification"]
    assert data["prerelease"] is True


def test_branch_rule_violation_exits_2() -> None:
    proc = run("version", "--tag", "v8.0.44", "--branch", "integration")
    assert proc.returncode == 2
    assert "integration" in proc.stderr


def test_json_errors_are_machine_readable() -> None:
    proc = run("--json", "version", "--tag", "v7r3p38")
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert data["exit_code"] == 2 and data["error"] == "BadInput"


def test_missing_config_exits_2(tmp_path: Path) -> None:
    proc = run("build", "--version", "v1.0.0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "release.toml: configuration file not found" in proc.stderr


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "release.toml").write_text('[products.x]\nsource = { git = "r" }\npython = "2.7"\n')
    proc = run("config", cwd=tmp_path)
    assert proc.returncode == 2
    assert "products.x.python" in proc.stderr and 'python = "3.11"' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_options_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text('[products.x]\nsource = { index = "x" }\n')
    proc = run("config", "--config", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["products"]["x"]["source"] == {"index": "x"}


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from release.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('git', 'pydantic', 'rich', 'packaging') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_version_reads_a_real_repository(tmp_path: Path) -> None:
    import git

    from release.demo import fixture as demo

    commit = demo.prepare_repository(tmp_path / "repo")
    proc = run("version", "--repo", str(tmp_path / "repo"), "--tag", demo.DEMO_TAG, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["commit"] == commit
    assert data["commit_time"] == int(demo.DEMO_DATE.timestamp())  # SOURCE_DATE_EPOCH
    assert data["previous_tag"] is None
    # After a final release the next one (v1.0.1) belongs to the maintenance branch: the tool
    # never guesses a new series or phase for integration.
    refused = run("version", "--repo", str(tmp_path / "repo"), "--next", "--branch", "integration")
    assert refused.returncode == 2 and "rel-v1r0" in refused.stderr
    git.Repo(tmp_path / "repo").create_head("rel-v1r0")
    nxt = run(
        "version", "--repo", str(tmp_path / "repo"), "--next", "--branch", "rel-v1r0", "--json"
    )
    assert nxt.returncode == 0, nxt.stderr
    assert json.loads(nxt.stdout)["tag"] == "v1.0.1"


def test_version_of_a_missing_tag_lists_existing_ones(tmp_path: Path) -> None:
    from release.demo import fixture as demo

    demo.prepare_repository(tmp_path / "repo")
    proc = run("version", "--repo", str(tmp_path / "repo"), "--tag", "v1.0.1")
    assert proc.returncode == 2
    assert "Nearest existing release tags: v1.0.0." in proc.stderr
    not_repo = run("version", "--repo", str(tmp_path), "--tag", "v1.0.0")
    assert not_repo.returncode == 2 and "not a git repository" in not_repo.stderr


def test_sigterm_stops_like_ctrl_c(tmp_path: Path, isolated_env: Path) -> None:
    """A publisher waiting for the repository lock is terminated: it stops in order (exit 143,
    says so) and the transaction another process holds is untouched."""
    import signal
    import time

    from cvmfs.backends.base import Owner
    from cvmfs.backends.directory import DirectoryBackend
    from release.config import load_config
    from release.publish import init_repository
    from tests.publishing import make_bundle, write_config

    path = write_config(tmp_path, wait=60)
    init_repository(load_config(path, environ={}), None)
    make_bundle(tmp_path / "dist", "v1.0.0")
    held = DirectoryBackend("vodemo.egi.eu", tmp_path / "stratum").open(
        "vodemo", Owner.me("test"), 1
    )
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "release", "--config", str(path), "publish", "--version", "v1.0.0"],
            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        time.sleep(3)  # it is waiting for the lock by now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert "terminated: nothing was moved into place" in err and "Traceback" not in err
        assert not (tmp_path / "stratum" / "vodemo.egi.eu" / "vodemo" / "v1.0.0").exists()
    finally:
        held.abort()
