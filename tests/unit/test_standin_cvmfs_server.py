"""The cvmfs_server stand-in keeps the real tool's states, refusals and exit codes.

The server backend is tested against this stand-in, so it must refuse what the real tool refuses:
a stand-in that always succeeds would let a broken backend pass. Every test runs the script as a
real subprocess with `-S` (no site-packages: it must run on a bare python3, as on the SSH test
host), with its state and mount in tmp_path.

Speed: a call costs ~20 ms, so the tests run a byte-compiled copy of the script (it has no .py
suffix, so Python would otherwise recompile it on every call, ~9 ms) and copy a template
repository instead of running mkfs for each test. One test runs the file through its shebang.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "standin" / "cvmfs_server"
REPO = "sw.example.org"


class Stratum:
    """One stand-in stratum 0 in a temporary folder, driven as node-a unless told otherwise."""

    compiled: Path = SCRIPT  # set to the byte-compiled copy by the `compiled` fixture

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("CVMFS_STANDIN_")}
        self.base_env["CVMFS_STANDIN_STATE"] = str(root / "state")
        self.base_env["CVMFS_STANDIN_MOUNT"] = str(root / "cvmfs")

    @property
    def mount(self) -> Path:
        return self.root / "cvmfs" / REPO

    def env(self, node: str, extra: dict[str, str]) -> dict[str, str]:
        return {**self.base_env, "CVMFS_STANDIN_NODE": node, **extra}

    def run(
        self, *args: str, node: str = "node-a", cwd: Path | None = None, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", str(self.compiled), *args],
            capture_output=True,
            text=True,
            cwd=cwd or self.root,
            env=self.env(node, extra),
            stdin=subprocess.DEVNULL,
            timeout=30,
        )

    def start(self, *args: str, node: str = "node-a", **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-S", str(self.compiled), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            env=self.env(node, extra),
            stdin=subprocess.DEVNULL,
        )

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        proc = self.run(*args, **kwargs)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def tags(self) -> dict[str, list[str]]:
        """`tag -l -x` by name: hash, size, revision, timestamp, branch, description."""
        lines = self.ok("tag", "-l", "-x", REPO).stdout.splitlines()
        return {name: rest.split(" ", 5) for name, _, rest in (x.partition(" ") for x in lines)}

    def revisions(self) -> dict[str, int]:
        return {name: int(fields[2]) for name, fields in self.tags().items()}

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.root / "state" / REPO / "state.json").read_text())
        return state

    def write(self, rel: str, text: str) -> Path:
        path = self.mount / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def tree(root: Path) -> dict[str, tuple[str, str, int]]:
    """Everything abort must restore: kind, content or link target, mode."""
    found: dict[str, tuple[str, str, int]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = ("l", os.readlink(path), 0)
        elif path.is_dir():
            found[rel] = ("d", "", stat.S_IMODE(info.st_mode))
        else:
            found[rel] = ("f", path.read_text(), stat.S_IMODE(info.st_mode))
    return found


@pytest.fixture(scope="module", autouse=True)
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("compiled") / "cvmfs_server.pyc"
    py_compile.compile(str(SCRIPT), cfile=str(target), doraise=True)
    Stratum.compiled = target
    return target


@pytest.fixture(scope="module")
def template(compiled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mkfs per module, copied for each test."""
    root = tmp_path_factory.mktemp("template")
    Stratum(root).ok("mkfs", "-o", "root", REPO)
    return root


@pytest.fixture(scope="module")
def released_template(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("released")
    copy_stratum(template, root)
    published_release(Stratum(root))
    return root


def copy_stratum(source: Path, target: Path) -> None:
    for folder in ("state", "cvmfs"):
        shutil.copytree(source / folder, target / folder, symlinks=True)


@pytest.fixture
def cvmfs(template: Path, tmp_path: Path) -> Stratum:
    """A fresh repository (revision 2, idle) in this test's tmp_path."""
    copy_stratum(template, tmp_path)
    return Stratum(tmp_path)


@pytest.fixture
def released(released_template: Path, tmp_path: Path) -> Stratum:
    """The repository after published_release: tag t1 at revision 3, idle."""
    copy_stratum(released_template, tmp_path)
    return Stratum(tmp_path)


def published_release(cvmfs: Stratum) -> None:
    """A release tree published as tag t1, the way the toolkit lays it out."""
    cvmfs.ok("transaction", REPO)
    cvmfs.write("dirac/v1/bin/tool", "#!/bin/sh\n")
    cvmfs.write("dirac/v1/.cvmfscatalog", "")
    cvmfs.write("dirac/v1/README", "first\n")
    (cvmfs.mount / "dirac/pro").symlink_to("v1")
    cvmfs.ok("publish", "-a", "t1", "-m", "DIRAC v1 (commit abc)", REPO)


# ---------------------------------------------------------------------------------------------


def test_runs_from_its_shebang_and_imports_only_the_stdlib(tmp_path: Path) -> None:
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(SCRIPT, os.X_OK)
    modules = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}
    proc = subprocess.run(
        [str(SCRIPT), "list"], capture_output=True, text=True, env=Stratum(tmp_path).env("n", {})
    )
    assert (proc.returncode, proc.stdout) == (0, "")


