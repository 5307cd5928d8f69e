"""`render` gives each VO image's ContainerRoot, pinned to the rendered version: a group
variable and site/container-roots.cfg (DIRAC's CFG syntax), checked by the pipeline's verify.

The expected values are never written into the tests: they come from `image container-root`
(the command a site would otherwise run) and, end to end, from the trees `image publish`
really put on a directory stratum.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from release.cli import main
from release.config import ReleaseConfig, load_config
from release.errors import BadInput, ConfigError
from release.pipeline.contract import Context
from release.render import render_environment
from release.render.containers import SITE_FILE
from release.render.stage import RenderStage
from release.version import parse_version_arg

REPO = "dirac.egi.eu"
OTHER_REPO = "test.egi.eu"

CONFIG = """\
[products.DIRAC]
source = { index = "DIRAC" }
repository = "dirac.egi.eu"

[build]
compression_level = 1

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[repositories."test.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "test"

[environments.certification]
hosts = { cctbdirac01 = "10.77.0.11" }
platform = "aarch64"
"""

IMAGES = """
[images.dteam]
base = { debian = "bookworm" }

[images.biomed]
name = "el9-worker"
base = { debian = "bookworm" }
"""


def parse_cfg(text: str) -> dict[str, Any]:
    """DIRAC's CFG syntax, as much as the file uses: `# comment` lines, `Name` then `{` (or
    `Name {`) opening a section, `}` closing it, `Key = value` (split at the first '=')."""
    root: dict[str, Any] = {}
    stack = [root]
    pending: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            key, _sep, value = line.partition("=")
            assert pending is None, f"an option inside a section name: {raw!r}"
            stack[-1][key.strip()] = value.strip()
        elif line == "}":
            stack.pop()
            assert stack, "more sections closed than opened"
        elif line.endswith("{"):
            name = line[:-1].strip() or pending
            assert name, f"a section without a name: {raw!r}"
            section: dict[str, Any] = {}
            stack[-1][name] = section
            stack.append(section)
            pending = None
        else:
            pending = line
    assert len(stack) == 1 and pending is None, "a section left open"
    return root


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def container_root_cli(site: Path, vo: str, version: str) -> dict[str, str]:
    """arch (and "any" for the {arch} form) -> what `image container-root` prints."""
    code, out, _err = cli("--config", str(site / "release.toml"), "--json", "image",
                          "container-root", "--vo", vo, "--version", version)  # fmt: skip
    assert code == 0
    return {
        ("any" if r["arch"] == "{arch}" else r["arch"]): r["container_root"]
        for r in json.loads(out)["container_roots"]
    }


def configure(site: Path, text: str) -> ReleaseConfig:
    (site / "release.toml").write_text(text)
    return load_config(site / "release.toml", environ={})


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    return tmp_path


def group_vars(result: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(Path(result["vars"]).read_text())
    return data


def test_render_gives_each_vo_its_container_root_for_the_rendered_version(site: Path) -> None:
    config = configure(site, CONFIG + IMAGES)
    result = render_environment(config, "certification", "v9.0.0", site / "out")
    expected = {vo: container_root_cli(site, vo, "v9.0.0") for vo in ("biomed", "dteam")}
    assert set(expected["dteam"]) == {"x86_64", "aarch64", "any"}
    assert "/el9-worker:v9.0.0" in expected["biomed"]["x86_64"]  # the image's own name
    # The group variable: every architecture and the {arch} form, per VO.
    assert group_vars(result)["dirac_container_roots"] == expected
    # The site file: the environment's architecture (aarch64 here) as ContainerRoot.
    path = site / "out" / "certification" / "v9.0.0" / SITE_FILE
    text = path.read_text()
    parsed = parse_cfg(text)
    assert set(parsed) == {"biomed", "dteam"}
    for vo, roots in expected.items():
        assert parsed[vo]["ContainerRoot"] == roots["aarch64"] != roots["x86_64"]
        assert parsed[vo]["Architectures"] == roots
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "for certification v9.0.0" in header[0]
    assert "SingularityComputingElement" in text and "DIRAC#8454" in text
    assert "ContainerRoot option" in text
    # The result (--json) names the file and the values.
    assert result["container_roots"] == {
        "file": str(path),
        "platform": "aarch64",
        "container_root": {vo: roots["aarch64"] for vo, roots in expected.items()},
        "per_arch": expected,
    }
    # The same bytes for the same inputs.
    render_environment(config, "certification", "v9.0.0", site / "out")
    assert path.read_text() == text


def test_the_render_command_says_where_the_container_roots_are(site: Path) -> None:
    configure(site, CONFIG + IMAGES)
    code, out, _err = cli("--config", str(site / "release.toml"), "render", "--env",
                          "certification", "--version", "v9.0.1", "--out", str(site / "out"))  # fmt: skip
    assert code == 0
    flat = " ".join(out.split())
    assert "ContainerRoot of the SingularityComputingElement, for aarch64 nodes" in flat
    assert str(site / "out" / "certification" / "v9.0.1" / SITE_FILE) in flat
    assert f"dteam: {container_root_cli(site, 'dteam', 'v9.0.1')['aarch64']}" in flat
    code, out, _err = cli("--config", str(site / "release.toml"), "--json", "render", "--env",
                          "certification", "--version", "v9.0.1", "--out", str(site / "out"))  # fmt: skip
    assert code == 0
    assert json.loads(out)["container_roots"]["per_arch"]["biomed"] == container_root_cli(
        site, "biomed", "v9.0.1"
    )


def test_without_images_of_the_environments_product_nothing_changes(site: Path) -> None:
    # No [images] at all.
    config = configure(site, CONFIG)
    result = render_environment(config, "certification", "v9.0.0", site / "out")
    assert "dirac_container_roots" not in group_vars(result)
    assert "container_roots" not in result
    assert not (site / "out" / "certification" / "v9.0.0" / "site").exists()
    # Images of another product: an environment of DiracX gets none of DIRAC's images.
    config = configure(site, CONFIG.replace("[environments.certification]", (
        '[products.DiracX]\nsource = { index = "diracx" }\nrepository = "dirac.egi.eu"\n\n'
        '[environments.certification]\nproduct = "DiracX"'
    )) + IMAGES.replace('base = {', 'product = "DIRAC"\nbase = {'))  # fmt: skip
    assert set(config.images) == {"dteam", "biomed"}
    result = render_environment(config, "certification", "v0.7.0", site / "out")
    assert "dirac_container_roots" not in group_vars(result)
    assert not (site / "out" / "certification" / "v0.7.0" / "site").exists()


def test_a_rollback_render_has_no_container_roots(site: Path) -> None:
    config = configure(site, CONFIG + IMAGES)
    result = render_environment(config, "certification", "previous", site / "out")
    assert "dirac_container_roots" not in group_vars(result)
    assert "dirac_version" not in group_vars(result)
    assert not (site / "out" / "certification" / "previous" / "site").exists()


def test_the_roots_name_the_repository_image_publish_uses(site: Path) -> None:
    """The environment may read another repository; the images are where `image publish`
    puts them by default: the image's product's repository."""
    text = CONFIG.replace(
        'platform = "aarch64"', 'platform = "aarch64"\nrepository = "test.egi.eu"'
    )
    config = configure(site, text + IMAGES)
    result = render_environment(config, "certification", "v9.0.0", site / "out")
    values = group_vars(result)
    assert values["dirac_repository"] == OTHER_REPO
    roots = values["dirac_container_roots"]["dteam"]
    assert roots == container_root_cli(site, "dteam", "v9.0.0")
    assert all(root.startswith(f"/cvmfs/{REPO}/dirac/containers/dteam/") for root in roots.values())


def test_the_roots_are_where_image_publish_put_the_images(
    site: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end on a directory stratum: each rendered value, read under the stratum
    instead of /cvmfs, is the published tree of that VO, architecture and release."""
    from release.image.build import build_images
    from release.image.publish import publish_images
    from tests.image_trees import image_site

    image_site(site, isolated_env, monkeypatch, REPO)
    config = configure(site, CONFIG + IMAGES)
    build_images(config, version="v9.0.0", out=site / "images")
    publish_images(config, version="v9.0.0", out=site / "images")
    render_environment(config, "certification", "v9.0.0", site / "out")
    parsed = parse_cfg((site / "out" / "certification" / "v9.0.0" / SITE_FILE).read_text())
    for vo in ("biomed", "dteam"):
        for arch in ("x86_64", "aarch64"):
            root = parsed[vo]["Architectures"][arch]
            tree = site / "stratum" / root.removeprefix("/cvmfs/")
            record = json.loads((tree / ".dirac-release" / "image.json").read_text())
            assert (record["vo"], record["arch"], record["tag"]) == (vo, arch, "v9.0.0")
        assert parsed[vo]["ContainerRoot"] == parsed[vo]["Architectures"]["aarch64"]
        for arch in ("x86_64", "aarch64"):
            # {arch} is the node's uname -m; the per-arch value names the OCI folder
            # (amd64, arm64) of DIRAC#8454: both lead to the same published tree.
            via_any = parsed[vo]["Architectures"]["any"].replace("{arch}", arch)
            assert via_any != parsed[vo]["Architectures"][arch]
            stratum = site / "stratum"
            assert (stratum / via_any.removeprefix("/cvmfs/")).resolve() == (
                stratum / parsed[vo]["Architectures"][arch].removeprefix("/cvmfs/")).resolve()  # fmt: skip


