"""Benchmark: `dirac-release --help` must start fast (heavy imports live inside the stages).

Baseline measured in the same run: a bare `python -c pass`. Target: --help within 0.15 s of
the bare interpreter (ratio printed for information).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import busy, clean_env, fmt_runs, median_of, print_table, timed

RUNS = 15


def main() -> int:
    env = clean_env()
    bare, bare_samples = median_of(RUNS, lambda _: timed([sys.executable, "-c", "pass"], env))
    helped, help_samples = median_of(
        RUNS, lambda _: timed([sys.executable, "-m", "release", "--help"], env)
    )
    build_help, _ = median_of(
        RUNS, lambda _: timed([sys.executable, "-m", "release", "build", "--help"], env)
    )
    extra = helped - bare
    print_table(
        "CLI start-up",
        [
            (
                "python -c pass (baseline)",
                f"{bare:.3f}",
                fmt_runs(bare_samples[:5]) + " ...",
                "1.00",
                "",
                "",
            ),
            (
                "dirac-release --help",
                f"{helped:.3f}",
                fmt_runs(help_samples[:5]) + " ...",
                f"{helped / bare:.2f} x baseline",
                "+0.15 s",
                "yes" if extra <= 0.15 else "NO",
            ),
            (
                "dirac-release build --help",
                f"{build_help:.3f}",
                "",
                f"{build_help / bare:.2f} x baseline",
                "",
                "",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    with busy("--busy" in sys.argv[1:]):  # one CPU-bound process beside it
        sys.exit(main())
