"""Synthetic bundles and configurations for publishing tests (no package index needed).

The trees are made with the build stage's own manifest and SHA256SUMS code, so they are
exactly what `dirac-release build` leaves behind, only small.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from release.build import manifest as mf

PRODUCT = "vodemo"


def make_bundle(
    out: Path,
    tag: str,
    *,
    files: dict[str, bytes] | None = None,
    platforms: tuple[str, ...] = ("x86_64", "aarch64"),
) -> Path:
    """A version folder with Linux-<arch> trees, manifests and SHA256SUMS."""
    version_dir = out / tag
    sums: dict[str, str] = {}
    for arch in platforms:
        tree = version_dir / f"Linux-{arch}"
        content = files if files is not None else default_files(tag, arch)
        for rel, data in content.items():
            path = tree / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if rel.startswith("bin/"):
                path.chmod(0o755)
        if files is None:
            (tree / "lib" / "current.py").symlink_to("pkg/__init__.py")
        write_manifest(tree, tag, arch)
        sums[f"Linux-{arch}/.dirac-release/manifest.json"] = hashlib.sha256(
            mf.manifest_path(tree).read_bytes()
        ).hexdigest()
    (version_dir / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    return version_dir


def default_files(tag: str, arch: str, shared: int = 40) -> dict[str, bytes]:
    files = {
        f"lib/pkg/mod{i:03d}.py": f"# shared module {i}\n".encode() * 200 for i in range(shared)
    }
    files["lib/pkg/__init__.py"] = b"VERSION = 1\n"
    files["lib/pkg/_native.so"] = f"native code for {arch}".encode() * 500
    files["bin/vodemo-info"] = b"#!/usr/bin/env python3.11\nprint('hi')\n"
    files["diracosrc"] = f"export DIRAC_RELEASE_VERSION={tag}\n".encode()
    files[".dirac-release/requirements.lock"] = f"vodemo=={tag}\n".encode()
    return files


def write_manifest(tree: Path, tag: str, arch: str) -> None:
    skip = frozenset({".dirac-release/manifest.json"})
    scan = mf.scan_tree(tree, None, skip=skip)
    manifest = {
        "schema": mf.SCHEMA,
        "product": PRODUCT,
        "version": tag.removeprefix("v"),
        "tag": tag,
        "platform": arch,
        "source": {"kind": "git", "commit": "0" * 40},
        # As the build lists them (name as the distribution spells it, version as installed).
        "distributions": [
            {"name": "vodemo_dirac", "version": tag.removeprefix("v")},
            {"name": "PyYAML", "version": "6.0.2"},
        ],
        "files": scan.files,
        "totals": {"files": len(scan.files), "bytes": scan.total_bytes, "elf_files": 0},
    }
    mf.manifest_path(tree).parent.mkdir(parents=True, exist_ok=True)
    mf.manifest_path(tree).write_text(mf.dump(manifest))


CONFIG = """
[products.vodemo]
source = {{ git = "repo" }}
distribution = "vodemo-dirac"

[repositories."vodemo.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "vodemo"
links = ["latest"]
keep = {keep}
wait = {wait}

[build]
out = "dist"
cache_dir = "cache"
"""


def write_config(root: Path, *, keep: int = 5, wait: float = 5, extra: str = "") -> Path:
    """release.toml for the synthetic product; `extra` appends tables (environments...)."""
    path = root / "release.toml"
    path.write_text(CONFIG.format(keep=keep, wait=wait) + extra)
    return path


def du(path: Path) -> int:
    """Bytes on disk under path, each inode counted once (hardlinks share storage)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_size
    return total


SERVICE_SCRIPT = """\
#!/usr/bin/python3
# A stand-in DIRAC service: answers its version on /health.
import http.server, os, socket, sys
VERSION = {version!r}
if {fail_on!r} == socket.gethostname():
    sys.exit("broken build: exits at once")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = VERSION.encode() if self.path == "/health" else b"not found"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer.allow_reuse_address = True
http.server.HTTPServer(("127.0.0.1", int(os.environ["DIRAC_SERVICE_PORT"])), Handler).serve_forever()
"""


def service_files(version: str, fail_on: str = "") -> dict[str, bytes]:
    """Bundle files of a tiny service answering its version on /health (dies on `fail_on`)."""
    return {
        "bin/dirac-service": SERVICE_SCRIPT.format(version=version, fail_on=fail_on).encode(),
        "diracosrc": f"export DIRAC_VERSION={version}\n".encode(),
        "lib/DIRAC/__init__.py": f"version = {version!r}\n".encode(),
    }