def test_refusals_leave_the_previous_render_as_it_was(site: Path) -> None:
    config = configure(site, CONFIG + IMAGES)
    render_environment(config, "certification", "v9.0.0", site / "out")
    folder = site / "out" / "certification" / "v9.0.0"
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    # Several products, and an image that does not say which one it is for.
    two = CONFIG.replace("[build]", '[products.DiracX]\nsource = { index = "diracx" }\n\n[build]')
    config = configure(site, two.replace("[environments.certification]",
                                         '[environments.certification]\nproduct = "DIRAC"') + IMAGES)  # fmt: skip
    with pytest.raises(BadInput, match=r"images\.biomed does not say which product") as caught:
        render_environment(config, "certification", "v9.0.0", site / "out")
    assert 'product = "DIRAC"' in (caught.value.fix or "")
    # An environment on a platform no image is published for.
    config = configure(site, CONFIG.replace("[build]", "[platforms.x86_64]\n\n[build]") + IMAGES)
    with pytest.raises(BadInput, match="runs on aarch64, but the images of DIRAC are published "
                                       "for x86_64 only"):  # fmt: skip
        render_environment(config, "certification", "v9.0.0", site / "out")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_vars_may_not_set_the_container_roots(site: Path) -> None:
    text = CONFIG.replace('platform = "aarch64"',
                          'platform = "aarch64"\nvars = { dirac_container_roots = "x" }')  # fmt: skip
    with pytest.raises(ConfigError, match="dirac_container_roots is set by dirac-release"):
        configure(site, text + IMAGES)


