"""Benchmark: a VO's image for both architectures, built, unpacked and published, against
`tar` + `gzip` of the same root filesystems.

The real Debian bases of this machine (`release.base.debian.cached_path`, made once by
debootstrap, as the lab tests and the demo use them; root only). Measured in the same run,
alternating, RUNS times each (a new release tag every run, so every image is really built:
the tag is in its labels, hence in its layer-free config and manifest, and the inputs key):
- ours: `image build` for x86_64 and aarch64 (each base walked, one reproducible gzip layer
  written, config, manifest and index, the layer unpacked into the tree a container runs
  from) then `image publish` of both in one transaction (staged, synced, verified, published,
  verified again) to a directory stratum;
- baseline: per architecture `tar -cf - . | gzip -<level>` of the same base, at the gzip
  level the build uses (build.compression_level), both architectures at once as ours builds
  them (build.jobs = 2).
Target (issue #15): ours <= 1.5 x the baseline (median).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import add_busy_flag, busy, fmt_runs, print_table

from release.config import load_config

TARGET = 1.5
ARCHES = ("x86_64", "aarch64")
CONFIG = """\
[products.DIRAC]
source = { index = "DIRAC" }
repository = "dirac.egi.eu"

[build]
out = "dist"
cache_dir = "cache"
compression_level = 3

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"
keep = 100

[images.dteam]
base = { debian = "bookworm" }
packages = ["python3.11", "python3-gfal2"]
"""


def problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (the Debian bases are made by debootstrap)"
    from release.base.debian import DONE_MARK, cached_path

    missing = [a for a in ARCHES if not (cached_path(a) / DONE_MARK).is_file()]
    if missing and not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        return f"no Debian base for {', '.join(missing)} and no debootstrap to make one"
    return None


def bases() -> dict[str, Path]:
    from release.base.debian import cached_path, make_debian_base

    return {arch: make_debian_base(cached_path(arch), arch=arch) for arch in ARCHES}


def ours(site: Path, tag: str) -> tuple[float, float, float]:
    from release.image.build import build_images
    from release.image.publish import publish_images

    config = load_config(site / "release.toml", environ={})
    start = time.perf_counter()
    built = build_images(config, version=tag)
    middle = time.perf_counter()
    [published] = publish_images(config, version=tag)
    end = time.perf_counter()
    assert sorted(b.arch for b in built) == sorted(ARCHES), built
    assert published["status"] == "published", published["status"]
    return end - start, middle - start, end - middle


def baseline(trees: dict[str, Path], scratch: Path, level: int) -> float:
    def one(arch: str) -> None:
        with open(scratch / f"{arch}.tar.gz", "wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(trees[arch]), "-cf", "-", "."],
                                   stdout=subprocess.PIPE)  # fmt: skip
            subprocess.run(["gzip", f"-{level}"], stdin=tar.stdout, stdout=out, check=True)
            assert tar.stdout is not None
            tar.stdout.close()
            if tar.wait() != 0:
                raise SystemExit(f"tar of {trees[arch]} failed")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(trees)) as pool:
        list(pool.map(one, trees))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    add_busy_flag(parser)
    args = parser.parse_args()
    from release.image.publish import publish_images

    why = problem()
    if why:
        print(f"image benchmark NOT RUN: {why}")
        return 1
    trees = bases()
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "release.toml").write_text(CONFIG)
        from release.publish import init_repository

        init_repository(load_config(site / "release.toml", environ={}), None)
        scratch = Path(tmp) / "baseline"
        scratch.mkdir()
        mine, builds, publishes, base = [], [], [], []
        for run in range(args.runs):
            base.append(baseline(trees, scratch, 3))
            total, build, publish = ours(site, f"v9.0.{run}")
            mine.append(total)
            builds.append(build)
            publishes.append(publish)
            print(f"run {run + 1}: baseline {base[-1]:.1f} s, ours {total:.1f} s "
                  f"(build {build:.1f}, publish {publish:.1f})", flush=True)  # fmt: skip
        start = time.perf_counter()
        [again] = publish_images(
            load_config(site / "release.toml", environ={}), version=f"v9.0.{args.runs - 1}"
        )
        rerun = time.perf_counter() - start
        assert again["status"] == "already published", again["status"]
        sizes = {a: (scratch / f"{a}.tar.gz").stat().st_size for a in ARCHES}
    m, b = statistics.median(mine), statistics.median(base)
    ratios = [x / y for x, y in zip(mine, base, strict=True)]
    print_table(
        f"image: build + unpack + publish, both architectures (medians of {args.runs} runs)",
        [
            ("baseline: tar | gzip -3 of both bases", f"{b:.2f}", fmt_runs(base), "1.00", "", ""),
            ("ours: build + publish", f"{m:.2f}", fmt_runs(mine), f"{m / b:.2f}",
             f"<= {TARGET:.1f}", "yes" if m / b <= TARGET else "NO"),
            ("  of which build (layer, unpack)", f"{statistics.median(builds):.2f}",
             fmt_runs(builds), "", "", ""),
            ("  of which publish", f"{statistics.median(publishes):.2f}", fmt_runs(publishes),
             "", "", ""),
            ("republish, nothing changed", f"{rerun:.2f}", "", "", "", ""),
        ],
    )  # fmt: skip
    print("per-run ratios ours/baseline: " + " ".join(f"{r:.2f}" for r in ratios))
    print("baseline archive sizes: " + ", ".join(f"{a} {s / 1e6:.1f} MB" for a, s in sizes.items()))
    return 0


if __name__ == "__main__":
    with busy("--busy" in sys.argv[1:]):  # one CPU-bound process beside it
        raise SystemExit(main())
