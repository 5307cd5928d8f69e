"""One pilot folder per VO, `<out>/<vo>/<tag>/`, put in place whole or not at all.

Every VO asked for is read, checked and composed in memory first; only when all of them pass
is anything written, each folder in a staging folder beside it, then renamed into place. So a
refusal (exit 2) leaves the output as it was, and a pilot wrapper never downloads a folder
whose checksums.sha512 does not match its files. A rebuild with the same inputs finds the same
bytes and leaves the folder alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.errors import BadInput
from release.pilot import archive, checks, pilotjson, sources

if TYPE_CHECKING:
    from release.config import ReleaseConfig
    from release.config.pilots import PilotDeployment

DEFAULT_FOLDER = "pilots"


@dataclass
class PilotBuild:
    """One VO's folder: its files (name -> bytes), where it goes and what it was made from."""

    vo: str
    product: str
    tag: str
    folder: Path
    pilot: sources.Fetched
    modules: sources.Fetched | None
    files: dict[str, bytes] = field(default_factory=dict)
    status: str = "planned"

    def as_dict(self) -> dict[str, Any]:
        return {
            "vo": self.vo,
            "product": self.product,
            "tag": self.tag,
            "folder": str(self.folder),
            "status": self.status,
            "pilot": self.pilot.as_dict(),
            "modules": self.modules.as_dict() if self.modules else None,
            "files": [
                {"name": name, "size": len(data), "sha512": archive.sha512(data)}
                for name, data in sorted(self.files.items())
            ],
        }


def output_root(config: ReleaseConfig, out: Path | None) -> Path:
    """`--out`, else `pilots/` in the build's output folder (build.out, DIRAC_RELEASE_OUT)."""
    return (out or config.resolve_path(config.build.out) / DEFAULT_FOLDER).absolute()


def _project_fix(prefix: str) -> str:
    """The Project that matches a prefix ending in 'dirac', as the first half of a fix."""
    if not prefix.endswith("dirac") or "/" in prefix:
        return ""
    project = prefix.removesuffix("dirac")
    return "leave Project out, or " if not project else f'set Project = "{project}", or '


def _cvmfs_location(config: ReleaseConfig, product_name: str, project: str | None,
                    where: str) -> str:  # fmt: skip
    """`/cvmfs/<repo>`, where the Pilot finds the release as `<project>dirac/<tag>/Linux-<arch>`.

    The Pilot builds that path itself from `Project` (lower case, then 'dirac'), so a
    repository prefix that differs would send every pilot to a folder that does not exist.
    """
    product = config.products[product_name]
    repo_name, repo = config.repository(None, product)
    expected = (project or "").lower() + "dirac"
    if repo.prefix != expected:
        raise BadInput(
            f"the Pilot looks for the release in /cvmfs/{repo_name}/{expected}/<tag>/, but "
            f"{product_name} is published under /cvmfs/{repo_name}/{repo.prefix}/",
            where=f"{where}.Project",
            fix=_project_fix(repo.prefix)
            + f"publish {product_name} under repositories.{repo_name}.prefix = {expected!r}",
        )
    return f"/cvmfs/{repo_name}"


