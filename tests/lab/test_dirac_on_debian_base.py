"""Real DIRAC from the package index, built for both platforms on a real Debian base.

The base is Debian bookworm with python3.11, gfal2 (and its file, http and xrootd plugins),
M2Crypto 0.38, the MySQL client and tornado 5.1.1 (release/base/debian.py), made once per
machine for amd64 and arm64. The bundle must run on it: natively in a chroot for x86_64 and
under qemu-user for aarch64, importing DIRAC and the base's compiled modules, running DIRAC's
commands, opening a gfal2 context with its plugins, and making and loading an X.509 proxy
through DIRAC's own M2Crypto code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from release.build.layout import site_packages
from release.build.smoke import BaseAtHand, _base_command
from release.demo.dirac import run_in_base
from tests.conftest import index_problem, lab_skip

pytestmark = pytest.mark.lab

CONFIG = """
[products.DIRAC]
source = {{ index = "DIRAC" }}
python = "3.11"
base = "bookworm"
extras = ["server"]
# DIRAC 8.0 imports pkg_resources, which setuptools 81 no longer ships.
requirements = ["setuptools<81"]
exclude_newer = {date}
smoke_imports = ["DIRAC", "gfal2", "M2Crypto", "MySQLdb", "tornado"]
smoke_commands = ["dirac-version", "dirac-platform"]

[bases.bookworm]
version = "12"
platforms.x86_64 = {{ path = "{x86_64}" }}
platforms.aarch64 = {{ path = "{aarch64}" }}
{extra}"""
# DIRAC v8.0.55 was uploaded on 2024-10-17; 9.1.22 on 2026-10-26.
V8_DATE, V9_DATE = "2024-10-18T00:00:00Z", "2026-11-01T00:00:00Z"

ON_BASE = """\
import site, sys
sys.path.insert(0, sys.argv[1]); site.addsitedir(sys.argv[1])
from DIRAC.Core.Security.m2crypto.X509Chain import X509Chain
pem = sys.stdin.read()
chain = X509Chain()
assert chain.loadChainFromString(pem)["OK"] and chain.loadKeyFromString(pem)["OK"]
proxy = chain.generateProxyToString(3600, diracGroup="dirac_user")
assert proxy["OK"], proxy
loaded = X509Chain()
assert loaded.loadProxyFromString(proxy["Value"])["OK"]
import gfal2
size = gfal2.creat_context().stat("file:///usr/bin/python3.11").st_size
print(loaded.getCertInChain(1)["Value"].getSubjectDN()["Value"], loaded.isProxy()["Value"],
      loaded.getDIRACGroup()["Value"], size > 0)
