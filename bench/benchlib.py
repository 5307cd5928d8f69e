"""Small helpers shared by the benchmarks: timing, medians and the result table.

Machines here are shared and noisy, so every figure is a median of several runs and is read
as a ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without dirac-release, pip or uv settings that skew a run,
    nor PYTHONDONTWRITEBYTECODE (some machines set it: every command would then compile the
    package's sources at each start, which no user's machine does)."""
    drop = ("DIRAC_RELEASE_", "PIP_", "UV_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
    )
    env.update(extra)
    return env


def timed(command: Sequence[str], env: dict[str, str], cwd: str | None = None) -> float:
    """Wall seconds of one command; a failure stops the benchmark with its output."""
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}"
        )
    return elapsed


def median_of(runs: int, once: Callable[[int], float]) -> tuple[float, list[float]]:
    samples = [once(i) for i in range(runs)]
    return statistics.median(samples), samples


SPREAD_HEADER = ("measure", "min / median / max s", "runs (s)", "ratio", "target", "ok")


def print_table(
    title: str, rows: Sequence[Sequence[str]], header: Sequence[str] | None = None
) -> None:
    header = header or ("measure", "median s", "runs (s)", "ratio", "target", "ok")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def fmt_runs(samples: Sequence[float]) -> str:
    return " ".join(f"{s:.2f}" for s in samples)


def fmt_spread(samples: Sequence[float], digits: int = 2) -> str:
    """min / median / max, the figures a reader compares across runs."""
    return " / ".join(
        f"{v:.{digits}f}" for v in (min(samples), statistics.median(samples), max(samples))
    )


def add_busy_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--busy", action="store_true",
                        help="run one CPU-bound process beside the measurements (a busy runner)")  # fmt: skip


@contextmanager
def busy(enabled: bool) -> Iterator[None]:
    """One CPU-bound process beside the measurements, ended by its PID when they are done.

    A release runner is rarely idle: with --busy the condition is reproducible rather than
    whatever else the machine happens to run.
    """
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def alternate(runs: int, *measures: Callable[[int], float]) -> list[list[float]]:
    """Each measure `runs` times, in alternating order (forward, then backward), so that
    neither side is always the one that runs after the other's cache warm-up. Each starts
    with the disk settled (`os.sync()`, outside the figure): otherwise a run pays for the
    write-back of the gigabytes the runs before it wrote, which no single release does."""
    samples: list[list[float]] = [[] for _ in measures]
    for run in range(runs):
        order = list(enumerate(measures))
        for index, measure in order if run % 2 == 0 else reversed(order):
            os.sync()
            samples[index].append(measure(run))
    return samples


def holds(ratios: Sequence[float], target: float) -> bool:
    """A target holds for the median and for 4 runs in 5 (at least 80 % of the runs)."""
    enough = math.ceil(0.8 * len(ratios))
    return statistics.median(ratios) <= target and sum(r <= target for r in ratios) >= enough


def ratio_row(label: str, ours: Sequence[float], base: Sequence[float], target: float,
              unit: str = "x baseline") -> tuple[str, str, str, str, str, str]:  # fmt: skip
    """A row comparing run i of ours with run i of the baseline: median ratio, per-run ratios,
    the target, whether it holds (median and 4 in 5)."""
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    return (
        label,
        fmt_spread(ours),
        fmt_runs(ours),
        f"{statistics.median(ratios):.3f} {unit} (runs {fmt_runs(ratios)})",
        f"<= {target}",
        "yes" if holds(ratios, target) else "NO",
    )
