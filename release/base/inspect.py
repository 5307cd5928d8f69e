"""Read a base as it really is: its Python version and every distribution it provides.

Only files are read (installed metadata, conda's and dpkg's package records), never the
base's interpreter run: an aarch64 base is inspected on an x86_64 machine the same way.
Two layouts are known: an installed prefix (DIRACOS2, conda: bin/python3.X and
lib/python3.X/site-packages) and a root filesystem (Debian: usr/bin/python3.X and
usr/lib/python3/dist-packages).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from release.errors import BadInput


@dataclass(frozen=True)
class Inspected:
    layout: str  # "prefix" | "rootfs"
    python: str  # the full version when the package records give it, e.g. 3.11.2
    site: tuple[str, ...]  # folders holding installed packages, relative to the base
    distributions: dict[str, dict[str, str]]  # canonical name -> {"name", "version"}


def _python_dirs(root: Path, lib: str, python: str) -> list[str]:
    """The folders of `root` that hold installed distributions for `python`, in lookup order."""
    if lib == "lib":  # a prefix
        candidates = [f"lib/python{python}/site-packages"]
    else:  # Debian's own, then the local admin's, then pip's
        candidates = [
            "usr/lib/python3/dist-packages",
            f"usr/lib/python{python}/dist-packages",
            f"usr/local/lib/python{python}/dist-packages",
            f"usr/lib/python{python}/site-packages",
        ]
    return [c for c in candidates if (root / c).is_dir()]


def _prefix_python(root: Path, python: str) -> str:
    """The exact Python version of a prefix: conda's record of its python package (DIRACOS2),
    else a virtual environment's pyvenv.cfg."""
    try:
        for line in (root / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info") and value.strip().startswith(
                f"{python}."
            ):
                return value.strip()
    except OSError:
        pass
    meta = root / "conda-meta"
    for record in sorted(meta.glob(f"python-{python}.*.json")) if meta.is_dir() else []:
        try:
            version = json.loads(record.read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError):
            continue
        if isinstance(version, str) and version.startswith(f"{python}."):
            return version
    return python


def _dpkg_python(root: Path, python: str) -> str:
    """Debian's exact Python version (python3.11 3.11.2-6+deb12u6 gives 3.11.2)."""
    status = root / "var/lib/dpkg/status"
    try:
        text = status.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return python
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Package") == f"python{python}" and "Version" in fields:
            upstream = fields["Version"].split(":")[-1].split("-")[0].split("+")[0]
            if upstream.startswith(f"{python}."):
                return upstream
    return python


def distributions(root: Path, site: list[str]) -> dict[str, dict[str, str]]:
    """Every installed distribution (dist-info and egg-info) in the site folders, by name.

    The first folder that provides a name wins, as Python's own lookup order would.
    """
    from importlib.metadata import Distribution

    from packaging.utils import canonicalize_name

    found: dict[str, dict[str, str]] = {}
    for folder in site:
        for info in sorted((root / folder).iterdir()):
            if not info.name.endswith((".dist-info", ".egg-info")):
                continue
            dist = Distribution.at(info)
            name, version = dist.metadata["Name"], dist.version
            if not name or not version:
                continue  # a damaged record: Python itself would not see it either
            found.setdefault(canonicalize_name(name), {"name": name, "version": version})
    return dict(sorted(found.items()))


def inspect_base(root: Path, python: str) -> Inspected:
    """What the base at `root` provides for `python` (major.minor); BadInput when it is none."""
    if not root.is_dir():
        raise BadInput(
            f"{root} is not a folder",
            fix="give the base's installed prefix or root filesystem in "
            "[bases.NAME.platforms.ARCH] path",
        )
    # A root filesystem first: with a merged /usr, Debian's bin/ and lib/ lead to usr/ too.
    if (root / "usr/bin" / f"python{python}").exists():
        layout, full = "rootfs", _dpkg_python(root, python)
        site = _python_dirs(root, "usr", python)
    elif (root / "bin" / f"python{python}").exists() and (
        root / "lib" / f"python{python}"
    ).is_dir():
        layout, full = "prefix", _prefix_python(root, python)
        site = _python_dirs(root, "lib", python)
    else:
        others = sorted(
            p.name
            for pattern in ("bin/python3.*", "usr/bin/python3.*")
            for p in root.glob(pattern)
            if re.fullmatch(r"python3\.[0-9]+", p.name)
        )
        raise BadInput(
            f"{root} holds no python{python}"
            + (f" (it has {', '.join(others)})" if others else ""),
            fix="point path at the base's installed prefix (with bin/python3.X) or root "
            "filesystem (with usr/bin/python3.X), or set the base's python to the one it has",
        )
    return Inspected(layout, full, tuple(site), distributions(root, site))
