"""A misspelt key is reported at its TOML path with the keys of the model that owns its table.

The valid keys are read from the models (release/config/keys.py), so these tests also catch a
table whose keys stop being found (the bug was [certify] being checked against the
environment's keys, with no suggestion).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from release.config import CertifySettings, Environment, Product, Repository, load_config
from release.config.keys import owner_keys
from release.errors import ConfigError

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

# (what is misspelt, text added or changed, path of the bad key, suggestion)
CASES = [
    ("top level", BASE + '\n[stat]\ndir = "x"\n', "stat", "state"),
    ("product", BASE.replace('"vodemo-dirac" }', '"vodemo-dirac" }\npythn = "3.11"'),
     "products.vodemo.pythn", "python"),
    ("source", BASE.replace('{ index = "vodemo-dirac" }', '{ git = "r", subdirectry = "s" }'),
     "products.vodemo.source.subdirectry", "subdirectory"),
    ("service", BASE + '\n[products.vodemo.services.api]\ncommand = "bin/x"\nhelth = "h"\n',
     "products.vodemo.services.api.helth", "health"),
    ("repository", BASE.replace('prefix = "vodemo"', 'prefix = "vodemo"\ntag_fromat = "{tag}"'),
     'repositories.vodemo.egi.eu.tag_fromat', "tag_format"),
    ("environment", BASE + "batchh = 2\n", "environments.certification.batchh", "batch"),
    ("certify", BASE + "\n[environments.certification.certify]\njob_timout = 10.0\n",
     "environments.certification.certify.job_timout", "job_timeout"),
    ("build", BASE + "\n[build]\njob = 2\n", "build.job", "jobs"),
    ("platform", BASE + '\n[platforms.x86_64]\nglib = "2.28"\n', "platforms.x86_64.glib", "glibc"),
]  # fmt: skip


def refused(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "release.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return caught.value


@pytest.mark.parametrize(
    ("text", "key", "meant"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_misspelt_key_names_its_path_and_the_key_meant(
    tmp_path: Path, isolated_env: Path, text: str, key: str, meant: str
) -> None:
    error = refused(tmp_path, text)
    assert f"{key}: unknown key; did you mean {meant!r}?" in error.message, error.message
    assert error.exit_code == 2


def test_the_valid_keys_are_those_of_the_owning_model() -> None:
    """Read from model_fields: a field added to a model is suggested without a list to edit."""
    assert owner_keys([]) == ["products", "platforms", "build", "repositories", "bases", "environments", "pilots",
                              "images", "state"]  # fmt: skip
    assert owner_keys(["products", "x"]) == list(Product.model_fields)
    assert owner_keys(["repositories", "r"]) == list(Repository.model_fields)
    assert owner_keys(["environments", "e"]) == list(Environment.model_fields)
    assert owner_keys(["environments", "e", "certify"]) == list(CertifySettings.model_fields)
    assert owner_keys(["products", "x", "source"], "index") == ["index"]
    assert owner_keys(["products", "x", "source"]) == ["git", "subdirectory", "index"]


def test_the_certify_error_lists_certify_keys_not_the_environments(
    tmp_path: Path, isolated_env: Path
) -> None:
    error = refused(tmp_path, BASE + "\n[environments.certification.certify]\nhots = 1\n")
    assert "valid keys here: url, issuer" in error.message
    assert "hosts" not in error.message  # the environment's key is not offered under [certify]


def test_the_cli_refuses_a_misspelt_key_with_exit_2(tmp_path: Path, isolated_env: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(BASE + "\n[environments.certification.certify]\nhealth_timout = 5.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
    proc = subprocess.run([sys.executable, "-m", "release", "--config", str(path), "config"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
                          check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "environments.certification.certify.health_timout: unknown key; did you mean " \
        "'health_timeout'?" in proc.stderr, proc.stderr  # fmt: skip
    assert "Traceback" not in proc.stderr
