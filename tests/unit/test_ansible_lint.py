"""ansible/ passes ansible-lint at the production profile, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import lab_skip

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "ansible"


def test_ansible_content_is_lint_clean(tmp_path: Path) -> None:
    lint = shutil.which("ansible-lint")
    if lint is None:
        lab_skip("ansible-lint is not installed (pip install ansible-lint; CI installs it)")
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
    }
    # Lint a copy: ansible-lint leaves a .ansible cache folder in the project it checks.
    project = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_DIR, project, ignore=shutil.ignore_patterns(".ansible", ".cache"))
    proc = subprocess.run(
        [lint, "--offline", "--profile", "production", "--nocolor", "-c", ".ansible-lint"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "0 failure(s), 0 warning(s)" in output, output
    assert "Profile 'production' was required, and it passed" in output, output
    assert not list(ANSIBLE_DIR.rglob("__init__.py")), "ansible/ must stay a plain Ansible layout"
