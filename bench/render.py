"""Benchmark: render and validate the k3s manifests of both shipped DiracX environments.

Measured in the same run (medians of RUNS runs, each in a fresh interpreter so imports count):
- baseline: the `kubernetes-validate` command run once per rendered manifest file, as one
  would check the files by hand (its start-up is paid per file, and it knows no HelmChart);
- render + validate of certification and production (inventory, Namespace, HelmChart,
  HelmChartConfig, Secret names; kubernetes-validate for core kinds, the CRD and values
  schemas) in one process, through the same function `dirac-release render` calls;
- for information: `dirac-release render --env certification` on the command line, and the
  two renders again inside an already warm process (what `dirac-release run` pays).
Targets (issue #13): both environments <= 1 s and <= 0.2 x the baseline.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import busy, clean_env, fmt_runs, median_of, print_table, timed

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "release.toml"
ENVIRONMENTS = ("certification", "production")
TAG = "v0.7.0"
RUNS = 7


def render_both_code(out: Path) -> str:
    return (
        "from pathlib import Path; from release.config import load_config; "
        "from release.render import render_environment; "
        f"config = load_config({str(CONFIG)!r}); "
        + "".join(
            f"render_environment(config, {env!r}, {TAG!r}, Path({str(out)!r})); "
            for env in ENVIRONMENTS
        )
    )


def main() -> int:
    env = clean_env()
    python = sys.executable
    validate = str(Path(python).parent / "kubernetes-validate")
    with tempfile.TemporaryDirectory(prefix="bench-render-") as scratch:
        out = Path(scratch) / "rendered"
        code = render_both_code(out)
        timed([python, "-c", code], env)  # once, so the files exist and caches are warm
        files = sorted(str(p) for p in out.rglob("k8s/manifests/*.yaml"))
        kubernetes = "1.33"
        baseline, base_samples = median_of(
            RUNS,
            lambda _: sum(
                timed([validate, "--strict", "-k", kubernetes, "--quiet", f], env) for f in files
            ),
        )
        ours, our_samples = median_of(RUNS, lambda _: timed([python, "-c", code], env))
        command = [python, "-m", "release", "--config", str(CONFIG), "render", "--env",
                   "certification", "--version", TAG, "--out", str(out)]  # fmt: skip
        cli, cli_samples = median_of(RUNS, lambda _: timed(command, env))
        warm_samples = _warm_in_process(out)
    warm = statistics.median(warm_samples)
    ratio = ours / baseline
    print(
        f"{len(files)} manifest files of {len(ENVIRONMENTS)} environments, Kubernetes {kubernetes}"
    )
    print_table(
        "render + validate, k3s manifests (min / median / max in the runs column)",
        [
            (f"kubernetes-validate per file ({len(files)} files, baseline)", f"{baseline:.3f}",
             _spread(base_samples), "1.00", "", ""),
            ("render + validate, both environments, fresh process", f"{ours:.3f}",
             _spread(our_samples), f"{ratio:.2f} x baseline", "<= 1 s, <= 0.20 x",
             "yes" if ours <= 1.0 and ratio <= 0.2 else "NO"),
            ("dirac-release render --env certification (CLI)", f"{cli:.3f}", _spread(cli_samples),
             f"{cli / baseline:.2f} x baseline", "", ""),
            ("both environments, warm process (information)", f"{warm:.3f}", _spread(warm_samples),
             f"{warm / baseline:.3f} x baseline", "", ""),
        ],
    )  # fmt: skip
    print(f"\nruns: baseline {fmt_runs(base_samples)}; ours {fmt_runs(our_samples)}")
    return 0


def _spread(samples: list[float]) -> str:
    return f"{min(samples):.3f} / {statistics.median(samples):.3f} / {max(samples):.3f}"


def _warm_in_process(out: Path) -> list[float]:
    """Both renders in this process after a first one (imports and schemas already loaded)."""
    from release.config import load_config
    from release.render import render_environment

    config = load_config(CONFIG)
    for env in ENVIRONMENTS:
        render_environment(config, env, TAG, out)
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for env in ENVIRONMENTS:
            render_environment(config, env, TAG, out)
        samples.append(time.perf_counter() - start)
    return samples


if __name__ == "__main__":
    with busy("--busy" in sys.argv[1:]):  # one CPU-bound process beside it
        sys.exit(main())
