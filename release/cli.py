"""The `dirac-release` command: parse, call one stage, map typed errors to exit codes.

Kept thin and fast: only argparse is imported at start; each command imports its stage.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release import __version__
from release.commands import (
    cmd_base,
    cmd_build,
    cmd_certify,
    cmd_config,
    cmd_cvmfs,
    cmd_demo,
    cmd_deploy,
    cmd_github_release,
    cmd_image,
    cmd_k3s,
    cmd_lab,
    cmd_notes,
    cmd_pilot,
    cmd_promote,
    cmd_publish,
    cmd_pypi,
    cmd_render,
    cmd_report,
    cmd_rollback,
    cmd_run,
    cmd_status,
    cmd_sysroot,
    cmd_version,
)
from release.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, ReleaseError
from release.pipeline.stages import STAGE_NAMES as PIPELINE_STAGES

if TYPE_CHECKING:
    pass

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dirac-release",
        description="Build, publish, deploy, certify and promote DIRAC-family releases.",
        epilog="Exit codes: 0 success, 1 a check failed, 2 bad input or configuration, "
        "3 infrastructure failure.",
    )
    parser.add_argument(
        "-V", "--version-info", action="version", version=f"dirac-release {__version__}"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("release.toml"),
        help="release configuration (default: ./release.toml)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show live progress on stderr even with --json (a caller showing it to a person)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, handler: Handler, help_text: str, *, config: bool = True
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=handler.__doc__)
        command.set_defaults(handler=handler)
        # Global options are accepted after the command too: `dirac-release build --json`.
        if config:
            command.add_argument(
                "--config",
                type=Path,
                default=argparse.SUPPRESS,
                help="release configuration (default: ./release.toml)",
            )
        command.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="machine-readable output on stdout",
        )
        command.add_argument(
            "--progress", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return command

    version = add(
        "version",
        cmd_version,
        "check a tag, read a repository's release facts, or compute the next tag",
        config=False,
    )
    version.add_argument("--repo", type=Path, help="a git repository to read tags from")
    group = version.add_mutually_exclusive_group()
    group.add_argument("--tag", help="the tag to check or read, e.g. v9.0.0a29")
    group.add_argument(
        "--next", action="store_true", help="the tag that follows the latest release tag"
    )
    version.add_argument(
        "--branch", help="apply the branch rules of this branch (integration, rel-vXrY)"
    )
    version.add_argument(
        "--github-output",
        action="store_true",
        help="also write tag, version, prerelease, final and previous_tag to $GITHUB_OUTPUT",
    )

    build = add("build", cmd_build, "build the release bundles for x86_64 and aarch64")
    build.add_argument(
        "--version", required=True, help="the version or tag to build, e.g. v9.0.0a29"
    )
    build.add_argument("--product", help="which product of release.toml (default: the only one)")
    build.add_argument("--platform", default="all", help="x86_64, aarch64 or all (default)")
    build.add_argument(
        "--out", type=Path, help="output folder (default: build.out of release.toml)"
    )
    build.add_argument(
        "--allow-dirty",
        action="store_true",
        help="build even if the product's work tree has uncommitted changes",
    )
    build.add_argument("--refresh", action="store_true", help="ignore cached locks and bundles")

    base = add("base", cmd_base, "record, make or publish a pinned base environment")
    base.add_argument("action", choices=["inspect", "show", "debian", "publish"],
                      help="inspect: read the base and write its record; show: read the record; "
                      "debian: make each platform's base from Debian bookworm's packages "
                      "(python3.11, gfal2, M2Crypto, MySQL client; root, debootstrap) at its "
                      "path, then inspect it; publish: put it (and its installers) on CVMFS "
                      "under <prefix>/diracos/<version>/ in one verified transaction")  # fmt: skip
    base.add_argument("name", nargs="?", help="which [bases.NAME] (default: the only one)")
    base.add_argument("--platform", default="all", help="x86_64, aarch64 or all (default)")
    base.add_argument("--repository", help="publish: the repository (default: that of the "
                      "products built on the base)")  # fmt: skip
    base.add_argument(
        "--plan",
        action="store_true",
        help="publish: check everything and show the actions, change nothing",
    )

    publish = add(
        "publish", cmd_publish, "publish a version's bundles to CVMFS (one transaction, verified)"
    )
    publish.add_argument(
        "--version", required=True, help="the version or tag to publish, e.g. v9.0.0a29"
    )
    publish.add_argument("--product", help="which product of release.toml (default: the only one)")
    publish.add_argument(
        "--repository", help="which CVMFS repository (default: the product's or the only one)"
    )
    publish.add_argument(
        "--out", type=Path, help="where the bundles were built (default: build.out)"
    )
    publish.add_argument("--plan", action="store_true", help="print every action, change nothing")

    render = add(
        "render",
        cmd_render,
        "write an environment's Ansible inventory and variables (and k3s manifests, and its VO "
        "images' ContainerRoot) for a version",
    )
    render.add_argument(
        "--env", required=True, help="environment of release.toml, e.g. certification"
    )
    render.add_argument("--version", required=True, help="the version to pin")
    render.add_argument("--out", type=Path, help="output folder (default: ./rendered)")
    render.add_argument("--diff", action="store_true",
                        help="also show what changed against the previous render of the environment")  # fmt: skip
    render.add_argument("--full", action="store_true",
                        help="k3s: also run helm template on the local chart and validate its objects")  # fmt: skip

    deploy = add(
        "deploy",
        cmd_deploy,
        "upgrade an environment's hosts with Ansible (rolling, rollback on failure)",
    )
    deploy.add_argument("--env", required=True, help="environment of release.toml")
    deploy.add_argument("--version", required=True, help="the published version to install")
    deploy.add_argument(
        "--plan", action="store_true", help="Ansible check mode with diffs: change nothing"
    )
    deploy.add_argument(
        "--install",
        action="store_true",
        help="first installation on new hosts (site.yml) instead of a rolling upgrade",
    )

    rollback = add("rollback", cmd_rollback, "roll an environment's hosts back")
    rollback.add_argument("--env", required=True, help="environment of release.toml")
    rollback.add_argument("--to", help="an installed version (default: each host's previous one)")
    rollback.add_argument(
        "--plan", action="store_true", help="Ansible check mode with diffs: change nothing"
    )

    certify = add("certify", cmd_certify, "smoke-test a deployment and record a certification")
    certify.add_argument("--env", required=True, help="environment of release.toml")
    certify.add_argument("--version", required=True, help="the version that should be running")
    certify.add_argument(
        "--url", help="certify this DiracX URL only (e.g. an ingress), not the hosts"
    )
    certify.add_argument("--junit", type=Path, help="also write the checks as JUnit XML here")

    promote = add("promote", cmd_promote, "promote a certified release to production")
    promote.add_argument("--version", required=True, help="a certified final version")
    promote.add_argument("--from", dest="source", default="certification",
                         help="environment that certified it (default: certification)")  # fmt: skip
    promote.add_argument("--to", dest="target", default="production",
                         help="environment to promote to (default: production)")  # fmt: skip
    promote.add_argument("--install", action="store_true",
                         help="first installation on the target hosts (site.yml)")  # fmt: skip
    promote.add_argument("--plan", action="store_true", help="show every step, change nothing")

    cvmfs = add("cvmfs", cmd_cvmfs, "inspect and maintain a CVMFS repository")
    cvmfs.add_argument(
        "action",
        choices=["status", "gc", "init", "abort"],
        help="status: versions, links, tags, open transactions; gc: apply the retention; "
        "init: create a directory repository; abort: clear a stale transaction of a dead process",
    )
    cvmfs.add_argument("--repository", help="which repository (default: the only one)")
    cvmfs.add_argument(
        "--plan", action="store_true", help="gc: list what would be removed, change nothing"
    )
    cvmfs.add_argument(
        "--stale",
        action="store_true",
        help="abort: required; clears only a transaction whose process is gone",
    )

    run = add("run", cmd_run, "release one tag through every stage, resuming where it stopped")
    run.add_argument("--product", help="product of release.toml (default: the only one)")
    run.add_argument("--tag", required=True, help="the release tag, e.g. v9.0.0a29")
    run.add_argument("--from", dest="from_stage", choices=PIPELINE_STAGES,
                     help="start at this stage (the earlier ones are not looked at)")  # fmt: skip
    run.add_argument("--until", choices=PIPELINE_STAGES, help="stop after this stage")
    run.add_argument("--plan", action="store_true", help="say what would run; change nothing")
    run.add_argument("--promote", action="store_true",
                     help="also promote to production (final releases only)")  # fmt: skip
    run.add_argument("--env", default="certification", help="environment to deploy and certify")
    run.add_argument("--to", default="production", help="environment promoted to")
    run.add_argument("--install", action="store_true", help="first install on new hosts")
    run.add_argument("--redo", action="append", choices=PIPELINE_STAGES,
                     help="run this stage again even if it verifies (repeatable)")  # fmt: skip
    run.add_argument("--junit", type=Path, help="also write the certification's checks "
                     "(of --env, as the ledger holds them) as JUnit XML here")  # fmt: skip

    report = add("report", cmd_report, "write a release's report (self-contained HTML, Markdown)")
    report.add_argument("--version", required=True, help="the release, e.g. v9.0.0a29")
    report.add_argument("--product", help="product of release.toml (default: the only one)")
    report.add_argument("--out", type=Path, help="folder for report.html and report.md "
                        "(default: beside the release's ledger)")  # fmt: skip

    status = add("status", cmd_status, "where each release stands, and which version runs where")
    status.add_argument("--product", help="only this product")
    status.add_argument("--version", help="only this release")

    notes = add("notes", cmd_notes, "release notes from the pull requests between two tags",
                config=False)  # fmt: skip
    notes.add_argument("action", nargs="?", choices=["check"],
                       help="check: exit 1 when pull request --pr has no valid notes block")  # fmt: skip
    notes.add_argument("--repo", type=Path, default=Path("."),
                       help="the product's git clone (default: the current folder)")  # fmt: skip
    notes.add_argument("--from", dest="start", help="the previous release's tag")
    notes.add_argument("--to", dest="end", help="this release's tag")
    notes.add_argument("--format", choices=["dirac", "markdown"], default="dirac",
                       help="dirac: DIRAC's release.notes (default); markdown: for a GitHub "
                       "release")  # fmt: skip
    notes.add_argument("--github", help="OWNER/NAME on GitHub (default: from the 'origin' remote)")
    notes.add_argument("--pr", type=int, help="check: the pull request's number")
    notes.add_argument("--output", type=Path, help="write the notes here instead of stdout")

    ghr = add("github-release", cmd_github_release,
              "create or update a version's GitHub release with its files, then publish it")  # fmt: skip
    ghr.add_argument("--version", required=True, help="the version, e.g. v9.0.0a29")
    ghr.add_argument("--product", help="the product (default: the only one)")
    ghr.add_argument("--github", help="OWNER/NAME (default: the product's git source on GitHub)")
    ghr.add_argument("--notes", type=Path, help="the release's notes (Markdown), e.g. from "
                     "dirac-release notes --format markdown --output FILE")  # fmt: skip
    ghr.add_argument("--plan", action="store_true", help="make and list the assets, change nothing")

    pypi = add("pypi", cmd_pypi, "make and check the product's wheel and sdist for PyPI "
               "(the wheel in the bundles, an sdist of the same commit)")  # fmt: skip
    pypi.add_argument("--version", required=True, help="the version, e.g. v9.0.0a29")
    pypi.add_argument("--product", help="the product (default: the only one)")

    demo = add("demo", cmd_demo, "run the pipeline on the embedded demo product", config=False)
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("dirac-release-demo"),
        help="where the demo keeps its repository and outputs (default: ./dirac-release-demo)",
    )
    demo.add_argument(
        "--product",
        choices=["vodemo", "DIRAC"],
        default="vodemo",
        help="vodemo (default): the embedded VO extension through every stage; DIRAC: real "
        "DIRAC 8.0.55[server] from the package index on a Debian base made here (root), "
        "base, build, publish and a run from CVMFS",
    )
    demo.add_argument(
        "--until",
        choices=["version", "base", "build", "publish", "image", "deploy", "certify", "promote"],
        default=None,
        help="stop after this stage (default: promote for vodemo, publish for DIRAC; image "
        "and later need root: the Debian bases of the VO image, lab hosts)",
    )
    demo.add_argument(
        "--tag",
        default=None,
        help="release this version of the demo product (default v1.0.0; a later one is "
        "committed and tagged first, e.g. v1.0.1 to upgrade the hosts)",
    )

    pilot = add("pilot", cmd_pilot, "build a VO's pilot folder (pilot.tar, pilot.json, "
                "checksums.sha512) for a release, or upload it by HTTPS PUT")  # fmt: skip
    pilot.add_argument("action", choices=["build", "upload"], help="build: fetch the Pilot at "
                       "its pinned commit and the VO's modules, check them, write "
                       "<out>/<vo>/<tag>/; upload: check that folder, PUT its files to the "
                       "VO's [pilots.<vo>] upload locations with the client certificate, "
                       "read them back")  # fmt: skip
    pilot.add_argument("--vo", help="the VO of [pilots.<vo>] (default: every VO)")
    pilot.add_argument("--version", required=True, help="the release the pilots install, "
                       "e.g. v9.0.0a29")  # fmt: skip
    pilot.add_argument("--out", type=Path, help="output folder (default: pilots/ in build.out)")
    pilot.add_argument("--plan", action="store_true", help="upload: check the folders and "
                       "certificates, list what would be sent where, contact no server")  # fmt: skip

    image = add("image", cmd_image, "build a VO's container image (x86_64, aarch64) for a "
                "release, or run-check the built trees")  # fmt: skip
    image.add_argument("action", choices=["build", "check", "publish", "container-root"],
                       help="build: an OCI image layout "
                       "per architecture from [images.<vo>], unpacked to the tree "
                       "SingularityCE runs, <out>/<vo>/<tag>/<arch>/; check: run each built "
                       "tree (x86_64 natively, aarch64 under qemu-user) with /cvmfs bound; publish: "
                       "every architecture of each VO's image in one CVMFS transaction per VO, "
                       "at <prefix>/containers/<vo>/<vo>:<tag>/<arch>/ with the .multiarch view; "
                       "container-root: the ContainerRoot a site sets")  # fmt: skip
    image.add_argument("--repository", help="publish, container-root: the repository "
                       "(default: the image's product's)")  # fmt: skip
    image.add_argument("--plan", action="store_true", help="publish: check everything and "
                       "list the actions, change nothing")  # fmt: skip
    image.add_argument("--vo", help="the VO of [images.<vo>] (default: every VO)")
    image.add_argument("--version", required=True, help="the release the image is for, "
                       "e.g. v9.0.0a29")  # fmt: skip
    image.add_argument("--arch", action="append", choices=["x86_64", "aarch64"],
                       help="an architecture (repeatable; default: every one the base has)")  # fmt: skip
    image.add_argument("--out", type=Path, help="output folder (default: images/ in build.out)")
    image.add_argument("--cvmfs", type=Path, help="check: the folder bound at /cvmfs "
                       "(default: an empty one)")  # fmt: skip
    image.add_argument("--source", help="check: a file sourced inside before --command, "
                       "{arch} for the architecture, e.g. /cvmfs/dirac.egi.eu/dirac/v9.0.0/"
                       "Linux-{arch}/diracosrc")  # fmt: skip
    image.add_argument(
        "--command",
        dest="run_command",
        metavar="COMMAND",
        help="check: a command run inside after --source",
    )

    sysroot = add(
        "sysroot",
        cmd_sysroot,
        "prepare an aarch64 root filesystem for emulated smoke tests",
        config=False,
    )
    sysroot.add_argument("--dest", type=Path, required=True, help="where to create it")
    sysroot.add_argument("--arch", default="aarch64", choices=["aarch64"], help="architecture")
    sysroot.add_argument("--python", default="3.11", help="runtime Python version (default 3.11)")

    config_cmd = add("config", cmd_config, "validate release.toml and show what it resolves to")
    config_cmd.add_argument(
        "--product", help="--github-output: the product (default: the only one)"
    )
    config_cmd.add_argument(
        "--github-output",
        action="store_true",
        help="also write product, cvmfs_repository and platforms to $GITHUB_OUTPUT",
    )

    k3s = add("k3s", cmd_k3s, "wait, bounded, for DiracX's rollout on k3s (install Job, "
              "then Deployments)", config=False)  # fmt: skip
    k3s.add_argument("action", choices=["wait"], help="wait: until the HelmChart's install Job "
                     "succeeded and the Deployments are Available; exit 1 with the failing "
                     "object's conditions and Events when one fails or --timeout passes")  # fmt: skip
    k3s.add_argument("--kubeconfig", type=Path, required=True, metavar="PATH",
                     help="the cluster's kubeconfig (the only one read; e.g. a copy of "
                     "/etc/rancher/k3s/k3s.yaml)")  # fmt: skip
    k3s.add_argument("--context", help="the kubeconfig's context (default: its current-context)")
    k3s.add_argument(
        "--namespace", required=True, metavar="NS", help="where DiracX's Deployments run"
    )
    k3s.add_argument("--chart", required=True, help="the HelmChart's name, e.g. diracx")
    k3s.add_argument("--chart-namespace", default="kube-system",
                     help="the HelmChart's namespace (default: kube-system)")  # fmt: skip
    k3s.add_argument("--deployment", action="append", dest="deployments", metavar="NAME",
                     help="a Deployment to wait for (repeatable; default: every Deployment "
                     "labelled app.kubernetes.io/instance=CHART)")  # fmt: skip
    k3s.add_argument("--timeout", type=float, default=600.0, metavar="S",
                     help="seconds for the whole wait (default: 600)")  # fmt: skip

    from release.lab.cli import add_arguments as add_lab_arguments  # argparse only

    lab = add("lab", cmd_lab, "start throwaway SSH lab hosts, check or clean them (root)",
              config=False)  # fmt: skip
    add_lab_arguments(lab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    previous = _terminate_like_interrupt()
    try:
        return int(args.handler(args))
    except ReleaseError as error:
        _report_error(error, args.json)
        return error.exit_code
    except KeyboardInterrupt as stop:
        # Ctrl-C, or SIGTERM (a cancelled CI job, systemd, kill): the same orderly stop, every
        # clean-up on the way out has run (transactions aborted, lab hosts removed).
        terminated = isinstance(stop, Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}: nothing was moved into place",
              file=sys.stderr)  # fmt: skip
        return 143 if terminated else 130
    except OSError as error:
        wrapped = ReleaseError(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
        _report_error(wrapped, args.json)
        return EXIT_INFRASTRUCTURE
    except Exception as error:  # the last line of defence: no raw traceback
        _report_error(_unexpected(error, args.command), args.json)
        return EXIT_INFRASTRUCTURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that the same clean-up as Ctrl-C runs."""