STALE_ROOTS = "the rendered container roots differ from the [images] of release.toml"


def test_the_pipeline_renders_again_when_the_images_change(site: Path) -> None:
    stage = RenderStage()
    config = configure(site, CONFIG + IMAGES)
    ctx = Context(config, "DIRAC", parse_version_arg("v9.0.0"), env="certification")
    assert stage.verify(ctx) == "not rendered"
    stage.run(ctx)
    assert stage.verify(ctx) is None
    site_file = site / "rendered" / "certification" / "v9.0.0" / SITE_FILE
    # An image renamed in release.toml: the roots rendered before name another folder.
    changed = configure(site, CONFIG + IMAGES.replace('name = "el9-worker"', 'name = "el9"'))
    ctx = Context(changed, "DIRAC", parse_version_arg("v9.0.0"), env="certification")
    assert stage.verify(ctx) == STALE_ROOTS
    stage.run(ctx)
    assert stage.verify(ctx) is None
    assert "/el9:v9.0.0" in site_file.read_text()
    # The site file alone edited (or lost): verify notices it too.
    site_file.write_text(site_file.read_text().replace("/el9:", "/el8:"))
    assert (
        stage.verify(ctx) == f"the rendered {SITE_FILE} differs from the [images] of release.toml"
    )
    stage.run(ctx)
    assert stage.verify(ctx) is None
    # The images removed: the rendered roots are stale, and the next render drops them.
    bare = configure(site, CONFIG)
    ctx = Context(bare, "DIRAC", parse_version_arg("v9.0.0"), env="certification")
    assert stage.verify(ctx) == STALE_ROOTS
    stage.run(ctx)
    assert stage.verify(ctx) is None and not site_file.exists()
    # An [images] table added back that can no longer render says why instead of failing.
    two = CONFIG.replace("[build]", '[products.DiracX]\nsource = { index = "diracx" }\n\n[build]')
    broken = configure(site, two.replace("[environments.certification]",
                                         '[environments.certification]\nproduct = "DIRAC"') + IMAGES)  # fmt: skip
    ctx = Context(broken, "DIRAC", parse_version_arg("v9.0.0"), env="certification")
    reason = stage.verify(ctx)
    assert reason is not None and "images.biomed does not say which product" in reason


def test_the_parser_of_these_tests_reads_nested_sections() -> None:
    """The little CFG reader above, on a text whose shape is known (so the checks that use it
    cannot pass by reading nothing)."""
    text = "# c\nA\n{\n  k = v=w\n  B {\n    x = {arch}/y\n  }\n}\nC\n{\n}\n"
    assert parse_cfg(text) == {"A": {"k": "v=w", "B": {"x": "{arch}/y"}}, "C": {}}
    with pytest.raises(AssertionError):
        parse_cfg("A\n{\n")
