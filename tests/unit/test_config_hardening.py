"""Bad configuration, tags and files: one clear message, exit 2, nothing touched, no traceback.

Written as families from the kinds of issue #9 (names that become paths, strict types,
overrides, tag formats, odd files, odd tags, long values, misleading words), not from its
examples. The bulk goes through `load_config`; a representative subset runs the real CLI in
a subprocess with a timeout, so a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from release.cli import main
from release.config import load_config
from release.errors import BadInput, ConfigError
from release.version import parse_tag, parse_version_arg

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

#: A message is readable whatever the value: a 1 MB value gives a short message.
MAX_MESSAGE = 1500


def toml_string(value: str) -> str:
    """`value` as a TOML basic string (escapes for controls, quotes and backslashes)."""
    return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    path = tmp_path / "release.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.toml"]  # nothing created
    return caught.value


def assert_clear(error: ConfigError, *words: str, fix: bool = True) -> None:
    """What (the words), where (the file), a fix, exit 2, short, printable."""
    text = error.render()
    for word in words:
        assert word in text, (word, text)
    assert error.where and error.where in text
    assert not fix or error.fix, text
    assert "\x00" not in text and len(text) < MAX_MESSAGE, text[:300]
    assert all(ch.isprintable() or ch == "\n" for ch in text), repr(text[:300])
    assert error.exit_code == 2


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process, bounded in time (a blocked read fails the test)."""
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, check=False)  # fmt: skip


def assert_cli_refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 2 * MAX_MESSAGE, proc.stderr[
        -2000:
    ]
    for word in words:
        assert word in proc.stderr, (word, proc.stderr[-2000:])


# -- names that become paths ---------------------------------------------------------------------

BAD_NAMES = [
    "", ".", "..", "../escape", "../dist", "a/b", "a\\b", "/abs", "~root",  # leave the folder
    "a\x00b", "a\nb", "a\tb", "a\rb", "a\x1bb", "a\x7f", "a\x85b",  # control characters
    "x" * 65, "x" * 100_000,  # too long (and a message that must stay short)
    "-lead", "_lead", "9lead", " a", "a b", "a;b", "$(id)", "a:b", "*",  # not a plain name
    "é", "\u0430bc", "\u0661\u0662", "a\u200bb", "a\u202eb", "a\u00a0b",  # not ASCII
]  # fmt: skip

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
    text = error.render()
    # A whole prefix that is empty or too long is refused as a prefix before its segments.
    expected = "prefix" if kind == "prefix segment" else f"{kind} name"
    assert expected in text or "control character" in text, text
    if len(name) > 1000:
        assert f"{len(name)} characters" in text


@pytest.mark.parametrize("kind", ["product", "environment", "host", "service", "link"])
def test_the_name_rule_gives_one_message_form(
    tmp_path: Path, isolated_env: Path, kind: str
) -> None:
    """The same bad name reads the same wherever it is: kind, value, problem, rule as fix."""
    _, template = NAME_PLACES[kind]
    error = load(tmp_path, template.replace("{n}", toml_string("../dist")))
    assert f"{kind} name '../dist' would leave its folder" in error.message
    assert error.fix and error.fix.startswith("rename it: a name starts with an ASCII letter")


