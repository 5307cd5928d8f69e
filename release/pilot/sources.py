"""Reading the pilot's inputs: the Pilot at its pinned commit, the VO's modules at a tag or
in a folder.

Files are read from git objects (`commit.tree`), never from a work tree, so an uncommitted
edit in a local checkout can never slip into a pilot, and a local path and a URL give the
same bytes. A URL is cloned once (bare) into `<cache_dir>/pilot-repos/` and fetched again
only when the pinned commit or tag is not there yet. What was read is kept by the object it
was read at (`source_cache`): a later build of the same pinned commit or tag reads only the
tag's ref, no git object.

GitPython is imported inside the functions: the command line must start without it.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from release.errors import BadInput, InfrastructureError
from release.pilot import source_cache

if TYPE_CHECKING:
    import git

    from release.config import ReleaseConfig
    from release.config.pilots import FolderModules, GitModules, PilotSource, ReleaseModules

#: git's mode of a regular file (0644 or 0755); links and submodules are never pilot files.
_REGULAR_BLOBS = (0o100644, 0o100755)


@dataclass(frozen=True)
class Fetched:
    """The `*.py` files of one input, by file name, and where exactly they came from."""

    origin: str
    ref: str | None
    commit: str | None
    commit_time: int | None
    files: dict[str, bytes] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"origin": self.origin, "ref": self.ref, "commit": self.commit,
                "files": sorted(self.files)}  # fmt: skip


def _is_url(location: str) -> bool:
    return "://" in location or location.startswith("git@")


def _git_error(exc: Exception) -> str:
    text = str(getattr(exc, "stderr", "") or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip() or str(exc)


def _has(repo: git.Repo, rev: str) -> str | None:
    """The commit `rev` names in `repo`, or None."""
    from git.exc import ODBError

    # In-process (refs read from files, objects through the repository's one persistent
    # `git cat-file`), not a `git rev-parse` process per question: ten VOs, ten processes less.
    try:
        commit = repo.rev_parse(f"{rev}^{{commit}}")
        repo.odb.info(commit.binsha)  # a full sha parses without the object existing
        return str(commit.hexsha)
    except (ODBError, ValueError, IndexError, KeyError):
        return None


def _commit_object(repo: git.Repo, commit: str) -> git.Commit:
    """The commit object by its full id, read through the repository's one `git cat-file
    --batch` (GitPython's `repo.commit()` would first ask a second process for its type)."""
    import git as gitmodule

    return gitmodule.Commit(repo, bytes.fromhex(commit))


def _peel(repo: git.Repo, object_id: str) -> str | None:
    """The commit a tag object (or a commit) leads to, read as data; None when it leads
    elsewhere or the object is missing."""
    for _ in range(8):  # a tag of a tag of ... a commit; deeper chains are not pilot modules
        try:
            stream = repo.odb.stream(bytes.fromhex(object_id))
        except (ValueError, OSError):
            return None
        if stream.type == b"commit":
            return object_id
        if stream.type != b"tag":
            return None
        first = stream.read().split(b"\n", 1)[0]
        if not first.startswith(b"object ") or len(first) != 47:
            return None
        object_id = first[7:].decode("ascii")
    return None


def _ref_object(repo: git.Repo, ref: str) -> str | None:
    """The object a ref names, read from the ref files alone (no git process), or None."""
    from git.refs.symbolic import SymbolicReference

    try:
        return str(SymbolicReference.dereference_recursive(repo, ref))
    except (ValueError, OSError):
        return None


def _cache_root(config: ReleaseConfig) -> Path:
    return config.resolve_path(config.build.cache_dir)


def _open(config: ReleaseConfig, location: str, rev: str, key: str) -> git.Repo:
    """The repository holding `rev`: a local one as it is, a URL through the cached clone."""
    from release import gitinfo

    if not _is_url(location):
        path = config.resolve_path(location)
        try:
            return gitinfo.open_repo(path)
        except BadInput as error:
            raise BadInput(f"{path}: {error.message}", where=f"{key}.git", fix=error.fix) from None
    import git as gitmodule

    cache = config.resolve_path(config.build.cache_dir) / "pilot-repos"
    clone = cache / hashlib.sha256(location.encode()).hexdigest()[:16]
    tmp: Path | None = None
    try:
        if clone.exists():
            repo = gitmodule.Repo(clone)
            if _ref_object(repo, rev) is None and _has(repo, rev) is None:
                repo.git.fetch("--force", "origin", "+refs/heads/*:refs/heads/*",
                               "+refs/tags/*:refs/tags/*")  # fmt: skip
            return repo
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".clone-"))
        gitmodule.Repo.clone_from(location, tmp, bare=True)
        tmp.rename(clone)
        tmp = None
        return gitmodule.Repo(clone)
    except gitmodule.GitCommandError as exc:
        raise InfrastructureError(
            f"cannot fetch {location}: {_git_error(exc)}",
            where=key,
            fix="check the URL and your network or credentials",
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _python_files(repo: git.Repo, commit: str, folder: str, where: str) -> dict[str, bytes]:
    """Every regular `*.py` directly in `folder` at `commit` (the Pilot merges no subfolders)."""
    tree = _commit_object(repo, commit).tree
    if folder:
        try:
            tree = tree / folder
        except KeyError:
            raise BadInput(
                f"commit {commit[:12]} has no folder {folder!r}",
                where=where,
                fix="set 'path' to the folder that holds the .py files at that commit",
            ) from None
        if tree.type != "tree":
            raise BadInput(f"{folder!r} is not a folder at commit {commit[:12]}", where=where,
                           fix="set 'path' to the folder that holds the .py files")  # fmt: skip
    return {
        blob.name: blob.data_stream.read()
        for blob in tree.blobs
        if blob.name.endswith(".py") and blob.mode in _REGULAR_BLOBS
    }


def fetch_pilot(config: ReleaseConfig, source: PilotSource, key: str) -> Fetched:
    """The Pilot's `*.py` files at the pinned commit."""
    cached = source_cache.load(_cache_root(config), source.commit, source.path)
    if cached is not None and "dirac-pilot.py" in cached.files:
        return Fetched(source.git, None, cached.commit, cached.commit_time, cached.files)
    repo = _open(config, source.git, source.commit, key)
    commit = _has(repo, source.commit)
    if commit is None:
        raise BadInput(
            f"commit {source.commit} is not in {source.git}",
            where=f"{key}.commit",
            fix="check the commit (git log in the Pilot repository), or push it first",
        )
    files = _python_files(repo, commit, source.path, f"{key}.path")
    if "dirac-pilot.py" not in files:
        raise BadInput(
            f"no dirac-pilot.py in {source.path or 'the top folder'} at commit {commit[:12]}",
            where=f"{key}.path",
            fix="point 'git' at the Pilot repository and 'path' at the folder of dirac-pilot.py",
        )
    fetched = Fetched(
        source.git, None, commit, int(_commit_object(repo, commit).committed_date), files
    )
    _keep(config, source.commit, source.path, fetched)
    return fetched


def fetch_git_modules(config: ReleaseConfig, modules: GitModules, key: str) -> Fetched:
    """The VO's `*.py` modules at their tag."""
    ref = f"refs/tags/{modules.tag}"
    repo = _open(config, modules.git, ref, key)
    tag_object = _ref_object(repo, ref)
    if tag_object is not None:
        cached = source_cache.load(_cache_root(config), tag_object, modules.path)
        if cached is not None:
            return Fetched(modules.git, modules.tag, cached.commit, cached.commit_time,
                           cached.files)  # fmt: skip
    commit = _peel(repo, tag_object) if tag_object is not None else None
    commit = commit or _has(repo, ref)
    if commit is None:
        raise BadInput(
            f"tag {modules.tag} is not in {modules.git}",
            where=f"{key}.tag",
            fix="tag the modules' release and push the tag, or correct 'tag'",
        )
    files = _python_files(repo, commit, modules.path, f"{key}.path")
    fetched = Fetched(modules.git, modules.tag, commit, int(_commit_object(repo, commit).committed_date),
                      files)  # fmt: skip
    if tag_object is not None:
        _keep(config, tag_object, modules.path, fetched)
    return fetched


def _keep(config: ReleaseConfig, object_id: str, folder: str, fetched: Fetched) -> None:
    if fetched.commit is None or fetched.commit_time is None:
        return  # read from a folder: nothing names its content
    entry = source_cache.Entry(fetched.commit, fetched.commit_time, fetched.files)
    source_cache.store(_cache_root(config), object_id, folder, entry)


def fetch_release_modules(
    config: ReleaseConfig, product_name: str, modules: ReleaseModules, tag: str, key: str
) -> Fetched:
    """The VO's modules in a folder of the product's repository, at the tag being released."""
    from release.config.pilots import GitModules

    source = config.products[product_name].source
    if source.kind != "git":  # refused when the file is loaded; kept for a config built in code
        raise BadInput(f"{product_name} has no git repository to take {modules.release!r} from",
                       where=key, fix="give the modules' own repository or a folder")  # fmt: skip
    in_repo = GitModules(git=source.git, tag=tag, path=modules.release)
    try:
        return fetch_git_modules(config, in_repo, key)
    except BadInput as error:
        if error.where == f"{key}.tag":
            raise BadInput(
                f"{product_name}'s repository has no tag {tag}, so there are no modules of "
                f"this release in {modules.release!r}",
                where=key,
                fix="tag the release first (dirac-release version), or build the pilot files "
                "of a tagged release",
            ) from None
        raise


def read_folder_modules(config: ReleaseConfig, modules: FolderModules, key: str) -> Fetched:
    """The VO's `*.py` modules kept next to release.toml (regular files only, no links)."""
    folder = config.resolve_path(modules.folder)
    if not folder.is_dir():
        raise BadInput(
            f"{folder} is not a folder",
            where=f"{key}.folder",
            fix="give the folder of the VO's pilot modules, relative to release.toml",
        )
    files: dict[str, bytes] = {}
    for path in sorted(folder.glob("*.py")):
        if stat.S_ISREG(path.lstat().st_mode):
            files[path.name] = path.read_bytes()
    return Fetched(modules.folder, None, None, None, files)
