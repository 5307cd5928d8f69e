"""Every failure is recoverable by a rerun; races decide under the lock.

- A fault (ENOSPC) is injected at every write the publication makes, one run per write, not
  only at the step boundaries: after each, the old version is intact, nothing of the new one
  is visible unless its journal is there to finish it, and a rerun completes the release.
- Promote and garbage collection race many times with randomised timing: `pro` never dangles.
- Publishers of the same release race: one publishes, the others report "already published".
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from cvmfs.backends.base import Owner
from cvmfs.backends.directory import DirectoryBackend
from cvmfs.layout import Layout
from cvmfs.promotion import move_link
from release.config import load_config
from release.errors import BadInput, ReleaseError
from release.publish import collect_garbage, init_repository, publish_release
from tests.publishing import du, make_bundle, write_config
from tests.unit.test_publish_hardening import snapshot

REPO = "vodemo.egi.eu"
SMALL = {
    "bin/tool": b"#!/bin/sh\necho tool\n",
    "lib/pkg/__init__.py": b"VERSION = 1\n",
    "lib/pkg/a.py": b"a = 1\n" * 50,
    "diracosrc": b"export X=1\n",
}


def publish(site: Path, tag: str, **kwargs: object) -> dict[str, Any]:
    return publish_release(load_config(site / "release.toml", environ={}), version=tag, **kwargs)  # type: ignore[arg-type]


def visible(site: Path) -> Path:
    return site / "stratum" / REPO / "vodemo"


def state(site: Path) -> Path:
    return site / "stratum" / ".dirac-release" / REPO


def tag_names(site: Path) -> list[str]:
    return [t["name"] for t in json.loads((state(site) / "tags.json").read_text())["tags"]]


class Faults:
    """Counts every write-like call; the `fail_at`-th one fails with ENOSPC."""

    def __init__(self, fail_at: int, kind: str | None = None) -> None:
        self.fail_at = fail_at
        self.kind = kind
        self.count = 0
        self.hit: str | None = None
        self.lock = threading.Lock()

    def tick(self, what: str) -> None:
        with self.lock:
            if self.kind is not None and what != self.kind:
                return
            self.count += 1
            if self.count == self.fail_at:
                self.hit = what
                raise OSError(errno.ENOSPC, f"injected at write {self.fail_at} ({what})")


class _Writer:
    """A file object whose every write is a fault point."""

    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def write(self, data: Any) -> Any:
        self._faults.tick("write")
        return self._inner.write(data)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@contextmanager
def injected(fail_at: int, kind: str | None = None) -> Iterator[Faults]:
    faults = Faults(fail_at, kind)
    real = {
        name: getattr(os, name)
        for name in ("open", "mkdir", "rename", "replace", "link", "symlink", "unlink", "fdopen")
    }
    real_io_open = io.open

    def counted(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            faults.tick(name)
            return real[name](*args, **kwargs)

        return call

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & WRITE_FLAGS:
            faults.tick("open for writing")
        return int(real["open"](path, flags, *args, **kwargs))

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real["fdopen"](fd, mode, *args, **kwargs)
        return _Writer(handle, faults) if any(c in mode for c in "wax+") else handle

    def io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            faults.tick("open for writing")
            return _Writer(real_io_open(file, mode, *args, **kwargs), faults)
        return real_io_open(file, mode, *args, **kwargs)

    patches = {
        name: counted(name) for name in ("mkdir", "rename", "replace", "link", "symlink", "unlink")
    }
    patches |= {"open": os_open, "fdopen": fdopen}
    try:
        for name, fake in patches.items():
            setattr(os, name, fake)
        io.open = io_open
        builtins.open = io_open
        yield faults
    finally:
        for name, original in real.items():
            setattr(os, name, original)
        io.open = real_io_open
        builtins.open = real_io_open


@pytest.fixture
def pristine(tmp_path: Path, isolated_env: Path) -> Path:
    """v1.0.0 published, v1.0.1 built: copied afresh for every injected fault."""
    site = tmp_path / "pristine"
    site.mkdir()
    write_config(site, wait=2)
    init_repository(load_config(site / "release.toml", environ={}), None)
    make_bundle(site / "dist", "v1.0.0", files=SMALL)
    publish(site, "v1.0.0")
    make_bundle(site / "dist", "v1.0.1", files={**SMALL, "lib/pkg/b.py": b"b = 2\n"})
    return site


def _fault_then_rerun(
    pristine: Path, site: Path, fail_at: int, kind: str | None
) -> tuple[str | None, bool]:
    """One publication failing at its `fail_at`-th write (of `kind`), then a clean rerun.

    Returns the write that failed (None: the publication made fewer writes) and whether the
    failure left a journaled publication for the rerun to roll forward.
    """
    old_tree = snapshot(visible(pristine) / "v1.0.0")
    shutil.copytree(pristine, site, symlinks=True)
    with injected(fail_at, kind) as faults, suppress(ReleaseError, OSError):
        publish(site, "v1.0.1")
    if faults.hit is None:
        shutil.rmtree(site)
        return None, False
    where = f"fault {fail_at} of {kind or 'any write'} ({faults.hit})"
    root = visible(site)
    lock = state(site) / "transaction.json"
    pending = lock.exists() and any(state(site).glob("txn/*/journal.json"))
    # The old version never changes; the new one is visible only with its tag or journal.
    assert snapshot(root / "v1.0.0") == old_tree, where
    if (root / "v1.0.1").exists():
        assert "vodemo-v1.0.1" in tag_names(site) or pending, where
    if "vodemo-v1.0.1" in tag_names(site):
        assert (root / "v1.0.1").is_dir(), where
    # The rerun (no faults) finishes the release, whatever was left.
    result = publish(site, "v1.0.1")
    assert result["status"] in ("published", "already published"), where
    assert "vodemo-v1.0.1" in tag_names(site)
    assert os.readlink(root / "latest") == "v1.0.1"
    assert not lock.exists()
    backend = DirectoryBackend(REPO, site / "stratum")
    if list(state(site).glob("txn/*")):
        # staging a failed clean-up left behind (no lock names it): the next transaction,
        # the only time that is safe, discards it
        backend.open("vodemo", Owner.me("probe"), 1).abort()
    assert list(state(site).glob("txn/*")) == []
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    manifest = json.loads(
        (site / "dist/v1.0.1/Linux-x86_64/.dirac-release/manifest.json").read_text()
    )
    assert backend.verify_published("vodemo/v1.0.1/Linux-x86_64", manifest) == []
    assert snapshot(root / "v1.0.0") == old_tree, where
    shutil.rmtree(site)
    return faults.hit, pending


def _sweep(pristine: Path, tmp_path: Path, kind: str | None) -> tuple[list[str], int]:
    """Fail at the 1st, 2nd, ... write (of `kind`) until the publication completes unhurt.

    The two platforms are staged by parallel threads, so the order of writes (and which one
    stores shared content first) varies between runs: stop only after several complete runs
    in a row.
    """
    points: list[str] = []
    journaled = complete = 0
    for fail_at in range(1, 400):
        hit, pending = _fault_then_rerun(
            pristine, tmp_path / f"run-{kind}-{fail_at}", fail_at, kind
        )
        if hit is None:
            complete += 1
            if complete == 5:
                return points, journaled
            continue
        complete = 0
        points.append(hit)
        journaled += pending
    pytest.fail("the publication never completed without hitting a fault")


def test_a_fault_at_any_write_is_finished_by_a_rerun(pristine: Path, tmp_path: Path) -> None:
    points, journaled = _sweep(pristine, tmp_path, None)
    assert len(points) >= 30, points
    # Writes that happen once per publication can be stepped over by the global count when the
    # threads interleave differently from one run to the next: each kind not hit yet is then
    # swept on its own count, so every kind of write is failed at least once.
    required = {"open for writing", "write", "rename", "mkdir", "symlink", "replace"}
    for kind in sorted(required - set(points)):
        more, more_journaled = _sweep(pristine, tmp_path, kind)
        assert more, f"no {kind} happened in a publication"
        points += more
        journaled += more_journaled
    assert required <= set(points)
    # Some faults struck after the journal (rolled forward by the rerun).
    assert journaled >= 1
    print(f"{len(points)} fault points, {journaled} after the journal: {sorted(set(points))}")


# -- promote against garbage collection ---------------------------------------------------


@pytest.fixture
def four_versions(tmp_path: Path, isolated_env: Path) -> Path:
    site = tmp_path / "pristine"
    site.mkdir()
    write_config(site, keep=1, wait=10)
    init_repository(load_config(site / "release.toml", environ={}), None)
    for patch in range(4):
        make_bundle(site / "dist", f"v1.0.{patch}", files={**SMALL, "v": f"{patch}".encode()})
        publish(site, f"v1.0.{patch}")
    return site


def manifests(site: Path, tag: str) -> dict[str, dict[str, Any]]:
    return {
        arch: json.loads((site / "dist" / tag / f"Linux-{arch}/.dirac-release/manifest.json").read_text())
        for arch in ("x86_64", "aarch64")
    }  # fmt: skip


RACES = 30


def _race(site: Path, target: str, delays: tuple[float, float]) -> dict[str, str]:
    """Promote `target` and collect garbage at once; what each did."""
    config = load_config(site / "release.toml", environ={})
    backend = DirectoryBackend(REPO, site / "stratum")
    layout = Layout(REPO, "vodemo")
    wanted = manifests(site, target)
    errors: list[BaseException] = []
    result: dict[str, str] = {}

    def promote() -> None:
        time.sleep(delays[0])
        try:
            result["promote"] = move_link(backend, layout, target, wanted, wait_s=10)["status"]
        except BadInput as exc:
            result["promote"] = "refused: " + exc.message
        except BaseException as exc:
            errors.append(exc)

    def gc() -> None:
        time.sleep(delays[1])
        try:
            result["gc"] = collect_garbage(config, None, plan=False)["status"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=promote), threading.Thread(target=gc)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return result


def test_promote_and_gc_never_leave_pro_dangling(four_versions: Path, tmp_path: Path) -> None:
    rng = random.Random(9)  # noqa: S311 (timing jitter, reproducible)
    outcomes: dict[str, int] = {}
    for run in range(RACES):
        site = tmp_path / f"race{run}"
        shutil.copytree(four_versions, site, symlinks=True)
        target = f"v1.0.{rng.randrange(3)}"  # one gc wants to remove
        result = _race(site, target, (rng.uniform(0, 0.02), rng.uniform(0, 0.02)))
        backend = DirectoryBackend(REPO, site / "stratum")
        pro = visible(site) / "pro"
        if pro.is_symlink():
            assert os.readlink(pro) == target
            assert (visible(site) / target).is_dir(), f"run {run}: pro dangles after {result}"
            for arch, manifest in manifests(site, target).items():
                path = Layout(REPO, "vodemo").platform_dir(target, arch)
                assert backend.verify_published(path, manifest) == []
        else:
            assert result["promote"].startswith("refused:") and "not published" in result["promote"]
            assert not (visible(site) / target).exists()
        key = "promoted" if pro.is_symlink() else "refused (gc first)"
        outcomes[key] = outcomes.get(key, 0) + 1
        shutil.rmtree(site)
    print(f"{RACES} races: {outcomes}")
    assert sum(outcomes.values()) == RACES


def test_a_lock_just_taken_is_live_for_the_other_threads(
    four_versions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window the random race once hit in CI, made certain: the moment the lock file
    appears, before the opener returns, another thread of this process must see a live
    publisher (waiting for it), not a crashed one (whose leftovers it would refuse to clear)."""
    backend = DirectoryBackend(REPO, four_versions / "stratum")
    seen: list[bool] = []
    real_link = os.link

    def link_then_look(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_link(src, dst, *args, **kwargs)
        if Path(dst) == backend.lock_path:
            lock = backend._read_lock()
            assert lock is not None
            seen.append(backend._stale(lock))

    monkeypatch.setattr(os, "link", link_then_look)
    txn = backend.open("vodemo", Owner.me("pro->v1.0.3"), wait_s=1)
    try:
        assert seen == [False]
        # Another thread's open now waits for it and reports it running.
        with pytest.raises(ReleaseError, match=r"busy: .*publishing pro->v1.0.3 \(running\)"):
            DirectoryBackend(REPO, four_versions / "stratum").open(
                "vodemo", Owner.me("gc"), wait_s=0.3
            )
    finally:
        txn.abort()
    assert backend._read_lock() is None


def test_promote_fix_never_names_a_missing_version(four_versions: Path) -> None:
    """The undo advice when pro did not exist before must not read `--version None`."""
    from cvmfs import promotion

    backend = DirectoryBackend(REPO, four_versions / "stratum")
    layout = Layout(REPO, "vodemo")
    real_entries = backend.entries
    calls = {"n": 0}

    def entries_after_publish(rel: str) -> dict[str, str | None]:
        calls["n"] += 1
        found = real_entries(rel)
        return {**found, "pro": "v0.0.0"} if calls["n"] >= 3 else found

    backend.entries = entries_after_publish  # type: ignore[method-assign]
    with pytest.raises(promotion.CheckFailed) as caught:
        move_link(backend, layout, "v1.0.3", manifests(four_versions, "v1.0.3"))
    assert "None" not in caught.value.render()
    assert "did not exist before" in caught.value.render()


# -- publishers of the same release ---------------------------------------------------------


def _publish_at_once(site: Path, delays: list[float]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def one(delay: float) -> None:
        time.sleep(delay)
        try:
            results.append(publish(site, "v1.0.0"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(delay,)) for delay in delays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def test_concurrent_publishers_of_one_release_agree(tmp_path: Path, isolated_env: Path) -> None:
    rng = random.Random(5)  # noqa: S311 (timing jitter, reproducible)
    for run in range(8):
        site = tmp_path / f"run{run}"
        site.mkdir()
        write_config(site, wait=30)
        init_repository(load_config(site / "release.toml", environ={}), None)
        make_bundle(site / "dist", "v1.0.0")
        results = _publish_at_once(site, [rng.uniform(0, 0.01) for _ in range(3)])
        assert sorted(r["status"] for r in results) == ["already published"] * 2 + ["published"]
        assert len({r["revision"] for r in results}) == 1
        # only one copy of the content was ever stored
        assert du(site / "stratum" / ".dirac-release") < 10_000


def test_concurrent_publisher_processes_exit_0(tmp_path: Path, isolated_env: Path) -> None:
    write_config(tmp_path, wait=60)
    init_repository(load_config(tmp_path / "release.toml", environ={}), None)
    make_bundle(tmp_path / "dist", "v1.0.0")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    # The first pauses with the repository locked, so the second must wait for it.
    first_env = env | {"DIRAC_RELEASE_FAILPOINT": "synced", "DIRAC_RELEASE_FAILPOINT_PAUSE": "2",
                       "DIRAC_RELEASE_FAILPOINT_FILE": str(tmp_path / "reached")}  # fmt: skip
    argv = [sys.executable, "-m", "release", "--config", str(tmp_path / "release.toml"), "--json",
            "publish", "--version", "v1.0.0"]  # fmt: skip
    first = subprocess.Popen(
        argv, env=first_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "reached").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr
    assert json.loads(out)["status"] == "published"
    late = json.loads(second.stdout)
    assert late["status"] == "already published"
    assert "another publisher finished this release while this one waited" in late["notes"]