GOOD_NAMES = ["vodemo", "DiracX", "a.b-c_d", "x" * 64, "cctbdirac01", "V9"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_plain_names_are_accepted_everywhere(tmp_path: Path, isolated_env: Path, name: str) -> None:
    quoted = toml_string(name)
    text = BASE.replace("[products.vodemo]", f"[products.{quoted}]")
    text = text.replace("[environments.certification]", f"[environments.{quoted}]")
    text = text.replace("cctbdirac01 = ", f"{quoted} = ").replace(
        'prefix = "vodemo"', f'prefix = "{name}/x"'
    )
    text += f'\n[products.{quoted}.services.{quoted}]\ncommand = "bin/x"\nsystem = "{name}"\n'  # fmt: skip
    path = tmp_path / "release.toml"
    path.write_text(text)
    config = load_config(path, environ={})
    assert name in config.products and name in config.environments


BAD_REPOSITORIES = ["vodemo", "localhost", "UPPER.egi.eu", "Vodemo.egi.eu", "a..egi.eu",
                    "-a.egi.eu", "a-.egi.eu", "a_b.egi.eu", "a.egi.eu.", ".egi.eu", "a.b..c",
                    "xn--.egi.eu", "a" * 64 + ".egi.eu", "a b.egi.eu", "vodemo.egi.eu\n"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_REPOSITORIES, ids=[repr(n)[:24] for n in BAD_REPOSITORIES])
def test_a_repository_is_a_lowercase_domain_name(
    tmp_path: Path, isolated_env: Path, name: str
) -> None:
    error = load(tmp_path, BASE.replace('"vodemo.egi.eu"', toml_string(name)))
    assert_clear(error, "repositories", "repository name")
    assert "vodemo.egi.eu" in (error.fix or "")  # the fix shows a right one


@pytest.mark.parametrize("name", ["vodemo.egi.eu", "a-b.c1.eu", "lhcb.cern.ch", "x.y"])
def test_good_repository_names(tmp_path: Path, isolated_env: Path, name: str) -> None:
    path = tmp_path / "release.toml"
    path.write_text(BASE.replace('"vodemo.egi.eu"', f'"{name}"'))
    assert name in load_config(path, environ={}).repositories


BAD_LINKS = [
    ("v1.2.3", "looks like a release"), ("V1.0.0", "looks like a release"),
    ("v2", "looks like a release"), ("v1.0.0a1", "looks like a release"),
    ("v1.0.0-rc1", "looks like a release"), ("v7r3p38", "looks like a release"),
    ("v1.2.3.4.5", "looks like a release"), ("v9.0.0_x", "looks like a release"),
    ("1.2.3", "link name"), ("pro", "promotion"),
    ("vodemo-v1.0.0", "reads as a tag"), ("DIRAC-v9.0.0a29", "reads as a tag"),
    ("x-v1", "reads as a tag"),
]  # fmt: skip


@pytest.mark.parametrize(("link", "words"), BAD_LINKS, ids=[link for link, _ in BAD_LINKS])
def test_a_link_that_reads_as_a_release_is_refused(
    tmp_path: Path, isolated_env: Path, link: str, words: str
) -> None:
    """It would collide with a version folder, or be taken for a release's tag."""
    text = BASE.replace('prefix = "vodemo"', f'prefix = "vodemo"\nlinks = ["latest", "{link}"]')
    assert_clear(load(tmp_path, text), words, "links" if words != "reads as a tag" else "link")


@pytest.mark.parametrize(
    ("tag_format", "link"),
    [("{product}_{version}", "vodemo_1.0.0"), ("rel-{tag}", "rel-v2.0.0"), ("{tag}", "v1.0.0")],
)
def test_a_link_shaped_like_the_tag_format_is_refused(
    tmp_path: Path, isolated_env: Path, tag_format: str, link: str
) -> None:
    text = BASE.replace(
        'prefix = "vodemo"', f'prefix = "vodemo"\ntag_format = "{tag_format}"\nlinks = ["{link}"]'
    )
    assert_clear(load(tmp_path, text), link)


def test_a_link_listed_twice_is_refused(tmp_path: Path, isolated_env: Path) -> None:
    text = BASE.replace('prefix = "vodemo"', 'prefix = "vodemo"\nlinks = ["latest", "latest"]')
    assert_clear(load(tmp_path, text), "listed twice")


@pytest.mark.parametrize("var", ["A B", "1A", "A;rm -rf /", "$(id)", "A=B", "", "Ä"])
def test_a_service_environment_name_is_a_shell_identifier(
    tmp_path: Path, isolated_env: Path, var: str
) -> None:
    """The run script exports it unquoted: anything else breaks it or runs a command."""
    text = (
        BASE
        + f'\n[products.vodemo.services.x]\ncommand = "bin/x"\nenvironment = {{ {toml_string(var)} = "1" }}\n'
    )
    assert_clear(load(tmp_path, text), "environment", "shell identifier")


SSH_TARGETS = {
    "address": BASE.replace('"10.0.0.1"', "{v}"),
    "ssh_user": BASE.replace("hosts = {", "ssh_user = {v}\nhosts = {"),
    "host": BASE.replace('prefix = "vodemo"', 'prefix = "vodemo"\nbackend = "server"\nhost = {v}'),
    "user": BASE.replace('prefix = "vodemo"', 'prefix = "vodemo"\nbackend = "server"\nuser = {v}'),
}  # fmt: skip


@pytest.mark.parametrize("key", list(SSH_TARGETS))
@pytest.mark.parametrize("value", ["-oProxyCommand=touch x", "a b", "-x", "h\tx"])
def test_what_becomes_an_ssh_argument_is_never_an_option(
    tmp_path: Path, isolated_env: Path, key: str, value: str
) -> None:
    error = load(tmp_path, SSH_TARGETS[key].replace("{v}", toml_string(value)))
    assert_clear(error, "starts with '-' or contains a space", "host name or an IP address")


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


# -- render: the second line of defence ----------------------------------------------------------


def _render_setup(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "release.toml"
    path.write_text(BASE)
    outside = tmp_path / "outside"
    (outside / "v1.0.0").mkdir(parents=True)
    (outside / "v1.0.0" / "keep").write_text("x")
    return path, outside


@pytest.mark.parametrize("kind", ["env folder links out", "version folder links out",
                                  "version folder links inside", "version is a file"])  # fmt: skip
def test_render_never_deletes_what_is_not_its_own_folder(
    tmp_path: Path, isolated_env: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path, outside = _render_setup(tmp_path)
    env_dir = tmp_path / "rendered" / "certification"
    if kind == "env folder links out":
        env_dir.parent.mkdir()
        env_dir.symlink_to(outside)
    else:
        env_dir.mkdir(parents=True)
        (tmp_path / "rendered" / "other").mkdir()
        (tmp_path / "rendered" / "other" / "keep").write_text("x")
        target = env_dir / "v1.0.0"
        if kind == "version folder links out":
            target.symlink_to(outside / "v1.0.0")
        elif kind == "version folder links inside":
            target.symlink_to(tmp_path / "rendered" / "other")
        else:
            target.write_text("not a folder")
    code = main(["--config", str(path), "render", "--env", "certification", "--version", "v1.0.0"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and ("outside" in err or "not a folder rendered" in err), err
    assert (outside / "v1.0.0" / "keep").read_text() == "x"
    if kind == "version folder links inside":
        assert (tmp_path / "rendered" / "other" / "keep").read_text() == "x"


def test_render_replaces_its_own_folder(tmp_path: Path, isolated_env: Path) -> None:
    path, _ = _render_setup(tmp_path)
    for _ in range(2):
        assert main(["--config", str(path), "render", "--env", "certification",
                     "--version", "v1.0.0"]) == 0  # fmt: skip
    assert (tmp_path / "rendered/certification/v1.0.0/inventory/hosts.yml").is_file()


# -- strict types --------------------------------------------------------------------------------

STRICT = [
    ("repositories", 'keep = true'), ("repositories", 'keep = "5"'), ("repositories", 'keep = 5.0'),
    ("repositories", 'keep = [5]'), ("repositories", 'keep = 0'), ("repositories", 'keep = 99999999999'),
    ("repositories", 'wait = "30"'), ("repositories", 'wait = true'), ("repositories", 'wait = nan'),
    ("repositories", 'wait = inf'), ("repositories", 'wait = -1'),
    ("build", 'compression_level = true'), ("build", 'compression_level = "3"'),
    ("build", 'compression_level = 3.0'), ("build", 'compression_level = 10'),
    ("build", 'jobs = "2"'), ("build", 'jobs = false'), ("build", 'jobs = 2.5'), ("build", 'jobs = 0'),
    ("environments", 'batch = true'), ("environments", 'batch = "1"'), ("environments", 'batch = 1.0'),
    ("environments", 'keep = "3"'), ("environments", 'keep = false'),
    ("environments", 'max_fail_percentage = "0"'), ("environments", 'max_fail_percentage = true'),
    ("environments", 'max_fail_percentage = 101'),
    ("certify", 'workers = "yes"'), ("certify", 'workers = 1'), ("certify", 'workers = "true"'),
    ("certify", 'health_timeout = true'), ("certify", 'health_timeout = "60"'),
    ("certify", 'job_timeout = "60"'), ("certify", 'job_timeout = false'),
]  # fmt: skip


@pytest.mark.parametrize(("section", "line"), STRICT, ids=[f"{s}:{line}" for s, line in STRICT])
def test_numbers_and_switches_are_strict(
    tmp_path: Path, isolated_env: Path, section: str, line: str
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


BAD_OVERRIDES = ["x", "-1", "+4", "1e3", "2.0", "0x10", "true", "\uff12", "\u0664", " ", "4 4",
                 "9" * 40, "9" * 5000]  # fmt: skip


@pytest.mark.parametrize("var", ["DIRAC_RELEASE_JOBS", "DIRAC_RELEASE_COMPRESSION_LEVEL"])
@pytest.mark.parametrize("value", BAD_OVERRIDES, ids=[repr(v)[:12] for v in BAD_OVERRIDES])
def test_an_override_that_is_not_a_number_names_the_variable(
    tmp_path: Path, isolated_env: Path, var: str, value: str
) -> None:
    error = load(tmp_path, BASE, {var: value})
    assert_clear(error, var, "whole number")


def test_an_override_that_is_a_number_is_used(tmp_path: Path, isolated_env: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(BASE)
    config = load_config(path, environ={"DIRAC_RELEASE_JOBS": "4",
                                        "DIRAC_RELEASE_COMPRESSION_LEVEL": "9"})  # fmt: skip
    assert (config.build.jobs, config.build.compression_level) == (4, 9)
    error = load(tmp_path, BASE, {"DIRAC_RELEASE_JOBS": "99"})
    assert_clear(error, "build.jobs", "DIRAC_RELEASE_JOBS", fix=False)  # a number, out of range


def test_an_override_with_a_control_character_names_the_variable(
    tmp_path: Path, isolated_env: Path
) -> None:
    error = load(tmp_path, BASE, {"DIRAC_RELEASE_OUT": "di\x01st"})
    assert_clear(error, "build.out", "DIRAC_RELEASE_OUT", "control character")


# -- tag formats ---------------------------------------------------------------------------------

BAD_FORMATS = ["{product}", "static", "", "{nope}-{tag}", "{tag.real}", "{tag[0]}", "{tag!r}",
               "{tag!s}", "{tag:>20}", "{version:x}", "{", "}", "{tag}{", "{}", "{0}", "{{tag}}",
               "{version.major}", "{product[0]}-{tag}", "{ tag }", "{TAG}", "{product}/{tag}",
               "../{tag}", "{tag}/..", "{tag} {version}", "{product}-{tag}\u00e9", "{tag}" * 20,
               "x" * 300 + "{tag}", "x" * 1_000_000 + "{tag}", "{tag}\n"]  # fmt: skip


@pytest.mark.parametrize("fmt", BAD_FORMATS, ids=[repr(f)[:24] for f in BAD_FORMATS])
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
    elif kind == "link to a FIFO":
        os.mkfifo(path.with_name("fifo"))
        path.symlink_to(path.with_name("fifo"))
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "link loop":
        path.symlink_to(path)
    elif kind == "missing":
        pass
    elif kind == "non-UTF-8":
        path.write_bytes(BASE.encode() + b"\n# caf\xe9\n")
    elif kind == "UTF-16":
        path.write_bytes(BASE.encode("utf-16"))
    elif kind == "nested too deeply":
        path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n" + BASE)
    elif kind == "nested tables too deeply":
        path.write_text(BASE + "y = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n")
    elif kind == "too large":
        path.write_text(BASE + "# " + "x" * 5_000_000 + "\n")
    elif kind == "NUL in a value":
        path.write_text(BASE.replace('path = "stratum"', 'path = "stra\\u0000tum"'))
    elif kind == "not TOML":
        path.write_text("[products\n")
    elif kind == "empty":
        path.write_text("")


ODD = [("FIFO", "not a regular file"), ("link to a FIFO", "not a regular file"),
       ("socket", "not a regular file"), ("directory", "a directory"),
       ("device", "not a regular"), ("link loop", "cannot open"), ("missing", "not found"),
       ("non-UTF-8", "not UTF-8"), ("UTF-16", "not UTF-8"),
       ("nested too deeply", "nested too deeply"), ("nested tables too deeply", "nested too deeply"),
       ("too large", "larger than"), ("NUL in a value", "control character"), ("not TOML", "TOML"),
       ("empty", "products")]  # fmt: skip


@pytest.mark.parametrize(("kind", "words"), ODD, ids=[k for k, _ in ODD])
def test_an_odd_configuration_file_is_one_clear_error(
    tmp_path: Path, isolated_env: Path, kind: str, words: str
) -> None:
    """Through the real CLI with a timeout: a FIFO that blocked would fail, not hang."""
    path = tmp_path / "release.toml"
    _odd_file(kind, path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_cli_refused(run_cli("--config", str(path), "config"), words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("config", ["release\x00.toml", "x" * 5000, "/proc/self/mem", "/dev/null"])
def test_an_odd_config_path_is_bad_input(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", config, "config"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err) < MAX_MESSAGE


# Every string the file can hold, set to a huge value: the message stays short.
BIG = "x" * 1_000_000
LONG_VALUES = {
    "python": BASE.replace('source = { index = "vodemo-dirac" }',
                           f'source = {{ index = "vodemo-dirac" }}\npython = "{BIG}"'),
    "glibc": BASE + f'\n[platforms.x86_64]\nglibc = "{BIG}"\n',
    "prefix": BASE.replace('prefix = "vodemo"', f'prefix = "{BIG}"'),
    "backend": BASE.replace('prefix = "vodemo"', f'prefix = "vodemo"\nbackend = "{BIG}"'),
    "links": BASE.replace('prefix = "vodemo"', f'prefix = "vodemo"\nlinks = ["{BIG}"]'),
    "tag_format": BASE.replace('prefix = "vodemo"', f'prefix = "vodemo"\ntag_format = "{BIG}"'),
    "environments.certification.product": BASE.replace(
        "[environments.certification]\n", f'[environments.certification]\nproduct = "{BIG}"\n'),
    "environments.certification.repository": BASE.replace(
        "[environments.certification]\n", f'[environments.certification]\nrepository = "{BIG}"\n'),
    "platform": BASE.replace("[environments.certification]\n",
                             f'[environments.certification]\nplatform = "{BIG}"\n'),
    "duplicate host": BASE.replace('cctbdirac01 = "10.0.0.1"', f'a = "{BIG}", b = "{BIG}"'),
    "unknown key": BASE + f"\n[build]\n{BIG} = 1\n",
    "system": BASE + f'\n[products.vodemo.services.x]\ncommand = "bin/x"\nsystem = "{BIG}"\n',
    "services": BASE + f'\n[products.vodemo.services.{BIG}]\ncommand = "bin/x"\n',
    "environment": BASE + f'\n[products.vodemo.services.x]\ncommand = "bin/x"\nenvironment = {{ "{BIG}" = "1" }}\n',
    "requirements": BASE.replace('source = { index = "vodemo-dirac" }',
                                 f'source = {{ index = "vodemo-dirac" }}\nrequirements = ["!{BIG}"]'),
    "subdirectory": BASE.replace('source = { index = "vodemo-dirac" }',
                                 f'source = {{ git = "x", subdirectory = "../{BIG}" }}'),
    "exclude_newer": BASE.replace('source = { index = "vodemo-dirac" }',
                                  f'source = {{ index = "vodemo-dirac" }}\nexclude_newer = "{BIG}"'),
    "products": BASE.replace("[products.vodemo]", f"[products.{BIG}]"),
    "repositories": BASE.replace('"vodemo.egi.eu"', f'"{BIG}.eu"'),
    "control character": BASE.replace('path = "stratum"', f'path = "\\u0001{BIG}"'),
}  # fmt: skip


@pytest.mark.parametrize("key", list(LONG_VALUES))
def test_a_huge_value_is_not_echoed_whole(tmp_path: Path, isolated_env: Path, key: str) -> None:
    error = load(tmp_path, LONG_VALUES[key])
    assert_clear(error, key.split(".")[-1] if key != "control character" else key, fix=False)


def test_a_huge_value_through_the_cli_is_not_echoed_whole(
    tmp_path: Path, isolated_env: Path
) -> None:
    path = tmp_path / "release.toml"
    path.write_text(BASE.replace('prefix = "vodemo"', f'prefix = "{"p" * 3_000_000}"'))
    assert_cli_refused(run_cli("--config", str(path), "config"), "prefix", "characters")


# -- the CLI on a representative subset ----------------------------------------------------------

CLI_CASES = [
    ("product", "../dist"), ("environment", "a/b"), ("host", "a\x00b"), ("service", ".."),
    ("system", ""), ("link", "v1.0.0"), ("prefix segment", "a//b"), ("repository", "../escape"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "name"), CLI_CASES, ids=[k for k, _ in CLI_CASES])
def test_the_cli_refuses_a_bad_name_with_exit_2(
    tmp_path: Path, isolated_env: Path, kind: str, name: str
) -> None:
    key, template = NAME_PLACES[kind]
    path = tmp_path / "release.toml"
    path.write_text(template.replace("{n}", toml_string(name)))
    for args in (["config"], ["--json", "config"], ["publish", "--version", "v1.0.0", "--plan"]):
        proc = run_cli("--config", str(path), *args, cwd=tmp_path)
        assert_cli_refused(proc, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.toml"]


# -- odd tags ------------------------------------------------------------------------------------

ODD_TAGS = [
    "", "v", "vv1.0.0", "V1.0.0", "1.0.0", "v1.0", "v1.0.0.0", "v2", "v1.2.3.4", "v1.0.0.1",
    "v" + "9" * 5000, "v1." + "0" * 5000 + ".0", "v" + "9" * 60, "v9999999.0.0", "v1.0.0a1234567",
    "v1.0.0\n", "v1.0.0 ", "\tv1.0.0", "v1.0.0\r", "v1.0.0\x00", "v1.0.0\x85", "v1.0.0\u00a0",
    "v1.0.0\u200b", "v1..0", "v-1.0.0", "v+1.0.0", "v.1.0.0", "v1.0.0.", ".v1.0.0", "v1.0.0-",
    "v1.0.0.post1", "v1.0.0-1", "v1.0.0.dev1", "v1.0.0a1.dev1", "v1!1.0.0", "v1.0.0-rc1",
    "v1.0.0+local", "v1.0.0+local.1", "v01.0.0", "v1.00.0", "v1.0.0a01", "v1.0.0alpha1",
    "v1.0.0RC1", "v1.0.0rc", "v1.0.0c1", "v1.0.0pre1", "v1.0.0a", "v1.0.0a1a1", "v1.0.0a-1",
    "v\u0661.\u0660.\u0660", "v\uff11.0.0", "v\u0661r\u0663", "v1.0.0" * 20, "v1.0.0/../x",
    "v1.0.0;rm", "v9.0.0-alpha28", "v7r3p38", "latest",
]  # fmt: skip


@pytest.mark.parametrize("tag", ODD_TAGS, ids=[repr(t)[:24] for t in ODD_TAGS])
def test_an_odd_tag_is_refused_briefly(tag: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_tag(tag)
    text = caught.value.render()
    assert len(text) < 600 and caught.value.fix
    assert "\x00" not in text and caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("v1.0", "v1.0.0"), ("v1.0.0.0", "v1.0.0"), ("v1", "v1.0.0"), ("v01.0.0", "v1.0.0"),
     ("v1.0.0+local", "v1.0.0"), ("v1.0.0\n", "v1.0.0"), ("1.0", "1.0.0"), ("1.0.0.0", "1.0.0")],
)  # fmt: skip
def test_a_refused_tag_names_its_normalized_form(text: str, normalized: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_version_arg(text)
    fix = caught.value.fix or ""
    assert re.search(rf" {re.escape(normalized)}(?![0-9.][0-9])", fix), caught.value.render()


@pytest.mark.parametrize("tag", ["v1.0.0", "v9.0.0a29", "v9.0.0b1", "v9.1.0rc2", "v999999.0.0"])
def test_release_tags_are_accepted(tag: str) -> None:
    assert parse_tag(tag).tag == tag


@pytest.mark.parametrize("tag", ["v" + "9" * 5000, "v1.0", "v\u0661.\u0660.\u0660", "v1.0.0\n"])
def test_the_cli_refuses_an_odd_tag_with_exit_2(tag: str) -> None:
    assert_cli_refused(run_cli("version", "--tag", tag), "tag")


def test_a_branch_in_other_digits_is_no_maintenance_branch() -> None:
    from release.version import branch_series

    assert branch_series("rel-v8r0") == "8.0"
    assert branch_series("rel-v\u0668r\u0660") is None


# -- misleading words ----------------------------------------------------------------------------


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
    repo.git.tag("-a", "-m", "annotated", "v1.0.2", "HEAD^{tree}")
    for tag, kind in (("v1.0.0", "tree"), ("v1.0.1", "blob"), ("v1.0.2", "tree")):
        with pytest.raises(BadInput) as caught:
            read_tag(tmp_path, tag)
        assert f"points to a {kind}, not to a commit" in caught.value.message
        assert "does not exist" not in caught.value.message
    with pytest.raises(BadInput) as caught:
        read_tag(tmp_path, "v2.0.0")
    assert "does not exist" in caught.value.message


def test_an_unwritable_install_area_is_named_not_the_source(tmp_path: Path) -> None:
    """The host's install area cannot be written: the message names it, not the CVMFS source."""
    module = ROOT / "ansible/roles/dirac_server/library/dirac_version.py"
    source = tmp_path / "cvmfs" / "vodemo"
    tree = source / "v1.0.0" / "Linux-x86_64"
    (tree / ".dirac-release").mkdir(parents=True)
    (tree / ".dirac-release" / "manifest.json").write_text('{"files": []}')
    blocker = tmp_path / "opt"
    blocker.write_text("a file where the install area should be")
    root = blocker / "dirac"
    args = {"action": "install", "root": str(root), "version": "v1.0.0", "arch": "x86_64",
            "source": str(source)}  # fmt: skip
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(module), str(args_file)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    result = json.loads(proc.stdout)
    assert result.get("failed"), result
    assert f"install area {root}/versions" in result["msg"], result["msg"]
    assert str(source) not in result["msg"] and "Traceback" not in proc.stderr
