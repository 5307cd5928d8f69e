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
(d) the second baseline, the raw installer the build itself uses: `uv pip install --target
    --python-platform ...` of the same locks, both platforms at once, empty caches.
Each measure runs --runs times (default 5), alternating ours and the baselines; the table gives
min / median / max, the per-run ratios, and the cold build's phases. `--busy` runs one
CPU-bound process beside it all.
Targets (issues #2, #16): cold <= 0.35 x pip and <= 1.5 x uv; warm <= 0.05 x cold; each for the
median and 4 runs in 5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    SPREAD_HEADER,
    add_busy_flag,
    alternate,
    busy,
    clean_env,
    fmt_runs,
    fmt_spread,
    print_table,
    ratio_row,
    timed,
)

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


def _build(cli: list[str], out: Path, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """One build through the CLI: wall seconds, and the phases its record gives (per platform
    phases summed over the platforms, which run side by side)."""
    started = time.perf_counter()
    proc = subprocess.run([*cli, "--out", str(out), "--json"], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the build failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout)
    phases: dict[str, float] = dict(data.get("phases", {}))
    for platform in data.get("platforms", []):
        for name, value in platform.get("phases", {}).items():
            phases[name] = phases.get(name, 0.0) + float(value)
    return seconds, phases


def _env(run: Path) -> dict[str, str]:
    return clean_env(
        UV_CACHE_DIR=str(run / "uv-cache"), DIRAC_RELEASE_CACHE=str(run / "cache"),
        DIRAC_RELEASE_STATE=str(run / "state"),
    )  # fmt: skip


def measure(title: str, work: Path, config: Path, tag: str, runs: int, warm_runs: int) -> None:
    """Cold and warm builds of one product against two baselines, alternated, in this run."""
    cli = [sys.executable, "-m", "release", "build", "--config", str(config), "--version", tag]
    # A first build (not a figure): its locks and locally built wheels feed the baselines,
    # and its output is what the warm rebuilds reuse.
    first = work / "first"
    _build(cli, first / "out", _env(first))
    # Wheels built here (the product's from its tag, sources built into wheels): the
    # installers get them as find-links, the rest from the index.
    links = sorted({str(w.parent) for w in (first / "cache").rglob("*.whl")})
    found = [flag for link in links for flag in ("--find-links", link)]
    locks = {
        arch: first / "out" / tag / f"Linux-{arch}" / ".dirac-release" / "requirements.lock"
        for arch in ("x86_64", "aarch64")
    }
    from release.config import load_config

    loaded = load_config(config, environ={})
    product = next(iter(loaded.products.values()))
    platform_of = {arch: loaded.platforms[arch].python_platform(arch) for arch in locks}  # type: ignore[index]
    phases: dict[str, list[float]] = {}

    def cold(i: int) -> float:
        run = work / f"cold{i}"
        seconds, spent = _build(cli, run / "out", _env(run))
        for name, value in spent.items():
            phases.setdefault(name, []).append(value)
        shutil.rmtree(run)
        return seconds

    def pip(i: int) -> float:
        total = 0.0
        for arch, lock in locks.items():
            target = work / f"pip{i}-{arch}"
            platforms = [flag for tag in PIP_TAGS for flag in ("--platform", f"{tag}_{arch}")]
            total += timed(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-compile",
                 *platforms, "--python-version", "3.11", "--only-binary=:all:", "--no-deps", "--target", str(target),
                 *found, "-r", str(lock)],
                clean_env(),
            )  # fmt: skip
            shutil.rmtree(target)
        return total

    def uv(i: int) -> float:
        """The installer the build itself uses, both platforms at once as the build runs
        them, each with an empty cache: the best a build can do without checking anything."""
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["uv", "pip", "install", "--no-config", "--quiet", "--target", str(work / f"uv{i}-{arch}"),
                 "--python-platform", platform_of[arch], "--python-version", product.python,
                 "--require-hashes", "--no-deps", "--only-binary", ":all:", "--link-mode", "copy",
                 *found, "-r", str(lock)],
                env=clean_env(UV_CACHE_DIR=str(work / f"uv{i}-{arch}-cache")),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            for arch, lock in locks.items()
        ]  # fmt: skip
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(
                    f"uv pip install failed ({proc.returncode}):\n{err.decode()[-3000:]}"
                )
        seconds = time.perf_counter() - started
        for arch in locks:
            shutil.rmtree(work / f"uv{i}-{arch}")
            shutil.rmtree(work / f"uv{i}-{arch}-cache")
        return seconds

    colds, pips, uvs = alternate(runs, cold, pip, uv)
    warm_env = _env(first)
    warms = [_build(cli, first / "out", warm_env)[0] for _ in range(warm_runs)]
    rows = [
        ("baseline pip --platform --target", fmt_spread(pips), fmt_runs(pips), "", "", ""),
        (
            "baseline uv pip install --target (the build's installer)",
            fmt_spread(uvs),
            fmt_runs(uvs),
            "",
            "",
            "",
        ),
        ratio_row("cold build (empty caches) / pip", colds, pips, 0.35),
        ratio_row("cold build (empty caches) / uv", colds, uvs, 1.5, "x uv"),
        ratio_row(
            "warm rebuild (cached) / cold", warms[: len(colds)], colds[: len(warms)], 0.05, "x cold"
        ),
    ]
    for name, values in phases.items():
        rows.append((f"  cold phase: {name}", fmt_spread(values), fmt_runs(values), "", "", ""))
    print_table(title, rows, SPREAD_HEADER)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs", type=int, default=5, help="cold runs and baseline runs, alternated (default 5)"
    )
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--product", choices=["demo", "DIRAC", "all"], default="all",
                        help="which product (default: both)")  # fmt: skip
    add_busy_flag(parser)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    skipped = ""
    with busy(args.busy):
        skipped = _run_products(args, work)
    if skipped:
        print(skipped, file=sys.stderr)
        return 1  # a figure nobody asked to skip is missing
    return 0


def _run_products(args: argparse.Namespace, work: Path) -> str:
    """Each product asked for; returns why one was not measured ("" when all were)."""
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
    return skipped


if __name__ == "__main__":
    sys.exit(main())