def test_full_cycle_records_named_and_undo_tags(cvmfs: Stratum) -> None:
    # mkfs publishes the initial commit (new_repository) as revision 2, tagged trunk only
    assert (cvmfs.mount / "new_repository").read_text().startswith("New CernVM-FS repository")
    assert cvmfs.revisions() == {"trunk": 2}
    assert cvmfs.ok("list").stdout == f"{REPO} (stratum0 / local)  \n"

    published_release(cvmfs)
    tags = cvmfs.tags()
    assert cvmfs.revisions() == {"t1": 3, "trunk": 3, "trunk-previous": 2}
    root_hash, size, _rev, timestamp, branch, description = tags["t1"]
    assert len(root_hash) == 40 and int(root_hash, 16) >= 0
    assert tags["trunk"][:4] == tags["t1"][:4]
    assert int(size) == 8  # new_repository, dirac, dirac/v1, bin, tool, .cvmfscatalog, README, pro
    assert abs(int(timestamp) - time.time()) < 60
    assert branch == "(default)"
    assert description == "DIRAC v1 (commit abc)"
    assert tags["trunk"][5] == "current HEAD"
    assert tags["trunk-previous"][5] == "default undo target"
    table = cvmfs.ok("tag", "-l", REPO).stdout.splitlines()  # human-readable, oldest first
    assert [cell.strip() for cell in table[0].split("\u2502")] == [
        "Name",
        "Revision",
        "Timestamp",
        "Branch",
        "Description",
    ]
    names = [row.split()[0] for row in table[2:-2]]
    assert names[0] == "trunk-previous" and sorted(names[1:]) == ["t1", "trunk"]
    assert table[-1] == "listing contains 3 tags"
    assert cvmfs.state()["state"] == "idle"
    assert cvmfs.ok("check", REPO).stdout.splitlines()[-1] == f"{REPO}: OK"

    # the real tool publishes a revision without changes too; undo tags move on
    cvmfs.ok("transaction", REPO)
    assert cvmfs.ok("publish", REPO).stdout.splitlines()[-1] == "New revision: 4"
    assert cvmfs.revisions() == {"t1": 3, "trunk": 4, "trunk-previous": 3}
    assert cvmfs.tags()["trunk"][0] == root_hash  # same tree, same root hash


def test_command_line_errors_exit_2_with_usage(tmp_path: Path) -> None:
    stratum = Stratum(tmp_path)
    for args in (
        (),
        ("frobnicate", REPO),
        ("publish", REPO, "-a", "t1"),  # options go before the repository name
        ("transaction", "-t", "soon", REPO),
    ):
        proc = stratum.run(*args)
        assert proc.returncode == 2, args
        assert "Usage: cvmfs_server" in proc.stderr


def test_mkfs_refuses_an_existing_repository(cvmfs: Stratum) -> None:
    proc = cvmfs.run("mkfs", "-o", "root", REPO)
    assert proc.returncode == 1
    assert f"The repository {REPO} already exists" in proc.stderr


