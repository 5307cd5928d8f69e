"""[images.<vo>] in release.toml: what is accepted, what is refused when the file is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.config import ReleaseConfig, load_config
from release.config.images import DEFAULT_BINDS, DebianImageBase, OciImageBase
from release.errors import ConfigError

HEAD = """\
[products.DIRAC]
source = { index = "DIRAC" }

[images.dteam]
"""


def _load(tmp_path: Path, body: str) -> ReleaseConfig:
    path = tmp_path / "release.toml"
    path.write_text(HEAD + body)
    return load_config(path, environ={})


def _refused(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body)
    return caught.value.render()


def test_a_debian_base_takes_the_defaults(tmp_path: Path) -> None:
    image = _load(tmp_path, 'base = { debian = "bookworm" }\n').images["dteam"]
    assert isinstance(image.base, DebianImageBase)
    assert image.binds == DEFAULT_BINDS and image.packages == () and image.product is None
    assert image.base_label() == "debian bookworm"


def test_oci_archives_per_architecture(tmp_path: Path) -> None:
    image = _load(
        tmp_path,
        'product = "DIRAC"\nbase.oci = { x86_64 = "el9-x86_64.tar", aarch64 = "el9-a.tar" }\n'
        'env = { X509_CERT_DIR = "/etc/grid-security/certificates" }\n'
        'labels = { "eu.egi.dteam.contact" = "admin@example.org" }\n',
    ).images["dteam"]
    assert isinstance(image.base, OciImageBase)
    assert image.base.oci == {"x86_64": "el9-x86_64.tar", "aarch64": "el9-a.tar"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('base = { debian = "bookworm" }\nlabls = {}\n', "did you mean 'labels'"),
        ('base = { debain = "bookworm" }\n', "did you mean 'debian'"),
        ('base = { debian = "sid" }\n', "'bookworm'"),
        ('base = { debian = "bookworm", oci = { x86_64 = "a" } }\n', "not both"),
        ('base.oci = { riscv64 = "a.tar" }\n', "'x86_64' or 'aarch64'"),
        ('base.oci = { x86_64 = " " }\n', "oci.x86_64 is empty"),
        ('base = { debian = "bookworm" }\npackages = ["Not A Package"]\n', "Debian package"),
        ('base = { debian = "bookworm" }\npackages = ["a1", "a1"]\n', "twice"),
        ('base = { debian = "bookworm" }\nbinds = ["etc/grid-security"]\n', "plain absolute"),
        ('base = { debian = "bookworm" }\nbinds = ["/etc/../x"]\n', "plain absolute"),
        ('base = { debian = "bookworm" }\nbinds = ["/a b"]\n', "plain absolute"),
        ('base = { debian = "bookworm" }\nbinds = ["/cvmfs"]\n', "runtime or the image owns"),
        ('base = { debian = "bookworm" }\nbinds = ["/proc/x"]\n', "runtime or the image owns"),
        ('base = { debian = "bookworm" }\nenv = { "1X" = "y" }\n', "not a variable name"),
        ('base = { debian = "bookworm" }\nlabels = { nodots = "y" }\n', "reverse-domain"),
        (
            'base = { debian = "bookworm" }\nlabels = { "org.opencontainers.image.version" = "y" }\n',
            "the build writes itself",
        ),
        ('base = { debian = "bookworm" }\nproduct = "DIRCA"\n', "not defined"),
        ("packages = []\n", "base: required key is missing"),
    ],
)
def test_bad_values_are_refused_with_the_key(tmp_path: Path, body: str, words: str) -> None:
    message = _refused(tmp_path, body)
    assert "images.dteam" in message and words in message, message


def test_a_vo_name_follows_the_name_rule(tmp_path: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(HEAD.replace("dteam", '"../x"') + 'base = { debian = "bookworm" }\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "images.'../x'" in caught.value.render() or "a name starts" in caught.value.render()
