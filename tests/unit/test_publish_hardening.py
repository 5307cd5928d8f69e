"""Crafted bundles never touch a published version; what --plan refuses, publish refuses.

Each family is generated from a kind of attack or damage, not from one example: link chains
of every depth, special files in every role, every way a manifest can be malformed, every
damage a tree can have behind a consistent manifest. Every refusal must be bad input (exit 2)
that leaves the repository byte for byte as it was, with no lock and no staging left.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from release.config import load_config
from release.errors import BadInput
from release.publish import init_repository, publish_release
from tests.conftest import lab_skip
from tests.publishing import default_files, make_bundle, write_config

Manifest = dict[str, Any]
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
OLD, NEW = "v1.0.0", "v1.0.1"


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    """A repository with v1.0.0 published, and an `outside` folder nothing may write into."""
    write_config(tmp_path)
    init_repository(load_config(tmp_path / "release.toml", environ={}), None)
    make_bundle(tmp_path / "dist", OLD)
    publish(tmp_path, OLD)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("not for publication\n")
    make_bundle(tmp_path / "dist", NEW)
    return tmp_path


def publish(site: Path, tag: str, **kwargs: object) -> dict[str, object]:
    return publish_release(load_config(site / "release.toml", environ={}), version=tag, **kwargs)  # type: ignore[arg-type]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every name under root with its type+mode and content digest or link target."""
    seen: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = ""
            seen[str(path.relative_to(root))] = (st.st_mode, what)
    return seen


def tree(site: Path, arch: str = "x86_64") -> Path:
    return site / "dist" / NEW / f"Linux-{arch}"


def reseal(site: Path, arch: str, change: Callable[[Manifest], None] | None = None) -> None:
    """Rewrite the manifest (after `change`) and SHA256SUMS, as a crafter covering tracks would."""
    path = tree(site, arch) / ".dirac-release/manifest.json"
    manifest = json.loads(path.read_text())
    if change is not None:
        change(manifest)
    files = manifest["files"]
    if isinstance(files, list):
        manifest["totals"] = {
            "files": len(files),
            "bytes": sum(e.get("size", 0) for e in files if isinstance(e, dict) and isinstance(e.get("size"), int)),
            "elf_files": 0,
        }  # fmt: skip
    path.write_text(json.dumps(manifest))
    resum(site)


def resum(site: Path) -> None:
    version_dir = site / "dist" / NEW
    lines = []
    for line in (version_dir / "SHA256SUMS").read_text().splitlines():
        name = line.split("  ", 1)[1]
        lines.append(f"{hashlib.sha256((version_dir / name).read_bytes()).hexdigest()}  {name}")
    (version_dir / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def add_links(
    links: dict[str, str], files: dict[str, bytes] | None = None
) -> Callable[[Manifest], None]:
    """Manifest entries for crafted links (and files), made in the tree too (no check on the way)."""

    def change(manifest: Manifest) -> None:
        for path, target in links.items():
            manifest["files"].append({"path": path, "link": target})
        for path, data in (files or {}).items():
            manifest["files"].append(
                {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "mode": "644"}
            )  # fmt: skip

    return change


def make_links(root: Path, links: dict[str, str]) -> None:
    for path, target in links.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / path)


def assert_refused_and_untouched(site: Path, *, plan_too: bool = True) -> str:
    """Both the plan and the publish refuse with exit 2; nothing anywhere changed."""
    stratum = site / "stratum"
    before, outside = snapshot(stratum), snapshot(site / "outside")
    messages = []
    for plan in [True, False] if plan_too else [False]:
        with pytest.raises(BadInput) as caught:
            publish(site, NEW, plan=plan)
        assert caught.value.exit_code == 2
        messages.append(caught.value.render())
    assert snapshot(stratum) == before, "the repository changed"
    assert snapshot(site / "outside") == outside
    state = stratum / ".dirac-release" / "vodemo.egi.eu"
    assert not (state / "transaction.json").exists()
    assert list((state / "txn").iterdir()) == []
    assert not (stratum / "vodemo.egi.eu" / "vodemo" / NEW).exists()
    return messages[-1]


# -- family 1: symlinks, chained every way ---------------------------------------------------


