"""Bases: configuration, reading what a base provides, its record, and the requirement check.

The bases here are folders laid out as the real ones are (a conda/venv prefix, a Debian root
filesystem with dpkg's status file) holding installed metadata as installers write it
(dist-info from pip/uv/conda, egg-info from Debian's python3-* packages). The lab test
tests/lab/test_build_on_base.py builds a real product from the package index on a real one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from release.base.check import check_base
from release.base.inspect import inspect_base
from release.base.record import (
    check_unchanged,
    inspect_and_record,
    load_platform,
)
from release.build.layout import BaseRuntime, write_diracosrc
from release.build.source import ProductSource
from release.config import ReleaseConfig, load_config
from release.config.bases import BaseOverride
from release.errors import BadInput, ConfigError
from release.version import parse_version_arg

CONFIG = """
[products.DIRAC]
source = {{ index = "DIRAC" }}
base = "debian"
extras = ["server"]
{extra}

[bases.debian]
version = "12.8"
platforms.x86_64 = {{ path = "rootfs-amd64" }}
platforms.aarch64 = {{ path = "prefix-arm64" }}
"""


def dist_info(site: Path, name: str, version: str, *requires: str, egg: bool = False) -> None:
    folder = site / f"{name}-{version}.{'egg-info' if egg else 'dist-info'}"
    folder.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (folder / ("PKG-INFO" if egg else "METADATA")).write_text("\n".join(lines) + "\n")


def make_rootfs(root: Path, m2crypto: str = "0.38.0") -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_text("")
    site = root / "usr/lib/python3/dist-packages"
    dist_info(site, "M2Crypto", m2crypto, egg=True)  # Debian's python3-m2crypto
    dist_info(site, "gfal2-python", "1.12.0", egg=True)
    dist_info(root / "usr/local/lib/python3.11/dist-packages", "m2crypto", "9.9")  # shadowed
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: python3.11-minimal\nVersion: 3.11.2-6+deb12u6\n\n"
        "Package: python3.11\nStatus: install ok installed\nVersion: 3.11.2-6+deb12u6\n"
        "Description: Interactive\n high-level language\n"
    )
    return root


def make_prefix(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin/python3.11").write_text("")
    site = root / "lib/python3.11/site-packages"
    dist_info(site, "M2Crypto", "0.41.0")
    dist_info(site, "gfal2_python", "1.13.0")
    (root / "conda-meta").mkdir()
    (root / "conda-meta/python-3.11.9-h1234_0.json").write_text('{"version": "3.11.9"}')
    return root


@pytest.fixture
def site_config(tmp_path: Path) -> ReleaseConfig:
    make_rootfs(tmp_path / "rootfs-amd64")
    make_prefix(tmp_path / "prefix-arm64")
    (tmp_path / "release.toml").write_text(CONFIG.format(extra=""))
    return load_config(tmp_path / "release.toml", environ={})


def test_inspect_reads_a_root_filesystem_and_a_prefix(tmp_path: Path) -> None:
    rootfs = inspect_base(make_rootfs(tmp_path / "r"), "3.11")
    assert (rootfs.layout, rootfs.python) == ("rootfs", "3.11.2")
    assert rootfs.site == (
        "usr/lib/python3/dist-packages",
        "usr/local/lib/python3.11/dist-packages",
    )
    # Debian's own folder comes first in Python's path: its M2Crypto is the one imported.
    assert rootfs.distributions["m2crypto"] == {"name": "M2Crypto", "version": "0.38.0"}
    assert rootfs.distributions["gfal2-python"]["version"] == "1.12.0"
    prefix = inspect_base(make_prefix(tmp_path / "p"), "3.11")
    assert (prefix.layout, prefix.python) == ("prefix", "3.11.9")
    assert set(prefix.distributions) == {"m2crypto", "gfal2-python"}


def test_inspect_refuses_a_folder_without_that_python(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "r")
    with pytest.raises(BadInput, match=r"holds no python3\.13 \(it has python3\.11\)"):
        inspect_base(root, "3.13")
    with pytest.raises(BadInput, match="is not a folder"):
        inspect_base(tmp_path / "missing", "3.11")


def test_record_round_trip_and_the_build_reads_it(site_config: ReleaseConfig) -> None:
    path, summary = inspect_and_record(site_config, "debian", ["x86_64", "aarch64"])
    assert path == site_config.base_dir / "bases/debian-12.8.json"
    assert [(s["platform"], s["layout"], s["distributions"]) for s in summary] == [
        ("x86_64", "rootfs", 2),
        ("aarch64", "prefix", 2),
    ]
    record = load_platform(site_config, "debian", "aarch64")
    assert record.provides("m2crypto") == "0.41.0" and record.label == "debian 12.8"
    assert check_unchanged(site_config, record) == site_config.base_dir / "prefix-arm64"


def test_a_damaged_record_is_refused(site_config: ReleaseConfig) -> None:
    path, _ = inspect_and_record(site_config, "debian", ["x86_64"])
    data = json.loads(path.read_text())
    data["platforms"]["x86_64"]["distributions"]["m2crypto"]["version"] = "0.50.0"  # by hand
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="damaged: platform x86_64 does not match its digest"):
        load_platform(site_config, "debian", "x86_64")
    path.write_text('{"schema": "dirac-release/base-record/1", "platforms": ')
    with pytest.raises(BadInput, match="damaged: not readable JSON"):
        load_platform(site_config, "debian", "x86_64")
    path.write_text('{"schema": "something else"}')
    with pytest.raises(BadInput, match="not a base record"):
        load_platform(site_config, "debian", "x86_64")


def test_a_missing_record_or_platform_says_how_to_make_it(site_config: ReleaseConfig) -> None:
    with pytest.raises(BadInput, match="has no record") as missing:
        load_platform(site_config, "debian", "x86_64")
    assert "dirac-release base inspect debian" in str(missing.value.fix)
    inspect_and_record(site_config, "debian", ["x86_64"])
    with pytest.raises(BadInput, match=r"has no platform aarch64 \(it has: x86_64\)"):
        load_platform(site_config, "debian", "aarch64")


def test_a_base_that_changed_since_it_was_recorded_is_refused(
    site_config: ReleaseConfig, tmp_path: Path
) -> None:
    inspect_and_record(site_config, "debian", ["x86_64"])
    record = load_platform(site_config, "debian", "x86_64")
    site = tmp_path / "rootfs-amd64/usr/lib/python3/dist-packages"
    for info in site.glob("M2Crypto-*"):
        info.rename(site / "M2Crypto-0.38.0.egg-info.bak")  # no longer a distribution
    dist_info(site, "M2Crypto", "0.39.0", egg=True)
    dist_info(site, "six", "1.16.0", egg=True)
    with pytest.raises(BadInput, match=r"changed since it was recorded: M2Crypto 0\.38\.0 -> "
                                       r"0\.39\.0; \+six 1\.16\.0"):  # fmt: skip
        check_unchanged(site_config, record)


def test_a_record_of_another_python_or_version_is_refused(
    site_config: ReleaseConfig, tmp_path: Path
) -> None:
    inspect_and_record(site_config, "debian", ["x86_64"])
    (tmp_path / "release.toml").write_text(
        CONFIG.format(extra="").replace('version = "12.8"', 'version = "12.9"\nrecord = '
                                        '"bases/debian-12.8.json"')
    )  # fmt: skip
    newer = load_config(tmp_path / "release.toml", environ={})
    with pytest.raises(BadInput, match=r"records base debian 12\.8, not debian 12\.9"):
        load_platform(newer, "debian", "x86_64")
    text = CONFIG.format(extra='python = "3.12"').replace('version = "12.8"',
                                                          'version = "12.8"\npython = "3.12"')  # fmt: skip
    (tmp_path / "release.toml").write_text(text)
    with pytest.raises(BadInput, match=r"has Python 3\.11\.2, the configuration says 3\.12"):
        load_platform(load_config(tmp_path / "release.toml", environ={}), "debian", "x86_64")


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('base = "nope"', "products.DIRAC.base names 'nope', which is not defined"),
        (
            'base = "debian"\npython = "3.12"',
            "runs on Python 3.12 but its base debian has Python 3.11",
        ),
        ('extras = ["server]"]', "is not an extra's name"),
        ('base_overrides = [{ distribution = "M2Crypto", reason = "short" }]', "at least 10"),
        (
            'base_overrides = [{ distribution = "M2Crypto", reason = "runs fine on 0.38", '
            'releases = "9.1.x" }]',
            "is not a version specifier",
        ),
    ],
)
def test_bad_base_settings_are_refused(tmp_path: Path, extra: str, problem: str) -> None:
    text = CONFIG.format(extra="").replace('base = "debian"\nextras = ["server"]\n', extra + "\n")
    (tmp_path / "release.toml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "release.toml", environ={})
    assert problem in str(error.value), str(error.value)


@pytest.mark.parametrize(
    ("setting", "problem"),
    [('version = "../x"', "cannot be a folder name"),
     ('location = "/cvmfs/$(reboot)"', "holds a shell character"),
     ('location = "cvmfs/x"', "is not an absolute path")],
)  # fmt: skip
def test_bad_base_versions_and_locations_are_refused(
    tmp_path: Path, setting: str, problem: str
) -> None:
    text = CONFIG.format(extra="")
    key = setting.split(" = ")[0]
    text = text.replace('version = "12.8"', setting if key == "version" else
                        f'version = "12.8"\n{setting}')  # fmt: skip
    (tmp_path / "release.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"bases\.debian") as error:
        load_config(tmp_path / "release.toml", environ={})
    assert problem in str(error.value)


def test_requirements_on_the_base_are_checked_for_the_target(
    site_config: ReleaseConfig, tmp_path: Path
) -> None:
    inspect_and_record(site_config, "debian", ["x86_64"])
    record = load_platform(site_config, "debian", "x86_64")
    site = tmp_path / "bundle"
    dist_info(site, "DIRAC", "9.1.22", "M2Crypto>=0.36", 'gfal2-python>=1.12; extra == "server"',
              'M2Crypto>=0.50; platform_machine == "aarch64"', "requests")  # fmt: skip
    dist_info(site, "other", "1.0", 'gfal2-python>=2; extra == "gfal"')  # extra not asked
    args = {"product": "DIRAC", "distribution": "DIRAC", "version": "9.1.22",
            "extra_requirements": (), "overrides": ()}  # fmt: skip
    use = check_base(site, record, extras=("server",), **args).as_dict(record)  # type: ignore[arg-type]
    assert [(p["name"], p["version"], p["required_by"]) for p in use["provided"]] == [
        ("gfal2-python", "1.12.0", ["DIRAC 9.1.22 (>=1.12)"]),
        ("M2Crypto", "0.38.0", ["DIRAC 9.1.22 (>=0.36)"]),
    ]
    assert use["provided"][0]["provided_by"] == "base debian 12.8"
    # Without the extra, gfal2 is not needed at all.
    bare = check_base(site, record, extras=(), **args).as_dict(record)  # type: ignore[arg-type]
    assert [p["name"] for p in bare["provided"]] == ["M2Crypto"]

    args["extra_requirements"] = ("M2Crypto>=0.50",)
    with pytest.raises(BadInput) as refused:
        check_base(site, record, extras=("server",), **args)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "DIRAC 9.1.22 for x86_64 needs what its base does not provide: "
        "products.DIRAC.requirements requires M2Crypto>=0.50; base debian 12.8 provides 0.38.0"
    )
    assert 'distribution = "M2Crypto"' in str(refused.value.fix)

    reason = "DIRAC 9.1 ran its certification on M2Crypto 0.38"
    args["overrides"] = (BaseOverride(distribution="m2crypto", reason=reason, releases="~=9.0"),)
    use = check_base(site, record, extras=("server",), **args).as_dict(record)  # type: ignore[arg-type]
    assert use["overrides"] == [{
        "requirement": "products.DIRAC.requirements requires M2Crypto>=0.50; base debian 12.8 "
                       "provides 0.38.0", "reason": reason, "releases": "~=9.0"}]  # fmt: skip
    # An override for other releases does not apply to this one.
    args["overrides"] = (BaseOverride(distribution="M2Crypto", reason=reason, releases="<9.1"),)
    with pytest.raises(BadInput, match=r"provides 0\.38\.0"):
        check_base(site, record, extras=("server",), **args)  # type: ignore[arg-type]


def _bundle_with_base(tmp_path: Path, publish_base: bool) -> Path:
    """<repo>/<prefix>/<tag>/Linux-x86_64 with its diracosrc, and the base beside it."""
    prefix = tmp_path / "cvmfs/dirac.egi.eu/dirac"
    tree = prefix / "v8.0.55/Linux-x86_64"
    tree.mkdir(parents=True)
    source = ProductSource("DIRAC", "DIRAC", parse_version_arg("v8.0.55"), "index", "DIRAC")
    runtime = BaseRuntime("debian 12.8", "x86_64", (
        "/nonexistent/diracos/12.8/Linux-x86_64",
        "$DIRAC_RELEASE_PREFIX/../../diracos/12.8/Linux-x86_64",
    ))  # fmt: skip
    write_diracosrc(tree, source, "3.11", runtime)
    if publish_base:
        base = prefix / "diracos/12.8/Linux-x86_64"
        base.mkdir(parents=True)
        (base / "diracosrc").write_text('export BASE_SEEN="$PATH"\n')
    return tree


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_diracosrc_sourced_alone_finds_its_base(tmp_path: Path, shell: str) -> None:
    tree = _bundle_with_base(tmp_path, publish_base=True)
    script = f'. {tree}/diracosrc && echo "$DIRAC_RELEASE_BASE_PREFIX|$BASE_SEEN|$PYTHONPATH"'
    if shell == "sh":  # a shell without BASH_SOURCE says where the bundle is
        script = f"DIRAC_RELEASE_PREFIX={tree}; {script}"
    proc = subprocess.run([shell, "-c", script], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    base, seen, pythonpath = proc.stdout.strip().split("|")
    assert base == str(tmp_path / "cvmfs/dirac.egi.eu/dirac/diracos/12.8/Linux-x86_64")
    assert seen == "/usr/bin:/bin"  # the base was sourced before the bundle set PATH
    assert pythonpath == f"{tree}/lib/python3.11/site-packages"


def test_diracosrc_says_what_is_missing_and_stops(tmp_path: Path) -> None:
    tree = _bundle_with_base(tmp_path, publish_base=False)
    proc = subprocess.run(
        ["bash", "-c", f'source {tree}/diracosrc; echo "rc=$? path=$PYTHONPATH"'],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.stdout.strip() == "rc=1 path="  # returned, not exited; nothing activated
    assert "the base debian 12.8 for Linux-x86_64 that DIRAC v8.0.55 runs on is not there" in (
        proc.stderr
    )
    assert "/nonexistent/diracos/12.8/Linux-x86_64" in proc.stderr
    # An explicit DIRAC_RELEASE_BASE is the only place looked at.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "diracosrc").write_text("export BASE_SEEN=elsewhere\n")
    proc = subprocess.run(
        ["bash", "-c", f'source {tree}/diracosrc && echo "$BASE_SEEN"'], capture_output=True,
        text=True, check=False, env={"PATH": "/usr/bin:/bin", "DIRAC_RELEASE_BASE": str(elsewhere)},
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "elsewhere", proc.stderr


def test_a_merged_usr_root_filesystem_is_no_prefix(tmp_path: Path) -> None:
    """Debian's /bin and /lib lead to usr/: bin/python3.11 exists there as in a prefix."""
    root = make_rootfs(tmp_path / "r")
    (root / "usr/lib/python3.11").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "lib").symlink_to("usr/lib")
    assert inspect_base(root, "3.11").layout == "rootfs"


def test_the_shipped_dirac_product_needs_its_diracos_record_first(tmp_path: Path) -> None:
    """The project's release.toml builds DIRAC on a pinned DIRACOS2; without the record of
    that base the build stops before cloning or resolving anything, saying how to make it."""
    from release.build import build_release

    shipped = Path(__file__).resolve().parents[2] / "release.toml"
    config = load_config(shipped, environ={"DIRAC_RELEASE_CACHE": str(tmp_path / "cache"),
                                           "DIRAC_RELEASE_STATE": str(tmp_path / "state")})  # fmt: skip
    name, product = config.product("DIRAC")
    assert (product.base, product.extras) == ("diracos", ("server",))
    assert config.bases["diracos"].python == product.python
    with pytest.raises(BadInput, match=r"base diracos 2\.62 has no record") as refused:
        build_release(config, version="v9.0.0a29", product_name=name, out=tmp_path / "out")
    assert "dirac-release base inspect diracos" in str(refused.value.fix)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "repos").exists()
