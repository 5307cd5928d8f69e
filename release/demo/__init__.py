"""The laptop demo: the release pipeline on a real VO extension, from a real git tag, on one
machine: build and publish here, then render, deploy, certify and promote on lab hosts.

Its product repository, configuration and secrets are `release.demo.fixture`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from release.demo.fixture import (
    CERTIFICATION_HOSTS,
    DEMO_TAG,
    PRODUCTION_HOSTS,
    REPO_NAME,
    REPOSITORY,
    add_release,
    demo_config_text,
    prepare_repository,
    prepare_secrets,
)
from release.errors import BadInput, CheckFailed

STAGES = ("version", "build", "publish", "image", "deploy", "certify", "promote")
LAB_STAGES = STAGES[4:]


def _lab_stages(
    workdir: Path, until: str, as_json: bool, stages: list[dict[str, Any]], tag: str
) -> dict[str, Any]:
    """Deploy, certify and promote on lab hosts started for the demo and stopped after it;
    their disks stay in <workdir>/lab for the next run."""
    import json
    import os

    from release.lab import ROOTFS_CACHE, ROOTFS_NAME, lab_hosts, prepare_rootfs, rootfs_complete

    say = _say(as_json)
    started = time.monotonic()
    password_file = prepare_secrets(workdir)
    if not rootfs_complete(ROOTFS_CACHE / ROOTFS_NAME):
        say(f"lab: building the hosts' Debian root filesystem once, in {ROOTFS_CACHE} "
            "(debootstrap, about a minute) ...")  # fmt: skip
    rootfs = prepare_rootfs(ROOTFS_CACHE)
    names = [*CERTIFICATION_HOSTS, *PRODUCTION_HOSTS]
    say(f"lab: starting {', '.join(names)} (network namespaces, sshd, runit) ...")
    stratum = workdir / "stratum" / REPOSITORY
    results: dict[str, Any] = {}
    # The hosts keep their disks (and SSH key) in <workdir>/lab between demo runs: a later tag
    # upgrades what an earlier run installed, and the rendered inventories stay true.
    with lab_hosts(
        names, rootfs, workdir / "lab", binds=[(stratum, f"/cvmfs/{REPOSITORY}", True)],
        keep_disks=True,
    ) as net:  # fmt: skip
        addresses = {host.name: host.address for host in net}
        config_path = workdir / "release.toml"
        config_path.write_text(
            demo_config_text(
                hosts={"certification": {n: addresses[n] for n in CERTIFICATION_HOSTS},
                       "production": {n: addresses[n] for n in PRODUCTION_HOSTS}},
                ssh_key=net.ssh_key, images=True,
            ),
            encoding="utf-8",
        )  # fmt: skip
        stages.append({"stage": "lab", "result": ", ".join(f"{n} {a}" for n, a in addresses.items()),
                       "seconds": time.monotonic() - started})  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_RELEASE_")}
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password_file)
        say(f"render, deploy, certify, promote: dirac-release run --from render --until {until} "
            f"--promote --install, inside the lab network ...")  # fmt: skip
        started = time.monotonic()
        # --json for the result; --progress so a person sees each host's steps meanwhile.
        argv = [*net.exec_prefix(), sys.executable, "-m", "release", "--config", str(config_path),
                "--json", *([] if as_json else ["--progress"]), "run", "--tag", tag,
                "--from", "render", "--until", until, "--promote", "--install"]  # fmt: skip
        proc = subprocess.run(
            argv, env=env, stdout=subprocess.PIPE, text=True, timeout=3600, check=False
        )
        data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        results["lab_run"] = data
        stages += _rows(data) if data else [
            {"stage": "run", "result": f"exit {proc.returncode}", "seconds": time.monotonic() - started}
        ]  # fmt: skip
        junit = workdir / "certification.junit.xml"
        if data and any(s["stage"] == "certify" and s["status"] == "done" for s in data["stages"]):
            _write_junit(config_path, junit, tag)
        if proc.returncode != 0:
            failed = next((s for s in data.get("stages", []) if s["status"] == "failed"), None)
            raise CheckFailed(
                f"the demo's {failed['stage'] if failed else 'lab'} stage failed (exit "
                f"{proc.returncode})" + (f": {failed['summary']}" if failed else ""),
                fix="see the messages above; run the demo again: it verifies what is done and "
                "continues from there",
            )
    return results


def run_demo(
    *, workdir: Path, until: str = STAGES[-1], as_json: bool = False, tag: str = DEMO_TAG
) -> int:
    """The release pipeline on the demo product, stopping after `until`.

    Build and publish run here; render, deploy, certify and promote run as one
    `dirac-release run` inside the lab hosts' network. A rerun in the same folder verifies
    what the previous one finished and continues from there, as `run` does.
    """
    from release import gitinfo
    from release.config import load_config
    from release.pipeline.contract import Context
    from release.pipeline.runner import run_pipeline
    from release.publish import init_repository
    from release.version import parse_tag

    if until not in STAGES:
        raise BadInput(
            f"unknown stage {until!r} for the demo product",
            fix=f"choose one of: {', '.join(STAGES)} (base is a stage of --product DIRAC)",
        )
    wanted = parse_tag(tag, where="--tag")
    if wanted.version.is_prerelease or wanted.version < parse_tag(DEMO_TAG).version:
        raise BadInput(
            f"--tag {tag}: the demo releases {DEMO_TAG} or a later final version",
            fix=f"e.g. --tag v1.0.1 (a new release of the demo product after {DEMO_TAG})",
        )
    tag = wanted.tag
    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "release.toml"
    config_path.write_text(demo_config_text(images=True), encoding="utf-8")
    stages: list[dict[str, Any]] = []

    started = time.monotonic()
    prepare_repository(workdir / REPO_NAME)
    if tag != DEMO_TAG:
        add_release(workdir / REPO_NAME, tag)
    info = gitinfo.read_tag(workdir / REPO_NAME, tag)
    channels = ", ".join(str(channel) for channel in info.version.channels)
    stages.append(
        {
            "stage": "version",
            "result": f"{info.tag} at {info.commit[:12]} ({channels})",
            "seconds": time.monotonic() - started,
        }
    )
    result: dict[str, Any] = {"workdir": str(workdir), "tag": info.as_dict(), "stages": stages}
    problem, last = None, "version"
    if until != "version":
        config = load_config(config_path)
        init_repository(config, None)
        ctx = Context(config, "vodemo", info.version, live=not as_json, note=_say(as_json))
        last = until if until in ("build", "publish") else "publish"
        if until not in ("build", "publish"):
            problem = _images_ready(as_json)
            last = "publish" if problem else "image"
        run = run_pipeline(ctx, first="build", last=last)
        stages += _rows(run.as_dict())
        result["pipeline"] = run.as_dict()
        if run.error is not None:
            _show(result, as_json)
            run.error.result_printed = as_json  # type: ignore[attr-defined]
            raise run.error
    if until in ("image", *LAB_STAGES):
        problem = problem or (_lab_ready(as_json) if until in LAB_STAGES else None)
        if problem:
            asked = list(STAGES[STAGES.index(last) + 1 : STAGES.index(until) + 1])
            for stage in asked:
                stages.append({"stage": stage, "result": f"NOT RUN: {problem}", "seconds": 0.0})
            result["not_run"] = {"stages": asked, "why": problem}
        elif until in LAB_STAGES:
            result.update(_lab_stages(workdir, until, as_json, stages, tag))
    _show(result, as_json)
    if problem:
        # Stages nobody asked to skip did not run: that is not a successful demo.
        from release.errors import InfrastructureError

        error = InfrastructureError(
            f"the demo stopped after {last}: {', '.join(result['not_run']['stages'])} "
            f"did not run: {problem}",
            fix="run it as root on a Debian-like machine (it installs the missing packages "
            "itself), or ask for less: dirac-release demo --until publish",
        )
        error.result_printed = as_json  # type: ignore[attr-defined]
        raise error
    return 0


def run_product_demo(*, workdir: Path, until: str, as_json: bool) -> int:
    """The demo on real DIRAC (release.demo.dirac), shown like the demo product's."""
    from release.demo.dirac import run_dirac_demo

    result = run_dirac_demo(
        workdir=workdir, until=until, as_json=as_json, say=_say(as_json), rows=_rows
    )
    error = result.pop("error", None)
    _show(result, as_json)
    if error is not None:
        error.result_printed = as_json
        raise error
    return 0


