"""An upgrade reuses the bytecode of the sources it shares with the version it replaces.

The dirac_version module runs as Ansible runs it (a JSON arguments file); the services' Python
is this interpreter, run with the same PYTHONPYCACHEPREFIX as the run scripts set. Its `-v`
trace tells a .pyc loaded from the cache from a source compiled again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE = Path(__file__).resolve().parents[2] / "ansible/roles/dirac_server/library/dirac_version.py"
PLATFORM = "Linux-x86_64"
OLD_TIME, NEW_TIME = 1_700_000_000, 1_700_086_400


def run_module(tmp_path: Path, args: dict[str, Any]) -> dict[str, Any]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    assert not result.get("failed"), result
    return result


def publish(source: Path, version: str, files: dict[str, tuple[bytes, int]]) -> None:
    """A version as CVMFS holds it: files with their mtimes, and the manifest."""
    tree = source / version / PLATFORM
    entries = []
    for rel, (data, mtime) in sorted(files.items()):
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        entries.append({"path": rel, "size": len(data), "mode": "644",
                        "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    (tree / ".dirac-release").mkdir()
    (tree / ".dirac-release/manifest.json").write_text(json.dumps({"files": entries}))


def start_services(tree: Path, pycache: Path) -> str:
    """Import the modules as a service of that version would; the -v trace of the imports."""
    proc = subprocess.run(
        [sys.executable, "-v", "-c", "import same, moved, edited; print(edited.VALUE)"],
        cwd=tree / "lib", env={**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                               "PYTHONPYCACHEPREFIX": str(pycache), "PYTHONPATH": str(tree / "lib")},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return proc.stdout.strip() + "\n" + proc.stderr


def loaded_from_cache(trace: str, tree: Path, module: str) -> bool:
    return f"code object from '{pycache_of(tree, module)}'" in trace


def pycache_of(tree: Path, module: str) -> str:
    tag = sys.implementation.cache_tag
    return f"{PYCACHE}{tree}/lib/{module}.{tag}.pyc"


PYCACHE = ""  # set per test: the prefix the module and the services share


def test_upgrade_reuses_bytecode_only_for_identical_sources(tmp_path: Path) -> None:
    global PYCACHE
    source, root = tmp_path / "cvmfs", tmp_path / "opt-dirac"
    pycache = root / "cache/pycache"
    PYCACHE = str(pycache)
    publish(source, "v1", {
        "lib/same.py": (b"X = 1\n", OLD_TIME),
        "lib/moved.py": (b"Y = 2\n", OLD_TIME),
        # Same size and same mtime in the next version, other content: Python's own check
        # (mtime and size) would take the old bytecode for it.
        "lib/edited.py": (b"VALUE = 'old'\n", OLD_TIME),
    })  # fmt: skip
    publish(source, "v2", {
        "lib/same.py": (b"X = 1\n", OLD_TIME),  # published once, shared: same mtime
        "lib/moved.py": (b"Y = 2\n", NEW_TIME),  # same content, written again
        "lib/edited.py": (b"VALUE = 'new'\n", OLD_TIME),
    })  # fmt: skip
    common = {"root": str(root), "arch": "x86_64", "source": str(source), "pycache": str(pycache)}
    run_module(tmp_path, {**common, "action": "install", "version": "v1"})
    run_module(tmp_path, {**common, "action": "activate", "version": "v1"})
    old_tree = root / "versions/v1" / PLATFORM
    assert start_services(old_tree, pycache).startswith("old")

    installed = run_module(tmp_path, {**common, "action": "install", "version": "v2"})
    assert installed["bytecode_reused"] == 2, installed
    new_tree = root / "versions/v2" / PLATFORM
    same_old, same_new = Path(pycache_of(old_tree, "same")), Path(pycache_of(new_tree, "same"))
    assert same_new.stat().st_ino == same_old.stat().st_ino  # linked, not copied
    assert not Path(pycache_of(new_tree, "edited")).exists()
    # The installed tree stays as its manifest says: the cache lives elsewhere.
    run_module(tmp_path, {**common, "action": "verify", "version": "v2"})

    trace = start_services(new_tree, pycache)
    assert trace.startswith("new"), trace[:200]  # the edited source, never its old bytecode
    assert loaded_from_cache(trace, new_tree, "same")
    assert loaded_from_cache(trace, new_tree, "moved")  # its header now carries the new mtime
    assert not loaded_from_cache(trace, new_tree, "edited")
    # v1's cache is untouched: a rollback starts from it as before.
    assert loaded_from_cache(start_services(old_tree, pycache), old_tree, "moved")


def test_prune_drops_the_bytecode_of_versions_no_longer_installed(tmp_path: Path) -> None:
    source, root = tmp_path / "cvmfs", tmp_path / "opt-dirac"
    pycache = root / "cache/pycache"
    common = {"root": str(root), "arch": "x86_64", "source": str(source), "pycache": str(pycache)}
    for version in ("v1", "v2"):
        publish(source, version, {"lib/same.py": (b"X = 1\n", OLD_TIME)})
        run_module(tmp_path, {**common, "action": "install", "version": version})
        run_module(tmp_path, {**common, "action": "activate", "version": version})
    caches = pycache / str(root / "versions").lstrip("/")
    for name in ("v0", "v1", "v2"):
        (caches / name / PLATFORM).mkdir(parents=True, exist_ok=True)
    pruned = run_module(tmp_path, {**common, "action": "prune", "keep": 1})
    assert pruned["removed"] == []  # v1 is previous, v2 is pro
    assert pruned["bytecode_dropped"] == ["v0"]
    assert sorted(p.name for p in caches.iterdir()) == ["v1", "v2"]


def test_prune_takes_versions_out_at_once_and_deletes_them_in_the_background(
    tmp_path: Path,
) -> None:
    """A pruned version is gone from versions/ when the task ends; its files are deleted by a
    detached process that also empties what an interrupted prune left in the trash."""
    import time

    source, root = tmp_path / "cvmfs", tmp_path / "opt-dirac"
    common = {"root": str(root), "arch": "x86_64", "source": str(source)}
    for index, version in enumerate(("v1", "v2", "v3")):
        publish(source, version, {f"lib/m{i}.py": (b"X = 1\n" * 50, OLD_TIME) for i in range(200)})
        run_module(tmp_path, {**common, "action": "install", "version": version})
        run_module(tmp_path, {**common, "action": "activate", "version": version})
        os.utime(root / "versions" / version, (OLD_TIME + index, OLD_TIME + index))
    leftover = root / ".trash" / "v0-interrupted"
    (leftover / "lib").mkdir(parents=True)
    (leftover / "lib/x.py").write_text("left by a prune cut short\n")
    pruned = run_module(tmp_path, {**common, "action": "prune", "keep": 1})
    assert pruned["removed"] == ["v1"] and pruned["kept"] == ["v3", "v2"]
    assert pruned["deleting_in_background"] == 2  # v1 and the leftover
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["v2", "v3"]
    deadline = time.monotonic() + 30
    while any((root / ".trash").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any((root / ".trash").iterdir())
    # The versions kept still verify; nothing of theirs went to the trash.
    for version in ("v2", "v3"):
        run_module(tmp_path, {**common, "action": "verify", "version": version})
