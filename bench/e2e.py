"""Benchmark of the whole demo pipeline, end to end, on lab hosts (root).

(a) cold: a new work folder, an empty uv cache and an empty dirac-release cache: the demo
    releases v1.0.0 (version, build, publish, lab hosts, render, deploy, certify, promote);
(b) warm: the same folder and caches, a new tag (v1.0.1, the next release of the product):
    the build reuses the caches, and the lab hosts come back with their disks (the demo keeps
    them in its folder), so deploy and promote upgrade what the cold run installed.
Per-stage times come from the demo's own result. The lab root filesystem is made once per
machine (debootstrap) and is kept by both runs; it is not part of either figure.
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

from benchlib import clean_env, fmt_runs, print_table

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
    args = parser.parse_args()
    problem = lab_hosts_problem()
    if problem:
        print(f"bench/e2e.py skipped: {problem}")
        return 0
    prepare_rootfs(ROOTFS_CACHE)  # once per machine, outside both figures
    colds: list[float] = []
    warms: list[float] = []
    per_stage: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
    for run in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
        try:
            env = clean_env(UV_CACHE_DIR=str(root / "uv-cache"))
            work = root / "demo"  # the demo's caches (.cache) live in its folder
            for kind, tag, into in (("cold", "v1.0.0", colds), ("warm", f"v1.0.{run + 1}", warms)):
                seconds, stages = demo(work, tag, env)
                into.append(seconds)
                for stage, value in stages.items():
                    per_stage[kind].setdefault(stage, []).append(value)
                lab_disks = disk_use(work / "lab") / 1e6
                print(f"{kind} ({tag}): {seconds:.1f} s; lab disks kept: {lab_disks:.0f} MB",
                      file=sys.stderr, flush=True)  # fmt: skip
        finally:
            shutil.rmtree(root, ignore_errors=True)
    cold, warm = statistics.median(colds), statistics.median(warms)
    rows = [
        ("cold: v1.0.0, empty caches", f"{cold:.1f}", fmt_runs(colds), "1.00", "", ""),
        (
            "warm: a new tag, caches kept",
            f"{warm:.1f}",
            fmt_runs(warms),
            f"{warm / cold:.2f}",
            "<= 0.40 x cold",
            "yes" if warm <= 0.4 * cold else "NO",
        ),
        (
            "warm end to end",
            f"{warm:.1f}",
            fmt_runs(warms),
            "",
            "<= 60 s",
            "yes" if warm <= 60 else "NO",
        ),
    ]
    for kind in ("cold", "warm"):
        for stage, values in per_stage[kind].items():
            rows.append((f"  {kind} {stage}", f"{statistics.median(values):.1f}", fmt_runs(values),
                         "", "", ""))  # fmt: skip
    print_table("e2e: the demo pipeline on lab hosts (cold vs warm)", rows)
    slowest = max(per_stage["warm"].items(), key=lambda item: statistics.median(item[1]))
    print(f"slowest warm stage: {slowest[0]} ({statistics.median(slowest[1]):.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
