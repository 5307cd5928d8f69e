"""Bad configuration, tags and files: one clear message, exit 2, nothing touched, no traceback.

Written as families from the kinds of issue #9 (names that become paths, strict types,
overrides, tag formats, odd files, odd tags, long values), not from its examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from release.cli import main
from release.config import load_config
from release.errors import BadInput, ConfigError
from release.version import parse_tag

ROOT = Path(__file__).resolve().parents[2]

BASE = """
[products.vodemo]
source = { index = "vodemo-dirac" }

[repositories."vodemo.egi.eu"]
path = "stratum"
prefix = "vodemo"

[environments.certification]
hosts = { cctbdirac01 = "10.0.0.1" }
"""


def toml_string(value: str) -> str:
    """`value` as a TOML basic string (escapes for controls, quotes and backslashes)."""
    return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    path = tmp_path / "release.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return caught.value


def assert_clear(error: ConfigError, *words: str) -> None:
    text = error.render()
    for word in words:
        assert word in text, (word, text)
    assert "\x00" not in text and len(text) < 1500, text[:300]
    assert error.exit_code == 2


# -- names that become paths ---------------------------------------------------------------------

BAD_NAMES = ["", ".", "..", "../escape", "../dist", "a/b", "a\\b", "a\x00b", "a\nb", "a\tb",
             "x" * 65, "-lead", "_lead", "9lead", "é", "a b", " a", "a\x7f", "/abs",
             "\u0661\u0662", "a\u200bb"]  # fmt: skip

# Where a name is written in release.toml, with {n} for the name (a TOML basic string).
NAME_PLACES = {
    "product": ("products", BASE.replace("[products.vodemo]", "[products.{n}]")
                .replace("[environments.certification]\n", "[environments.certification]\nproduct = {n}\n")),
    "environment": ("environments", BASE.replace("[environments.certification]", "[environments.{n}]")),
    "host": ("hosts", BASE.replace("cctbdirac01 = ", "{n} = ")),
    "service": ("services", BASE + '\n[products.vodemo.services.{n}]\ncommand = "bin/x"\n'),
    "system": ("system", BASE + '\n[products.vodemo.services.x]\ncommand = "bin/x"\nsystem = {n}\n'),
    "link": ("links", BASE.replace('prefix = "vodemo"', 'prefix = "vodemo"\nlinks = [{n}]')),
    "prefix segment": ("prefix", BASE.replace('prefix = "vodemo"', "prefix = {n}")),
    "repository": ("repositories", BASE.replace('"vodemo.egi.eu"', "{n}")),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(NAME_PLACES))
@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:20] for n in BAD_NAMES])
def test_a_name_that_becomes_a_path_is_refused_at_load(
    tmp_path: Path, isolated_env: Path, kind: str, name: str
) -> None:
    key, template = NAME_PLACES[kind]
    if kind == "prefix segment" and name in ("/abs", "../escape", "../dist", "a/b"):
        name = f"ok/{name.strip('/')}/.."  # a segment inside a longer prefix
    error = load(tmp_path, template.replace("{n}", toml_string(name)))
    assert_clear(error, key, str(tmp_path / "release.toml"))
    assert not (tmp_path / "stratum").exists() and not (tmp_path / "state").exists()


BAD_REPOSITORIES = ["vodemo", "UPPER.egi.eu", "a..egi.eu", "-a.egi.eu", "a-.egi.eu", "a_b.egi.eu",
                    "a.egi.eu.", ".egi.eu"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_REPOSITORIES)
def test_a_repository_is_a_lowercase_domain_name(
    tmp_path: Path, isolated_env: Path, name: str
) -> None:
    error = load(tmp_path, BASE.replace('"vodemo.egi.eu"', toml_string(name)))
    assert_clear(error, "repositories", "repository name")


def test_render_of_an_environment_named_to_escape_deletes_nothing(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dist" / "v1.0.0").mkdir(parents=True)
    (tmp_path / "dist" / "v1.0.0" / "keep").write_text("x")
    path = tmp_path / "release.toml"
    path.write_text(BASE.replace("[environments.certification]", '[environments."../dist"]'))
    code = main(["--config", str(path), "render", "--env", "../dist", "--version", "v1.0.0"])
    assert code == 2 and "environment name" in capsys.readouterr().err
    assert (tmp_path / "dist" / "v1.0.0" / "keep").read_text() == "x"


# -- strict types --------------------------------------------------------------------------------

STRICT = [
    ("repositories", 'keep = 5', 'keep = true'),
    ("repositories", 'keep = 5', 'keep = "5"'),
    ("repositories", 'keep = 5', 'keep = 5.0'),
    ("repositories", 'keep = 5', 'wait = "30"'),
    ("repositories", 'keep = 5', 'wait = true'),
    ("build", "", 'compression_level = true'),
    ("build", "", 'compression_level = "3"'),
    ("build", "", 'jobs = "2"'),
    ("build", "", 'jobs = false'),
    ("environments", "", 'batch = true'),
    ("environments", "", 'keep = "3"'),
    ("environments", "", 'max_fail_percentage = "0"'),
    ("certify", "", 'workers = "yes"'),
    ("certify", "", 'workers = 1'),
    ("certify", "", 'health_timeout = true'),
    ("certify", "", 'job_timeout = "60"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("section", "_", "line"), STRICT, ids=[f"{s}:{line}" for s, _, line in STRICT]
)
def test_numbers_and_switches_are_strict(
    tmp_path: Path, isolated_env: Path, section: str, _: str, line: str
) -> None:
    if section == "repositories":
        text = BASE.replace('prefix = "vodemo"', f'prefix = "vodemo"\n{line}')
    elif section == "build":
        text = BASE + f"\n[build]\n{line}\n"
    elif section == "environments":
        text = BASE.replace('cctbdirac01 = "10.0.0.1" }', f'cctbdirac01 = "10.0.0.1" }}\n{line}')
    else:
        text = BASE + f"\n[environments.certification.certify]\n{line}\n"
    error = load(tmp_path, text)
    assert_clear(error, line.split(" = ")[0], "got")


@pytest.mark.parametrize("value", ["x", "-1", "1e3", "2.0", "\uff12", " ", "9" * 40])
def test_an_override_that_is_not_a_number_names_the_variable(
    tmp_path: Path, isolated_env: Path, value: str
) -> None:
    error = load(tmp_path, BASE, {"DIRAC_RELEASE_JOBS": value})
    if value.strip():
        assert_clear(error, "DIRAC_RELEASE_JOBS", "whole number")


def test_an_override_that_is_a_number_is_used(tmp_path: Path, isolated_env: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(BASE)
    config = load_config(path, environ={"DIRAC_RELEASE_JOBS": "4",
                                        "DIRAC_RELEASE_COMPRESSION_LEVEL": "9"})  # fmt: skip
    assert (config.build.jobs, config.build.compression_level) == (4, 9)
    error = load(tmp_path, BASE, {"DIRAC_RELEASE_JOBS": "99"})
    assert_clear(error, "build.jobs", "DIRAC_RELEASE_JOBS")  # a number, but out of range


# -- tag formats ---------------------------------------------------------------------------------

BAD_FORMATS = ["{product}", "static", "{nope}-{tag}", "{tag.real}", "{tag[0]}", "{tag!r}",
               "{tag:>20}", "{", "}", "{}", "{0}", "{product}/{tag}", "{tag} {version}",
               "{product}-{tag}\u00e9", "x" * 300 + "{tag}"]  # fmt: skip


@pytest.mark.parametrize("fmt", BAD_FORMATS)
def test_a_tag_format_must_name_each_release(tmp_path: Path, isolated_env: Path, fmt: str) -> None:
    text = BASE.replace('prefix = "vodemo"', f'prefix = "vodemo"\ntag_format = {toml_string(fmt)}')
    assert_clear(load(tmp_path, text), "tag_format")


@pytest.mark.parametrize("fmt", ["{product}-{tag}", "{tag}", "{product}_{version}", "r-{version}"])
def test_good_tag_formats(tmp_path: Path, isolated_env: Path, fmt: str) -> None:
    path = tmp_path / "release.toml"
    path.write_text(BASE.replace('prefix = "vodemo"', f'prefix = "vodemo"\ntag_format = "{fmt}"'))
    assert load_config(path, environ={}).repositories["vodemo.egi.eu"].tag_format == fmt


# -- odd files and values ------------------------------------------------------------------------


def _odd_file(kind: str, path: Path) -> None:
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "non-UTF-8":
        path.write_bytes(BASE.encode() + b"\n# caf\xe9\n")
    elif kind == "nested too deeply":
        path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n" + BASE)
    elif kind == "too large":
        path.write_text(BASE + "# " + "x" * 5_000_000 + "\n")
    elif kind == "NUL in a value":
        path.write_text(BASE.replace('path = "stratum"', 'path = "stra\\u0000tum"'))
    elif kind == "not TOML":
        path.write_text("[products\n")


ODD = [("FIFO", "not a regular file"), ("directory", "a directory"), ("device", "not a regular"),
       ("non-UTF-8", "not UTF-8"), ("nested too deeply", "nested too deeply"),
       ("too large", "bytes"), ("NUL in a value", "control character"), ("not TOML", "TOML")]  # fmt: skip


@pytest.mark.parametrize(("kind", "words"), ODD, ids=[k for k, _ in ODD])
def test_an_odd_configuration_file_is_one_clear_error(
    tmp_path: Path, isolated_env: Path, kind: str, words: str
) -> None:
    """Through the real CLI with a timeout: a FIFO that blocked would fail, not hang."""
    path = tmp_path / "release.toml"
    _odd_file(kind, path)
    proc = subprocess.run([sys.executable, "-m", "release", "--config", str(path), "config"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr) < 2000


def test_a_nul_in_the_config_path_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "release\x00.toml", "config"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_huge_value_is_not_echoed_whole(tmp_path: Path, isolated_env: Path) -> None:
    error = load(tmp_path, BASE.replace('prefix = "vodemo"', f'prefix = "{"p" * 1_000_000}"'))
    assert_clear(error, "prefix", "characters")


# -- odd tags ------------------------------------------------------------------------------------

ODD_TAGS = ["", "v", "vv1.0.0", "V1.0.0", "1.0.0", "v1.0", "v1.0.0.0", "v2", "v1.2.3.4",
            "v" + "9" * 5000, "v1." + "0" * 5000 + ".0", "v1.0.0\n", "v1.0.0 ", "\tv1.0.0",
            "v1.0.0\x00", "v1..0", "v-1.0.0", "v1.0.0.post1", "v1.0.0.dev1", "v1!1.0.0",
            "v1.0.0-rc1", "v1.0.0+local", "v01.0.0", "v1.0.0a", "v1.0.0a1a1", "v1.0.0c1",
            "v\u0661.\u0660.\u0660", "v\uff11.0.0", "v1.0.0" * 20, "v1.0.0/../x", "v1.0.0;rm",
            "v9.0.0-alpha28", "v7r3p38", "latest", "v1.0.0.", ".v1.0.0", "v1.0.0a-1"]  # fmt: skip


@pytest.mark.parametrize("tag", ODD_TAGS, ids=[repr(t)[:24] for t in ODD_TAGS])
def test_an_odd_tag_is_refused_briefly(tag: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_tag(tag)
    text = caught.value.render()
    assert len(text) < 600 and caught.value.fix
    assert "\x00" not in text


def test_a_tag_on_a_tree_or_blob_is_named_as_such(tmp_path: Path) -> None:
    import git

    from release.gitinfo import read_tag

    repo = git.Repo.init(tmp_path)
    (tmp_path / "f").write_text("a")
    repo.index.add(["f"])
    actor = git.Actor("a", "a@example.org")
    repo.index.commit("m", author=actor, committer=actor)
    repo.git.tag("v1.0.0", "HEAD^{tree}")
    repo.git.tag("v1.0.1", "HEAD:f")
    for tag, kind in (("v1.0.0", "tree"), ("v1.0.1", "blob")):
        with pytest.raises(BadInput) as caught:
            read_tag(tmp_path, tag)
        assert f"points to a {kind}, not to a commit" in caught.value.message
        assert "does not exist" not in caught.value.message
