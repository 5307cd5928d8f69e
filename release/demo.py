"""The laptop demo: a real VO extension, a real git tag, real bundles, on one machine.

The product's source ships inside this package. The demo commits it into a fresh repository
with a fixed date, so every run makes the same commit, resolves the same lock (the index as it
was at that date) and hits the cache the second time.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from release.errors import BadInput

DEMO_TAG = "v1.0.0a1"
DEMO_DATE = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
REPO_NAME = "product-repo"
STAGES = ("version", "build", "publish")
_IDENTITY = {"name": "VODemo Release Manager", "email": "release@vodemo.example.org"}


def _product_files() -> dict[str, bytes]:
    """The demo product's files, from the installed package or the checkout alike."""
    root = resources.files("release") / "resources" / "demo" / "product"
    files: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            else:
                files[rel] = child.read_bytes()

    walk(root, "")
    return files


def demo_config_text() -> str:
    return (resources.files("release") / "resources" / "demo" / "release.toml").read_text(
        encoding="utf-8"
    )


def prepare_repository(repo_dir: Path) -> str:
    """Create (or reuse, when identical) the demo repository and its tag; returns the commit."""
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import without a git executable
        from release.errors import InfrastructureError

        raise InfrastructureError(
            f"cannot use git: {exc}", fix="install git (apt-get install git)"
        ) from None

    files = _product_files()
    if (repo_dir / ".git").is_dir():
        try:
            repo = git.Repo(repo_dir)
            commit = repo.tags[DEMO_TAG].commit
            same = all(
                (commit.tree / path).data_stream.read() == data for path, data in files.items()
            ) and not repo.is_dirty(untracked_files=True)
            if same:
                return str(commit.hexsha)
        except (IndexError, KeyError, ValueError, git.GitError):
            pass
        shutil.rmtree(repo_dir)
    repo_dir.mkdir(parents=True)
    for rel, data in files.items():
        path = repo_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    repo = git.Repo.init(repo_dir, initial_branch="integration")
    with repo.config_writer() as writer:
        writer.set_value("user", "name", _IDENTITY["name"])
        writer.set_value("user", "email", _IDENTITY["email"])
    repo.index.add(sorted(files))
    actor = git.Actor(_IDENTITY["name"], _IDENTITY["email"])
    commit = repo.index.commit(
        "VODemoDIRAC v1.0.0a1",
        author=actor,
        committer=actor,
        author_date=DEMO_DATE,
        commit_date=DEMO_DATE,
    )
    with repo.git.custom_environment(GIT_COMMITTER_DATE=DEMO_DATE.isoformat()):
        repo.git.tag("-a", DEMO_TAG, "-m", f"VODemoDIRAC {DEMO_TAG}")
    return str(commit.hexsha)


def run_demo(*, workdir: Path, until: str = STAGES[-1], as_json: bool = False) -> int:
    """Run the stages that exist, in order, stopping after `until`."""
    from release import gitinfo
    from release.cli import report_build
    from release.config import load_config
    from release.output import print_json, table

    if until not in STAGES:
        raise BadInput(f"unknown stage {until!r}", fix=f"choose one of: {', '.join(STAGES)}")
    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "release.toml"
    config_path.write_text(demo_config_text(), encoding="utf-8")
    stages: list[dict[str, Any]] = []

    started = time.monotonic()
    prepare_repository(workdir / REPO_NAME)
    info = gitinfo.read_tag(workdir / REPO_NAME, DEMO_TAG)
    channels = ", ".join(str(channel) for channel in info.version.channels)
    stages.append(
        {
            "stage": "version",
            "result": f"{info.tag} at {info.commit[:12]} ({channels})",
            "seconds": time.monotonic() - started,
        }
    )
    result: dict[str, Any] = {"workdir": str(workdir), "tag": info.as_dict(), "stages": stages}
    if until != "version":
        from release.build import build_release
        from release.progress import Progress

        started = time.monotonic()
        config = load_config(config_path)
        with Progress(enabled=not as_json, steps=5) as progress:
            report = build_release(config, version=DEMO_TAG, progress=progress)
        cached = all(bundle.cached for bundle in report.bundles)
        stages.append(
            {
                "stage": "build",
                "result": f"{len(report.bundles)} bundles in {report.version_dir}"
                + (" (cached)" if cached else ""),
                "seconds": time.monotonic() - started,
            }
        )
        result["build"] = report.as_dict()
        if not as_json:
            report_build(report, False)
    if until not in ("version", "build"):
        from release.cli import report_publication
        from release.publish import init_repository, publish_release

        started = time.monotonic()
        config = load_config(config_path)
        init_repository(config, None)
        with Progress(enabled=not as_json, steps=6) as progress:
            publication = publish_release(
                config, version=DEMO_TAG, step=lambda text: progress.step("publish", text)
            )
        stages.append(
            {
                "stage": "publish",
                "result": f"{publication['status']}: /cvmfs/{publication['repository']}/"
                f"{publication['version_dir']} (revision {publication['revision']})",
                "seconds": time.monotonic() - started,
            }
        )
        result["publish"] = publication
        if not as_json:
            report_publication(publication, False)
    if as_json:
        print_json(result)
    else:
        table(
            "dirac-release demo",
            ["stage", "result", "seconds"],
            [[s["stage"], s["result"], f"{s['seconds']:.1f}"] for s in stages],
        )
    return 0
