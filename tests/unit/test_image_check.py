"""The run check's pieces that need no root filesystem: arguments, the sourced environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.errors import BadInput
from release.image.check import _os_release, _parse_exports, check_tree, runner_problem


def test_source_and_command_go_together(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="both the file to source and the command"):
        check_tree(tmp_path, "x86_64", source="/cvmfs/x/diracosrc")


def test_dash_and_bash_exports_are_read() -> None:
    dash = "export HOME='/tmp'\nexport PATH='/cvmfs/r/bin:/usr/bin'\nexport X='it'\"'\"'s\nok'\n"
    assert _parse_exports(dash) == {
        "HOME": "/tmp",
        "PATH": "/cvmfs/r/bin:/usr/bin",
        "X": "it's\nok",
    }
    bash = 'declare -x A="1"\ndeclare -x B="two words"\n'
    assert _parse_exports(bash) == {"A": "1", "B": "two words"}


def test_os_release_values() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n# a comment\n'
    assert _os_release(text) == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian"}


def test_a_tree_without_mount_points_is_refused(tmp_path: Path) -> None:
    if runner_problem("x86_64"):
        pytest.skip(str(runner_problem("x86_64")))
    (tmp_path / "tree").mkdir()
    with pytest.raises(BadInput, match="no /cvmfs folder"):
        check_tree(tmp_path / "tree", "x86_64")
