"""release.toml: good files load into frozen models, bad ones name the file, key and fix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from release.config import GitSource, IndexSource, load_config, parse_config
from release.errors import BadInput, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[products.DIRAC]
source = { git = "https://github.com/DIRACGrid/DIRAC.git" }
python = "3.11"
requirements = ["diracx-client==0.7.0"]

[products.DiracX]
source = { index = "diracx" }
exclude_newer = 2026-10-01T00:00:00Z

[platforms.x86_64]
glibc = "2.28"

[platforms.aarch64]
glibc = "2.31"

[build]
out = "artifacts"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "release.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_file_loads_into_frozen_models(tmp_path: Path, isolated_env: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ={})
    dirac = config.products["DIRAC"]
    assert isinstance(dirac.source, GitSource)
    assert dirac.requirements == ("diracx-client==0.7.0",)
    diracx = config.products["DiracX"]
    assert isinstance(diracx.source, IndexSource)
    assert diracx.distribution_name("DiracX") == "diracx"
    assert diracx.exclude_newer == datetime(2026, 10, 1, tzinfo=UTC)
    assert config.platforms["aarch64"].python_platform("aarch64") == "aarch64-manylinux_2_31"
    assert config.resolve_path(config.build.out) == tmp_path / "artifacts"
    with pytest.raises(ValidationError):
        dirac.python = "3.12"  # type: ignore[misc]


def test_defaults_cover_both_platforms(tmp_path: Path, isolated_env: Path) -> None:
    config = load_config(write(tmp_path, '[products.x]\nsource = { index = "x" }\n'), environ={})
    assert list(config.platforms) == ["x86_64", "aarch64"]
    assert {p.glibc for p in config.platforms.values()} == {"2.28"}
    assert config.build.cache_dir == str(isolated_env / "dirac-release")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, GOOD), environ={"DIRAC_RELEASE_OUT": "/srv/out", "DIRAC_RELEASE_JOBS": "1"}
    )
    assert config.build.out == "/srv/out"
    assert config.build.jobs == 1


@pytest.mark.parametrize(
    ("text", "key", "words", "example"),
    [
        (
            '[products.x]\nsource = { git = "r" }\npython = "3.9"\n',
            "products.x.python",
            "3.9",
            'python = "3.11"',
        ),
        (
            '[products.x]\nsource = { git = "r" }\npythn = "3.11"\n',
            "products.x.pythn",
            "did you mean 'python'",
            None,
        ),
        (
            '[products.x]\nsource = { git = "r", index = "x" }\n',
            "products.x",
            "exactly one of",
            None,
        ),
        (
            '[products.x]\nsource = { git = "r" }\nrequirements = ["foo==="]\n',
            "products.x.requirements",
            "not a valid requirement",
            "requirements = [",
        ),
        (
            '[products.x]\nsource = { git = "r" }\nrequirements = ["foo @ https://e.org/f.whl"]\n',
            "products.x.requirements",
            "direct URLs",
            None,
        ),
        (
            '[products.x]\nsource = { index = "x" }\n[platforms.ppc64le]\n',
            "platforms.ppc64le",
            "supported: x86_64, aarch64",
            None,
        ),
        (
            '[products.x]\nsource = { index = "x" }\n[platforms.aarch64]\nglibc = "2.5"\n',
            "platforms.aarch64.glibc",
            "2.17 or newer",
            'glibc = "2.28"',
        ),
        (
            '[products."9bad"]\nsource = { index = "x" }\n',
            "products",
            "must start with a letter",
            None,
        ),
        ("[products]\n", "products", "at least one product", None),
        ("[build]\nout = 'x'\n", "products", "required key is missing", None),
        (
            '[products.x]\nsource = { index = "x" }\n[build]\ncompression_level = 12\n',
            "build.compression_level",
            "less than or equal to 9",
            "compression_level = 3",
        ),
        (
            '[products.x]\nsource = { git = "r", subdirectory = "../up" }\n',
            "products.x.source.subdirectory",
            "without '..'",
            None,
        ),
    ],
)
def test_bad_files_name_file_key_and_fix(
    tmp_path: Path, text: str, key: str, words: str, example: str | None
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    error = caught.value
    assert error.exit_code == 2
    assert error.where == str(path)
    rendered = error.render()
    assert key in rendered, rendered
    assert words in rendered, rendered
    if example:
        assert error.fix is not None and example in error.fix


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[products.x]\nsource = { git = "r" \n'), environ={})
    assert "line 2" in caught.value.message
    assert caught.value.exit_code == 2


def test_missing_file_suggests_the_demo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert "not found" in caught.value.message
    assert caught.value.fix is not None and "dirac-release demo" in caught.value.fix


def test_product_and_platform_choice(tmp_path: Path, isolated_env: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ={})
    with pytest.raises(BadInput, match="several products"):
        config.product(None)
    with pytest.raises(BadInput) as caught:
        config.product("DIRCA")
    assert caught.value.fix is not None and "did you mean 'DIRAC'" in caught.value.fix
    assert config.product("DiracX")[0] == "DiracX"
    assert config.platform_names("all") == ["x86_64", "aarch64"]
    assert config.platform_names("aarch64") == ["aarch64"]
    with pytest.raises(BadInput, match="unknown platform 'arm64'"):
        config.platform_names("arm64")


@pytest.mark.parametrize(
    "path", [REPO_ROOT / "release.toml", REPO_ROOT / "release/resources/demo/release.toml"]
)
def test_shipped_configurations_are_valid(path: Path, isolated_env: Path) -> None:
    config = load_config(path, environ={})
    assert config.products
    assert set(config.platforms) == {"x86_64", "aarch64"}


def test_parse_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    data = {"products": {"x": {"source": {"git": "r"}, "python": "2.7", "requirements": ["==1"]}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path / "release.toml", environ={})
    text = caught.value.render()
    assert "products.x.python" in text and "products.x.requirements" in text


ENVIRONMENTS = """
[products.vodemo]
source = { git = "repo" }