def _chain(depth: int, length: int) -> dict[str, str]:
    """In a folder `depth` deep, link k goes one level up through link k-1."""
    folder = "/".join(f"d{i}" for i in range(depth))
    links = {f"{folder}/l1": ".."}
    for k in range(2, length + 1):
        links[f"{folder}/l{k}"] = f"l{k - 1}/.."
    return links


ESCAPING: dict[str, dict[str, str]] = {
    **{f"chain-depth{d}": _chain(d, d + 1) for d in range(1, 6)},
    **{f"chain-depth{d}-far": {**_chain(d, d + 1), f"{'/'.join(f'd{i}' for i in range(d))}/x": f"l{d + 1}/../outside/secret"} for d in (1, 3)},
    "up-then-dotdot": {"a/up": "..", "a/b/esc": "../up/../../../etc/passwd"},
    "issue-example": {"a/b/c/up": "../..", "a/b/c/esc": "up/../../../etc/passwd"},
    "absolute": {"lib/evil": "/etc/passwd"},
    "absolute-inner": {"lib/abs": "/tmp", "lib/via": "abs/x"},
    "to-published-version": {"pv": "../../v1.0.0/Linux-x86_64/lib"},
    "via-link-to-root": {"r": ".", "r2": "r/r/r/.."},
    "self-loop": {"s": "s"},
    "two-loop": {"a": "b", "b": "a"},
    "too-many-hops": {f"h{i}": f"h{i + 1}" for i in range(45)} | {"h45": "lib"},
    "control-char": {"lib/nl": "pkg\n/../../.."},
}  # fmt: skip
INSIDE: dict[str, dict[str, str]] = {
    **{f"chain-depth{d}-inside": _chain(d, d) for d in range(1, 6)},
    "relative-sibling": {"lib/alias": "pkg/__init__.py"},
    "chain-of-three": {"x1": "x2", "x2": "x3", "x3": "lib/pkg"},
    "dangling-inside": {"lib/later": "missing/file"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ESCAPING))
def test_link_that_leaves_the_tree_is_refused(site: Path, name: str) -> None:
    links = ESCAPING[name]
    make_links(tree(site), {p: t for p, t in links.items() if "\n" not in t})
    reseal(site, "x86_64", add_links(links))
    message = assert_refused_and_untouched(site)
    assert "symlink" in message or "unsafe" in message


@pytest.mark.parametrize("name", sorted(INSIDE))
def test_link_that_stays_inside_is_published(site: Path, name: str) -> None:
    links = INSIDE[name]
    make_links(tree(site), links)
    reseal(site, "x86_64", add_links(links))
    result = publish(site, NEW)
    assert result["status"] == "published"
    published = site / "stratum/vodemo.egi.eu/vodemo" / NEW / "Linux-x86_64"
    for path, target in links.items():
        assert os.readlink(published / path) == target
        resolved = os.path.realpath(published / path)
        assert resolved.startswith(str(published.resolve())), f"{path} -> {resolved}"


