"""Where the shipped content (ansible/, later k8s/) is: the checkout, or the installed wheel.

In a checkout it is the top-level folder; the wheel carries a copy under
release/resources/ (see pyproject.toml, force-include), so both ways find the same files.
"""

from __future__ import annotations

from pathlib import Path

from release.errors import InfrastructureError


def content_dir(name: str) -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / name, here / "resources" / name):
        if candidate.is_dir():
            return candidate
    raise InfrastructureError(
        f"the {name}/ content of dirac-release is missing",
        fix="reinstall dirac-release (pip install --force-reinstall dirac-release)",
    )
