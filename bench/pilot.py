"""Benchmark: pilot files of 10 VOs built and published, against `tar` + `sha512sum` of them.

Measured in the same run, alternating, RUNS times each (a new release every run, so every
publication is a real one):
- ours: `pilot build` of 10 VOs (each from a pinned Pilot commit and its own tagged modules
  repository, read from git objects, pilot.json composed and validated, tar and checksums
  written) then `publish` of the release that carries them (every pilot folder checked as the
  wrapper checks it, staged, synced, verified, published in one transaction, verified again);
- for information: the same publish of the same tiny release without pilots (what the
  release itself costs), so the pilots' own share is visible;
- for information: ours with `<cache_dir>/pilot-sources/` emptied first (a Pilot commit or a
  VO tag built for the first time: every git object read);
- baseline: per VO, `tar -cf pilot.tar *.py` and `sha512sum ... > checksums.sha512` of the
  same files already on disk (what a by-hand pilot folder costs, without any check).
Target (issue #14): ours <= 2 x the baseline (median).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import busy, fmt_runs, print_table

from release.config import load_config
from release.pilot.build import build_pilots
from release.publish import init_repository, publish_release
from tests.pilot_repos import make_pilot_repo, make_vo_repo
from tests.publishing import make_bundle

VOS = 10
RUNS = 5
TARGET = 2.0

HEAD = """\
[products.vodemo]
source = {{ git = "repo" }}
distribution = "vodemo-dirac"

[repositories."vodemo.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[build]
out = "dist"
cache_dir = "cache"
"""
VO = """
[pilots.{vo}]
pilot = {{ git = "{pilot}", commit = "{commit}" }}
modules = {{ git = "{modules}", tag = "v1.0.0", path = "pilot" }}

[pilots.{vo}.settings]
Commands = {{ Defaults = ["CheckWorkerNode", "InstallDIRAC", "MyVOConfigure"] }}
CommandExtensions = ["myvo"]
ConfigurationServers = ["dips://{vo}.example.org:9135/Configuration/Server"]
"""


def site(root: Path, with_pilots: bool) -> Path:
    root.mkdir(parents=True)
    text = HEAD.format()
    if with_pilots:
        _, commit = make_pilot_repo(root / "Pilot")
        for i in range(VOS):
            vo = f"vo{i:02d}"
            extra = {f"pilot/{vo}Tools.py": f'"""Helpers of {vo}."""\nNAME = {vo!r}\n' * 40}
            make_vo_repo(root / f"{vo}-pilot", extra=extra)
            text += VO.format(vo=vo, pilot=root / "Pilot", commit=commit,
                              modules=(root / f"{vo}-pilot").as_uri())  # fmt: skip
    (root / "release.toml").write_text(text)
    init_repository(load_config(root / "release.toml", environ={}), None)
    return root


def tiny_release(root: Path, tag: str) -> None:
    make_bundle(root / "dist", tag, files={"diracosrc": f"# {tag}\n".encode()})


def ours(root: Path, tag: str) -> float:
    tiny_release(root, tag)
    config = load_config(root / "release.toml", environ={})
    start = time.perf_counter()
    build_pilots(config, version=tag)
    result = publish_release(config, version=tag)
    elapsed = time.perf_counter() - start
    assert result["status"] == "published" and len(result["pilots"]) == VOS, result["status"]
    return elapsed


def cold(root: Path, tag: str) -> float:
    shutil.rmtree(root / "cache" / "pilot-sources", ignore_errors=True)
    return ours(root, tag)


def release_alone(root: Path, tag: str) -> float:
    tiny_release(root, tag)
    config = load_config(root / "release.toml", environ={})
    start = time.perf_counter()
    result = publish_release(config, version=tag)
    elapsed = time.perf_counter() - start
    assert result["status"] == "published" and not result["pilots"]
    return elapsed


def baseline(folders: list[Path], scratch: Path) -> float:
    """tar + sha512sum per VO, of copies of the same loose files (made before the clock)."""
    copies = []
    for folder in folders:
        copy = scratch / folder.parent.name
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir(parents=True)
        for path in folder.iterdir():
            if path.name not in ("pilot.tar", "checksums.sha512"):
                shutil.copyfile(path, copy / path.name)
        copies.append(copy)
    start = time.perf_counter()
    for copy in copies:
        modules = sorted(p.name for p in copy.glob("*.py"))
        subprocess.run(["tar", "-cf", "pilot.tar", *modules], cwd=copy, check=True)
        with open(copy / "checksums.sha512", "w") as sums:
            subprocess.run(["sha512sum", *modules, "pilot.json", "pilot.tar"], cwd=copy,
                           stdout=sums, check=True)  # fmt: skip
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-pilot-") as tmp:
        scratch = Path(tmp)
        with_pilots = site(scratch / "pilots", True)
        plain = site(scratch / "plain", False)
        ours(with_pilots, "v0.0.1")  # once: git objects and imports warm, as in a pipeline
        release_alone(plain, "v0.0.1")
        folders = sorted((with_pilots / "dist" / "pilots").glob("vo*/v0.0.1"))
        mine, alone, base, first = [], [], [], []
        for run in range(RUNS):
            tag = f"v1.0.{run}"
            base.append(baseline(folders, scratch / "baseline"))
            mine.append(ours(with_pilots, tag))
            alone.append(release_alone(plain, tag))
            first.append(cold(with_pilots, f"v2.0.{run}"))
        again_start = time.perf_counter()
        rerun = publish_release(load_config(with_pilots / "release.toml", environ={}),
                                version=f"v1.0.{RUNS - 1}")  # fmt: skip
        again = time.perf_counter() - again_start
        assert rerun["status"] == "already published"
    import statistics

    m, a, b, c = (statistics.median(x) for x in (mine, alone, base, first))
    ratios = [x / y for x, y in zip(mine, base, strict=True)]
    ok = m / b <= TARGET
    print_table(
        f"pilot files: build + publish of {VOS} VOs (medians of {RUNS} runs, alternating)",
        [
            ("baseline: tar + sha512sum", f"{b:.3f}", fmt_runs(base), "1.00", "", ""),
            ("ours: build + publish", f"{m:.3f}", fmt_runs(mine), f"{m / b:.2f}",
             f"<= {TARGET:.1f}", "yes" if ok else "NO"),
            ("  of which the release alone", f"{a:.3f}", fmt_runs(alone), f"{a / b:.2f}", "", ""),
            ("  the pilots' share", f"{m - a:.3f}", "", f"{(m - a) / b:.2f}", "", ""),
            ("  first build of these inputs", f"{c:.3f}", fmt_runs(first), f"{c / b:.2f}", "",
             ""),
            ("republish, nothing changed", f"{again:.3f}", "", "", "", ""),
        ],
    )  # fmt: skip
    print("per-run ratios ours/baseline: " + " ".join(f"{r:.2f}" for r in ratios))
    return 0


if __name__ == "__main__":
    with busy("--busy" in sys.argv[1:]):  # one CPU-bound process beside it
        raise SystemExit(main())
