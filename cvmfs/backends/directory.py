"""A real directory stratum: the demo's and the tests' repository, or a plain web mirror.

Layout next to each other on one filesystem (renames must be atomic, hardlinks possible):
`<stratum>/<repo>/` is what clients see; `<stratum>/.dirac-release/<repo>/` holds the
transaction lock, staging areas and the tag list.

A version is staged completely, then appears with one rename; links switch with one rename.
Publishing writes a journal first, so a publisher killed half-way through is rolled forward by
the next one; a transaction that never reached its journal is simply discarded. Identical
file content is stored once: a file whose content (and mode) an already published version has
is a hardlink to it, found through the published manifests, so a version that shares most
files with the previous one costs only its new bytes, and a new file costs one write, as in a
plain copy. Published files are read-only, so no version can change another's content.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cvmfs import bundle_contract as contract
from cvmfs.backends.base import OpenTransaction, Owner, RepoStatus, Tag, check_clearable
from cvmfs.errors import BadInput, InfrastructureError
from cvmfs.manifest_rules import MANIFEST_REL, path_problem
from cvmfs.safe_fs import DirHandles, check_no_link_on_path, read_small
from cvmfs.tree_check import check_tree

#: Files are created read-only, without following a link, and never over an existing name.
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: Transactions this process has open: a lock held by our own pid but not listed here was
#: left behind by a publication that failed after its journal (rolled forward like a crash).
_ACTIVE: set[str] = set()
POLL_S = 0.2


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process: a pid alone can be reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


class DirectoryBackend:
    kind = "directory"

    def __init__(self, repository: str, stratum: Path) -> None:
        self.repository = repository
        self.stratum = stratum
        self.root = stratum / repository
        self.state = stratum / ".dirac-release" / repository
        self.lock_path = self.state / "transaction.json"
        self.tags_path = self.state / "tags.json"
        self.notes: list[str] = []

    # -- repository -------------------------------------------------------------------------

    def init(self) -> bool:
        """Create an empty repository; False when it already exists."""
        if self.tags_path.exists():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        (self.state / "txn").mkdir(parents=True, exist_ok=True)
        _write_json(self.tags_path, {"revision": 0, "tags": []})
        return True

    def exists(self) -> bool:
        return self.root.is_dir() and self.tags_path.is_file()

    def _tag_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.tags_path.read_text(encoding="utf-8"))
        return data

    def tags(self) -> list[Tag]:
        return [Tag(**tag) for tag in self._tag_data()["tags"]]

    def status(self) -> RepoStatus:
        if not self.exists():
            return RepoStatus(self.repository, exists=False)
        status = RepoStatus(
            self.repository, exists=True, revision=int(self._tag_data()["revision"])
        )
        lock = self._read_lock()
        if lock is not None:
            status.transactions.append(self._describe(lock))
        return status

    def read_manifest(self, rel: str) -> dict[str, Any] | None:
        return contract.read_manifest(self.root / rel)

    def manifest_digest(self, rel: str) -> str | None:
        try:
            return contract.manifest_digest(contract.manifest_path(self.root / rel))
        except OSError:
            return None

    def verify_published(
        self, rel: str, manifest: dict[str, Any], *, shallow: bool = False
    ) -> list[str]:
        from cvmfs.tree_check import metadata_problems

        tree = self.root / rel
        if not tree.is_dir():
            return [f"/{rel} is not published"]
        return (
            metadata_problems(tree, manifest) if shallow else contract.verify_tree(tree, manifest)
        )

    def entries(self, rel_dir: str) -> dict[str, str | None]:
        """Names in a folder: symlink -> its target, anything else -> None."""
        folder = self.root / rel_dir
        if not folder.is_dir():
            return {}
        return {
            child.name: (os.readlink(child) if child.is_symlink() else None)
            for child in sorted(folder.iterdir())
            if not child.name.startswith(".")
        }

    # -- the lock -----------------------------------------------------------------------------

    def _read_lock(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.lock_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data

    def _stale(self, lock: dict[str, Any]) -> bool:
        owner = lock["owner"]
        if owner["host"] != socket.gethostname():
            return False  # another machine's process: we cannot tell, so never call it stale
        if int(owner["pid"]) == os.getpid() and lock.get("pid_start") == _process_start(
            os.getpid()
        ):
            return lock.get("txn") not in _ACTIVE  # left by a failed publication of ours
        return _process_start(int(owner["pid"])) != lock.get("pid_start")

    def _describe(self, lock: dict[str, Any]) -> OpenTransaction:
        return OpenTransaction(
            lease=lock["lease"], owner=Owner(**lock["owner"]), stale=self._stale(lock)
        )

    def _take_lock(self, lease: str, owner: Owner) -> str | None:
        """Create the lock atomically (link of a complete file); None when someone holds it."""
        txn_id = uuid.uuid4().hex[:12]
        tmp = self.state / f".lock-{txn_id}"
        data = {
            "owner": owner.as_dict(),
            "pid_start": _process_start(owner.pid),
            "lease": lease,
            "txn": txn_id,
        }
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        # Live before it is visible: another thread of this process that reads the lock between
        # the link and the caller's bookkeeping must not take it for a crashed publication.
        _ACTIVE.add(txn_id)
        try:
            try:
                os.link(tmp, self.lock_path)
            except FileExistsError:
                _ACTIVE.discard(txn_id)
                return None
            finally:
                tmp.unlink()
        except BaseException:
            _ACTIVE.discard(txn_id)  # a lock left behind by a failure here is stale, not live
            raise
        return txn_id

    def _release(self, txn_id: str) -> None:
        try:
            shutil.rmtree(self.state / "txn" / txn_id, ignore_errors=True)
            lock = self._read_lock()
            if lock is not None and lock.get("txn") == txn_id:
                self.lock_path.unlink()
        finally:
            _ACTIVE.discard(txn_id)  # a lock this fails to remove is then stale, not live

    def _discard_orphans(self, txn_id: str) -> None:
        """Staging left by a release that failed half-way: no lock names it, so it is done."""
        folder = self.state / "txn"
        for child in folder.iterdir() if folder.is_dir() else []:
            if child.name != txn_id:
                shutil.rmtree(child, ignore_errors=True)

    def clear_stale(self, publication: str | None = None) -> list[str]:
        """Finish or discard a transaction whose process died; never touch a live one."""
        lock = self._read_lock()
        if lock is None:
            return []
        held = self._describe(lock)
        check_clearable(self.repository, held, publication)
        txn_dir = self.state / "txn" / lock["txn"]
        journal = txn_dir / "journal.json"
        if journal.is_file():
            DirectoryTransaction.resume(self, lock["txn"])
            note = f"finished the publication that {held.describe()} had started"
        else:
            self._release(lock["txn"])
            note = f"discarded the unpublished staging of {held.describe()}"
        self.notes.append(note)
        return [note]

    def open(self, lease: str, owner: Owner, wait_s: float) -> DirectoryTransaction:
        if not self.exists():
            raise BadInput(
                f"repository {self.repository} does not exist in {self.stratum}",
                fix=f"create it with: dirac-release cvmfs init --repository {self.repository}",
            )
        deadline = time.monotonic() + wait_s
        waited = False
        while True:
            txn_id = self._take_lock(lease, owner)
            if txn_id is not None:
                if waited:
                    self.notes.append("waited for another publisher to finish")
                try:
                    self._discard_orphans(txn_id)
                    return DirectoryTransaction(self, txn_id)
                except BaseException:
                    self._release(txn_id)
                    raise
            lock = self._read_lock()
            if lock is not None and self._stale(lock):
                # A crash of this very publication is ours to finish or discard; another
                # publication's leftovers are reported with the command that clears them.
                self.clear_stale(owner.publication)
                continue
            if time.monotonic() >= deadline:
                held = self._describe(lock) if lock else None
                raise InfrastructureError(
                    f"{self.repository} is busy: "
                    + (held.describe() if held else "a transaction is open")
                    + f"; waited {wait_s:.0f}s",
                    fix="retry when it has finished, or raise 'wait' for this repository in release.toml",
                )
            waited = True
            time.sleep(POLL_S)

    # -- content store ------------------------------------------------------------------------

    def content_index(self, prefix_dir: Path) -> dict[tuple[str, bool], Path]:
        """(sha256, executable) -> a published file with that content, from the manifests
        of every `<version>/<platform>/` tree (`Linux-<arch>` for releases and bases, the
        bare `<arch>` for container images)."""
        index: dict[tuple[str, bool], Path] = {}
        if not prefix_dir.is_dir():
            return index
        for manifest_file in sorted(prefix_dir.glob(f"*/*/{MANIFEST_REL}")):
            tree = manifest_file.parent.parent
            try:
                manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for entry in manifest.get("files", []):
                if "sha256" in entry and path_problem(str(entry.get("path", ""))) is None:
                    index.setdefault(
                        (entry["sha256"], entry["mode"] == "755"), tree / entry["path"]
                    )
        return index


class _Staging:
    """The sink of `check_tree`: writes a checked bundle into the staging area.

    Written through directory handles (never through a link); a file whose content is
    already stored (published, or staged for the other platform) becomes a hardlink to it.
    """

    def __init__(
        self, dest: Path, known: dict[tuple[str, bool], Path], lock: threading.Lock
    ) -> None:
        self.out = DirHandles(dest, create=True)
        self.dest = dest
        self.known = known
        self.lock = lock
        self.writing: dict[str, IO[bytes]] = {}
        self.same: dict[str, Path] = {}
        #: Files whose bytes this staging wrote itself, as they were hashed and matched.
        self.written: set[str] = set()

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *_exc: object) -> None:
        for handle in self.writing.values():
            handle.close()
        self.out.close()

    def file(self, rel: str, executable: bool, sha256: str) -> Callable[[bytes], object] | None:
        with self.lock:
            same = self.known.get((sha256, executable))
        if same is not None:
            self.same[rel] = same
            return None
        dir_fd, name = self.out.split(rel)
        fd = os.open(name, WRITE_FLAGS, 0o555 if executable else 0o444, dir_fd=dir_fd)
        handle = os.fdopen(fd, "wb")
        self.writing[rel] = handle
        return handle.write

    def done(self, rel: str, executable: bool, sha256: str, ok: bool) -> None:
        handle = self.writing.pop(rel, None)
        if handle is not None:
            handle.close()
            if ok:
                self.written.add(rel)
                with self.lock:
                    self.known.setdefault((sha256, executable), self.dest / rel)
            return
        same = self.same.pop(rel)
        if ok:
            self._link_or_copy(rel, same, executable)

    def _link_or_copy(self, rel: str, same: Path, executable: bool) -> None:
        dir_fd, name = self.out.split(rel)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(same).st_mode):
                os.link(same, name, dst_dir_fd=dir_fd, follow_symlinks=False)
                return
        # Gone meanwhile, or the link limit: store the content itself (verified afterwards).
        fd = os.open(name, WRITE_FLAGS, 0o555 if executable else 0o444, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as out, open(same, "rb") as src:
            shutil.copyfileobj(src, out)

    def link(self, rel: str, target: str) -> None:
        dir_fd, name = self.out.split(rel)
        os.symlink(target, name, dir_fd=dir_fd)

    def copy_manifest(self, source: Path, manifest: dict[str, Any]) -> list[str]:
        """The manifest as checked (read again without following links), read-only."""
        raw = read_small(source / MANIFEST_REL, limit=256 << 20, what="the manifest")
        if raw is None or json.loads(raw) != manifest:
            return [f"{MANIFEST_REL}: changed while the bundle was being published"]
        dir_fd, name = self.out.split(MANIFEST_REL)
        fd = os.open(name, WRITE_FLAGS, 0o444, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        return []


class DirectoryTransaction:
    def __init__(self, backend: DirectoryBackend, txn_id: str) -> None:
        self.backend = backend
        self.id = txn_id
        self.dir = backend.state / "txn" / txn_id
        self.staged = self.dir / "tree"
        self.staged.mkdir(parents=True, exist_ok=True)
        self.links: list[tuple[str, str, str]] = []
        self.removes: list[str] = []
        self._index: dict[tuple[str, bool], Path] | None = None
        self._index_lock = threading.Lock()
        #: Per synced tree, the files written from the very bytes hashed as they were copied.
        self._written: dict[str, set[str]] = {}

    @classmethod
    def resume(cls, backend: DirectoryBackend, txn_id: str) -> None:
        """Roll a journaled publication forward after its publisher died."""
        txn = cls(backend, txn_id)
        journal = json.loads((txn.dir / "journal.json").read_text(encoding="utf-8"))
        txn._apply(journal)

    def _known(self, rel: str) -> dict[tuple[str, bool], Path]:
        with self._index_lock:
            if self._index is None:
                self._index = self.backend.content_index((self.backend.root / rel).parent.parent)
            return self._index

    def sync_tree(self, rel: str, source: Path, manifest: dict[str, Any]) -> None:
        """Check the bundle file by file as it is copied; refuse it whole on any problem.

        Each file is read once: hashed, checked, and written (or hardlinked to a published
        file of the same content). Nothing is opened through a link, on either side.
        """
        dest = self.staged / rel
        dest.mkdir(parents=True, exist_ok=True)
        with _Staging(dest, self._known(rel), self._index_lock) as staging:
            problems = check_tree(source, manifest, str(manifest["platform"]), staging)
            if not problems:
                problems = staging.copy_manifest(source, manifest)
            self._written[rel] = staging.written
        if problems:
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise BadInput(
                f"the bundle {source} does not match its manifest: {shown}{more}",
                fix="nothing was published; rebuild the bundle (dirac-release build --version "
                "<tag> --refresh) and never edit a built bundle by hand",
            )

    def mark_catalog(self, rel: str) -> None:
        with DirHandles(self.staged, create=True) as out:
            dir_fd = out.fd(rel)
            os.close(os.open(".cvmfscatalog", WRITE_FLAGS, 0o444, dir_fd=dir_fd))

    def set_link(self, rel_dir: str, name: str, target: str) -> None:
        self.links.append((rel_dir, name, target))

    def remove(self, rel: str) -> None:
        self.removes.append(rel)

    def verify_staged(self, rel: str, manifest: dict[str, Any]) -> list[str]:
        """The staged tree against the manifest: every entry's type, size, mode and link,
        nothing unlisted, and the content of every file this transaction did not write from
        bytes it hashed as it copied them (those hardlinked to published files, or copied
        from them), which is read and hashed here. The content of the files it wrote is what
        was hashed (hash while copying, not after); the whole published tree is read again
        after publishing."""
        from cvmfs.tree_check import content_problems, metadata_problems, unlisted

        tree = self.staged / rel
        if not tree.is_dir():
            return [f"/{rel} is not staged"]
        problems = metadata_problems(tree, manifest)
        problems += unlisted(tree, {entry["path"] for entry in manifest["files"]})
        if problems:
            return problems
        written = self._written.get(rel, set())
        unread = [e for e in manifest["files"] if "sha256" in e and e["path"] not in written]
        return content_problems(tree, unread)

    def _moves(self) -> list[str]:
        """The top-most staged paths that do not exist yet: each appears with one rename."""
        moves: list[str] = []

        def walk(rel: Path) -> None:
            for child in sorted((self.staged / rel).iterdir()):
                child_rel = rel / child.name
                published = self.backend.root / child_rel
                if not published.exists() and not published.is_symlink():
                    moves.append(child_rel.as_posix())
                elif published.is_dir() and child.is_dir() and not child.is_symlink():
                    walk(child_rel)
                else:
                    raise BadInput(
                        f"/{child_rel.as_posix()} is already published; a release is never overwritten"
                    )

        walk(Path())
        return moves

    def changes(self) -> int:
        moves = self._moves()
        links = [
            link for link in self.links
            if self.backend.entries(link[0]).get(link[1]) != link[2]
        ]  # fmt: skip
        return len(moves) + len(links) + len(self.removes)

    def publish(self, tag: str | None, message: str, digest: str) -> int:
        """Publish what is staged as the next revision, named `tag` unless None (maintenance)."""
        data = self.backend._tag_data()
        if tag is not None and any(existing["name"] == tag for existing in data["tags"]):
            raise BadInput(f"tag {tag} is already used in {self.backend.repository}")
        named = {"name": tag, "description": message, "digest": digest}
        moves = self._moves()
        for rel in [*moves, *(link[0] for link in self.links)]:
            check_no_link_on_path(self.backend.root, rel)
        journal = {
            "moves": moves,
            "links": self.links,
            "removes": self.removes,
            "revision": int(data["revision"]) + 1,
            "timestamp": int(datetime.now(UTC).timestamp()),
            "tag": named if tag is not None else None,
        }
        _write_json(self.dir / "journal.json", journal)
        try:
            return self._apply(journal)
        except Exception as exc:
            # From here on the publication can only go forward: keep the journal and the lock,
            # so the next publisher (a rerun of this one) finishes it before anything else.
            _ACTIVE.discard(self.id)
            raise InfrastructureError(
                f"the publication stopped after it was journaled: {exc}",
                where=str(self.backend.root),
                fix="fix the cause (disk space, permissions), then run the same command again: "
                "it finishes this publication first",
            ) from None

    def _apply(self, journal: dict[str, Any]) -> int:
        """Idempotent: safe to run again after a crash at any point inside it."""
        root = self.backend.root
        for rel in journal["moves"]:
            src, dst = self.staged / rel, root / rel
            if src.exists() or src.is_symlink():
                check_no_link_on_path(root, rel)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
        for rel_dir, name, target in journal["links"]:
            check_no_link_on_path(root, rel_dir)
            folder = root / rel_dir
            folder.mkdir(parents=True, exist_ok=True)
            current = folder / name
            if current.exists() and not current.is_symlink():
                raise BadInput(
                    f"/{rel_dir}/{name} is not a link; a link of that name cannot replace it",
                    where=str(root),
                    fix="rename the link in release.toml (links) so that no version or folder has its name",
                )
            tmp = folder / f".{name}.{self.id}"
            if tmp.is_symlink():
                tmp.unlink()
            tmp.symlink_to(target)
            tmp.replace(current)
        trash = self.dir / "trash"
        for index, rel in enumerate(journal["removes"]):
            victim = root / rel
            if victim.exists() or victim.is_symlink():
                trash.mkdir(parents=True, exist_ok=True)
                os.rename(victim, trash / str(index))
        data = self.backend._tag_data()
        revision = int(journal["revision"])
        tag = journal["tag"]
        changed = int(data["revision"]) < revision
        data["revision"] = max(int(data["revision"]), revision)
        if tag is not None and not any(
            existing["name"] == tag["name"] for existing in data["tags"]
        ):
            data["tags"].append({**tag, "revision": revision, "timestamp": journal["timestamp"]})
            changed = True
        if changed:
            _write_json(self.backend.tags_path, data)
        self.backend._release(self.id)
        return revision

    def abort(self) -> None:
        """Discard what is staged; a journaled publication is never discarded, only finished."""
        if (self.dir / "journal.json").is_file():
            _ACTIVE.discard(self.id)
            return
        self.backend._release(self.id)