"""


@pytest.fixture(scope="module")
def debian_bases() -> dict[str, Path]:
    problem = index_problem()
    if problem:
        lab_skip(problem)
    if os.geteuid() != 0:
        lab_skip("the Debian base needs root (debootstrap)")
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        lab_skip("debootstrap is not installed (apt-get install debootstrap)")
    if not shutil.which("qemu-aarch64-static"):
        lab_skip("qemu-user-static is not installed (apt-get install qemu-user-static)")
    from release.base.debian import cached_path, make_debian_base

    return {arch: make_debian_base(cached_path(arch), arch=arch) for arch in ("x86_64", "aarch64")}


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    return subprocess.run(
        [sys.executable, "-m", "release", "--config", str(root / "release.toml"), *args],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )  # fmt: skip


def write_config(root: Path, bases: dict[str, Path], date: str, extra: str = "") -> None:
    paths = {arch: str(path) for arch, path in bases.items()}
    (root / "release.toml").write_text(CONFIG.format(date=date, extra=extra, **paths))


@pytest.fixture(scope="module")
def dirac_build(debian_bases: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dirac")
    write_config(root, debian_bases, V8_DATE)
    # `base debian` makes what is missing (here nothing: the fixture made both) and records.
    made = cli(root, "--json", "base", "debian")
    assert made.returncode == 0, made.stderr
    recorded = {p["platform"]: p for p in json.loads(made.stdout)["platforms"]}
    assert recorded["aarch64"]["python"] == recorded["x86_64"]["python"] == "3.11.2"
    assert recorded["aarch64"]["distributions"] == 4  # gfal2, M2Crypto, mysqlclient, tornado
    built = cli(root, "--json", "build", "--version", "v8.0.55")
    assert built.returncode == 0, built.stderr[-3000:]
    (root / "build.json").write_text(built.stdout)
    return root


def test_dirac_8_builds_and_runs_on_the_base_for_both_platforms(dirac_build: Path) -> None:
    report = json.loads((dirac_build / "build.json").read_text())
    smoke = {b["platform"]: (b["smoke"], b["smoke_detail"]) for b in report["platforms"]}
    for arch, how in (("x86_64", "natively in base bookworm 12 (chroot)"),
                      ("aarch64", "qemu-user on base bookworm 12")):  # fmt: skip
        status, detail = smoke[arch]
        assert status == "passed", detail
        assert "imported DIRAC, gfal2, M2Crypto, MySQLdb, tornado" in detail
        assert "dirac-version: 8.0.55" in detail and f"dirac-platform: Linux_{arch}" in detail
        assert how in detail
        manifest = json.loads(
            (dirac_build / f"dist/v8.0.55/Linux-{arch}/.dirac-release/manifest.json").read_text()
        )
        provided = {p["name"]: p["version"] for p in manifest["base"]["provided"]}
        assert provided == {"gfal2-python": "1.12.0", "M2Crypto": "0.38.0",
                            "mysqlclient": "1.4.6", "tornado": "5.1.1"}  # fmt: skip
        bundled = {d["name"].lower() for d in manifest["distributions"]}
        assert "dirac" in bundled and not bundled & {"m2crypto", "gfal2-python", "tornado"}
        # rucio-clients had only a source at that date: built into a wheel, recorded.
        assert [b["name"] for b in manifest["built_from_source"]] == ["rucio-clients"]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_diracs_m2crypto_code_and_gfal2_work_on_the_base(
    dirac_build: Path, debian_bases: dict[str, Path], tmp_path: Path, arch: str
) -> None:
    key = tmp_path / "user.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/O=dirac-release/CN=tester", "-keyout", str(key), "-out", str(tmp_path / "c.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pem = (tmp_path / "c.pem").read_text() + key.read_text()
    tree = dirac_build / f"dist/v8.0.55/Linux-{arch}"
    base = BaseAtHand("bookworm 12", debian_bases[arch], "rootfs")
    command, how, seen = _base_command(arch, "3.11", base, tree)
    assert command is not None, how
    proc = subprocess.run(
        [*command, "-c", ON_BASE, str(seen / site_packages("3.11"))], input=pem,
        capture_output=True, text=True, timeout=600, check=False, cwd="/",
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["/O=dirac-release/CN=tester", "True", "dirac_user", "True"]


def test_dirac_9_1_is_refused_for_the_m2crypto_it_needs(
    debian_bases: dict[str, Path], tmp_path: Path
) -> None:
    write_config(tmp_path, debian_bases, V9_DATE)
    assert cli(tmp_path, "base", "inspect").returncode == 0
    refused = cli(tmp_path, "build", "--version", "v9.1.22", "--platform", "x86_64")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert ("DIRAC 9.1.22 requires M2Crypto>=0.50; base bookworm 12 provides 0.38.0"
            in refused.stderr)  # fmt: skip
    assert "Traceback" not in refused.stderr and not (tmp_path / "dist").exists()


def test_a_dirac_extension_builds_and_runs_on_the_base(
    dirac_build: Path, debian_bases: dict[str, Path], tmp_path: Path
) -> None:
    """A VO extension (made here, from a git tag) depending on DIRAC[server]."""
    repo = tmp_path / "vodirac"
    (repo / "src/vodirac").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61,<81"]\nbuild-backend = '
        '"setuptools.build_meta"\n\n[project]\nname = "vodirac"\nversion = "1.0.0"\n'
        'dependencies = ["DIRAC[server]==8.0.55"]\n\n[project.scripts]\n'
        'vodirac-info = "vodirac:main"\n'
    )
    (repo / "src/vodirac/__init__.py").write_text(
        "def main():\n    import DIRAC, M2Crypto, gfal2\n"
        "    print('vodirac on DIRAC', DIRAC.version, 'M2Crypto', M2Crypto.version)\n"
    )
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q", "-b", "integration"], ["add", "-A"], ["commit", "-qm", "v1"],
                 ["tag", "-a", "v1.0.0", "-m", "v1.0.0"]):  # fmt: skip
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=60)
    text = CONFIG.format(date=V8_DATE, extra="", **{a: str(p) for a, p in debian_bases.items()})
    text = text.replace('source = { index = "DIRAC" }', 'source = { git = "vodirac" }')
    text = text.replace("[products.DIRAC]", "[products.vodirac]")
    text = text.replace('extras = ["server"]\n', "")
    text = text.replace('smoke_imports = ["DIRAC", ', 'smoke_imports = ["vodirac", "DIRAC", ')
    text = text.replace('smoke_commands = ["dirac-version", ', 'smoke_commands = ["vodirac-info", ')
    (tmp_path / "release.toml").write_text(text)
    shutil.copytree(dirac_build / "bases", tmp_path / "bases")  # the same base record
    built = cli(tmp_path, "--json", "build", "--version", "v1.0.0")
    assert built.returncode == 0, built.stderr[-3000:]
    for bundle in json.loads(built.stdout)["platforms"]:
        assert bundle["smoke"] == "passed", bundle["smoke_detail"]
        assert "vodirac-info: vodirac on DIRAC 8.0.55 M2Crypto 0.38.0" in bundle["smoke_detail"]


def test_the_published_release_runs_from_cvmfs_on_the_published_base(
    dirac_build: Path, tmp_path: Path
) -> None:
    """Base and release published to one repository; inside the published base (the way a
    container runs it, /cvmfs bound), sourcing the release's diracosrc alone runs DIRAC."""
    if not (shutil.which("unshare") and shutil.which("chroot")):
        lab_skip("unshare and chroot (util-linux, coreutils) are needed")
    root = tmp_path / "site"
    shutil.copytree(dirac_build, root, symlinks=True)
    repo = (
        '\n[repositories."dirac.test"]\nbackend = "directory"\npath = "stratum"\nprefix = "dirac"\n'
    )
    with (root / "release.toml").open("a") as config:
        config.write(repo)
    assert cli(root, "cvmfs", "init", "--repository", "dirac.test").returncode == 0
    base = cli(root, "--json", "base", "publish")
    assert base.returncode == 0, base.stderr[-3000:]
    published = json.loads(base.stdout)
    assert published["status"] == "published", published
    assert any("absolute link(s) made relative" in note for note in published["notes"])
    release = cli(root, "--json", "publish", "--version", "v8.0.55")
    assert release.returncode == 0, release.stderr[-3000:]
    again = cli(root, "--json", "base", "publish")
    assert json.loads(again.stdout)["status"] == "already published"

    cvmfs = root / "stratum/dirac.test"
    rootfs = cvmfs / "dirac/diracos/12/Linux-x86_64"
    inside = (
        "source /mnt/dirac/v8.0.55/Linux-x86_64/diracosrc && dirac-version && "
        "python3.11 -c 'import DIRAC, gfal2, M2Crypto; print(M2Crypto.version)' && "
        'echo "base=$DIRAC_RELEASE_BASE_PREFIX"'
    )
    proc = run_in_base(rootfs, cvmfs, inside)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["8.0.55", "0.38.0", "base=/mnt/dirac/diracos/12/Linux-x86_64"]
    # Read-only, as on CVMFS: running it left nothing in the published trees.
    verified = cli(root, "--json", "publish", "--version", "v8.0.55")
    assert json.loads(verified.stdout)["status"] == "already published", verified.stderr
    # Outside the base, the same diracosrc stops with what to do.
    outside = subprocess.run(
        ["bash", "-c", f"source {cvmfs}/dirac/v8.0.55/Linux-x86_64/diracosrc; echo rc=$?"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "rc=1" in outside.stdout and "is a root filesystem" in outside.stderr
