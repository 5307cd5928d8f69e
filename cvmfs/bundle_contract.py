"""The bundle contract: what a build hands over and every later stage reads back, defined once.

A bundle is a tree `<out>/<tag>/Linux-<arch>/` carrying `.dirac-release/manifest.json` (every
file with its size, sha256 and mode, every link with its target), and a `SHA256SUMS` beside
the trees over the manifests and tarballs. The build writes them, the publisher checks them,
certify and promote compare their digests: if each kept its own idea of the names, the line
format, the file modes or the digest, a bundle one stage accepts could be refused (or worse,
accepted differently) by the next. So all of it lives here, in the publisher, which has to
stand alone; the build side (`release.build.manifest`) imports it and keeps only the writing.
The strict checks of a manifest's shape are `cvmfs.manifest_rules`; loading a whole version
with its errors for the operator is `cvmfs.bundles`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvmfs import elf
from cvmfs.errors import BadInput

SCHEMA = "dirac-release/manifest/v1"
META_DIR = ".dirac-release"
MANIFEST_NAME = "manifest.json"
MANIFEST_REL = f"{META_DIR}/{MANIFEST_NAME}"
SUMS_NAME = "SHA256SUMS"
#: One SHA256SUMS line, as `sha256sum` writes it: the digest, two spaces, a relative name.
SUMS_LINE = re.compile(r"^([0-9a-f]{64})  ([^\x00-\x1f/][^\x00-\x1f]*)$")
_CHUNK = 1 << 20


def digest_bytes(raw: bytes) -> str:
    """The SHA-256 of a manifest's bytes, for callers that hold them already (see below)."""
    return hashlib.sha256(raw).hexdigest()


def manifest_digest(path: Path) -> str:
    """THE digest of a bundle: the SHA-256 of its manifest file's bytes, as hex.

    Every stage uses this one definition: the build lists it in SHA256SUMS and records it in
    the ledger as `manifest_sha256`, the publisher checks the manifest against it, and certify
    and promote compare it to say that what was certified is what is promoted. The manifest
    lists every file's hash, so this digest covers the whole tree. It is over the bytes, not
    over the parsed JSON, so that `sha256sum -c SHA256SUMS` checks the same thing by hand.
    `path` is the manifest file itself (`manifest_path(tree)` for a tree).
    """
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def manifest_path(tree: Path) -> Path:
    return tree / META_DIR / MANIFEST_NAME


def normal_mode(mode: int) -> int:
    """Only the executable bit survives: 0755 or 0644, as in the tarball and on CVMFS."""
    return 0o755 if mode & 0o111 else 0o644


def parse_sums_line(line: str) -> tuple[str, str] | None:
    """(name, digest) of a well-formed SHA256SUMS line; None for anything else.

    Names are relative and plain: an empty, `.` or `..` segment would let a line reach
    outside the version folder.
    """
    match = SUMS_LINE.match(line)
    if match is None or any(part in ("", ".", "..") for part in match.group(2).split("/")):
        return None
    return match.group(2), match.group(1)


def format_sums(sums: dict[str, str]) -> str:
    """SHA256SUMS text for name -> digest, sorted so a rebuild writes the same bytes."""
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))


@dataclass
class TreeScan:
    files: list[dict[str, Any]] = field(default_factory=list)
    elf_files: int = 0
    wrong_arch: list[tuple[str, str]] = field(default_factory=list)
    total_bytes: int = 0


def _hash(path: Path | str) -> tuple[str, bytes]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        head = handle.read(_CHUNK)
        digest.update(head)
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest(), head[:20]


def _check_link(root: Path, rel: str, target: str) -> None:
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise BadInput(
            f"symlink {rel} -> {target} points outside the bundle",
            where=str(root),
            fix="bundles must be self-contained: replace the link by the file, or make it relative inside the tree",
        )


#: What a writer of the tree already knows of a file: given its path and lstat, its sha256
#: and first bytes (for the ELF check), or None to have it read and hashed.
Known = Callable[[str, os.stat_result], tuple[str, bytes] | None]


def scan_tree(
    root: Path, arch: str | None, skip: frozenset[str] = frozenset(), known: Known | None = None
) -> TreeScan:
    """Hash every file under root (sorted, relative POSIX paths) and check ELF machines.

    The entries are exactly the manifest's `files`, so the build writes what this returns and
    `verify_tree` compares against it: one pass defines what "matches the manifest" means.
    `known` spares reading a file whose digest the writer of the tree took as it wrote it
    (an image build); what it claims is still checked byte by byte when the tree is published.
    """
    scan = TreeScan()
    top = os.fspath(root)
    # Plain strings, not Path objects: a tree has tens of thousands of entries.
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, top)
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames + links):
            path = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                _check_link(root, rel, target)
                scan.files.append({"path": rel, "link": target})
                continue
            if not stat.S_ISREG(st.st_mode):
                raise BadInput(f"{rel} is not a regular file, link or directory", where=str(root))
            found = known(rel, st) if known is not None else None
            digest, head = found if found is not None else _hash(path)
            scan.files.append(
                {
                    "path": rel,
                    "size": st.st_size,
                    "sha256": digest,
                    "mode": f"{normal_mode(st.st_mode):o}",
                }
            )
            scan.total_bytes += st.st_size
            header = elf.read_header(head)
            if header is not None:
                scan.elf_files += 1
                if arch is not None and not elf.matches(header, arch):
                    scan.wrong_arch.append((rel, header.machine_name))
        dirnames[:] = [d for d in dirnames if d not in links]
    return scan


def read_manifest(tree: Path) -> dict[str, Any] | None:
    """The tree's manifest when it is one of ours; None when missing, unreadable or foreign.

    Lenient on purpose (a cache probe, a status look): whoever trusts its content validates
    it with `cvmfs.manifest_rules` or checks it against SHA256SUMS first.
    """
    try:
        data = json.loads(manifest_path(tree).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def quick_check(tree: Path, manifest: dict[str, Any]) -> bool:
    """Presence, size and count of files: cheap enough for every cache hit.

    Counting catches what running a bundle in place leaves behind (__pycache__, edited files
    of the same size are left to the full `verify_tree`).
    """
    try:
        for entry in manifest["files"]:
            path = tree / entry["path"]
            if "link" in entry:
                if os.readlink(path) != entry["link"]:
                    return False
            elif path.stat().st_size != entry["size"]:
                return False
    except (OSError, KeyError):
        return False
    present = 0
    for root, dirs, files in os.walk(tree):
        present += len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(root, d)))
    return present == len(manifest["files"]) + 1  # + the manifest itself


def verify_tree(tree: Path, manifest: dict[str, Any]) -> list[str]:
    """Full content check: the problems found (empty when the tree matches)."""
    listed = {entry["path"]: entry for entry in manifest["files"]}
    scan = scan_tree(tree, None, skip=frozenset({MANIFEST_REL}))
    problems = []
    seen = set()
    for entry in scan.files:
        seen.add(entry["path"])
        expected = listed.get(entry["path"])
        if expected is None:
            problems.append(f"{entry['path']}: not in the manifest")
        elif expected != entry:
            problems.append(f"{entry['path']}: differs from the manifest")
    problems.extend(f"{path}: missing" for path in sorted(set(listed) - seen))
    return problems
