"""`dirac-release lab`: the parts that need no root (arguments, check, clean)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from release.cli import main
from release.errors import InfrastructureError


def test_a_bad_bind_is_bad_input_and_starts_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import release.lab.hosts as hosts

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("no host may start on bad input")

    monkeypatch.setattr(hosts, "lab_hosts", never)
    assert main(["lab", "up", "--bind", "stratum"]) == 2
    assert "expected SRC:DEST" in capsys.readouterr().err
    assert main(["lab", "up", "--bind", "stratum:relative/path"]) == 2


def test_check_names_what_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import release.lab.prerequisites as prerequisites

    monkeypatch.setattr(prerequisites, "lab_hosts_problem",
                        lambda: "lab hosts need these Debian packages: apt-get install -y debootstrap")  # fmt: skip
    monkeypatch.setattr(prerequisites, "missing_lab_packages", lambda: ["debootstrap"])
    assert main(["lab", "check"]) == 3
    err = capsys.readouterr().err
    assert "cannot run here" in err and "apt-get install -y debootstrap" in err
    monkeypatch.setattr(prerequisites, "lab_hosts_problem", lambda: None)
    monkeypatch.setattr(prerequisites, "missing_lab_packages", lambda: [])
    assert main(["lab", "check"]) == 0
    assert "can run here" in capsys.readouterr().out


def test_clean_says_what_it_removed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import release.lab.processes as processes

    monkeypatch.setattr(processes, "cleanup_leftovers", lambda: [])
    assert main(["lab", "clean"]) == 0
    assert "nothing was left behind" in capsys.readouterr().out
    monkeypatch.setattr(processes, "cleanup_leftovers", lambda: ["netns drlab-1-0-client"])
    assert main(["lab", "clean"]) == 0
    assert "removed netns drlab-1-0-client" in capsys.readouterr().out


def test_lab_errors_are_the_projects_infrastructure_errors() -> None:
    from release.lab import LabError

    error = LabError("the host did not start")
    assert isinstance(error, InfrastructureError) and error.exit_code == 3
    assert str(error) == "the host did not start"


def test_starting_the_command_line_loads_no_lab_module() -> None:
    code = (
        "import sys, release.cli; release.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('release.lab.') and m != 'release.lab.cli'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_m_release_lab_still_takes_names_without_an_action(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from release.lab.cli import main as lab_main

    # Before `up` existed, names and options came first; a bad --bind stops before any host.
    assert lab_main(["cctbdirac01", "--bind", "stratum"]) == 2
    assert "expected SRC:DEST" in capsys.readouterr().err


def test_add_parser_puts_lab_on_another_command_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    import release.lab.processes as processes
    from release.lab.cli import add_parser

    parser = argparse.ArgumentParser(prog="tool")
    add_parser(parser.add_subparsers(dest="command"))
    monkeypatch.setattr(processes, "cleanup_leftovers", lambda: [])
    args = parser.parse_args(["lab", "clean"])
    assert args.handler(args) == 0
    assert "nothing was left behind" in capsys.readouterr().out


def test_up_keep_disks_reaches_the_lab(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`lab up --keep-disks` starts the hosts from their kept disks (the demo's, for one)."""
    import release.lab.hosts as hosts
    import release.lab.prerequisites as prerequisites
    import release.lab.rootfs as rootfs
    from release.lab import LabError

    asked: dict[str, object] = {}

    def fake_lab_hosts(names: list[str], root: Path, work: Path, **options: object) -> object:
        asked.update(options, names=names, work=work)
        raise LabError("stopped here by the test")

    monkeypatch.setattr(prerequisites, "lab_hosts_problem", lambda: None)
    monkeypatch.setattr(rootfs, "prepare_rootfs", lambda cache: tmp_path)
    monkeypatch.setattr(hosts, "lab_hosts", fake_lab_hosts)
    code = main(["lab", "up", "--work", str(tmp_path / "lab"), "--keep-disks", "cctbdirac01"])
    assert code == 3 and "stopped here by the test" in capsys.readouterr().err
    assert asked["keep_disks"] is True and asked["names"] == ["cctbdirac01"]
    main(["lab", "up", "--work", str(tmp_path / "lab"), "cctbdirac01"])
    assert asked["keep_disks"] is False
