"""Benchmark of the publish stage on a fresh directory stratum (both platforms of the demo).

Measured in the same run, each command timed until its data is on disk (`; sync`):
- baseline: `cp -a` of the two platform trees of version A into an empty folder;
- first publication of A (CLI, all checks) vs that copy;
- version B sharing most files with A: the bytes B adds to the stratum vs B's size;
- republishing B: the "already published" no-op;
- how cost grows: first publications of versions 2x and 4x the demo's size (every file made
  distinct, so nothing is shared), each into a new stratum: seconds per GiB should stay flat.
Each measure runs --runs times (default 5; copy and publication alternate), with min / median /
max and the per-run ratios; `--busy` runs one CPU-bound process beside it all.
Targets (issues #3, #16): first <= 1.5 x copy; B stores <= 15 % of its bytes when >= 90 % of its
files are unchanged; republish <= 0.3 s; each for the median and 4 runs in 5.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    SPREAD_HEADER,
    add_busy_flag,
    busy,
    clean_env,
    fmt_runs,
    fmt_spread,
    holds,
    print_table,
    ratio_row,
    timed,
)

from release.build import manifest as mf
from release.demo import fixture as demo

TAG_A, TAG_B = demo.DEMO_TAG, "v1.0.1"


def du(path: Path) -> int:
    seen: set[int] = set()
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def derive_b(dist: Path, changed_fraction: float) -> tuple[int, int, int]:
    """Version B: A's trees with a fraction of the files changed; returns (files, changed, bytes)."""
    sums = {}
    files = changed = size = 0
    for tree_a in sorted((dist / TAG_A).glob("Linux-*")):
        tree_b = dist / TAG_B / tree_a.name
        shutil.copytree(tree_a, tree_b, symlinks=True)
        manifest = json.loads(mf.manifest_path(tree_b).read_text())
        step = max(1, round(1 / changed_fraction))
        for index, entry in enumerate(manifest["files"]):
            if "link" in entry:
                continue
            files += 1
            path = tree_b / entry["path"]
            if index % step == 0 and not entry["path"].startswith(".dirac-release"):
                path.chmod(0o644 if entry["mode"] == "644" else 0o755)
                with path.open("ab") as handle:
                    handle.write(b"\n# changed in v1.0.0a2\n")
                changed += 1
        scan = mf.scan_tree(tree_b, None, skip=frozenset({".dirac-release/manifest.json"}))
        manifest.update(tag=TAG_B, version=TAG_B[1:], files=scan.files)
        manifest["totals"]["bytes"] = scan.total_bytes
        size += scan.total_bytes
        mf.manifest_path(tree_b).write_text(mf.dump(manifest))
        sums[f"{tree_b.name}/.dirac-release/manifest.json"] = hashlib.sha256(
            mf.manifest_path(tree_b).read_bytes()
        ).hexdigest()
    (dist / TAG_B / "SHA256SUMS").write_text(
        "".join(f"{d}  {n}\n" for n, d in sorted(sums.items()))
    )
    return files, changed, size


