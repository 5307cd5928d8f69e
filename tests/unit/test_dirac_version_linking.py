"""An upgrade links from pro the files it shares with the new version, and never trusts them.

The dirac_version module runs as Ansible runs it; the source is a folder shaped like CVMFS's
(`<tag>/Linux-<arch>/` with the manifest). What is linked is seen by inode; what is installed
is read back byte for byte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.unit.test_dirac_version_bytecode import NEW_TIME, OLD_TIME, PLATFORM, publish, run_module

SHARED = {f"lib/pkg/m{i}.py": (f"X = {i}\n".encode(), OLD_TIME) for i in range(20)}


def install(tmp_path: Path, source: Path, root: Path, version: str) -> dict[str, object]:
    common = {"root": str(root), "arch": "x86_64", "source": str(source)}
    result = run_module(tmp_path, {**common, "action": "install", "version": version})
    run_module(tmp_path, {**common, "action": "activate", "version": version})
    return result


def tree_bytes(tree: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()
    }


def test_an_upgrade_links_the_files_pro_shares_and_copies_the_others(tmp_path: Path) -> None:
    source, root = tmp_path / "cvmfs", tmp_path / "opt-dirac"
    publish(source, "v1", {**SHARED, "lib/edited.py": (b"V = 1\n", OLD_TIME),
                           "lib/touched.py": (b"T = 1\n", OLD_TIME)})  # fmt: skip
    publish(source, "v2", {**SHARED, "lib/edited.py": (b"V = 2\n", OLD_TIME),
                           "lib/touched.py": (b"T = 1\n", NEW_TIME),  # same bytes, other mtime
                           "lib/new.py": (b"N = 1\n", NEW_TIME)})  # fmt: skip
    os.chmod(source / "v2" / PLATFORM / "lib/pkg/m0.py", 0o600)  # same bytes, other mode
    first = install(tmp_path, source, root, "v1")
    assert first["files_linked"] == 0  # nothing to link from on a first installation

    second = install(tmp_path, source, root, "v2")
    old, new = root / "versions/v1" / PLATFORM, root / "versions/v2" / PLATFORM
    assert second["files_linked"] == 19, second  # SHARED but m0 (its mode differs)
    for rel in SHARED:
        same_inode = (old / rel).stat().st_ino == (new / rel).stat().st_ino
        assert same_inode is (rel != "lib/pkg/m0.py"), rel
    for rel in ("lib/edited.py", "lib/touched.py"):
        assert (old / rel).stat().st_ino != (new / rel).stat().st_ino, rel
    assert tree_bytes(new) == tree_bytes(source / "v2" / PLATFORM)
    assert int((new / "lib/touched.py").stat().st_mtime) == NEW_TIME
    assert (new / "lib/pkg/m0.py").stat().st_mode & 0o777 == 0o600
    assert tree_bytes(old)["lib/edited.py"] == b"V = 1\n"  # pro's own files untouched


def test_a_file_of_pro_edited_in_place_is_never_linked_into_the_new_version(
    tmp_path: Path,
) -> None:
    """Linking trusts nothing: the new tree is verified, and a mismatch means a full copy."""
    source, root = tmp_path / "cvmfs", tmp_path / "opt-dirac"
    publish(source, "v1", SHARED)
    publish(source, "v2", {**SHARED, "lib/new.py": (b"N = 1\n", NEW_TIME)})
    install(tmp_path, source, root, "v1")
    edited = root / "versions/v1" / PLATFORM / "lib/pkg/m3.py"
    stat_before = edited.stat()
    edited.write_bytes(b"X = 9\n")  # same size, mtime put back: only the content tells
    os.utime(edited, (stat_before.st_atime, stat_before.st_mtime))

    result = install(tmp_path, source, root, "v2")
    new = root / "versions/v2" / PLATFORM
    assert result["files_linked"] == 0, result  # the linked tree failed verification
    assert (new / "lib/pkg/m3.py").read_bytes() == b"X = 3\n"
    assert tree_bytes(new) == tree_bytes(source / "v2" / PLATFORM)
    assert edited.read_bytes() == b"X = 9\n"  # what pro holds is the admins' business


def test_symbolic_links_are_made_again_not_followed(tmp_path: Path) -> None:
    source, root = tmp_path / "cvmfs", tmp_path / "opt-dirac"
    for version in ("v1", "v2"):
        publish(source, version, SHARED)
        tree = source / version / PLATFORM
        (tree / "lib/current").symlink_to("pkg")
        (tree / "lib/one.py").symlink_to("pkg/m1.py")
        manifest = tree / ".dirac-release/manifest.json"
        entries = json.loads(manifest.read_text())["files"]
        entries += [
            {"path": "lib/current", "link": "pkg"},
            {"path": "lib/one.py", "link": "pkg/m1.py"},
        ]
        manifest.write_text(json.dumps({"files": entries}))
    install(tmp_path, source, root, "v1")
    result = install(tmp_path, source, root, "v2")
    new = root / "versions/v2" / PLATFORM
    assert result["files_linked"] == 20
    assert os.readlink(new / "lib/current") == "pkg"
    assert os.readlink(new / "lib/one.py") == "pkg/m1.py"
    assert not (new / "lib/current").resolve().is_relative_to(root / "versions/v1")
