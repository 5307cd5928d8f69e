"""manifest.json: every file of a bundle with its size, sha256 and mode, and every distribution.

The manifest travels inside the bundle (`.dirac-release/manifest.json`), so whoever receives
the tree (CVMFS, a host, a pilot) can verify it without trusting the channel it came by.
One pass over the tree hashes the files and reads their ELF headers.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from release.build import elf
from release.build.layout import MANIFEST_NAME as MANIFEST_NAME
from release.build.layout import META_DIR as META_DIR
from release.errors import BadInput, CheckFailed

SCHEMA = "dirac-release/manifest/v1"


def normal_mode(mode: int) -> int:
    """Only the executable bit survives: 0755 or 0644, as in the tarball."""
    return 0o755 if mode & 0o111 else 0o644


@dataclass
class TreeScan:
    files: list[dict[str, Any]] = field(default_factory=list)
    elf_files: int = 0
    wrong_arch: list[tuple[str, str]] = field(default_factory=list)
    total_bytes: int = 0


def _hash(path: Path) -> tuple[str, bytes]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
        digest.update(head)
        while chunk := handle.read(1 << 20):
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


def scan_tree(root: Path, arch: str | None, skip: frozenset[str] = frozenset()) -> TreeScan:
    """Hash every file under root (sorted, relative POSIX paths) and check ELF machines."""
    scan = TreeScan()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            path = base / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in skip:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                _check_link(root, rel, target)
                scan.files.append({"path": rel, "link": target})
                continue
            if not stat.S_ISREG(st.st_mode):
                raise BadInput(f"{rel} is not a regular file, link or directory", where=str(root))
            digest, head = _hash(path)
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
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return scan


def distributions(site: Path) -> list[dict[str, Any]]:
    """Name, version and wheel tags of every installed distribution, from its dist-info."""
    found = []
    parser = HeaderParser()
    for info in sorted(site.glob("*.dist-info")):
        meta = parser.parsestr((info / "METADATA").read_text(encoding="utf-8", errors="replace"))
        wheel = (
            parser.parsestr((info / "WHEEL").read_text(encoding="utf-8"))
            if (info / "WHEEL").exists()
            else None
        )
        found.append(
            {
                "name": meta.get("Name", info.name.split("-")[0]),
                "version": meta.get("Version", ""),
                "wheel_tags": sorted(wheel.get_all("Tag") or []) if wheel else [],
            }
        )
    return sorted(found, key=lambda d: str(d["name"]).lower())


def raise_wrong_arch(scan: TreeScan, arch: str, root: Path) -> None:
    if not scan.wrong_arch:
        return
    shown = "\n".join(f"  {path}: {machine}" for path, machine in scan.wrong_arch[:10])
    more = f"\n  ... and {len(scan.wrong_arch) - 10} more" if len(scan.wrong_arch) > 10 else ""
    raise CheckFailed(
        f"{len(scan.wrong_arch)} ELF file(s) in the {arch} bundle are not {arch}:\n{shown}{more}",
        where=str(root),
        fix="a wheel is mis-tagged or a file was added by hand; pin another version or remove the file",
    )


def dump(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def manifest_path(tree: Path) -> Path:
    return tree / META_DIR / MANIFEST_NAME


def read_manifest(tree: Path) -> dict[str, Any] | None:
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
    scan = scan_tree(tree, None, skip=frozenset({f"{META_DIR}/{MANIFEST_NAME}"}))
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