def prepare(
    config: ReleaseConfig,
    vo: str,
    tag: str,
    root: Path,
    pilots: dict[tuple[str, str, str], sources.Fetched] | None = None,
) -> PilotBuild:
    """Read, check and compose one VO's folder in memory; refuse before writing anything.

    `pilots` keeps the Pilot's files read for earlier VOs (by repository, commit and folder):
    VOs normally share one pinned Pilot, read once rather than once per VO.
    """
    deployment: PilotDeployment = config.pilots[vo]
    key = f"{config.path}: pilots.{vo}"
    product_name, _product = config.product(deployment.product)
    settings_key = f"{key}.settings"
    location = _cvmfs_location(config, product_name, deployment.settings.Project, settings_key)
    source = deployment.pilot
    pilots = {} if pilots is None else pilots
    pilot = pilots.get((source.git, source.commit, source.path))
    if pilot is None:
        pilot = sources.fetch_pilot(config, source, f"{key}.pilot")
        pilots[(source.git, source.commit, source.path)] = pilot
    modules: sources.Fetched | None = None
    if deployment.modules is not None:
        from release.config.pilots import GitModules, ReleaseModules

        if isinstance(deployment.modules, GitModules):
            modules = sources.fetch_git_modules(config, deployment.modules, f"{key}.modules")
        elif isinstance(deployment.modules, ReleaseModules):
            modules = sources.fetch_release_modules(
                config, product_name, deployment.modules, tag, f"{key}.modules"
            )
        else:
            modules = sources.read_folder_modules(config, deployment.modules, f"{key}.modules")
    vo_files = modules.files if modules else {}
    checks.check_no_shadowing(pilot.files, vo_files, f"{key}.modules")
    checks.check_commands(deployment.settings.Commands, deployment.settings.CommandExtensions,
                          pilot.files, vo_files, settings_key)  # fmt: skip
    times = [t for t in (pilot.commit_time, modules.commit_time if modules else None) if t]
    stamp = max(times) if times else 0
    document = pilotjson.compose(vo, deployment.settings, tag=tag, cvmfs_location=location,
                                 timestamp=stamp, where=settings_key)  # fmt: skip
    pilotjson.validate(document, vo, tag, settings_key)
    python_files = {**vo_files, **pilot.files}
    files = dict(python_files)
    files[archive.TAR_NAME] = archive.pilot_tar(python_files, stamp)
    files[archive.JSON_NAME] = pilotjson.encode(document)
    files[archive.CHECKSUMS_NAME] = archive.checksums(files)
    return PilotBuild(vo=vo, product=product_name, tag=tag, folder=root / vo / tag,
                      pilot=pilot, modules=modules, files=files)  # fmt: skip


def _same(folder: Path, files: dict[str, bytes]) -> bool:
    """Whether the folder already holds exactly these files with these bytes."""
    try:
        present = sorted(p.name for p in folder.iterdir())
        return present == sorted(files) and all(
            (folder / name).read_bytes() == data for name, data in files.items()
        )
    except OSError:
        return False


def place(build: PilotBuild) -> None:
    """Write the folder in a staging folder beside it, then rename it into place."""
    final = build.folder
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise BadInput(f"{final} exists and is not a folder", where=str(final),
                       fix="remove it, or choose another --out")  # fmt: skip
    if final.is_dir() and _same(final, build.files):
        build.status = "unchanged"
        return
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".staging-{final.name}-{os.getpid()}-"))
    old: Path | None = None
    try:
        for name, data in build.files.items():
            (staging / name).write_bytes(data)
            (staging / name).chmod(0o644)
        staging.chmod(0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".old-{final.name}-"))
            final.rename(old / final.name)
        staging.rename(final)
        build.status = "replaced" if old is not None else "written"
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not final.exists():
            (old / final.name).rename(final)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def build_pilots(
    config: ReleaseConfig, *, version: str, vo: str | None = None, out: Path | None = None
) -> list[PilotBuild]:
    """Build the pilot folder of one VO, or of every VO of `[pilots]`, for one release."""
    from release.version import parse_version_arg

    tag = parse_version_arg(version).tag
    if not config.pilots:
        from release.config import EXAMPLES

        raise BadInput(f"{config.path} defines no pilot deployment",
                       fix="add one, e.g.\n" + EXAMPLES["pilots"])  # fmt: skip
    if vo is not None and vo not in config.pilots:
        from release.config.suggest import close_match

        close = close_match(vo, config.pilots)
        raise BadInput(
            f"unknown VO {vo!r}",
            where=str(config.path),
            fix=(f"did you mean {close!r}? " if close else "")
            + f"VOs with a [pilots.<vo>] table: {', '.join(config.pilots)}",
        )
    root = output_root(config, out)
    read: dict[tuple[str, str, str], sources.Fetched] = {}
    builds = [
        prepare(config, name, tag, root, read) for name in ([vo] if vo else list(config.pilots))
    ]
    for build in builds:
        place(build)
    return builds
