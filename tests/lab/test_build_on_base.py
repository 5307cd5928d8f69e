"""Building a product from the package index on a pinned base, for real.

Two real bases: (1) an installed prefix (a virtual environment of this machine's Python 3.11,
the same shape as DIRACOS2's conda prefix) holding requests' dependencies from the index,
and (2) Debian bookworm root filesystems for both architectures (the lab hosts' amd64 one and
the arm64 sysroot), where the smoke test runs natively in a chroot and under qemu-user.
The product is `requests` 2.31.0: small, and its requirements (idna>=2.5, urllib3...) give
the constraint check a real refusal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from release.build.uvtool import uv_binary, uv_env
from tests.conftest import index_problem, lab_skip

pytestmark = pytest.mark.lab

PRODUCT = """
[products.requests]
source = {{ index = "requests" }}
python = "3.11"
base = "{base}"
exclude_newer = 2024-06-01T00:00:00Z
{extra}
[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"
"""
PREFIX_BASE = """
[bases.venv]
version = "{version}"
platforms.x86_64 = {{ path = "{path}" }}

[platforms.x86_64]
glibc = "2.28"
"""


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    return subprocess.run(
        [sys.executable, "-m", "release", "--config", str(root / "release.toml"), *args],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip


def make_prefix_base(path: Path, *pins: str) -> Path:
    """A real installed prefix: a venv of this machine's python3.11 with `pins` installed."""
    python = sys.executable if sys.version_info[:2] == (3, 11) else shutil.which("python3.11")
    if python is None:
        lab_skip("python3.11 is not installed")
    assert python is not None
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    subprocess.run(
        [uv_binary(), "pip", "install", "--quiet", "--python", str(path / "bin/python"), *pins],
        env=uv_env(), check=True, timeout=300,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def index() -> None:
    problem = index_problem()
    if problem:
        lab_skip(problem)


def manifest(root: Path, arch: str) -> dict:  # type: ignore[type-arg]
    path = root / "dist/v2.31.0" / f"Linux-{arch}" / ".dirac-release/manifest.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_build_on_a_prefix_base_leaves_out_what_it_provides(index: None, tmp_path: Path) -> None:
    make_prefix_base(tmp_path / "base", "idna==3.4", "urllib3==1.26.18", "certifi==2023.7.22",
                     "charset-normalizer==3.3.2")  # fmt: skip
    (tmp_path / "release.toml").write_text(
        PRODUCT.format(base="venv", extra="") + PREFIX_BASE.format(version="1.0", path="base")
    )
    missing = cli(tmp_path, "build", "--version", "v2.31.0")
    assert missing.returncode == 2 and "has no record" in missing.stderr, missing.stderr
    assert not (tmp_path / "dist").exists()

    inspected = cli(tmp_path, "--json", "base", "inspect")
    assert inspected.returncode == 0, inspected.stderr
    [platform] = json.loads(inspected.stdout)["platforms"]
    assert (platform["layout"], platform["distributions"]) == ("prefix", 4)
    assert platform["python"].startswith("3.11.")

    built = cli(tmp_path, "--json", "build", "--version", "v2.31.0")
    assert built.returncode == 0, built.stderr
    [bundle] = json.loads(built.stdout)["platforms"]
    assert bundle["smoke"] == "passed" and "natively on base venv 1.0" in bundle["smoke_detail"]
    found = manifest(tmp_path, "x86_64")
    assert [d["name"] for d in found["distributions"]] == ["requests"]
    lock = (tmp_path / "dist/v2.31.0/Linux-x86_64/.dirac-release/requirements.lock").read_text()
    assert "requests==2.31.0" in lock and "idna" not in lock and "urllib3" not in lock
    assert {p["name"]: p["version"] for p in found["base"]["provided"]} == {
        "idna": "3.4", "urllib3": "1.26.18", "certifi": "2023.7.22", "charset-normalizer": "3.3.2",
    }  # fmt: skip

    # Published beside the release, the base is found by the bundle's diracosrc alone.
    prefix = tmp_path / "cvmfs/dirac.egi.eu/dirac"
    shutil.copytree(tmp_path / "dist/v2.31.0/Linux-x86_64", prefix / "v2.31.0/Linux-x86_64")
    base_dir = prefix / "diracos/1.0/Linux-x86_64"
    base_dir.parent.mkdir(parents=True)
    base_dir.symlink_to(tmp_path / "base")
    (tmp_path / "base/diracosrc").write_text(f'export PATH="{tmp_path}/base/bin:$PATH"\n')
    code = "import idna, requests; print(requests.__version__, idna.__version__, idna.__file__)"
    ran = subprocess.run(
        ["bash", "-c", f"source {prefix}/v2.31.0/Linux-x86_64/diracosrc && cd / && "
                       f"python -c '{code}'"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    version, idna_version, idna_file = ran.stdout.split()
    assert (version, idna_version) == ("2.31.0", "3.4")
    assert idna_file.startswith(str(tmp_path / "base"))  # from the base, not the bundle


def test_a_base_that_cannot_satisfy_the_product_is_refused(index: None, tmp_path: Path) -> None:
    make_prefix_base(tmp_path / "old", "idna==2.0")
    (tmp_path / "release.toml").write_text(
        PRODUCT.format(base="venv", extra="") + PREFIX_BASE.format(version="0.1", path="old")
    )
    assert cli(tmp_path, "base", "inspect").returncode == 0
    refused = cli(tmp_path, "build", "--version", "v2.31.0")
    assert refused.returncode == 2, refused.stderr
    assert "requests 2.31.0 requires idna<4,>=2.5; base venv 0.1 provides 2.0" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "dist").exists()  # nothing written

    # The same base changed after it was recorded: refused before anything is resolved.
    subprocess.run(
        [uv_binary(), "pip", "install", "--quiet", "--python", str(tmp_path / "old/bin/python"),
         "idna==3.4"], env=uv_env(), check=True, timeout=300,
    )  # fmt: skip
    changed = cli(tmp_path, "build", "--version", "v2.31.0")
    assert changed.returncode == 2
    assert "changed since it was recorded: idna 2.0 -> 3.4" in changed.stderr


def test_build_on_debian_root_filesystems_for_both_platforms(
    index: None, tmp_path: Path, lab_rootfs: Path, aarch64_sysroot: Path
) -> None:
    """Real Debian bases: the smoke test runs in a chroot (x86_64) and under qemu (aarch64)."""
    (tmp_path / "release.toml").write_text(
        PRODUCT.format(base="bookworm", extra="")
        + f"""
[bases.bookworm]
version = "12"
platforms.x86_64 = {{ path = "{lab_rootfs}" }}
platforms.aarch64 = {{ path = "{aarch64_sysroot}" }}
"""
    )
    inspected = cli(tmp_path, "--json", "base", "inspect", "bookworm")
    assert inspected.returncode == 0, inspected.stderr
    layouts = {p["platform"]: (p["layout"], p["python"]) for p in
               json.loads(inspected.stdout)["platforms"]}  # fmt: skip
    assert layouts["x86_64"][0] == layouts["aarch64"][0] == "rootfs"
    assert layouts["x86_64"][1].startswith("3.11.")  # from dpkg's status, not typed by hand
    built = cli(tmp_path, "--json", "build", "--version", "v2.31.0")
    assert built.returncode == 0, built.stderr
    smoke = {b["platform"]: (b["smoke"], b["smoke_detail"]) for b in
             json.loads(built.stdout)["platforms"]}  # fmt: skip
    assert smoke["x86_64"][0] == "passed" and "in base bookworm 12 (chroot)" in smoke["x86_64"][1]
    assert (
        smoke["aarch64"][0] == "passed" and "qemu-user on base bookworm 12" in (smoke["aarch64"][1])
    )
    for arch in ("x86_64", "aarch64"):
        names = {d["name"] for d in manifest(tmp_path, arch)["distributions"]}
        assert {"requests", "idna", "urllib3"} <= names  # this base provides none of them


SOURCE_ONLY = """
[products.{name}]
source = {{ index = "{name}" }}
python = "3.11"
exclude_newer = 2024-10-18T00:00:00Z
smoke_imports = [{smoke}]

[platforms.x86_64]
glibc = "2.28"
"""


def test_a_pure_python_source_is_built_into_a_wheel_reproducibly(
    index: None, tmp_path: Path
) -> None:
    """rucio-clients had only sources on the index at DIRAC v8.0.55's date (2024-10-17)."""
    (tmp_path / "release.toml").write_text(SOURCE_ONLY.format(name="rucio-clients",
                                                              smoke='"rucio.client"'))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    digests = []
    for attempt in ("one", "two"):  # two machines: nothing cached in common
        proc = subprocess.run(
            [sys.executable, "-m", "release", "--config", str(tmp_path / "release.toml"), "--json",
             "build", "--version", "v35.4.1", "--out", str(tmp_path / attempt)],
            capture_output=True, text=True, timeout=900, check=False,
            env={**env, "DIRAC_RELEASE_CACHE": str(tmp_path / f"cache-{attempt}")},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        [bundle] = json.loads(proc.stdout)["platforms"]
        assert bundle["smoke"] == "passed", bundle["smoke_detail"]
        found = json.loads(
            (tmp_path / attempt / "v35.4.1/Linux-x86_64/.dirac-release/manifest.json").read_text()
        )
        [built] = found["built_from_source"]
        assert (built["name"], built["version"]) == ("rucio-clients", "35.4.1")
        assert built["wheel"].endswith("-py3-none-any.whl")
        digests.append((built["wheel_sha256"], bundle["tarball_sha256"]))
    assert digests[0] == digests[1]  # the same wheel bytes, the same bundle


def test_a_source_that_compiles_code_is_refused(index: None, tmp_path: Path) -> None:
    """tornado 5.1.1 (DIRAC 8.0's server extra) has a C extension and no wheels."""
    (tmp_path / "release.toml").write_text(SOURCE_ONLY.format(name="tornado", smoke=""))
    refused = cli(tmp_path, "build", "--version", "v5.1.1")
    assert refused.returncode == 2, refused.stderr
    assert "tornado 5.1.1 is published only as a source, and it compiles code for the target" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr and not (tmp_path / "dist").exists()
