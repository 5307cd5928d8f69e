"""Where the product comes from: a wheel built from a git tag, or a release on the index.

A git product is built from the tagged commit (`git archive`), never from the work tree, so
local edits cannot leak into a release; its wheel is cached by commit because the build is
reproducible (SOURCE_DATE_EPOCH = the commit time).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from release.build.uvtool import run_uv, uv_env
from release.config import GitSource, Product, ReleaseConfig, stamp
from release.errors import BadInput, InfrastructureError
from release.version import ReleaseVersion


@dataclass(frozen=True)
class ProductSource:
    """What the resolver needs: the requirement for the product and where its wheel is."""

    name: str
    distribution: str
    version: ReleaseVersion
    kind: str
    location: str
    commit: str | None = None
    tree: str | None = None
    source_date_epoch: int = 0
    exclude_newer: str | None = None
    find_links: Path | None = None
    wheel_sha256: str | None = None
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "location": self.location,
            "distribution": self.distribution,
            "commit": self.commit,
            "tree": self.tree,
            "source_date_epoch": self.source_date_epoch,
            "exclude_newer": self.exclude_newer,
        }


def _exclude_newer(product: Product, commit_time: int | None) -> str | None:
    """Resolve as the index was when the tag was made, so the same tag always locks the same."""
    value = product.exclude_newer
    if value == "commit":
        if commit_time is None:
            return None
        # One second past the commit: packages uploaded in that same second still count.
        return stamp(datetime.fromtimestamp(commit_time + 1, tz=UTC))
    if isinstance(value, datetime):
        return stamp(value)
    return None


def _git_location(config: ReleaseConfig, source: GitSource) -> tuple[Path, bool]:
    """A local repository path, or (for URLs) a cached bare clone."""
    text = source.git
    if "://" not in text and not text.startswith("git@"):
        return config.resolve_path(text), True
    cache = Path(config.resolve_path(config.build.cache_dir)) / "repos"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    clone = cache / key
    import git

    tmp: Path | None = None
    try:
        if clone.exists():
            git.Repo(clone).git.fetch("--tags", "--force", "origin")
        else:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".clone-"))
            git.Repo.clone_from(text, tmp, bare=True)
            tmp.rename(clone)
            tmp = None
    except git.GitCommandError as exc:
        detail = str(exc.stderr or exc).strip().removeprefix("stderr:").strip().strip("'").strip()
        raise InfrastructureError(
            f"cannot fetch {text}: {detail}",
            fix="check the URL and your network or credentials",
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return clone, False


def resolve_source(
    config: ReleaseConfig,
    name: str,
    product: Product,
    version: ReleaseVersion,
    *,
    allow_dirty: bool,
) -> ProductSource:
    """Identify exactly what will be built, without building anything yet."""
    distribution = product.distribution_name(name)
    if isinstance(product.source, GitSource):
        from release import gitinfo

        repo_path, local = _git_location(config, product.source)
        info = gitinfo.read_tag(repo_path, version.tag)
        if local and not allow_dirty and gitinfo.is_dirty(repo_path):
            raise BadInput(
                f"the work tree of {repo_path} has uncommitted or untracked changes",
                fix=(
                    f"the release is built from tag {version.tag}, not from the work tree: commit or stash\n"
                    "the changes so nobody mistakes them for released code, or pass --allow-dirty"
                ),
            )
        return ProductSource(
            name=name,
            distribution=distribution,
            version=version,
            kind="git",
            location=product.source.git,
            commit=info.commit,
            tree=info.tree,
            source_date_epoch=info.commit_time,
            exclude_newer=_exclude_newer(product, info.commit_time),
            facts={"repo_path": str(repo_path), "previous_tag": info.previous_tag},
        )
    return ProductSource(
        name=name,
        distribution=distribution,
        version=version,
        kind="index",
        location=product.source.index,
        exclude_newer=_exclude_newer(product, None),
        source_date_epoch=int(product.exclude_newer.timestamp())
        if isinstance(product.exclude_newer, datetime)
        else 0,
    )


def _export_tree(repo_path: Path, commit: str, dest: Path) -> None:
    """Extract the committed tree: git archive, so ignored and untracked files never enter."""
    proc = subprocess.run(
        ["git", "-C", str(repo_path), "archive", "--format=tar", commit],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise InfrastructureError(
            f"git archive of {commit[:12]} failed: {proc.stderr.decode().strip()}"
        )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        archive.extractall(dest, filter="data")


def build_wheel(source: ProductSource, product: Product, cache_dir: Path) -> ProductSource:
    """Build (or reuse) the product's wheel from the tagged commit."""
    if source.kind != "git" or source.commit is None:
        return source
    wheel = _built(source, product, cache_dir, "wheel")
    dist, wheel_version, _, _ = parse_wheel_filename(wheel.name)
    if canonicalize_name(dist) != canonicalize_name(source.distribution):
        raise BadInput(
            f"tag {source.version.tag} builds distribution {dist!r}, not {source.distribution!r}",
            fix=f'set distribution = "{dist}" for this product in release.toml',
        )
    if wheel_version != source.version.version:
        raise BadInput(
            f"tag {source.version.tag} builds version {wheel_version}, not {source.version}",
            fix=(
                "make the project's version follow the tag (setuptools_scm / hatch-vcs) or set\n"
                f'version = "{source.version}" in its pyproject.toml before tagging'
            ),
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return dataclasses.replace(source, find_links=wheel.parent, wheel_sha256=digest)


def build_sdist(source: ProductSource, product: Product, cache_dir: Path) -> Path:
    """Build (or reuse) the product's source distribution from the tagged commit: what PyPI
    gets beside the wheel, made the same way (the committed tree, SOURCE_DATE_EPOCH)."""
    if source.kind != "git" or source.commit is None:
        raise BadInput(
            f"{source.name} comes from the package index: it has no source distribution to make",
            fix="only a product with source = { git = ... } is built from its tag",
        )
    return _built(source, product, cache_dir, "sdist")


def _built(source: ProductSource, product: Product, cache_dir: Path, kind: str) -> Path:
    """The one wheel or sdist `uv build` makes from the commit, cached by commit (and
    subdirectory): the build is reproducible, so a cached file is the file a build gives."""
    if source.commit is None:
        raise InfrastructureError(f"{source.name}: no commit to build from")
    subdir = product.source.subdirectory if isinstance(product.source, GitSource) else None
    key = source.commit + (f"-{hashlib.sha256(subdir.encode()).hexdigest()[:8]}" if subdir else "")
    pattern = "*.whl" if kind == "wheel" else "*.tar.gz"
    folder = cache_dir / ("wheels" if kind == "wheel" else "sdists") / key
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if found:
        return found[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dirac-release-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        _export_tree(Path(str(source.facts["repo_path"])), source.commit, src)
        project = src / subdir if subdir else src
        if not (project / "pyproject.toml").exists() and not (project / "setup.py").exists():
            raise BadInput(
                f"{source.version.tag} of {source.location} has no pyproject.toml"
                + (f" in {subdir}" if subdir else ""),
                fix="set products.<name>.source.subdirectory to the folder holding pyproject.toml",
            )
        staging = Path(tmp) / "out"
        env = uv_env()
        env["SOURCE_DATE_EPOCH"] = str(source.source_date_epoch)
        # Products that take their version from git (setuptools_scm, hatch-vcs) see no .git
        # in an export: tell them the tag's version.
        env["SETUPTOOLS_SCM_PRETEND_VERSION"] = str(source.version)
        run_uv(
            ["build", f"--{kind}", "--no-config", "--out-dir", str(staging), str(project)],
            cwd=Path(tmp),
            env=env,
            what=f"building the {kind} of {source.name} {source.version.tag}",
        )
        built = sorted(staging.glob(pattern))
        if len(built) != 1:
            raise InfrastructureError(f"expected one {kind} from the build, found {len(built)}")
        tmp_dir = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{kind}-"))
        shutil.move(str(built[0]), tmp_dir / built[0].name)
        try:
            tmp_dir.rename(folder)
        except OSError:  # another build got there first: same commit, same bytes
            shutil.rmtree(tmp_dir)
    return sorted(folder.glob(pattern))[0]
