"""manifest.json, the writing side: what the build puts in a manifest beyond the file list.

The manifest travels inside the bundle (`.dirac-release/manifest.json`), so whoever receives
the tree (CVMFS, a host, a pilot) can verify it without trusting the channel it came by. How
it is read, checked and hashed (names, file entries, the tree scan, the digest) is the bundle
contract, `cvmfs.bundle_contract`, re-exported here: the publisher must stand alone, and the
build must write exactly what the publisher will check.
"""

from __future__ import annotations

import json
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from cvmfs.bundle_contract import (
    MANIFEST_NAME,
    MANIFEST_REL,
    META_DIR,
    SCHEMA,
    TreeScan,
    digest_bytes,
    manifest_digest,
    manifest_path,
    normal_mode,
    quick_check,
    read_manifest,
    scan_tree,
    verify_tree,
)
from release.errors import CheckFailed

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_REL",
    "META_DIR",
    "SCHEMA",
    "TreeScan",
    "digest_bytes",
    "distributions",
    "dump",
    "manifest_digest",
    "manifest_path",
    "normal_mode",
    "quick_check",
    "raise_wrong_arch",
    "read_manifest",
    "scan_tree",
    "verify_tree",
]


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
    """The manifest's bytes: sorted keys and fixed indent, so a rebuild hashes the same."""
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"
