"""The demo's fixture: its product repository, its configuration and its secrets.

The product's source ships inside this package. It is committed into a fresh repository with a
fixed date, so every run makes the same commit, resolves the same lock (the index as it was at
that date) and hits the cache the second time. The pipeline run on it is `release.demo`; tests
and benchmarks import this module for an A and a B to release, the configuration to write
beside them, and the secrets the hosts get.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

DEMO_TAG = "v1.0.0"
DEMO_DATE = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
REPO_NAME = "product-repo"
CERTIFICATION_HOSTS = ("cctbdirac01", "cctbdirac02")
PRODUCTION_HOSTS = ("diracprod01",)
REPOSITORY = "vodemo.egi.eu"
#: The demo's folder in its repository: `<project>dirac`, where DIRAC's Pilot looks (VODemo).
CVMFS_PREFIX = "vodemodirac"
_IDENTITY = {"name": "VODemo Release Manager", "email": "release@vodemo.example.org"}


def _product_files() -> dict[str, bytes]:
    """The demo product's files, from the installed package or the checkout alike."""
    root = resources.files("release") / "resources" / "demo" / "product"
    files: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            else:
                files[rel] = child.read_bytes()

    walk(root, "")
    return files


def demo_config_text(
    *,
    hosts: Mapping[str, Mapping[str, str]] | None = None,
    ssh_key: Path | None = None,
    platforms: Sequence[str] | None = None,
    source: str | None = None,
    images: bool = False,
) -> str:
    """The demo's release.toml, with its comments, edited as a TOML document (never as text).

    `hosts`: environment -> host name -> address (running lab hosts), `ssh_key` the key that
    reaches them; `platforms` keeps only those platforms; `source` is the product's git
    repository (default: `product-repo` beside the file). `images` keeps the VO's container
    image (it needs the Debian bases, made as root): the demo has it, tests of other stages
    leave it out.
    """
    import tomlkit

    text = (resources.files("release") / "resources" / "demo" / "release.toml").read_text(
        encoding="utf-8"
    )
    document = tomlkit.parse(text)
    if source is not None:
        document["products"]["vodemo"]["source"]["git"] = source
        # The demo's Pilot stand-in lives in the product repository too (the VO's module is
        # read from it at the release's tag: `modules = { release = ... }`).
        document["pilots"]["vodemo"]["pilot"]["git"] = source
    if not images:
        del document["images"]
    if platforms is not None:
        unknown = set(platforms) - set(document["platforms"])
        if unknown:
            raise ValueError(f"the demo has no platform {sorted(unknown)}")
        for name in list(document["platforms"]):
            if name not in platforms:
                del document["platforms"][name]
    for env_name, addresses in (hosts or {}).items():
        env = document["environments"][env_name]
        listed = tomlkit.inline_table()
        listed.update(dict(addresses))
        env["hosts"] = listed
        if ssh_key is not None:
            env["ssh_key"] = str(ssh_key)
    return tomlkit.dumps(document)


def prepare_repository(repo_dir: Path) -> str:
    """Create (or reuse, when identical) the demo repository and its tag; returns the commit."""
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import without a git executable
        from release.errors import InfrastructureError

        raise InfrastructureError(
            f"cannot use git: {exc}", fix="install git (apt-get install git)"
        ) from None

    files = _product_files()
    if (repo_dir / ".git").is_dir():
        try:
            repo = git.Repo(repo_dir)
            commit = repo.tags[DEMO_TAG].commit
            same = all(
                (commit.tree / path).data_stream.read() == data for path, data in files.items()
            ) and not repo.is_dirty(untracked_files=True)
            if same:
                return str(commit.hexsha)
        except (IndexError, KeyError, ValueError, git.GitError):
            pass
        shutil.rmtree(repo_dir)
    repo_dir.mkdir(parents=True)
    for rel, data in files.items():
        path = repo_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    repo = git.Repo.init(repo_dir, initial_branch="integration")
    with repo.config_writer() as writer:
        writer.set_value("user", "name", _IDENTITY["name"])
        writer.set_value("user", "email", _IDENTITY["email"])
    repo.index.add(sorted(files))
    actor = git.Actor(_IDENTITY["name"], _IDENTITY["email"])
    commit = repo.index.commit(
        f"VODemoDIRAC {DEMO_TAG}",
        author=actor,
        committer=actor,
        author_date=DEMO_DATE,
        commit_date=DEMO_DATE,
    )
    with repo.git.custom_environment(GIT_COMMITTER_DATE=DEMO_DATE.isoformat()):
        repo.git.tag("-a", DEMO_TAG, "-m", f"VODemoDIRAC {DEMO_TAG}")
    return str(commit.hexsha)


