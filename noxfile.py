"""Release managers' entry point: one session per stage, plus tests, lint, bench and demo.

Sessions use uv to create their environments when it is installed (much faster), and
virtualenv otherwise. UV_PYTHON_DOWNLOADS=never: Pythons come from the machine, never from
the network.
"""

from __future__ import annotations

import os

import nox

os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and lab tests (lab tests need root and the package index)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict."""
    session.install("-e", ".[lint,test]", "nox")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: each prints its figures and ratios against a baseline measured in the same run."""
    session.install("-e", ".", "pip")
    # Scripts given after `--` run alone; any other word (e.g. --busy) goes to every script.
    named = [arg for arg in session.posargs if arg.endswith(".py")]
    flags = [arg for arg in session.posargs if not arg.endswith(".py")]
    scripts = named or sorted(
        str(path)
        for path in __import__("pathlib").Path("bench").glob("*.py")
        if path.name != "benchlib.py"
    )
    for script in scripts:
        session.run("python", script, *flags)


@nox.session
def build(session: nox.Session) -> None:
    """Build bundles: nox -s build -- --version v9.0.0a29 [--platform aarch64] [--config release.toml]."""
    session.install("-e", ".")
    session.run("dirac-release", "build", *session.posargs)


@nox.session
def publish(session: nox.Session) -> None:
    """Publish built bundles to CVMFS: nox -s publish -- --version v9.0.0a29 [--plan] [--repository R]."""
    session.install("-e", ".")
    session.run("dirac-release", "publish", *session.posargs)


@nox.session
def release(session: nox.Session) -> None:
    """Release one tag through the pipeline, resuming where it stopped:
    nox -s release -- --product DIRAC --tag v9.0.0a29 [--plan] [--promote]."""
    session.install("-e", ".")
    session.run("dirac-release", "run", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The laptop demo on the embedded VO extension: nox -s demo [-- --until build]."""
    session.install("-e", ".")
    session.run("dirac-release", "demo", *session.posargs)


@nox.session
def lab(session: nox.Session) -> None:
    """Throwaway SSH lab hosts (root) until Ctrl-C: nox -s lab [-- cctbdirac01 cctbdirac02 ...]."""
    session.install("-e", ".")
    session.run("python", "-m", "release.lab", *(session.posargs or ["up"]))
