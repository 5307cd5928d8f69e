"""uv's resolution failures become our refusal, naming the package and the way out."""

from __future__ import annotations

from release.build.uvtool import explain_resolution_failure

# Messages as uv 0.13 prints them (captured from real runs against the index).
NO_AARCH64_WHEEL = """\
error: No solution found when resolving dependencies
  cause: Because intel-openmp==2023.1.0 has no wheels with a matching platform tag (e.g., `manylinux_2_28_aarch64`) and you require intel-openmp==2023.1.0, we can conclude that your requirements are unsatisfiable.

hint: Wheels are available for `intel-openmp` (v2023.1.0) on the following platforms: `manylinux1_i686`, `manylinux1_x86_64`, `macosx_10_15_x86_64`, `macosx_11_0_x86_64`, `win32`, `win_amd64`
"""

SDIST_ONLY = """\
error: No solution found when resolving dependencies
  cause: Because ujson==1.35 has no usable wheels and you require ujson==1.35, we can conclude that your requirements are unsatisfiable.

hint: Wheels are required for `ujson` because building from source is disabled for all packages (i.e., with `--no-build`)
"""

UNRELATED = """\
error: No solution found when resolving dependencies
  cause: Because there is no version of jaxlib==0.3.25 and you require jaxlib==0.3.25, we can conclude that your requirements are unsatisfiable.
"""


def test_missing_platform_wheel_is_named_with_fixes() -> None:
    error = explain_resolution_failure(NO_AARCH64_WHEEL, "aarch64")
    assert error is not None
    assert error.exit_code == 2
    assert error.message.startswith("intel-openmp has no wheel for aarch64")
    assert "manylinux1_x86_64" in error.message
    assert error.fix is not None
    assert "pin a version of intel-openmp" in error.fix
    assert "DIRACOS2" in error.fix


def test_sdist_only_package_is_named() -> None:
    error = explain_resolution_failure(SDIST_ONLY, "x86_64")
    assert error is not None and error.message.startswith("ujson has no wheel for x86_64")


def test_other_resolution_failures_are_not_misread() -> None:
    assert explain_resolution_failure(UNRELATED, "x86_64") is None
