"""Benchmark of the build stage on the demo product (both platforms).

(a) our cold build: empty uv cache, empty dirac-release cache, new output folder;
(b) the warm rebuild of the same version: the finished bundles are reused;
(c) the baseline, measured in the same run: `pip install --platform ... --only-binary=:all:
    --target` per platform, one after the other, for the same locked requirements (--no-deps:
    the lock is complete, as in our install), with an empty pip cache and no bytecode
    compilation (the same work as ours, minus verification).
Targets (issue #2): cold <= 0.35 x baseline; warm <= 0.05 x cold.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import clean_env, fmt_runs, median_of, print_table, timed

from release.demo import fixture as demo

PIP_TAGS = [f"manylinux_2_{minor}" for minor in range(28, 16, -1)] + ["manylinux2014"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs", type=int, default=3, help="cold runs and baseline runs (default 3)"
    )
    parser.add_argument("--warm-runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        demo.prepare_repository(work / demo.REPO_NAME)
        config = work / "release.toml"
        config.write_text(demo.demo_config_text())
        cli = [
            sys.executable,
            "-m",
            "release",
            "build",
            "--config",
            str(config),
            "--version",
            demo.DEMO_TAG,
        ]

        def cold(i: int) -> float:
            run = work / f"cold{i}"
            env = clean_env(
                UV_CACHE_DIR=str(run / "uv-cache"), DIRAC_RELEASE_CACHE=str(run / "cache"),
                DIRAC_RELEASE_STATE=str(run / "state"),
            )  # fmt: skip
            seconds = timed([*cli, "--out", str(run / "out"), "--json"], env)
            if i > 0:  # keep the first run's output for the warm rebuilds and the baseline
                shutil.rmtree(run)
            return seconds

        cold_median, cold_samples = median_of(args.runs, cold)
        first = work / "cold0"
        warm_env = clean_env(
            UV_CACHE_DIR=str(first / "uv-cache"), DIRAC_RELEASE_CACHE=str(first / "cache"),
            DIRAC_RELEASE_STATE=str(first / "state"),
        )  # fmt: skip
        warm_median, warm_samples = median_of(
            args.warm_runs, lambda i: timed([*cli, "--out", str(first / "out"), "--json"], warm_env)
        )

        wheel_dir = next((first / "cache" / "wheels").iterdir())
        locks = {
            arch: first
            / "out"
            / demo.DEMO_TAG
            / f"Linux-{arch}"
            / ".dirac-release"
            / "requirements.lock"
            for arch in ("x86_64", "aarch64")
        }

        def baseline(i: int) -> float:
            total = 0.0
            for arch, lock in locks.items():
                target = work / f"pip{i}-{arch}"
                platforms = [flag for tag in PIP_TAGS for flag in ("--platform", f"{tag}_{arch}")]
                total += timed(
                    [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-compile",
                     *platforms, "--python-version", "3.11", "--only-binary=:all:", "--no-deps", "--target", str(target),
                     "--find-links", str(wheel_dir), "-r", str(lock)],
                    clean_env(),
                )  # fmt: skip
                shutil.rmtree(target)
            return total

        base_median, base_samples = median_of(args.runs, baseline)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cold_ratio = cold_median / base_median
    warm_ratio = warm_median / cold_median
    print_table(
        "build: demo product, x86_64 + aarch64",
        [
            (
                "baseline pip --platform --target",
                f"{base_median:.2f}",
                fmt_runs(base_samples),
                "1.00",
                "",
                "",
            ),
            (
                "cold build (empty caches)",
                f"{cold_median:.2f}",
                fmt_runs(cold_samples),
                f"{cold_ratio:.3f} x baseline",
                "<= 0.35",
                "yes" if cold_ratio <= 0.35 else "NO",
            ),
            (
                "warm rebuild (cached)",
                f"{warm_median:.3f}",
                fmt_runs(warm_samples),
                f"{warm_ratio:.3f} x cold",
                "<= 0.05",
                "yes" if warm_ratio <= 0.05 else "NO",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