def _write_junit(config_path: Path, path: Path, tag: str) -> None:
    """The certification's checks as JUnit, from the ledger (CI systems show these)."""
    from release.certify.report import write_junit
    from release.config import load_config

    config = load_config(config_path)
    records = config.ledger("vodemo", tag).records("certify")
    record = next((r for r in reversed(records) if r.get("environment") == "certification"), None)
    if record is not None:
        write_junit(record, path)


def _say(as_json: bool) -> Any:
    def say(text: str) -> None:
        if not as_json:
            print(text, file=sys.stderr, flush=True)

    return say


def _rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's table rows for the stages a pipeline run was asked to do."""
    return [
        {
            "stage": stage["stage"],
            "result": (
                f"{stage['summary']} (done before, verified)"
                if stage["status"] == "verified"
                else f"{stage['status'].upper()}: {stage['summary']}"
                if stage["status"] in ("failed", "not run")
                else stage["summary"]
            ),
            "seconds": stage["seconds"],
        }
        for stage in run["stages"]
        if stage["status"] != "skipped"
    ]


def _show(result: dict[str, Any], as_json: bool) -> None:
    from release.output import print_json, table

    result["outputs"] = _outputs(Path(result["workdir"]))
    if as_json:
        print_json(result)
        return
    table(
        "dirac-release demo",
        ["stage", "result", "seconds"],
        [[s["stage"], s["result"], f"{s['seconds']:.1f}"] for s in result["stages"]],
    )
    print("outputs:", file=sys.stderr)
    for what, where in result["outputs"].items():
        print(f"  {what:<14} {where}", file=sys.stderr)