def _terminate_like_interrupt() -> Any:
    """Make SIGTERM unwind like Ctrl-C (main thread only); returns the handler it replaced."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, stop)


def _unexpected(error: Exception, command: str) -> ReleaseError:
    """A bug, said as one: its type and a short, redacted message; the traceback on request.

    A raw traceback can carry anything the failing frame held (a key, a token, a whole file)
    and is not something an admin can act on: it is printed only with DIRAC_RELEASE_DEBUG=1,
    and then redacted too.
    """
    import traceback

    from release.config import overrides
    from release.credentials import redact

    if overrides.get("DEBUG") == "1":
        print(redact("".join(traceback.format_exception(error))), file=sys.stderr)
    text = redact(str(error).splitlines()[0] if str(error) else "")
    if len(text) > 200:
        text = text[:200] + f"... ({len(text)} characters)"
    return ReleaseError(
        f"unexpected {type(error).__name__} in '{command}'" + (f": {text}" if text else ""),
        fix="this is a bug in dirac-release: run again with DIRAC_RELEASE_DEBUG=1 for the "
        "traceback and report it (secrets are redacted from it)",
    )


def _report_error(error: ReleaseError, as_json: bool) -> None:
    from release.credentials import redact

    # A command that already printed its result as JSON (with the per-host or per-check
    # outcome) keeps stdout one JSON document: the error then goes to stderr only.
    if as_json and not getattr(error, "result_printed", False):
        from release.output import print_json

        print_json({k: redact(v) if isinstance(v, str) else v for k, v in error.as_dict().items()})
    print(f"error: {redact(error.render())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
