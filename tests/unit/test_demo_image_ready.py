"""The demo sets up what its VO image needs, as it does for the lab: on a fresh Debian-like
machine as root, qemu-user-static and debootstrap are installed with apt-get, saying so;
otherwise the image stage is named as not run, with why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from release import demo
from release.base import debian
from release.image import check


@pytest.fixture
def made_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for arch in ("x86_64", "aarch64"):
        (tmp_path / arch).mkdir()
        (tmp_path / arch / debian.DONE_MARK).write_text("made\n")
    monkeypatch.setattr(debian, "cached_path", lambda arch: tmp_path / arch)
    return tmp_path


def test_missing_tools_are_installed_as_root(
    made_bases: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import release.lab as lab

    installed: list[list[str]] = []
    state = {"qemu": False}

    def problem(arch: str) -> str | None:
        if arch == "aarch64" and not state["qemu"]:
            return "qemu-user cannot run aarch64 here (apt-get install qemu-user-static)"
        return None

    def install(packages: list[str], *, echo: bool = True) -> None:
        installed.append(list(packages))
        state["qemu"] = True

    real_which = shutil.which
    monkeypatch.setattr(check, "runner_problem", problem)
    monkeypatch.setattr(lab, "install_lab_packages", install)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which",
                        lambda name: "/usr/bin/apt-get" if name == "apt-get" else real_which(name))  # fmt: skip
    assert demo._images_ready(as_json=False) is None
    assert installed and installed[0][0] == "qemu-user-static"
    assert "the VO image needs qemu-user-static" in capsys.readouterr().err


def test_not_root_the_image_is_not_run_and_says_why(
    made_bases: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import release.lab as lab

    def install(packages: list[str], *, echo: bool = True) -> None:
        raise AssertionError("nothing is installed without root")

    monkeypatch.setattr(check, "runner_problem", lambda arch: (
        "qemu-user cannot run aarch64 here (apt-get install qemu-user-static)"
        if arch == "aarch64" else None))  # fmt: skip
    monkeypatch.setattr(lab, "install_lab_packages", install)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    problem = demo._images_ready(as_json=True)
    assert problem == ("the aarch64 image cannot be run here: qemu-user cannot run aarch64 "
                       "here (apt-get install qemu-user-static)")  # fmt: skip