def test_transaction_exit_codes(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", f"{REPO}/dirac")  # a new directory under a published parent
    proc = cvmfs.run("transaction", REPO)
    assert proc.returncode == errno.EEXIST
    assert f"{REPO} is already in a transaction" in proc.stderr

    proc = cvmfs.run("transaction", f"{REPO}/missing/v1", node="node-b")
    assert proc.returncode == errno.ENOENT
    assert "lease path /missing/v1 does not exist" in proc.stderr

    proc = cvmfs.run("transaction", f"{REPO}/new_repository/x", node="node-b")
    assert proc.returncode == errno.ENOTDIR

    proc = cvmfs.run("transaction", f"{REPO}/a/../b", node="node-b")
    assert proc.returncode == errno.EINVAL

    proc = cvmfs.run("transaction", "nope.example.org")
    assert proc.returncode == 1
    assert "The repository nope.example.org does not exist" in proc.stderr


def test_gateway_leases_of_two_nodes(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", f"{REPO}/dirac")
    for path in (f"{REPO}/dirac/v1", REPO):  # overlapping, component-wise
        proc = cvmfs.run("transaction", path, node="node-b")
        assert proc.returncode == errno.EBUSY, path
        assert "lease path busy" in proc.stderr and "held by node node-a" in proc.stderr
    cvmfs.ok("transaction", f"{REPO}/dirac2", node="node-b")  # a sibling, not a prefix
    assert cvmfs.ok("list").stdout == f"{REPO} (stratum0 / local - in transaction)  \n"

    cvmfs.write("dirac/v1/a", "a\n")
    cvmfs.write("dirac2/b", "b\n")
    cvmfs.ok("publish", REPO, node="node-b")  # publishes /dirac2 only
    assert (cvmfs.root / "state" / REPO / "snapshot/dirac2/b").is_file()
    assert not (cvmfs.root / "state" / REPO / "snapshot/dirac").exists()
    assert [x["node"] for x in cvmfs.state()["leases"]] == ["node-a"]
    cvmfs.ok("publish", "-a", "a1", REPO)
    assert cvmfs.revisions()["a1"] == 4
    assert cvmfs.state()["state"] == "idle"
    cvmfs.ok("check", REPO)


def test_concurrent_calls_are_serialised_by_the_lock(cvmfs: Stratum) -> None:
    racers = [cvmfs.start("transaction", REPO, node=f"node-{i}") for i in range(6)]
    codes = sorted(racer.wait(timeout=20) for racer in racers)
    assert codes == [0] + [errno.EBUSY] * 5
    assert len(cvmfs.state()["leases"]) == 1


def test_bounded_retry_gives_up_or_gets_the_released_lease(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", f"{REPO}/dirac", node="node-b")
    started = time.monotonic()
    short = cvmfs.start("transaction", "-t", "1", f"{REPO}/dirac", node="node-a")
    patient = cvmfs.start("transaction", "-t", "20", REPO, node="node-c")
    _out, err = short.communicate(timeout=10)
    assert short.returncode == errno.EBUSY, err
    assert 1.0 <= time.monotonic() - started < 5
    assert patient.poll() is None  # still waiting
    cvmfs.ok("abort", "-f", REPO, node="node-b")
    out, err = patient.communicate(timeout=10)
    assert patient.returncode == 0, err
    assert "repository busy, retrying" in out
    assert [(x["node"], x["path"]) for x in cvmfs.state()["leases"]] == [("node-c", "")]


def test_publish_outside_a_transaction_is_refused(cvmfs: Stratum) -> None:
    proc = cvmfs.run("publish", REPO)
    assert proc.returncode == 1
    assert f"Repository {REPO} is not in a transaction" in proc.stderr
    assert cvmfs.revisions() == {"trunk": 2}


def test_a_used_tag_name_is_refused_before_anything_changes(released: Stratum) -> None:
    cvmfs = released
    cvmfs.ok("transaction", REPO)
    cvmfs.write("dirac/v2/README", "second\n")
    before = cvmfs.tags()
    proc = cvmfs.run("publish", "-a", "t1", REPO)
    assert proc.returncode == 1
    assert "Tag name 't1' is already in use." in proc.stderr
    assert cvmfs.tags() == before
    assert cvmfs.state()["state"] == "transaction"
    assert (cvmfs.mount / "dirac/v2/README").read_text() == "second\n"
    assert cvmfs.run("publish", "-a", "has space", REPO).returncode == 1
    cvmfs.ok("publish", "-a", "t2", REPO)
    assert cvmfs.revisions()["t2"] == 4


def test_publish_refuses_a_working_directory_inside_the_mount(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", REPO)
    (cvmfs.mount / "dirac").mkdir()
    proc = cvmfs.run("publish", REPO, cwd=cvmfs.mount / "dirac")
    assert proc.returncode == 1
    assert f"Current working directory is in {cvmfs.mount}" in proc.stderr
    assert cvmfs.state()["state"] == "transaction"


def test_expired_whitelist(tmp_path: Path) -> None:
    stratum = Stratum(tmp_path)
    stratum.ok("mkfs", "-o", "root", REPO, CVMFS_STANDIN_WHITELIST_DAYS="-1")
    assert stratum.ok("list").stdout == f"{REPO} (stratum0 / local - whitelist expired)  \n"
    proc = stratum.run("transaction", REPO)  # the real transaction refuses it as well
    assert proc.returncode == errno.EINVAL
    assert f"Repository whitelist for {REPO} is expired" in proc.stderr

    stratum.ok("resign", REPO)
    stratum.ok("transaction", REPO)
    stratum.write("a", "a\n")
    stratum.ok("resign", REPO, CVMFS_STANDIN_WHITELIST_DAYS="-1")  # expires during the transaction
    proc = stratum.run("publish", REPO)
    assert proc.returncode == 1
    assert f"Repository whitelist for {REPO} is expired!" in proc.stderr
    assert stratum.revisions() == {"trunk": 2}
    assert stratum.state()["state"] == "transaction"


def test_changes_outside_the_lease_are_refused(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", f"{REPO}/dirac")
    cvmfs.write("dirac/v1/a", "a\n")
    cvmfs.write("stray.txt", "oops\n")
    proc = cvmfs.run("publish", REPO)
    assert proc.returncode == 1
    assert "changes outside the lease /dirac: /stray.txt" in proc.stderr
    assert cvmfs.revisions() == {"trunk": 2}
    assert cvmfs.state()["state"] == "transaction"


def test_hardlinks_across_directories_are_refused(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", REPO)
    first = cvmfs.write("dirac/a/lib.so", "x\n")
    (cvmfs.mount / "dirac/b").mkdir()
    os.link(first, cvmfs.mount / "dirac/b/lib.so")
    proc = cvmfs.run("publish", REPO)
    assert proc.returncode == 1
    assert "hardlinks are not supported: /dirac/a/lib.so" in proc.stderr
    assert cvmfs.revisions() == {"trunk": 2}
    # dereferenced, it publishes; hardlinks inside one directory are supported by CVMFS
    (cvmfs.mount / "dirac/b/lib.so").unlink()
    os.link(first, cvmfs.mount / "dirac/a/lib2.so")
    cvmfs.ok("publish", REPO)


def test_open_writable_descriptors_are_refused(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", REPO)
    with (cvmfs.mount / "busy.log").open("w") as handle:
        handle.write("still writing")
        handle.flush()
        proc = cvmfs.run("publish", REPO)
    assert proc.returncode == 1
    assert f"Open writable file descriptors on {REPO}" in proc.stderr
    cvmfs.ok("publish", REPO)


def test_a_running_publish_makes_others_wait(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", f"{REPO}/dirac")
    cvmfs.write("dirac/a", "a\n")
    hold = cvmfs.root / "hold"  # the publish waits in state publishing while this exists
    hold.touch()
    slow = cvmfs.start("publish", REPO, CVMFS_STANDIN_PUBLISH_HOLD=str(hold))
    deadline = time.monotonic() + 5
    while cvmfs.state()["state"] != "publishing" and time.monotonic() < deadline:
        time.sleep(0.02)
    proc = cvmfs.run("transaction", f"{REPO}/other", node="node-b")
    assert proc.returncode == errno.EBUSY
    assert "a publish is running" in proc.stderr
    assert cvmfs.run("tag", "-l", REPO).stderr.strip() == "Repository is currently publishing"
    hold.unlink()
    _out, err = slow.communicate(timeout=10)
    assert slow.returncode == 0, err
    cvmfs.ok("transaction", f"{REPO}/other", node="node-b")


def test_a_crashed_publish_leaves_the_transaction_open(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", REPO)
    cvmfs.write("dirac/a", "a\n")
    hold = cvmfs.root / "hold"
    hold.touch()
    doomed = cvmfs.start("publish", REPO, CVMFS_STANDIN_PUBLISH_HOLD=str(hold))
    deadline = time.monotonic() + 5
    while cvmfs.state()["state"] != "publishing" and time.monotonic() < deadline:
        time.sleep(0.02)
    doomed.kill()
    doomed.wait()
    assert cvmfs.state()["state"] == "publishing"  # what the crash left behind
    cvmfs.ok("publish", REPO)  # this node's dead publisher is stale: the transaction is still open
    assert cvmfs.revisions()["trunk"] == 3
    assert not (cvmfs.root / "state" / REPO / "snapshot.new").exists()
    cvmfs.ok("check", REPO)


def test_abort_restores_the_published_content_exactly(released: Stratum) -> None:
    cvmfs = released
    before = tree(cvmfs.mount)
    cvmfs.ok("transaction", REPO)
    cvmfs.write("dirac/v1/README", "edited in place\n")  # same inode: must not touch the snapshot
    (cvmfs.mount / "dirac/v1/bin/tool").unlink()
    (cvmfs.mount / "dirac/v1/bin").chmod(0o700)
    (cvmfs.mount / "dirac/pro").unlink()
    (cvmfs.mount / "dirac/pro").symlink_to("v2")
    cvmfs.write("dirac/v2/new", "new\n")

    proc = cvmfs.run("abort", REPO)  # stdin is not a terminal
    assert proc.returncode == 1
    assert "use -f" in proc.stderr
    assert cvmfs.state()["state"] == "transaction"
    assert (cvmfs.mount / "dirac/v2/new").exists()

    cvmfs.ok("abort", "-f", REPO)
    assert tree(cvmfs.mount) == before
    assert cvmfs.state()["state"] == "idle"
    cvmfs.ok("check", REPO)
    proc = cvmfs.run("abort", "-f", REPO)
    assert proc.returncode == errno.EINVAL
    assert f"Repository {REPO} is not in a transaction" in proc.stderr


def test_abort_never_touches_another_nodes_lease(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", f"{REPO}/mine")
    cvmfs.ok("transaction", f"{REPO}/theirs", node="node-b")
    cvmfs.write("mine/a", "a\n")
    cvmfs.write("theirs/b", "b\n")
    cvmfs.ok("abort", "-f", REPO)
    assert not (cvmfs.mount / "mine").exists()
    assert (cvmfs.mount / "theirs/b").read_text() == "b\n"
    assert [x["node"] for x in cvmfs.state()["leases"]] == ["node-b"]


def test_check_finds_pending_and_stray_changes(released: Stratum) -> None:
    cvmfs = released
    out = cvmfs.ok("check", REPO).stdout
    assert "catalogs: 2 (1 nested)" in out
    cvmfs.ok("transaction", f"{REPO}/dirac")
    cvmfs.write("dirac/v1/README", "changed\n")
    proc = cvmfs.run("check", REPO)
    assert proc.returncode == 1
    assert "pending change in the open transaction of node node-a" in proc.stderr
    assert "/dirac/v1/README" in proc.stderr
    cvmfs.ok("check", "-s", "new_repository", REPO)  # that sub-tree is untouched
    cvmfs.ok("abort", "-f", REPO)

    cvmfs.write("dirac/v1/README", "behind the tool's back\n")
    proc = cvmfs.run("check", "-s", "dirac", REPO)
    assert proc.returncode == 1
    assert "changed outside a transaction: /dirac/v1/README" in proc.stderr


def test_catalog_limit(released: Stratum) -> None:
    cvmfs = released
    # root catalog: 4 entries, /dirac/v1: 4
    proc = cvmfs.run("check", REPO, CVMFS_STANDIN_CATALOG_LIMIT="3")
    assert proc.returncode == 1
    assert "catalog too large: catalog at / has more than 3 entries (4)" in proc.stderr
    cvmfs.ok("check", REPO, CVMFS_STANDIN_CATALOG_LIMIT="4")

    cvmfs.ok("transaction", REPO)
    cvmfs.write("big/x", "x\n")
    proc = cvmfs.run("publish", REPO, CVMFS_STANDIN_CATALOG_LIMIT="5")
    assert proc.returncode == 1
    assert "catalog too large: catalog at / has more than 5 entries (6)" in proc.stderr
    proc = cvmfs.ok(
        "publish", REPO, CVMFS_STANDIN_CATALOG_LIMIT="5", CVMFS_STANDIN_ENFORCE_LIMITS="false"
    )
    assert "WARNING: catalog too large" in proc.stdout


def test_an_expired_lease_no_longer_blocks_and_cannot_publish(cvmfs: Stratum) -> None:
    cvmfs.ok("transaction", f"{REPO}/dirac", node="node-b")
    # the lease lifetime is the gateway's: with 1 ms, node-b's lease is over by the next call
    short = "0.001"
    proc = cvmfs.run("publish", REPO, node="node-b", CVMFS_STANDIN_LEASE_SECONDS=short)
    assert proc.returncode == 1
    assert "has expired" in proc.stderr
    cvmfs.ok("transaction", REPO, CVMFS_STANDIN_LEASE_SECONDS=short)
    assert [x["node"] for x in cvmfs.state()["leases"]] == ["node-a"]


def test_tags_can_be_added_and_removed_outside_a_transaction(cvmfs: Stratum) -> None:
    cvmfs.ok("tag", "-a", "base", "-m", "the empty repository", REPO)
    assert cvmfs.tags()["base"][5] == "the empty repository"
    assert cvmfs.run("tag", "-r", "base", REPO).returncode == 1  # no terminal, no -f
    assert cvmfs.ok("tag", "-r", "base", "-f", REPO).stdout.startswith("deleting 'base'")
    cvmfs.ok("transaction", REPO)
    proc = cvmfs.run("tag", "-a", "late", REPO)
    assert proc.returncode == 1
    assert "Cannot change repository tags while in a transaction" in proc.stderr
