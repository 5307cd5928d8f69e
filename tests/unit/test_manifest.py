"""Manifest and ELF checks: every file hashed, every foreign binary named."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from release.build import elf
from release.build import manifest as mf
from release.errors import BadInput, CheckFailed


def elf_header(machine: int, *, bits: int = 64, little: bool = True) -> bytes:
    """A minimal ELF identification + e_type + e_machine, as the kernel reads it."""
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1]) + b"\0" * 9
    order = "little" if little else "big"
    return ident + (3).to_bytes(2, order) + machine.to_bytes(2, order) + b"\0" * 44


def test_read_header_machines() -> None:
    assert elf.read_header(elf_header(62)) == elf.ElfHeader(62, 64, True)
    header = elf.read_header(elf_header(183))
    assert (
        header is not None and elf.matches(header, "aarch64") and not elf.matches(header, "x86_64")
    )
    big = elf.read_header(elf_header(183, little=False))
    assert big is not None and not elf.matches(big, "aarch64")  # aarch64_be is not our target
    thirty_two = elf.read_header(elf_header(40, bits=32))
    assert thirty_two is not None and thirty_two.machine_name == "ARM"
    assert elf.read_header(b"#!/bin/sh\n" + b"\0" * 20) is None
    assert elf.read_header(b"\x7fEL") is None


def make_tree(root: Path) -> Path:
    (root / "lib").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "lib" / "_ok.so").write_bytes(elf_header(62) + b"code")
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o750)
    (root / "lib" / "alias.so").symlink_to("_ok.so")
    return root


def test_scan_hashes_every_file_and_checks_elf(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    scan = mf.scan_tree(tree, "x86_64")
    by_path = {entry["path"]: entry for entry in scan.files}
    assert sorted(by_path) == ["bin/tool", "lib/_ok.so", "lib/alias.so"]
    assert by_path["bin/tool"]["mode"] == "755"
    assert (
        by_path["lib/_ok.so"]["sha256"]
        == hashlib.sha256((tree / "lib/_ok.so").read_bytes()).hexdigest()
    )
    assert by_path["lib/alias.so"] == {"path": "lib/alias.so", "link": "_ok.so"}
    assert scan.elf_files == 1 and scan.wrong_arch == []
    assert scan.total_bytes == sum(e.get("size", 0) for e in scan.files)


def test_mixed_tree_fails_and_names_the_file(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    (tree / "lib" / "_foreign.so").write_bytes(elf_header(183))
    scan = mf.scan_tree(tree, "x86_64")
    assert scan.wrong_arch == [("lib/_foreign.so", "aarch64")]
    with pytest.raises(CheckFailed) as caught:
        mf.raise_wrong_arch(scan, "x86_64", tree)
    assert caught.value.exit_code == 1
    assert "lib/_foreign.so: aarch64" in caught.value.message


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "../.."])
def test_escaping_symlinks_are_refused(tmp_path: Path, target: str) -> None:
    tree = make_tree(tmp_path / "t")
    (tree / "lib" / "evil").symlink_to(target)
    with pytest.raises(BadInput, match="points outside the bundle"):
        mf.scan_tree(tree, "x86_64")


def test_verify_tree_finds_changed_missing_and_extra_files(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    scan = mf.scan_tree(tree, "x86_64")
    manifest = {"schema": mf.SCHEMA, "files": scan.files}
    mf.manifest_path(tree).parent.mkdir()
    mf.manifest_path(tree).write_text(mf.dump(manifest))
    assert mf.read_manifest(tree) == manifest
    assert mf.verify_tree(tree, manifest) == []
    assert mf.quick_check(tree, manifest)
    (tree / "lib" / "__pycache__").mkdir()
    (tree / "lib" / "__pycache__" / "x.pyc").write_bytes(b"left by running in place")
    assert not mf.quick_check(tree, manifest)
    assert mf.verify_tree(tree, manifest) == ["lib/__pycache__/x.pyc: not in the manifest"]
    (tree / "lib" / "__pycache__" / "x.pyc").unlink()
    (tree / "bin" / "tool").write_bytes(b"#!/bin/bash\n")  # one byte longer
    (tree / "lib" / "_ok.so").unlink()
    (tree / "extra").write_text("x")
    problems = mf.verify_tree(tree, manifest)
    assert "bin/tool: differs from the manifest" in problems
    assert "lib/_ok.so: missing" in problems
    assert "extra: not in the manifest" in problems
    assert not mf.quick_check(tree, manifest)


def test_same_content_same_manifest(tmp_path: Path) -> None:
    one = mf.dump(
        {"schema": mf.SCHEMA, "files": mf.scan_tree(make_tree(tmp_path / "a"), None).files}
    )
    two_tree = make_tree(tmp_path / "b")
    os.utime(two_tree / "bin" / "tool", (1, 1))
    two = mf.dump({"schema": mf.SCHEMA, "files": mf.scan_tree(two_tree, None).files})
    assert one == two
    assert json.loads(one)["files"][0]["path"] == "bin/tool"


def test_distributions_from_dist_info(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "pydantic_core-2.41.5.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pydantic_core\nVersion: 2.41.5\n")
    (info / "WHEEL").write_text(
        "Wheel-Version: 1.0\nTag: cp311-cp311-manylinux_2_17_aarch64\nTag: cp311-cp311-manylinux2014_aarch64\n"
    )
    assert mf.distributions(site) == [
        {
            "name": "pydantic_core",
            "version": "2.41.5",
            "wheel_tags": [
                "cp311-cp311-manylinux2014_aarch64",
                "cp311-cp311-manylinux_2_17_aarch64",
            ],
        }
    ]
