"""Benchmark of the publish stage on a fresh directory stratum (both platforms of the demo).

Measured in the same run, each command timed until its data is on disk (`; sync`):
- baseline: `cp -a` of the two platform trees of version A into an empty folder;
- first publication of A (CLI, all checks) vs that copy;
- version B sharing most files with A: the bytes B adds to the stratum vs B's size;
- republishing B: the "already published" no-op.
Targets (issue #3): first <= 1.5 x copy; B stores <= 15 % of its bytes when >= 90 % of its
files are unchanged; republish <= 0.5 s.
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

from benchlib import clean_env, fmt_runs, print_table, timed

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--changed", type=float, default=0.05, help="fraction of files B changes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    try:
        env = clean_env(XDG_CACHE_HOME=str(work / "xdg"))
        demo_dir = work / "demo"
        subprocess.run([sys.executable, "-m", "release", "--json", "demo", "--workdir", str(demo_dir), "--until", "build"],
                       env=env, check=True, capture_output=True)  # fmt: skip
        dist = demo_dir / "dist"
        files, changed, size_b = derive_b(dist, args.changed)
        config = demo_dir / "release.toml"
        cli = [sys.executable, "-m", "release", "--config", str(config), "--json"]
        copies, firsts, seconds_b, republishes, stored = [], [], [], [], []
        for run in range(args.runs):
            target = work / f"copy{run}"
            target.mkdir()
            shutil.rmtree(demo_dir / "stratum", ignore_errors=True)
            shutil.rmtree(demo_dir / "state", ignore_errors=True)
            subprocess.run([*cli, "cvmfs", "init"], env=env, check=True, capture_output=True)
            copy = [
                "cp",
                "-a",
                *(str(p) for p in sorted((dist / TAG_A).glob("Linux-*"))),
                str(target),
            ]
            publish_a = [*cli, "publish", "--version", TAG_A]
            # Each is timed up to its data being on disk (a trailing sync), after a sync, in
            # alternating order: otherwise the write-back of one is billed to the other, and
            # the page cache makes whichever runs first look several times faster.
            for command in (copy, publish_a) if run % 2 == 0 else (publish_a, copy):
                subprocess.run(["sync"], check=False)
                (copies if command is copy else firsts).append(
                    timed(["sh", "-c", '"$@" && sync', "sh", *command], env)
                )
            shutil.rmtree(target)
            before = du(demo_dir / "stratum")
            seconds_b.append(timed([*cli, "publish", "--version", TAG_B], env))
            stored.append(du(demo_dir / "stratum") - before)
            republishes.append(timed([*cli, "publish", "--version", TAG_B], env))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    copy = statistics.median(copies)
    first = statistics.median(firsts)
    paired = statistics.median(f / c for f, c in zip(firsts, copies, strict=True))
    republish = statistics.median(republishes)
    stored_ratio = statistics.median(stored) / size_b
    unchanged = 1 - changed / files
    print_table(
        f"publish: demo bundles, both platforms ({files} files in B, {unchanged:.0%} unchanged)",
        [
            ("baseline cp -a of A's trees", f"{copy:.2f}", fmt_runs(copies), "1.00", "", ""),
            (
                "first publication of A",
                f"{first:.2f}",
                fmt_runs(firsts),
                f"{paired:.2f} x copy (median of per-run ratios)",
                "<= 1.5",
                "yes" if paired <= 1.5 else "NO",
            ),
            (
                "publication of B",
                f"{statistics.median(seconds_b):.2f}",
                fmt_runs(seconds_b),
                f"{statistics.median(seconds_b) / copy:.2f} x copy",
                "",
                "",
            ),
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
                f"{republish:.3f}",
                fmt_runs(republishes),
                "",
                "<= 0.5 s",
                "yes" if republish <= 0.5 else "NO",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