WRITE_THROUGH: dict[str, tuple[dict[str, str], str]] = {
    # a link to the published version (however reached) and a file "inside" it
    "into-published": ({"pv": "../../v1.0.0/Linux-x86_64/lib"}, "pv/planted"),
    "into-published-chained": ({"u": "..", "u2": "u/..", "pv": "u2/../v1.0.0/Linux-x86_64"}, "pv/planted"),
    "into-outside": ({"o": "../../../../../outside"}, "o/planted"),
    # even a link that stays inside may not have files listed below it
    "through-inside-link": ({"alias": "lib"}, "alias/planted"),
    "through-file": ({}, "diracosrc/planted"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(WRITE_THROUGH))
def test_nothing_is_written_through_a_link(site: Path, name: str) -> None:
    links, planted = WRITE_THROUGH[name]
    make_links(tree(site), links)
    reseal(site, "x86_64", add_links(links, {planted: b"planted\n"}))
    message = assert_refused_and_untouched(site)
    assert "listed below" in message or "unsafe" in message


SOURCE_SWAPS = ["file-is-link-to-outside", "parent-is-link-to-outside", "file-is-link-inside"]


@pytest.mark.parametrize("swap", SOURCE_SWAPS)
def test_links_in_the_bundle_tree_are_never_followed_when_reading(site: Path, swap: str) -> None:
    """The manifest lists plain files, the tree has links where they are (hashes made to match)."""
    root = tree(site)
    secret = site / "outside" / "secret"
    if swap == "file-is-link-to-outside":
        victim = root / "lib/pkg/mod001.py"
        victim.unlink()
        victim.symlink_to(secret)
        data = secret.read_bytes()
        rel = "lib/pkg/mod001.py"
    elif swap == "parent-is-link-to-outside":
        (site / "outside" / "pkg").mkdir()
        (site / "outside" / "pkg" / "secret").write_bytes(secret.read_bytes())
        os.symlink(site / "outside" / "pkg", root / "lib/fake")
        data, rel = secret.read_bytes(), "lib/fake/secret"
    else:
        victim = root / "lib/pkg/mod002.py"
        data = (root / "lib/pkg/mod001.py").read_bytes()
        victim.unlink()
        victim.symlink_to("mod001.py")
        rel = "lib/pkg/mod002.py"

    def change(manifest: Manifest) -> None:
        manifest["files"] = [e for e in manifest["files"] if e["path"] != rel]
        manifest["files"].append(
            {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "mode": "644"}
        )  # fmt: skip

    reseal(site, "x86_64", change)
    message = assert_refused_and_untouched(site)
    assert "symlink" in message or "not in the manifest" in message


# -- family 2: special files where a file is promised ------------------------------------


def _special(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        short = Path(tempfile.mkdtemp(prefix="sock")) / "s"  # AF_UNIX paths are short
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(short))
        sock.close()
        short.rename(path)
        short.parent.rmdir()
    elif kind == "chardev":
        if os.geteuid() != 0:
            lab_skip("making a character device needs root")
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    elif kind == "directory":
        path.mkdir()


SPECIAL_KINDS = ["fifo", "socket", "chardev", "directory"]
SPECIAL_ROLES = ["listed-file", "unlisted-extra", "manifest", "sums"]


# An empty unlisted directory is not content (manifests list no directories): not a case.
SPECIAL_CASES = [
    (k, r)
    for k in SPECIAL_KINDS
    for r in SPECIAL_ROLES
    if (k, r) != ("directory", "unlisted-extra")
]


@pytest.mark.parametrize(("kind", "role"), SPECIAL_CASES)
def test_special_files_are_refused_without_hanging(site: Path, kind: str, role: str) -> None:
    """Run through the CLI with a deadline: a FIFO must never block the publisher."""
    root = tree(site)
    if role == "listed-file":
        target = root / "lib/empty"
        _special(kind, target)
        reseal(site, "x86_64", lambda m: m["files"].append(
            {"path": "lib/empty", "size": 0, "sha256": EMPTY_SHA, "mode": "644"}))  # fmt: skip
    elif role == "unlisted-extra":
        _special(kind, root / "lib/extra")
    elif role == "manifest":
        (root / ".dirac-release/manifest.json").unlink()
        _special(kind, root / ".dirac-release/manifest.json")
    else:
        (root.parent / "SHA256SUMS").unlink()
        _special(kind, root.parent / "SHA256SUMS")
    before = snapshot(site / "stratum")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    for extra in (["--plan"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "release", "--config", str(site / "release.toml"), "publish", "--version", NEW, *extra],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "\nerror: " in f"\n{proc.stderr}"
    assert snapshot(site / "stratum") == before


# -- family 3: tree damage behind a consistent manifest: plan and publish agree ----------

ELF_X86_64 = (
    b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00" + (62).to_bytes(2, "little") + b"\0" * 100
)


def _damage(site: Path, kind: str) -> tuple[str, str]:
    """Apply one damage; (platform whose manifest must be resealed or '', expected words)."""
    root = tree(site)
    mod = root / "lib/pkg/mod003.py"
    if kind == "exec-bit-added":
        mod.chmod(0o755)
        return "", "mode 755"
    if kind == "exec-bit-removed":
        (root / "bin/vodemo-info").chmod(0o644)
        return "", "mode 644"
    if kind == "same-size-edit":
        data = bytearray(mod.read_bytes())
        data[0] ^= 1
        mod.write_bytes(bytes(data))
        return "", "content differs"
    if kind == "size-edit":
        mod.write_bytes(mod.read_bytes() + b"#")
        return "", "bytes, the manifest lists"
    if kind == "unlisted-file":
        (root / "lib/pkg/extra.py").write_text("x = 1\n")
        return "", "not in the manifest"
    if kind == "unlisted-link":
        (root / "lib/pkg/extra").symlink_to("mod001.py")
        return "", "not in the manifest"
    if kind == "unlisted-pycache":
        (root / "lib/pkg/__pycache__").mkdir()
        (root / "lib/pkg/__pycache__/mod.cpython-311.pyc").write_bytes(b"\0" * 16)
        return "", "not in the manifest"
    if kind == "missing-file":
        mod.unlink()
        return "", "missing"
    if kind == "link-retargeted":
        link = root / "lib/current.py"
        link.unlink()
        link.symlink_to("pkg/mod001.py")
        return "", "links to"
    if kind == "wrong-arch-elf":
        # an x86_64 library in the aarch64 tree, with a manifest that lists it faithfully
        lib = tree(site, "aarch64") / "lib/pkg/_native.so"
        lib.write_bytes(ELF_X86_64)
        return "aarch64", "ELF object for x86_64, not aarch64"
    if kind == "tarball-changed":
        tarball = site / "dist" / NEW / "vodemo-v1.0.1-x86_64.tar.gz"
        tarball.write_bytes(b"tarball")
        sums = site / "dist" / NEW / "SHA256SUMS"
        sums.write_text(
            sums.read_text() + f"{hashlib.sha256(b'tarball').hexdigest()}  {tarball.name}\n"
        )
        tarball.write_bytes(b"tarball, changed")
        return "", "does not match SHA256SUMS"
    if kind == "tarball-missing":
        sums = site / "dist" / NEW / "SHA256SUMS"
        sums.write_text(sums.read_text() + f"{'1' * 64}  vodemo-v1.0.1-aarch64.tar.gz\n")
        return "", "is missing"
    raise AssertionError(kind)


DAMAGES = ["exec-bit-added", "exec-bit-removed", "same-size-edit", "size-edit", "unlisted-file",
           "unlisted-link", "unlisted-pycache", "missing-file", "link-retargeted",
           "wrong-arch-elf", "tarball-changed", "tarball-missing"]  # fmt: skip


@pytest.mark.parametrize("kind", DAMAGES)
def test_plan_and_publish_refuse_the_same_damage(site: Path, kind: str) -> None:
    arch, words = _damage(site, kind)
    if arch:
        lib = tree(site, arch) / "lib/pkg/_native.so"

        def relist(manifest: Manifest) -> None:
            for entry in manifest["files"]:
                if entry["path"] == "lib/pkg/_native.so":
                    entry.update(
                        size=lib.stat().st_size, sha256=hashlib.sha256(lib.read_bytes()).hexdigest()
                    )

        reseal(site, arch, relist)
    message = assert_refused_and_untouched(site)
    assert words in message


# -- family 4: malformed manifests and SHA256SUMS ----------------------------------------


def _entry(manifest: Manifest, **changes: Any) -> None:
    entry = next(e for e in manifest["files"] if e.get("path") == "diracosrc")
    for key, value in changes.items():
        if value is _DROP:
            del entry[key]
        else:
            entry[key] = value


_DROP = object()
MANIFEST_SHAPES: dict[str, tuple[Callable[[Manifest], None], str]] = {
    "files-null": (lambda m: m.update(files=None), "files"),
    "files-object": (lambda m: m.update(files={"a": 1}), "files"),
    "entry-int": (lambda m: m["files"].append(7), "files["),
    "path-int": (lambda m: _entry(m, path=5), "path"),
    "path-nul": (lambda m: _entry(m, path="dirac\0osrc"), "control character"),
    "path-newline": (lambda m: _entry(m, path="dirac\nosrc"), "control character"),
    "path-empty": (lambda m: _entry(m, path=""), "empty"),
    "path-absolute": (lambda m: _entry(m, path="/etc/cron.d/x"), "absolute"),
    "path-dot": (lambda m: _entry(m, path="./diracosrc"), "'.'"),
    "path-huge": (lambda m: _entry(m, path="a" * 5000), "longer than"),
    "path-reserved": (lambda m: _entry(m, path="lib/.cvmfscatalog"), "publisher writes itself"),
    "path-manifest": (lambda m: _entry(m, path=".dirac-release/manifest.json"), "publisher writes itself"),
    "sha256-missing": (lambda m: _entry(m, sha256=_DROP), "sha256"),
    "sha256-short": (lambda m: _entry(m, sha256="abc"), "sha256"),
    "sha256-upper": (lambda m: _entry(m, sha256=EMPTY_SHA.upper()), "sha256"),
    "size-bool": (lambda m: _entry(m, size=True), "size"),
    "size-string": (lambda m: _entry(m, size="12"), "size"),
    "size-negative": (lambda m: _entry(m, size=-1), "size"),
    "mode-777": (lambda m: _entry(m, mode="777"), "mode"),
    "mode-int": (lambda m: _entry(m, mode=644), "mode"),
    "extra-key": (lambda m: _entry(m, owner="root"), "owner"),
    "link-and-size": (lambda m: _entry(m, link="x"), "diracosrc"),
    "duplicate": (lambda m: m["files"].append(dict(next(e for e in m["files"] if e["path"] == "diracosrc"))), "listed twice"),
    "product-null": (lambda m: m.update(product=None), "product"),
    "totals-lie": (lambda m: m["totals"].update(files=1), "totals"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MANIFEST_SHAPES))
def test_malformed_manifest_is_bad_input(site: Path, name: str) -> None:
    change, words = MANIFEST_SHAPES[name]
    path = tree(site) / ".dirac-release/manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))  # totals deliberately not recomputed: shape comes first
    resum(site)
    message = assert_refused_and_untouched(site)
    assert words in message
    assert len(message) < 2000


RAW_MANIFESTS: dict[str, tuple[bytes, str]] = {
    "not-json": (b"{ this is not json", "not valid JSON"),
    "not-utf8": (b'{"schema": "\xff\xfe"}', "not UTF-8"),
    "array": (b"[]", "not a JSON object"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "manifest"),
    "other-schema": (b'{"schema": "something/else"}', "not a dirac-release/manifest/v1 manifest"),
    "empty": (b"", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(RAW_MANIFESTS))
def test_unreadable_manifest_is_named_as_such(site: Path, name: str) -> None:
    raw, words = RAW_MANIFESTS[name]
    (tree(site) / ".dirac-release/manifest.json").write_bytes(raw)
    resum(site)
    message = assert_refused_and_untouched(site)
    assert words in message
    assert "is missing" not in message  # not reported as a missing platform


RAW_SUMS: dict[str, Callable[[str], bytes]] = {
    "not-utf8": lambda text: text.encode() + b"\xff\xfe  x\n",
    "no-separator": lambda text: (text + "abc\n").encode(),
    "short-digest": lambda text: (text + "abcd  Linux-x86_64/x\n").encode(),
    "dotdot-name": lambda text: (text + f"{'0' * 64}  ../../etc/passwd\n").encode(),
    "absolute-name": lambda text: (text + f"{'0' * 64}  /etc/passwd\n").encode(),
    "duplicate": lambda text: (text + text.splitlines()[0] + "\n").encode(),
    "nul": lambda text: (text + f"{'0' * 64}  a\0b\n").encode(),
}


@pytest.mark.parametrize("name", sorted(RAW_SUMS))
def test_malformed_sha256sums_is_bad_input(site: Path, name: str) -> None:
    sums = site / "dist" / NEW / "SHA256SUMS"
    sums.write_bytes(RAW_SUMS[name](sums.read_text()))
    message = assert_refused_and_untouched(site)
    assert "SHA256SUMS" in message


# -- published files are read-only -------------------------------------------------------


def test_every_published_file_is_read_only(site: Path) -> None:
    publish(site, NEW)
    version = site / "stratum/vodemo.egi.eu/vodemo" / NEW
    checked = 0
    for dirpath, _dirs, files in os.walk(version):
        for name in files:
            mode = (Path(dirpath) / name).lstat().st_mode
            if stat.S_ISREG(mode):
                assert not mode & 0o222, f"{dirpath}/{name} is writable ({mode:o})"
                checked += 1
    assert (version / ".cvmfscatalog").is_file()
    assert checked > 40


# -- what the staged verification reads ---------------------------------------------------


def test_a_damaged_published_file_is_never_what_a_new_version_links_to(site: Path) -> None:
    """A new version's files that are already published become hardlinks to them: the staged
    verification reads those (the files it wrote itself it hashed as it copied them), so a
    published file damaged in place (same size, other bytes) stops the publication."""
    from cvmfs.errors import CheckFailed

    for arch in ("x86_64", "aarch64"):  # both copies (one file or two, as the copy went)
        shared = site / "stratum/vodemo.egi.eu/vodemo" / OLD / f"Linux-{arch}/lib/pkg/mod007.py"
        data = shared.read_bytes()
        shared.chmod(0o644)
        shared.write_bytes(data.replace(b"shared", b"SHARED"))
        shared.chmod(0o444)
    before = snapshot(site / "stratum")
    with pytest.raises(CheckFailed, match=r"staged tree differs.*lib/pkg/mod007\.py"):
        publish(site, NEW)
    assert snapshot(site / "stratum") == before  # nothing published, the damage left to see


def test_files_written_by_the_copy_are_not_read_again_before_publishing(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hash while copying, not after: the staged check reads only the files the copy did
    not write itself (those v1.0.0 has too, hardlinked to it), never the new ones."""
    from cvmfs import tree_check

    read: list[str] = []
    real = tree_check.content_problems

    def spy(tree: Path, entries: list[dict[str, Any]], limit: int = 5) -> list[str]:
        read.extend(entry["path"] for entry in entries)
        return real(tree, entries, limit)

    monkeypatch.setattr(tree_check, "content_problems", spy)
    assert publish(site, NEW)["status"] == "published"
    new = {"diracosrc", ".dirac-release/requirements.lock"}  # the only files naming the tag
    for rel in set(default_files(NEW, "x86_64")) - new:  # hardlinked to v1.0.0: read, per arch
        assert read.count(rel) == 2, (rel, read.count(rel))
    # A new file is written by the copy of one platform at least; the other platform's copy,
    # when the same bytes were already staged, links to it and that link is read.
    assert all(read.count(rel) <= 1 for rel in new), read


def test_a_republish_reads_no_tarball_and_a_publication_checks_them(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tarballs SHA256SUMS lists are not published to CVMFS: a rerun that finds the
    release published does not hash them (hundreds of MB for DIRAC); a publication does,
    before anything is opened (the damage cases above: 'tarball-changed', 'tarball-missing')."""
    from cvmfs import bundles as bundles_module

    tarball = site / "dist" / NEW / "vodemo-v1.0.1-x86_64.tar.gz"
    tarball.write_bytes(b"tarball")
    sums = site / "dist" / NEW / "SHA256SUMS"
    sums.write_text(
        sums.read_text() + f"{hashlib.sha256(b'tarball').hexdigest()}  {tarball.name}\n"
    )
    hashed: list[str] = []
    real = bundles_module._sha256_of

    def spy(version_dir: Path, name: str) -> str | None:
        hashed.append(name)
        return real(version_dir, name)

    monkeypatch.setattr(bundles_module, "_sha256_of", spy)
    assert publish(site, NEW)["status"] == "published"
    assert hashed == [tarball.name]
    hashed.clear()
    assert publish(site, NEW)["status"] == "already published"
    assert hashed == []


def test_the_manifest_rules_run_for_a_publication_not_for_a_rerun(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun whose tag records these very manifests' digest (bytes the rules passed when
    they were published) does not run the rules over every entry again; a publication runs
    them on every platform before anything is opened (the malformed cases above)."""
    from cvmfs import manifest_rules

    checked: list[str] = []
    real = manifest_rules.validate

    def spy(label: str, data: object) -> dict[str, Any]:
        checked.append(label)
        return real(label, data)

    monkeypatch.setattr(manifest_rules, "validate", spy)
    assert publish(site, NEW)["status"] == "published"
    assert sorted(checked) == ["Linux-aarch64", "Linux-x86_64"]
    checked.clear()
    assert publish(site, NEW)["status"] == "already published"
    assert checked == []
