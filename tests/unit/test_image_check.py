"""The run check's pieces that need no root filesystem: arguments, the sourced environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


class HostRunner:
    """TreeRunner's interface, running on this machine (no chroot): the shell snippets and the
    interpreter lookup are what is tested, with real shells."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> Any:
        import subprocess

        self.calls.append(argv)
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=env if env is not None else {"PATH": "/usr/bin:/bin"})  # fmt: skip


def _release(tmp_path: Path) -> Path:
    """A sourced file that puts a `#!/usr/bin/env python3` command on PATH and says how it
    found its own folder."""
    import shutil

    folder = tmp_path / "cvmfs" / "Linux-x86_64"
    (folder / "bin").mkdir(parents=True)
    python = shutil.which("python3")
    assert python is not None
    (folder / "pybin").mkdir()
    (folder / "pybin" / "python3").symlink_to(python)
    (folder / "diracosrc").write_text(
        'export PATH="' + str(folder / "bin") + ":" + str(folder / "pybin") + ':$PATH"\n'
        'export TOLD_PREFIX="${DIRAC_RELEASE_PREFIX:-${BASH_SOURCE:-unknown}}"\n'
    )
    tool = folder / "bin" / "vo-info"
    tool.write_text("#!/usr/bin/env python3\nimport os, sys\n"
                    "print('prefix', os.environ['TOLD_PREFIX'], 'exe', sys.executable)\n")  # fmt: skip
    tool.chmod(0o755)
    return folder


@pytest.mark.parametrize("with_bash", [True, False])
def test_a_command_behind_env_is_started_through_its_interpreter(
    tmp_path: Path, with_bash: bool
) -> None:
    """`#!/usr/bin/env python3` is resolved on the PATH the sourced file set, so that under
    qemu-user (no binfmt_misc) env never has to start a program itself; bash sources when the
    tree has it, else sh is told the file's folder (DIRAC_RELEASE_PREFIX)."""
    from release.image.check import _source_and_run

    folder = _release(tmp_path)
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    if with_bash:
        (tree / "usr/bin/bash").write_text("")
    runner = HostRunner(tree)
    step = _source_and_run(runner, str(folder / "diracosrc"), "vo-info --json")  # type: ignore[arg-type]
    assert step.passed, step.detail
    first, second = runner.calls
    assert first[0] == ("/bin/bash" if with_bash else "/bin/sh")
    # The interpreter env would have found, then the script: env itself is not started.
    assert second == [str(folder / "pybin" / "python3"), str(folder / "bin" / "vo-info"), "--json"]
    told = str(folder / "diracosrc") if with_bash else str(folder)
    assert f"prefix {told} exe" in step.detail


def test_a_command_not_on_the_sourced_path_fails_with_why(tmp_path: Path) -> None:
    from release.image.check import _source_and_run

    folder = _release(tmp_path)
    runner = HostRunner(tmp_path / "tree")
    step = _source_and_run(runner, str(folder / "diracosrc"), "no-such-tool")  # type: ignore[arg-type]
    assert not step.passed and "no-such-tool is not on the PATH it set" in step.detail
    assert len(runner.calls) == 1
