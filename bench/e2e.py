"""Benchmark of the whole demo pipeline, end to end, on lab hosts (root).

(a) cold: a new work folder and every cache empty: the uv cache, the dirac-release cache, the
    lab hosts' root filesystem and the Debian bases of the VO image (debootstrap, into a
    private XDG_CACHE_HOME): the demo releases v1.0.0 (version, build, publish, image, lab
    hosts, render, deploy, certify, promote), as on a machine that never ran it;
(b) cold, rootfs kept: the same with the machine's lab root filesystem and Debian bases
    already made (a machine that ran the demo once before, in another folder): shown for the
    reader, since making them is the largest part of (a);
(c) warm: the folder and caches of (a), a new tag (v1.0.1, the next release of the product):
    the build reuses the caches, and the lab hosts come back with their disks (the demo keeps
    them in its folder), so deploy and promote upgrade what the cold run installed.
Per-stage times come from the demo's own result. `--keep-rootfs` skips (a)'s rootfs build
(offline machines): warm is then compared with (b).
Targets (issue #10): warm <= 60 s end to end; warm <= 0.4 x cold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import add_busy_flag, busy, clean_env, fmt_runs, print_table

from release.lab import ROOTFS_CACHE, lab_hosts_problem, prepare_rootfs


def disk_use(path: Path) -> int:
    """Bytes allocated under path (overlay upper layers: what the kept lab disks cost)."""
    total, seen = 0, set()
    for folder, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def demo(work: Path, tag: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    command = [sys.executable, "-m", "release", "--json", "demo", "--workdir", str(work),
               "--tag", tag]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    stages = {s["stage"]: float(s["seconds"]) for s in json.loads(proc.stdout)["stages"]}
    return seconds, stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="cold/warm pairs (default 1)")
    parser.add_argument("--keep-rootfs", action="store_true",
                        help="never build the lab rootfs inside a figure (no Debian mirror needed)")  # fmt: skip
    add_busy_flag(parser)
    args = parser.parse_args()
    problem = lab_hosts_problem()
    if problem:
        print(f"bench/e2e.py skipped: {problem}")
        return 0
    prepare_rootfs(ROOTFS_CACHE)  # the machine's, for (b); (a) makes its own
    samples: dict[str, list[float]] = {"cold": [], "cold, rootfs kept": [], "warm": []}
    per_stage: dict[str, dict[str, list[float]]] = {kind: {} for kind in samples}

    def measure(kind: str, work: Path, tag: str, env: dict[str, str]) -> None:
        seconds, stages = demo(work, tag, env)
        samples[kind].append(seconds)
        for stage, value in stages.items():
            per_stage[kind].setdefault(stage, []).append(value)
        lab_disks = disk_use(work / "lab") / 1e6
        print(f"{kind} ({tag}): {seconds:.1f} s; lab disks kept: {lab_disks:.0f} MB",
              file=sys.stderr, flush=True)  # fmt: skip

    for run in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
        try:
            env = clean_env(UV_CACHE_DIR=str(root / "uv-cache"))
            if not args.keep_rootfs:
                env["XDG_CACHE_HOME"] = str(root / "xdg-cache")  # rootfs and bases: none yet
                measure("cold", root / "demo", "v1.0.0", env)
            kept = clean_env(UV_CACHE_DIR=str(root / "uv-cache-b"))
            measure("cold, rootfs kept", root / "demo-b", "v1.0.0", kept)
            if args.keep_rootfs:
                env, work = kept, root / "demo-b"
            else:
                work = root / "demo"
            measure("warm", work, f"v1.0.{run + 1}", env)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    warm = statistics.median(samples["warm"])
    base_kind = "cold, rootfs kept" if args.keep_rootfs else "cold"
    cold = statistics.median(samples[base_kind])
    rows = []
    for kind, label in (("cold", "cold: v1.0.0, every cache empty (lab rootfs, bases too)"),
                        ("cold, rootfs kept", "cold: v1.0.0, lab rootfs, bases kept")):  # fmt: skip
        if samples[kind]:
            value = statistics.median(samples[kind])
            rows.append((label, f"{value:.1f}", fmt_runs(samples[kind]),
                         f"{value / cold:.2f}", "", ""))  # fmt: skip
    rows += [
        (
            "warm: a new tag, caches kept",
            f"{warm:.1f}",
            fmt_runs(samples["warm"]),
            f"{warm / cold:.2f}",
            f"<= 0.40 x {base_kind}",
            "yes" if warm <= 0.4 * cold else "NO",
        ),
        (
            "warm end to end",
            f"{warm:.1f}",
            fmt_runs(samples["warm"]),
            "",
            "<= 60 s",
            "yes" if warm <= 60 else "NO",
        ),
    ]
    if samples["cold"]:
        kept_cold = statistics.median(samples["cold, rootfs kept"])
        rows.append(("  warm / cold with the lab rootfs kept", f"{warm / kept_cold:.2f}", "", "",
                     "(not a target)", ""))  # fmt: skip
    for kind, stages in per_stage.items():
        for stage, values in stages.items():
            rows.append((f"  {kind} {stage}", f"{statistics.median(values):.1f}", fmt_runs(values),
                         "", "", ""))  # fmt: skip
    print_table("e2e: the demo pipeline on lab hosts (cold vs warm)", rows)
    slowest = max(per_stage["warm"].items(), key=lambda item: statistics.median(item[1]))
    print(f"slowest warm stage: {slowest[0]} ({statistics.median(slowest[1]):.1f} s)")
    return 0


if __name__ == "__main__":
    with busy("--busy" in sys.argv[1:]):  # one CPU-bound process beside it
        sys.exit(main())