def add_release(repo_dir: Path, tag: str, *, days_after: int = 1) -> str:
    """Commit a new version of the demo product (its pyproject version only) and tag it.

    The date is fixed relative to the demo's, so the new tag resolves the same way each time.
    Tests and the upgrade benchmark use it to have an A and a B to upgrade between.
    """
    import git

    from release.version import parse_tag

    version = str(parse_tag(tag).version)
    repo = git.Repo(repo_dir)
    if tag in repo.tags:
        return str(repo.tags[tag].commit.hexsha)
    pyproject = repo_dir / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    old = next(line for line in text.splitlines() if line.startswith("version = "))
    pyproject.write_text(text.replace(old, f'version = "{version}"'), encoding="utf-8")
    repo.index.add(["pyproject.toml"])
    actor = git.Actor(_IDENTITY["name"], _IDENTITY["email"])
    date = DEMO_DATE + timedelta(days=days_after)
    commit = repo.index.commit(
        f"VODemoDIRAC {tag}", author=actor, committer=actor, author_date=date, commit_date=date
    )
    with repo.git.custom_environment(GIT_COMMITTER_DATE=date.isoformat()):
        repo.git.tag("-a", tag, "-m", f"VODemoDIRAC {tag}")
    return str(commit.hexsha)


def prepare_secrets(workdir: Path) -> Path:
    """The demo's secrets: a legacy-exchange key, and a vault holding it for the hosts.

    Made once (0600 files in a 0700 <workdir>/secrets) and reused; never printed. The plaintext
    of the vault goes to ansible-vault on its standard input and never touches the disk; the
    encrypted file is written beside the vault and renamed over it only once ansible-vault
    succeeded, so a failure leaves the previous vault (or none), never a readable secret.
    Returns the vault password file, which ansible-playbook reads through
    ANSIBLE_VAULT_PASSWORD_FILE.
    """
    import base64
    import json
    import os
    import secrets
    import subprocess

    from release.credentials import read_legacy_key_file, redact, remember
    from release.errors import InfrastructureError

    folder = workdir / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    key_file, password_file, vault = (
        folder / n for n in ("legacy-exchange.key", "vault-password", "secrets.yml")
    )

    def write(path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    if not key_file.is_file():
        write(key_file, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
    if not password_file.is_file():
        write(password_file, secrets.token_urlsafe(32) + "\n")
    remember(password_file.read_text(encoding="utf-8").strip())
    key = read_legacy_key_file(key_file, env_name="-", setting="demo")
    if vault.is_file() and vault.read_text(encoding="utf-8").startswith("$ANSIBLE_VAULT"):
        return password_file
    plain = {"dirac_server_secret_files": [
        {"path": "/opt/dirac/state/secrets/legacy-exchange.key", "content": key.get_secret_value() + "\n"}]}  # fmt: skip
    sealed = folder / f".secrets.yml.{os.getpid()}"
    tool = Path(sys.executable).parent / "ansible-vault"
    try:
        proc = subprocess.run(
            [str(tool) if tool.exists() else "ansible-vault", "encrypt", "--vault-password-file",
             str(password_file), "--output", str(sealed), "-"],
            input=json.dumps(plain), text=True, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not sealed.read_text(encoding="utf-8").startswith(
            "$ANSIBLE_VAULT"
        ):
            why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise InfrastructureError(
                f"ansible-vault could not encrypt the demo secrets: {redact(why)[:300]}",
                where=str(folder),
                fix="check that ansible-core is installed in this environment, then run again",
            )
        os.chmod(sealed, 0o600)
        os.replace(sealed, vault)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfrastructureError(
            f"ansible-vault could not encrypt the demo secrets: {type(exc).__name__}",
            where=str(folder),
            fix="check that ansible-core is installed in this environment, then run again",
        ) from None
    finally:
        sealed.unlink(missing_ok=True)
    return password_file
