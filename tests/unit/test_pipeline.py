"""The pipeline: stage contract, resume by verification, plan, and status.

Real stages on a directory stratum (publish, render) with synthetic bundles; the order, resume
and failure rules with recording stages. The whole pipeline on lab hosts is in
tests/lab/test_demo_pipeline.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from release.cli import main
from release.config import load_config
from release.errors import BadInput, CheckFailed
from release.pipeline.contract import Context, StageResult, StageStatus
from release.pipeline.runner import ORDER, run_pipeline
from release.publish import init_repository
from release.version import parse_version_arg
from tests.publishing import make_bundle, write_config

ENV = """
[environments.certification]
hosts = { cctbdirac01 = "10.77.0.11", cctbdirac02 = "10.77.0.12" }

[environments.production]
hosts = { diracprod01 = "10.77.0.21" }
"""


@pytest.fixture
def site(tmp_path: Path, isolated_env: Path) -> Path:
    path = write_config(tmp_path, extra=ENV)
    init_repository(load_config(path, environ={}), None)
    make_bundle(tmp_path / "dist", "v1.0.0")
    return tmp_path


def ctx_for(site: Path, tag: str = "v1.0.0") -> Context:
    config = load_config(site / "release.toml", environ={})
    return Context(config, "vodemo", parse_version_arg(tag), live=False)


def statuses(run: object) -> dict[str, str]:
    return {r.stage: r.status.value for r in run.results}  # type: ignore[attr-defined]


def test_publish_and_render_then_a_rerun_changes_nothing(site: Path) -> None:
    first = run_pipeline(ctx_for(site), first="publish", last="render")
    assert first.error is None, first.error
    assert statuses(first) == {"build": "skipped", "publish": "done", "image": "done", "render": "done",
                               "deploy": "skipped", "certify": "skipped", "promote": "skipped"}  # fmt: skip
    reasons = {r.stage: r.reason for r in first.results}
    assert reasons["build"] == "before --from publish" and reasons["publish"] == "never published"
    assert reasons["deploy"] == "after --until render"
    assert (site / "stratum" / "vodemo.egi.eu" / "vodemo" / "v1.0.0" / "Linux-x86_64").is_dir()
    inventory = site / "rendered" / "certification" / "v1.0.0" / "inventory" / "hosts.yml"
    assert "cctbdirac02" in inventory.read_text()

    revision = json.loads((site / "stratum" / ".dirac-release" / "vodemo.egi.eu" / "tags.json")
                          .read_text())["revision"]  # fmt: skip
    second = run_pipeline(ctx_for(site), first="publish", last="render")
    assert statuses(second)["publish"] == "verified" and statuses(second)["render"] == "verified"
    assert second.changed_nothing and second.verdict.startswith("nothing to do")
    after = json.loads((site / "stratum" / ".dirac-release" / "vodemo.egi.eu" / "tags.json")
                       .read_text())["revision"]  # fmt: skip
    assert after == revision  # no new transaction
    ledger = ctx_for(site).ledger
    assert len(ledger.records("pipeline")) == 2 and len(ledger.records("publish")) == 1


def test_work_that_no_longer_verifies_is_named_and_redone(site: Path) -> None:
    run_pipeline(ctx_for(site), first="publish", last="render")
    inventory = site / "rendered" / "certification" / "v1.0.0" / "inventory"
    (inventory / "hosts.yml").unlink()
    again = run_pipeline(ctx_for(site), first="publish", last="render")
    render = next(r for r in again.results if r.stage == "render")
    assert render.status is StageStatus.DONE and render.reason == "not rendered"
    # The configuration changed: the rendered inventory no longer matches it.
    config = site / "release.toml"
    config.write_text(config.read_text().replace(', cctbdirac02 = "10.77.0.12"', ""))
    again = run_pipeline(ctx_for(site), first="publish", last="render")
    render = next(r for r in again.results if r.stage == "render")
    assert render.status is StageStatus.DONE and "not those of certification" in render.reason
    assert "cctbdirac02" not in (inventory / "hosts.yml").read_text()


def test_a_damaged_publication_is_named_and_never_trusted(site: Path) -> None:
    run_pipeline(ctx_for(site), first="publish", last="render")
    victim = site / "stratum" / "vodemo.egi.eu" / "vodemo" / "v1.0.0" / "Linux-x86_64" / "diracosrc"
    victim.chmod(0o644)
    victim.write_text("export TAMPERED=1\n")
    again = run_pipeline(ctx_for(site), first="publish", last="render")
    publish = next(r for r in again.results if r.stage == "publish")
    assert "problem" in publish.reason and "diracosrc" in publish.reason
    # A published release is never overwritten: the stage fails, and the run stops there.
    assert publish.status is StageStatus.FAILED and again.error is not None
    assert statuses(again)["render"] == "not run"
    assert again.verdict.startswith("stopped at publish")


def test_damage_of_the_same_size_is_caught_by_the_content_check(site: Path) -> None:
    run_pipeline(ctx_for(site), first="publish", last="render")
    victim = site / "stratum" / "vodemo.egi.eu" / "vodemo" / "v1.0.0" / "Linux-x86_64" / "diracosrc"
    size = victim.stat().st_size
    victim.chmod(0o644)
    victim.write_bytes(b"#" * size)
    victim.chmod(0o444)
    again = run_pipeline(ctx_for(site), first="publish", last="render")
    publish = next(r for r in again.results if r.stage == "publish")
    assert "diracosrc: differs from the manifest" in publish.reason
    assert publish.status is StageStatus.FAILED and "already published but" in publish.summary


def test_a_changed_bundle_is_named(site: Path) -> None:
    run_pipeline(ctx_for(site), first="publish", last="publish")
    sums = site / "dist" / "v1.0.0" / "SHA256SUMS"
    sums.write_text(sums.read_text().replace(sums.read_text()[:8], "0" * 8, 1))
    again = run_pipeline(ctx_for(site), first="publish", last="publish", plan=True)
    publish = next(r for r in again.results if r.stage == "publish")
    # The publication itself still verifies: the bundle on disk is what changed, and build
    # (were it asked) would say so.
    assert publish.status is StageStatus.VERIFIED
    from release.build.stage import BuildStage

    assert BuildStage().verify(ctx_for(site)) == "never built"


def test_the_cli_run_and_status(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(site / "release.toml")
    code = main(["--config", config, "--json", "run", "--tag", "v1.0.0", "--from", "publish",
                 "--until", "render"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["verdict"] == "complete"
    assert data["ledger"].endswith("state/vodemo/v1.0.0/ledger.json")
    code = main(["--config", config, "--json", "run", "--tag", "v1.0.0", "--from", "publish",
                 "--until", "render", "--plan"])  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and plan["verdict"] == "plan: nothing was changed"
    assert [s["status"] for s in plan["stages"]][1:3] == ["verified", "verified"]
    code = main(["--config", config, "--json", "status"])
    data = json.loads(capsys.readouterr().out)
    release = data["products"]["vodemo"]["releases"][0]
    assert code == 0 and release["tag"] == "v1.0.0"
    assert "vodemo-v1.0.0" in release["stages"]["publish"]["evidence"]
    assert release["stages"]["certify"] is None and release["last_run"]["verdict"] == "complete"
    code = main(["--config", config, "status", "--version", "v1.0.0"])
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert code == 0 and "v1.0.0" in shown and "revision 1" in shown


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--from", "certify", "--until", "publish"], "comes after"),
        (["--tag", "v1.0"], "v1.0"),
        (["--env", "nowhere"], "nowhere"),
        (["--product", "dirac"], "dirac"),
    ],
)
def test_bad_run_arguments_change_nothing(
    site: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    args = ["--tag", "v1.0.0", *argv] if "--tag" not in argv else argv
    code = main(["--config", str(site / "release.toml"), "run", *args])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    assert not (site / "state" / "vodemo" / "v1.0.0").exists()
    assert not (site / "stratum" / "vodemo.egi.eu" / "vodemo" / "v1.0.0").exists()


# -- the order, failure and resume rules, with recording stages -------------------------------


@dataclass
class Recording:
    """A stage whose work is a file; it fails while `broken` holds its name."""

    name: str
    root: Path
    broken: set[str]
    calls: list[str] = field(default_factory=list)

    def plan(self, ctx: Context) -> list[str]:
        return [f"make {self.name}"]

    def run(self, ctx: Context) -> StageResult:
        self.calls.append(self.name)
        if self.name in self.broken:
            raise CheckFailed(f"{self.name} is broken")
        (self.root / self.name).write_text(ctx.tag)
        return StageResult(self.name, StageStatus.DONE, f"made {self.name}")

    def verify(self, ctx: Context) -> str | None:
        path = self.root / self.name
        if not path.exists():
            return "not made"
        return None if path.read_text() == ctx.tag else f"made for {path.read_text()}"


def recording(tmp_path: Path, broken: set[str]) -> list[Recording]:
    return [Recording(name, tmp_path, broken) for name in ORDER]


@pytest.mark.parametrize("failing", ORDER[:-1])
def test_a_failure_stops_the_run_and_a_rerun_continues_there(
    site: Path, tmp_path: Path, failing: str
) -> None:
    broken = {failing}
    stages = recording(tmp_path, broken)
    run = run_pipeline(ctx_for(site), stages=stages, promote=True)
    index = ORDER.index(failing)
    assert isinstance(run.error, CheckFailed)
    assert [r.status.value for r in run.results] == (
        ["done"] * index + ["failed"] + ["not run"] * (len(ORDER) - index - 1)
    )
    broken.clear()
    for stage in stages:
        stage.calls.clear()
    again = run_pipeline(ctx_for(site), stages=stages, promote=True)
    assert again.error is None
    assert [r.status.value for r in again.results] == ["verified"] * index + ["done"] * (
        len(ORDER) - index
    )
    assert [c for s in stages for c in s.calls] == list(ORDER[index:])  # nothing redone


def test_promote_only_when_asked_and_only_for_final_releases(site: Path, tmp_path: Path) -> None:
    run = run_pipeline(ctx_for(site), stages=recording(tmp_path, set()))
    assert run.results[-1].status is StageStatus.SKIPPED
    assert "--promote" in run.results[-1].reason
    run = run_pipeline(ctx_for(site, "v1.1.0a1"), stages=recording(tmp_path, set()), promote=True)
    assert run.results[-1].status is StageStatus.SKIPPED
    assert "pre-release" in run.results[-1].reason
    assert not (tmp_path / "promote").exists()


def test_plan_changes_nothing_and_redo_forces_a_stage(site: Path, tmp_path: Path) -> None:
    stages = recording(tmp_path, set())
    plan = run_pipeline(ctx_for(site), stages=stages, plan=True, promote=True)
    assert {r.status for r in plan.results} == {StageStatus.PLANNED}
    assert [c for s in stages for c in s.calls] == [] and not list(tmp_path.glob("build"))
    assert ctx_for(site).ledger.records("pipeline") == []
    run_pipeline(ctx_for(site), stages=stages, promote=True)
    for stage in stages:
        stage.calls.clear()
    run = run_pipeline(ctx_for(site), stages=stages, promote=True,
                       redo=lambda name: name == "certify")  # fmt: skip
    # The stage asked for, and the ones after it (they checked what it made).
    assert [c for s in stages for c in s.calls] == ["certify", "promote"]
    reasons = {r.stage: r.reason for r in run.results}
    assert reasons["certify"].startswith("asked to redo")
    assert reasons["promote"] == "certify ran again in this run"
    assert {r.stage for r in run.results if r.status is StageStatus.VERIFIED} == set(
        ORDER[: ORDER.index("certify")]
    )


def test_a_stage_that_runs_again_makes_the_later_ones_run(site: Path, tmp_path: Path) -> None:
    """Fresh hosts after a redone deploy are certified again, never trusted from the record."""
    stages = recording(tmp_path, set())
    run_pipeline(ctx_for(site), stages=stages, promote=True)
    (tmp_path / "deploy").unlink()
    for stage in stages:
        stage.calls.clear()
    run = run_pipeline(ctx_for(site), stages=stages, promote=True)
    assert [c for s in stages for c in s.calls] == ["deploy", "certify", "promote"]
    assert {r.stage: r.reason for r in run.results}["deploy"] == "not made"


def test_an_unknown_stage_is_bad_input(site: Path) -> None:
    with pytest.raises(BadInput):
        run_pipeline(ctx_for(site), first="compile")
    assert not os.path.exists(site / "state" / "vodemo" / "v1.0.0")


def test_an_os_error_in_a_stage_is_a_recorded_failure(site: Path, tmp_path: Path) -> None:
    stages = recording(tmp_path, set())

    def full_disk(ctx: Context) -> StageResult:
        raise OSError(28, "No space left on device", str(tmp_path / "dist"))

    stages[1].run = full_disk  # type: ignore[method-assign]
    run = run_pipeline(ctx_for(site), stages=stages)
    assert run.error is not None and run.error.exit_code == 3
    assert "No space left on device" in run.error.message
    assert [r.status.value for r in run.results][:3] == ["done", "failed", "not run"]
    record = ctx_for(site).ledger.latest("pipeline")
    assert record is not None and record["verdict"].startswith("stopped at publish")


def test_every_stage_lives_in_its_own_folder_in_pipeline_order() -> None:
    """The names the command line offers, the order the runner walks and the stage classes agree."""
    import importlib

    from release.pipeline.stages import STAGE_NAMES, all_stages

    stages = all_stages()
    assert [stage.name for stage in stages] == list(STAGE_NAMES) == list(ORDER)
    for stage in stages:
        module = importlib.import_module(type(stage).__module__)
        assert module.__name__ == f"release.{stage.name}.stage"
        for method in ("plan", "run", "verify"):
            assert callable(getattr(stage, method))


def test_the_command_line_imports_no_stage_at_start() -> None:
    """Starting `dirac-release` must stay fast: no stage, pydantic or rich until a command runs."""
    import subprocess
    import sys

    code = (
        "import sys, release.cli; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'rich', 'yaml') "
        "or m.endswith('.stage') or m in ('release.config', 'release.build', 'release.deploy')); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
