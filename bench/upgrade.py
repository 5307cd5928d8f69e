"""Benchmark of rolling upgrades on lab hosts: 1, 2, 4 and 6 hosts, canary then batches.

Each size gets fresh lab hosts (real SSH, runit, the stratum bind-mounted at /cvmfs), a first
installation of v1.0.0 (not timed), then five upgrades, to v1.0.1 ... v1.0.5, through
`dirac-release deploy` (timed: render, Ansible, install from CVMFS with manifest check,
switch, restart, health and running-version post-checks). The environment's batch is 5, so
6 hosts are one canary and one batch of 5. The service is a small HTTP service answering its
version (the orchestration is measured, not a service's start-up time).

Upgrade i of each size is compared with upgrade i of one host: min / median / max and the per-run
ratios. `--busy` runs one CPU-bound process beside it all.
Target (issues #4, #16): 6 hosts <= 2.0 x one host, for the median and 4 runs in 5. Needs root
(lab hosts); prints why otherwise.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import SPREAD_HEADER, add_busy_flag, busy, fmt_runs, fmt_spread, holds, print_table

from release.lab import ROOTFS_CACHE, lab_hosts, lab_hosts_problem, prepare_rootfs
from tests.publishing import make_bundle, service_files

REPO = "dirac.egi.eu"
VERSIONS = ("v1.0.0", "v1.0.1", "v1.0.2", "v1.0.3", "v1.0.4", "v1.0.5")
SIZES = (1, 2, 4, 6)
TARGET = 2.0
CONFIG = """
[products.vodemo]
source = {{ git = "repo" }}

[products.vodemo.services.SystemAdministrator]
system = "Framework"
command = "bin/dirac-service"
environment = {{ DIRAC_SERVICE_PORT = "9162" }}
health = "http://127.0.0.1:9162/health"

[platforms.x86_64]
glibc = "2.28"

[repositories."{repo}"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[environments.bench]
hosts = {{ {hosts} }}
ssh_key = "{key}"
batch = 5
"""


CPU_LOG: dict[int, list[tuple[float, float]]] = {}


def machine_cpu_s() -> float:
    """CPU seconds this machine has spent busy so far (all processes: controller and hosts)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(prefix: list[str], config: Path, *args: str, size: int = 0) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    machine, controller = machine_cpu_s(), children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "release", "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if size:
        used = machine_cpu_s() - machine
        CPU_LOG.setdefault(size, []).append((used, children_cpu_s() - controller))
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def publish_versions(root: Path) -> None:
    from release.config import load_config
    from release.publish import init_repository, publish_release

    (root / "release.toml").write_text(CONFIG.format(repo=REPO, hosts='h = ""', key="k"))
    config = load_config(root / "release.toml", environ={})
    init_repository(config, None)
    for tag in VERSIONS:
        make_bundle(root / "dist", tag, files=service_files(tag), platforms=("x86_64",))
        publish_release(config, version=tag)


def measure(root: Path, rootfs: Path, size: int) -> list[float]:
    names = [f"cctbdirac{i:02d}" for i in range(1, size + 1)]
    stratum = root / "stratum" / REPO
    with lab_hosts(
        names, rootfs, root / f"hosts{size}", binds=[(stratum, f"/cvmfs/{REPO}", True)]
    ) as net:
        hosts = ", ".join(f'{h.name} = "{h.address}"' for h in net)
        config = root / f"bench{size}.toml"
        config.write_text(CONFIG.format(repo=REPO, hosts=hosts, key=net[0].ssh_key))
        prefix = net.exec_prefix()
        cli(prefix, config, "deploy", "--env", "bench", "--version", VERSIONS[0], "--install")
        return [
            cli(prefix, config, "deploy", "--env", "bench", "--version", tag, size=size)
            for tag in VERSIONS[1:]
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    add_busy_flag(parser)
    args = parser.parse_args()
    problem = lab_hosts_problem()
    if problem:
        print(f"bench/upgrade.py skipped: {problem}")
        return 0
    rootfs = prepare_rootfs(ROOTFS_CACHE)
    sizes = [int(s) for s in args.sizes.split(",")]
    with busy(args.busy), tempfile.TemporaryDirectory(prefix="bench-upgrade-") as tmp:
        root = Path(tmp)
        publish_versions(root)
        results = {size: measure(root, rootfs, size) for size in sizes}
    one = results[sizes[0]]
    rows = []
    for size in sizes:
        ratios = [s / o for s, o in zip(results[size], one, strict=True)]
        is_target = size == 6
        rows.append((
            f"upgrade {size} host{'s' if size > 1 else ''}", fmt_spread(results[size]), fmt_runs(results[size]),
            f"{statistics.median(ratios):.2f} x 1 host (runs {fmt_runs(ratios)})", f"<= {TARGET}" if is_target else "-",
            ("yes" if holds(ratios, TARGET) else "NO") if is_target else "-",
        ))  # fmt: skip
    print_table(f"Rolling upgrade (canary, then batches of 5), {len(one)} upgrades per size", rows,
                SPREAD_HEADER)  # fmt: skip
    # Every lab host runs on this machine: the hosts' work (sshd, the modules' Python, the
    # services) competes with the controller for the same CPUs, which real hosts would not.
    cpus = os.cpu_count() or 1
    print(f"\nCPU during the upgrades ({cpus} CPUs here, shared by the controller and every host):")
    print("  hosts  machine CPU s  controller CPU s  machine busy")
    for size in sizes:
        machine = statistics.median(m for m, _ in CPU_LOG[size])
        controller = statistics.median(c for _, c in CPU_LOG[size])
        share = machine / (statistics.median(results[size]) * cpus)
        print(f"  {size:<5}  {machine:13.1f}  {controller:16.1f}  {share:11.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
