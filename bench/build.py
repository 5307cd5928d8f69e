"""Benchmark of the build stage on the demo product (both platforms).

(a) our cold build: empty uv cache, empty dirac-release cache, new output folder;
(b) the warm rebuild of the same version: the finished bundles are reused;
(c) the baseline, measured in the same run: `pip install --platform ... --only-binary=:all:
    --target` per platform, one after the other, for the same locked requirements (--no-deps:
    the lock is complete, as in our install), with an empty pip cache and no bytecode
    compilation (the same work as ours, minus verification).
For the demo product and for DIRAC 8.0.55[server] on the Debian bookworm base (issue #11;
the base is made once, outside the figures; the cold DIRAC build also builds rucio-clients
from its source and runs DIRAC on the base).
Targets (issue #2): cold <= 0.35 x baseline; warm <= 0.05 x cold.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import clean_env, fmt_runs, median_of, print_table, timed

from release.demo import fixture as demo

PIP_TAGS = [f"manylinux_2_{minor}" for minor in range(28, 16, -1)] + ["manylinux2014"]


DIRAC_CONFIG = """
[products.DIRAC]
source = {{ index = "DIRAC" }}
python = "3.11"
base = "bookworm"
extras = ["server"]
requirements = ["setuptools<81"]
exclude_newer = 2024-10-18T00:00:00Z
smoke_imports = ["DIRAC", "gfal2", "M2Crypto"]
smoke_commands = ["dirac-version"]

[bases.bookworm]
version = "12"
platforms.x86_64 = {{ path = "{x86_64}" }}
platforms.aarch64 = {{ path = "{aarch64}" }}
"""


def dirac_setup(work: Path) -> tuple[Path, str] | str:
    """DIRAC 8.0.55[server] on the Debian base (made once, outside the figures), or why not."""
    import os

    if os.geteuid() != 0 or not shutil.which("qemu-aarch64-static"):
        return "needs root, debootstrap and qemu-user-static (the Debian base of issue #11)"
    from release.base.debian import cached_path, make_debian_base

    bases = {a: make_debian_base(cached_path(a), arch=a) for a in ("x86_64", "aarch64")}
    root = work / "dirac"
    root.mkdir()
    config = root / "release.toml"
    config.write_text(DIRAC_CONFIG.format(**{a: str(p) for a, p in bases.items()}))
    subprocess.run([sys.executable, "-m", "release", "--config", str(config), "base", "inspect"],
                   check=True, capture_output=True, env=clean_env())  # fmt: skip
    return config, "v8.0.55"


def measure(title: str, work: Path, config: Path, tag: str, runs: int, warm_runs: int) -> None:
    """Cold and warm builds of one product, and its pip baseline, in this run."""
    cli = [sys.executable, "-m", "release", "build", "--config", str(config), "--version", tag]

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

    cold_median, cold_samples = median_of(runs, cold)
    first = work / "cold0"
    warm_env = clean_env(
        UV_CACHE_DIR=str(first / "uv-cache"), DIRAC_RELEASE_CACHE=str(first / "cache"),
        DIRAC_RELEASE_STATE=str(first / "state"),
    )  # fmt: skip
    warm_median, warm_samples = median_of(
        warm_runs, lambda i: timed([*cli, "--out", str(first / "out"), "--json"], warm_env)
    )
    # Wheels built here (the product's from its tag, sources built into wheels): pip gets them
    # as find-links, the rest from the index.
    links = sorted({str(w.parent) for w in (first / "cache").rglob("*.whl")})
    locks = {
        arch: first / "out" / tag / f"Linux-{arch}" / ".dirac-release" / "requirements.lock"
        for arch in ("x86_64", "aarch64")
    }

    def baseline(i: int) -> float:
        total = 0.0
        for arch, lock in locks.items():
            target = work / f"pip{i}-{arch}"
            platforms = [flag for tag in PIP_TAGS for flag in ("--platform", f"{tag}_{arch}")]
            found = [flag for link in links for flag in ("--find-links", link)]
            total += timed(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-compile",
                 *platforms, "--python-version", "3.11", "--only-binary=:all:", "--no-deps", "--target", str(target),
                 *found, "-r", str(lock)],
                clean_env(),
            )  # fmt: skip
            shutil.rmtree(target)
        return total

    base_median, base_samples = median_of(runs, baseline)
    cold_ratio = cold_median / base_median
    warm_ratio = warm_median / cold_median
    print_table(
        title,
        [
            ("baseline pip --platform --target", f"{base_median:.2f}", fmt_runs(base_samples),
             "1.00", "", ""),
            ("cold build (empty caches)", f"{cold_median:.2f}", fmt_runs(cold_samples),
             f"{cold_ratio:.3f} x baseline", "<= 0.35", "yes" if cold_ratio <= 0.35 else "NO"),
            ("warm rebuild (cached)", f"{warm_median:.3f}", fmt_runs(warm_samples),
             f"{warm_ratio:.3f} x cold", "<= 0.05", "yes" if warm_ratio <= 0.05 else "NO"),
        ],
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs", type=int, default=3, help="cold runs and baseline runs (default 3)"
    )
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--product", choices=["demo", "DIRAC", "all"], default="all",
                        help="which product (default: both)")  # fmt: skip
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    skipped = ""
    try:
        if args.product in ("demo", "all"):
            (work / "demo").mkdir()
            demo.prepare_repository(work / "demo" / demo.REPO_NAME)
            config = work / "demo" / "release.toml"
            config.write_text(demo.demo_config_text())
            measure("build: demo product, x86_64 + aarch64", work / "demo", config,
                    demo.DEMO_TAG, args.runs, args.warm_runs)  # fmt: skip
        if args.product in ("DIRAC", "all"):
            setup = dirac_setup(work)
            if isinstance(setup, str):
                skipped = f"DIRAC not measured: {setup}"
            else:
                measure("build: DIRAC 8.0.55[server] on the Debian base, x86_64 + aarch64",
                        work / "dirac", *setup, args.runs, args.warm_runs)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if skipped:
        print(skipped, file=sys.stderr)
        return 1  # a figure nobody asked to skip is missing
    return 0


if __name__ == "__main__":
    sys.exit(main())
