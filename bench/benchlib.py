"""Small helpers shared by the benchmarks: timing, medians and the result table.

Machines here are shared and noisy, so every figure is a median of several runs and is read
as a ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without dirac-release, pip or uv settings that skew a run."""
    drop = ("DIRAC_RELEASE_", "PIP_", "UV_")
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


def print_table(title: str, rows: Sequence[Sequence[str]]) -> None:
    header = ("measure", "median s", "runs (s)", "ratio", "target", "ok")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def fmt_runs(samples: Sequence[float]) -> str:
    return " ".join(f"{s:.2f}" for s in samples)