def derive_scaled(dist: Path, tag: str, factor: int) -> int:
    """Version `tag`: A's trees `factor` times over, every copy's files made distinct (a byte
    appended), with its manifest; returns its bytes. Nothing in it is shared with A."""
    size = 0
    sums = {}
    for tree_a in sorted((dist / TAG_A).glob("Linux-*")):
        tree = dist / tag / tree_a.name
        shutil.copytree(tree_a, tree, symlinks=True)
        manifest = json.loads(mf.manifest_path(tree).read_text())
        site = next((tree / "lib").glob("python*/site-packages"))
        copies = [site] + [site.parent / f"scaled-{n}" for n in range(1, factor)]
        for folder in copies[1:]:
            shutil.copytree(site, folder, symlinks=True)
        for n, folder in enumerate(copies):
            for path in folder.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o200)
                    with path.open("ab") as handle:
                        handle.write(f"\n# {tag} copy {n}\n".encode())
        scan = mf.scan_tree(tree, None, skip=frozenset({".dirac-release/manifest.json"}))
        manifest.update(tag=tag, version=tag[1:], files=scan.files)
        manifest["totals"].update(files=len(scan.files), bytes=scan.total_bytes)
        size += scan.total_bytes
        mf.manifest_path(tree).write_text(mf.dump(manifest))
        sums[f"{tree.name}/.dirac-release/manifest.json"] = hashlib.sha256(
            mf.manifest_path(tree).read_bytes()
        ).hexdigest()
    (dist / tag / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    return size


def without_pilots(config: Path) -> None:
    """The demo's configuration without its pilot files: the versions derived here have no
    tag to build them from, and the figures are about the release trees (as the baseline)."""
    import tomlkit

    document = tomlkit.parse(config.read_text(encoding="utf-8"))
    document.pop("pilots", None)
    config.write_text(tomlkit.dumps(document), encoding="utf-8")


def size_of(dist: Path, tag: str) -> int:
    return sum(
        int(json.loads(mf.manifest_path(tree).read_text())["totals"]["bytes"])
        for tree in (dist / tag).glob("Linux-*")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--changed", type=float, default=0.05, help="fraction of files B changes")
    parser.add_argument("--scales", default="2,4",
                        help="sizes (x the demo's) of the growth figures; '' for none")  # fmt: skip
    add_busy_flag(parser)
    args = parser.parse_args()
    with busy(args.busy):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    scales = [int(x) for x in args.scales.split(",") if x]
    growth: list[tuple[int, int, float]] = []  # factor, bytes, seconds
    try:
        env = clean_env(XDG_CACHE_HOME=str(work / "xdg"))
        demo_dir = work / "demo"
        subprocess.run([sys.executable, "-m", "release", "--json", "demo", "--workdir", str(demo_dir), "--until", "build"],
                       env=env, check=True, capture_output=True)  # fmt: skip
        dist = demo_dir / "dist"
        files, changed, size_b = derive_b(dist, args.changed)
        size_a = size_of(dist, TAG_A)
        config = demo_dir / "release.toml"
        without_pilots(config)
        cli = [sys.executable, "-m", "release", "--config", str(config), "--json"]

        def fresh_stratum() -> None:
            shutil.rmtree(demo_dir / "stratum", ignore_errors=True)
            shutil.rmtree(demo_dir / "state", ignore_errors=True)
            subprocess.run([*cli, "cvmfs", "init"], env=env, check=True, capture_output=True)

        def on_disk(command: list[str]) -> float:
            """Seconds up to the data being on disk (a trailing sync), after a sync."""
            subprocess.run(["sync"], check=False)
            return timed(["sh", "-c", '"$@" && sync', "sh", *command], env)

        copies: list[float] = []
        firsts: list[float] = []
        seconds_b: list[float] = []
        republishes: list[float] = []
        stored: list[int] = []
        for run in range(args.runs):
            target = work / f"copy{run}"
            target.mkdir()
            fresh_stratum()
            copy = ["cp", "-a", *(str(p) for p in sorted((dist / TAG_A).glob("Linux-*"))),
                    str(target)]  # fmt: skip
            publish_a = [*cli, "publish", "--version", TAG_A]
            # Alternating order: otherwise the write-back of one is billed to the other, and
            # the page cache makes whichever runs first look several times faster.
            for command in (copy, publish_a) if run % 2 == 0 else (publish_a, copy):
                (copies if command is copy else firsts).append(on_disk(command))
            shutil.rmtree(target)
            before = du(demo_dir / "stratum")
            seconds_b.append(timed([*cli, "publish", "--version", TAG_B], env))
            stored.append(du(demo_dir / "stratum") - before)
            republishes.append(timed([*cli, "publish", "--version", TAG_B], env))
        growth.append((1, size_a, statistics.median(firsts)))
        for factor in scales:
            tag = f"v1.{factor}.0"
            size = derive_scaled(dist, tag, factor)
            fresh_stratum()
            growth.append((factor, size, on_disk([*cli, "publish", "--version", tag])))
            shutil.rmtree(dist / tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stored_ratio = statistics.median(stored) / size_b
    unchanged = 1 - changed / files
    republish_ok = holds(republishes, 0.3)
    rows = [
        ("baseline cp -a of A's trees", fmt_spread(copies), fmt_runs(copies), "", "", ""),
        ratio_row("first publication of A", firsts, copies, 1.5, "x copy"),
        ("publication of B", fmt_spread(seconds_b), fmt_runs(seconds_b), "", "", ""),
        (
            "bytes B adds to the stratum",
            f"{statistics.median(stored) / 2**20:.1f} MiB",
            "",
            f"{stored_ratio:.1%} of B ({size_b / 2**20:.0f} MiB)",
            "<= 15 %",
            "yes" if stored_ratio <= 0.15 else "NO",
        ),
        (
            "republish B (no-op)",
            fmt_spread(republishes, 3),
            fmt_runs(republishes),
            "",
            "<= 0.3 s",
            "yes" if republish_ok else "NO",
        ),
    ]
    for factor, size, seconds in growth:
        rows.append((f"  first publication, {factor}x the demo ({size / 2**30:.2f} GiB)",
                     f"{seconds:.2f}", "", f"{seconds / (size / 2**30):.2f} s per GiB", "", ""))  # fmt: skip
    print_table(
        f"publish: demo bundles, both platforms ({files} files in B, {unchanged:.0%} unchanged)",
        rows,
        SPREAD_HEADER,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
