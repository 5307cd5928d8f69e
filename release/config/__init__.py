"""The one options resolver: release.toml plus DIRAC_RELEASE_* overrides into frozen models.

A package by concern: the models of each table (products, repositories, environments,
settings, model), reading and validating the file (loading, messages, keys, examples), the
override table (overrides) and the 'did you mean' helper (suggest). The names other code
imports are re-exported here, so `from release.config import ...` stays the one entry point.
"""

from release.config.base import (
    CONTROL_FIX,
    CONTROL_PROBLEM,
    DEFAULT_CONFIG_NAME,
    KNOWN_PLATFORMS,
    NAME_TABLES,
    PlatformName,
    stamp,
)
from release.config.environments import CertifySettings, Environment
from release.config.examples import EXAMPLES
from release.config.k3s import ChartPin, K3sSettings
from release.config.loading import MAX_CONFIG_BYTES, load_config, parse_config
from release.config.model import ReleaseConfig
from release.config.products import GitSource, IndexSource, Platform, Product, Service
from release.config.repositories import Repository
from release.config.settings import BuildSettings, StateSettings

__all__ = [
    "CONTROL_FIX",
    "CONTROL_PROBLEM",
    "DEFAULT_CONFIG_NAME",
    "EXAMPLES",
    "KNOWN_PLATFORMS",
    "MAX_CONFIG_BYTES",
    "NAME_TABLES",
    "BuildSettings",
    "CertifySettings",
    "ChartPin",
    "Environment",
    "GitSource",
    "IndexSource",
    "K3sSettings",
    "Platform",
    "PlatformName",
    "Product",
    "ReleaseConfig",
    "Repository",
    "Service",
    "StateSettings",
    "load_config",
    "parse_config",
    "stamp",
]