[products.vodemo.services.diracx]
system = "DiracX"
command = "bin/vodemo-diracx --port 8000"
health = "http://127.0.0.1:8000/api/health/live"

[repositories."vodemo.egi.eu"]
path = "stratum"

[environments.certification]
hosts = { cctbdirac01 = "10.0.0.1", cctbdirac02 = "10.0.0.2" }
batch = 1
"""


def test_environments_and_services(tmp_path: Path, isolated_env: Path) -> None:
    config = load_config(write(tmp_path, ENVIRONMENTS), environ={})
    env = config.environment("certification")
    assert list(env.hosts) == ["cctbdirac01", "cctbdirac02"]
    assert env.platform == "x86_64" and env.keep == 3 and env.max_fail_percentage == 0
    service = config.products["vodemo"].services["diracx"]
    assert service.system == "DiracX" and service.health is not None
    with pytest.raises(BadInput, match="unknown environment 'prod'"):
        config.environment("prod")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            ('cctbdirac02 = "10.0.0.2"', 'cctbdirac02 = "10.0.0.1"'),
            "duplicate host: cctbdirac02 and cctbdirac01",
        ),
        (
            ("batch = 1", 'batch = 1\nproduct = "DIRAC"'),
            "environments.certification.product names 'DIRAC'",
        ),
        (
            ('command = "bin/vodemo-diracx --port 8000"', 'command = "/usr/bin/python3"'),
            "relative to the installed version",
        ),
        (("batch = 1", "batch = 0"), "batch"),
        (("batch = 1", "batch = 1001"), "batch"),
        # A stray entry must not replace the version the pipeline pins, nor the SSH settings.
        (
            ("batch = 1", 'batch = 1\nvars = { dirac_version = "v0.0.1" }'),
            "dirac_version is set by dirac-release itself",
        ),
        (
            ("batch = 1", 'batch = 1\nvars = { ansible_ssh_private_key_file = "/tmp/k" }'),
            "ansible_ssh_private_key_file is set by dirac-release itself",
        ),
        (
            ("batch = 1", 'batch = 1\nvars = { "dirac-server-x" = 1 }'),
            "is not an Ansible variable name",
        ),
    ],
)
def test_bad_environments_are_refused(tmp_path: Path, change: tuple[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, ENVIRONMENTS.replace(*change)), environ={})
    assert words in caught.value.render()


def test_the_reserved_vars_are_exactly_what_render_sets(tmp_path: Path) -> None:
    """vars may set anything but what render derives itself; the two lists never drift."""
    from release.config.environments import RESERVED_VARS
    from release.render import environment_vars

    text = ENVIRONMENTS.replace("batch = 1", 'batch = 1\nssh_key = "k"\nvars = { site = "cc" }')
    # An image of the product, so that the ContainerRoots are among what render sets.
    text += '\n[images.dteam]\nbase = { debian = "bookworm" }\n'
    config = load_config(write(tmp_path, text), environ={})
    derived = set(environment_vars(config, "certification", "v1.0.0")) - {"site"}
    assert derived == RESERVED_VARS