def _images_ready(as_json: bool) -> str | None:
    """None when the VO image can be built and checked here; makes the Debian bases it
    starts from once (root: debootstrap, both architectures), as the lab makes its rootfs."""
    import os

    from release.base.debian import cached_path, make_debian_base
    from release.errors import ReleaseError
    from release.image.check import runner_problem

    missing = _image_packages_missing()
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        # As the lab does for its own tools: the README's one command sets up what it can.
        from release.lab import LabError, install_lab_packages

        _say(as_json)(f"the VO image needs {' '.join(missing)}: installing with apt-get "
                      "(root, Debian-like)")  # fmt: skip
        try:
            install_lab_packages(missing, echo=not as_json)
        except LabError as exc:
            return f"the VO image needs {' '.join(missing)} (installing them failed: {exc})"
    for arch in ("x86_64", "aarch64"):
        problem = runner_problem(arch)
        if problem:
            return f"the {arch} image cannot be run here: {problem}"
    for arch in ("x86_64", "aarch64"):
        path = cached_path(arch)
        if (path / ".dirac-release-base").is_file():
            continue
        if os.geteuid() != 0:
            return f"the Debian {arch} base for the VO image is not made yet ({path}; debootstrap needs root)"
        _say(as_json)(f"image: making the Debian bookworm {arch} base once, in {path} "
                      "(debootstrap" + (", arm64 unpacked without emulation" if arch == "aarch64"
                                        else "") + "; a few minutes) ...")  # fmt: skip
        try:
            make_debian_base(path, arch=arch)
        except (ReleaseError, OSError, subprocess.SubprocessError) as exc:
            return f"making the Debian {arch} base failed: {exc}"
    return None


def _image_packages_missing() -> list[str]:
    """The Debian packages the VO image's bases and run check need and this machine lacks:
    qemu-user-static runs the aarch64 image, debootstrap makes the bases."""
    from release.image.check import runner_problem

    missing = []
    if any("qemu-user" in (runner_problem(arch) or "") for arch in ("x86_64", "aarch64")):
        missing.append("qemu-user-static")
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        missing.append("debootstrap")
    return missing


def _lab_ready(as_json: bool) -> str | None:
    """None when lab hosts can run; installs their missing Debian packages when it can."""
    import os

    from release.lab import (
        LabError,
        install_lab_packages,
        lab_hosts_problem,
        missing_lab_packages,
    )

    problem = lab_hosts_problem()
    missing = missing_lab_packages()
    if problem and missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(
            f"lab hosts need {' '.join(missing)}: installing with apt-get (root, Debian-like)",
            file=sys.stderr,
            flush=True,
        )
        try:
            install_lab_packages(missing, echo=not as_json)
        except LabError as exc:
            return f"{problem} (installing them failed: {exc})"
        lab_hosts_problem.cache_clear()
        problem = lab_hosts_problem()
    return problem


def _outputs(workdir: Path) -> dict[str, str]:
    """Where a person finds what the demo made (only what exists)."""
    from release.demo import dirac

    places = {
        "work folder": workdir,
        "configuration": workdir / "release.toml",
        "bundles": workdir / "dist",
        "VO images": workdir / "dist" / "images",
        "stratum": workdir / "stratum" / REPOSITORY,
        "DIRAC stratum": workdir / "stratum" / dirac.REPOSITORY,
        "base record": workdir / "bases",
        "ledgers": workdir / "state",
        "rendered": workdir / "rendered",
        "certification": workdir / "certification.junit.xml",
        "lab disks": workdir / "lab",
    }
    if places["base record"].is_dir():
        from release.base.debian import cached_path

        places["base trees"] = cached_path("x86_64").parent
    return {what: str(path) for what, path in places.items() if path.exists()}
