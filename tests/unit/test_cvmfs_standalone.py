"""`cvmfs` stands alone: it imports nothing from the toolkit, and publishes without it.

Two proofs, because each misses what the other catches: the source check sees an import
hidden in a function that no test path runs, and the subprocess sees an import that comes in
indirectly (through a third module, or at import time of a package `__init__`).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvmfs.bundle_contract import manifest_digest, manifest_path
from release.config import load_config
from release.targets import make_backend, server_node
from tests.publishing import make_bundle, write_config

REPO = Path(__file__).resolve().parents[2]
CVMFS = REPO / "cvmfs"
FORBIDDEN = ("release", "tests")

#: Runs in a fresh interpreter: toolkit imports fail loudly, then every cvmfs module is
#: imported and one version is published to a directory stratum with the public API only.
CHILD = """
import importlib, importlib.abc, json, pkgutil, sys
from pathlib import Path

FORBIDDEN = ("release", "tests")


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"cvmfs must stand alone, but {name} was imported")
        return None


sys.meta_path.insert(0, Block())

import cvmfs

modules = sorted(m.name for m in pkgutil.walk_packages(cvmfs.__path__, "cvmfs."))
for name in modules:
    importlib.import_module(name)

from cvmfs.backends.directory import DirectoryBackend
from cvmfs.backends.server import ServerBackend, ServerNode
from cvmfs.bundles import load_bundles
from cvmfs.layout import Layout
from cvmfs.publisher import publish
from cvmfs.retention import plan_retention

out, stratum = Path(sys.argv[1]), Path(sys.argv[2])
backend = DirectoryBackend("vodemo.egi.eu", stratum)
backend.init()
bundles = load_bundles(out, "vodemo", "v1.0.0", ["x86_64", "aarch64"])
layout = Layout("vodemo.egi.eu", "vodemo")
publication = publish(backend, layout, bundles, tag_name="vodemo-v1.0.0", wait_s=5)
again = publish(backend, layout, bundles, tag_name="vodemo-v1.0.0", wait_s=5)
entries = backend.entries("vodemo") | {"v0.9.0": None, "notes": None}
retention = plan_retention(
    entries, 1, version_key=lambda n: ("v", n) if n.startswith("v") else None
)
ServerBackend("vodemo.egi.eu", ServerNode())  # constructible from plain values
leaked = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({
    "modules": modules,
    "publication": publication.as_dict(),
    "again": again.status,
    "remove": retention.remove,
    "leaked": leaked,
}))
"""


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_cvmfs_source_imports_the_toolkit() -> None:
    sources = sorted(CVMFS.rglob("*.py"))
    assert len(sources) > 10  # the walk found the package, not an empty folder
    offending = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in sources
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if module.split(".")[0] in FORBIDDEN
    ]
    assert offending == []


def test_cvmfs_imports_and_publishes_with_the_toolkit_blocked(tmp_path: Path) -> None:
    # The bundle is made by the build side's code here, in the test process; the child only
    # receives its path, so what it proves is about the publisher alone.
    make_bundle(tmp_path / "dist", "v1.0.0")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "dist"), str(tmp_path / "stratum")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    expected = {
        f"cvmfs.{p.relative_to(CVMFS).with_suffix('').as_posix().replace('/', '.')}"
        for p in CVMFS.rglob("*.py")
        if p.name != "__init__.py"
    } | {"cvmfs.backends"}
    assert set(result["modules"]) == expected
    assert result["leaked"] == []
    publication = result["publication"]
    assert publication["status"] == "published"
    assert result["again"] == "already published"
    tree = tmp_path / "stratum" / "vodemo.egi.eu" / "vodemo" / "v1.0.0" / "Linux-x86_64"
    assert (tree / "lib" / "pkg" / "__init__.py").read_bytes() == b"VERSION = 1\n"
    # The digest the publisher recorded is the contract's, over the published manifest.
    assert publication["manifests"]["x86_64"] == manifest_digest(manifest_path(tree))
    assert result["remove"] == ["v0.9.0"]


def test_targets_hand_the_server_backend_plain_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    server = '[repositories."server.egi.eu"]\nbackend = "server"\nhost = "s0"\nssh_key = "k/id"\n'
    write_config(tmp_path, extra=server)
    config = load_config(tmp_path / "release.toml", environ={})
    _, repo = config.repository("server.egi.eu")
    node = server_node(config, repo)
    assert (node.host, node.ssh_key) == ("s0", tmp_path / "k" / "id")
    monkeypatch.setenv("DIRAC_RELEASE_CVMFS_HOST", "other")
    monkeypatch.setenv("DIRAC_RELEASE_CVMFS_SSH_KEY", "ci/key")
    node = server_node(config, repo)
    assert (node.host, node.ssh_key) == ("other", Path("ci/key"))
    backend = make_backend(config, "server.egi.eu", repo)
    assert backend.kind == "server"
