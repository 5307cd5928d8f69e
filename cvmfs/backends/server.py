"""cvmfs_server on a stratum-0 or publisher node, run locally or over SSH.

We sync into `/cvmfs/<repo>` inside a transaction rather than streaming a tarball to
`cvmfs_server ingest`, because (1) both platforms land in one transaction, one revision and
one named tag, (2) the staged tree can be verified before anything is published, and a
failed check aborts (ingest has no abort: it publishes), and (3) `.cvmfscatalog` and link
switches go into the same revision (ingest ignores `.cvmfsdirtab` and cannot move links).
The tree travels as a tar stream (`tar --hard-dereference`: CVMFS has no hardlinks across
directories) over the same SSH connection that runs the commands.

Where the node is and how to reach it arrive as plain values (`ServerNode`): the caller
decides them from its configuration and environment (the toolkit's `release.targets`), so the
publisher reads no settings of its own. Messages name the host; the key is only handed to ssh
by path, never read, logged or printed.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cvmfs import bundle_contract as contract
from cvmfs.backends.base import OpenTransaction, Owner, RepoStatus, Tag, check_clearable
from cvmfs.errors import BadInput, InfrastructureError
from cvmfs.tree_check import check_tree

TIMEOUT_S = 3600
POLL_S = 1.0


class Runner:
    """Run shell commands on the publisher node: here, or there over SSH."""

    def __init__(
        self, host: str | None, user: str | None, key: Path | None, options: tuple[str, ...]
    ) -> None:
        self.host = host
        self.user = user
        self.key = key
        self.options = options

    @property
    def where(self) -> str:
        return self.host or "this node"

    def argv(self, command: str) -> list[str]:
        if self.host is None:
            return ["sh", "-c", command]
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPersist=no",
               "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]  # fmt: skip
        if self.key is not None:
            ssh += ["-i", str(self.key), "-o", "IdentitiesOnly=yes"]
        ssh += list(self.options)
        target = f"{self.user}@{self.host}" if self.user else self.host
        return [*ssh, target, "--", command]

    def run(
        self, command: str, *, stdin: Any = None, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                self.argv(command), stdin=stdin, input=input_text, capture_output=True, text=True,
                timeout=TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"a command on {self.where} did not finish in {TIMEOUT_S}s"
            ) from None
        if self.host is not None and proc.returncode == 255:
            raise InfrastructureError(
                f"cannot reach the publisher node {self.where} over SSH",
                fix="check the host, the key (DIRAC_RELEASE_CVMFS_SSH_KEY) and that sshd accepts it",
            )
        return proc


def _q(path: str) -> str:
    return shlex.quote(path)


@dataclass(frozen=True)
class ServerNode:
    """The publisher node and its cvmfs_server layout, as final values.

    `host` None runs cvmfs_server on this node; otherwise over SSH as `user` with the key at
    `ssh_key` (a path, never read here) and any extra `ssh_options`. The roots are where
    cvmfs_server keeps the repository's mount, stratum files and spool on that node.
    """

    host: str | None = None
    user: str | None = None
    ssh_key: Path | None = None
    ssh_options: tuple[str, ...] = ()
    cvmfs_server: str = "cvmfs_server"
    mount_root: str = "/cvmfs"
    stratum_root: str = "/srv/cvmfs"
    spool_root: str = "/var/spool/cvmfs"


class ServerBackend:
    kind = "server"

    def __init__(self, repository: str, node: ServerNode) -> None:
        self.repository = repository
        self.runner = Runner(node.host, node.user, node.ssh_key, node.ssh_options)
        self.cvmfs_server = node.cvmfs_server
        self.mount = f"{node.mount_root.rstrip('/')}/{repository}"
        self.whitelist = f"{node.stratum_root.rstrip('/')}/{repository}/.cvmfswhitelist"
        self.owner_file = (
            f"{node.spool_root.rstrip('/')}/{repository}/dirac-release-transaction.json"
        )
        self.notes: list[str] = []

    # -- helpers ------------------------------------------------------------------------------

    def _server(self, args: str) -> subprocess.CompletedProcess[str]:
        return self.runner.run(f"{_q(self.cvmfs_server)} {args}")

    def _fail(self, what: str, proc: subprocess.CompletedProcess[str]) -> InfrastructureError:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return InfrastructureError(
            f"cvmfs_server {what} failed on {self.runner.where} (exit {proc.returncode})",
            fix="\n".join(detail) or None,
        )

    def _read_json(self, path: str) -> dict[str, Any] | None:
        """A JSON file on the node, or None when it is missing or not JSON."""
        proc = self.runner.run(f"cat {_q(path)} 2>/dev/null")
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _owner(self) -> dict[str, Any] | None:
        return self._read_json(self.owner_file)

    def _stale(self, owner: dict[str, Any]) -> bool:
        if owner["host"] != socket.gethostname():
            return False
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    # -- the interface ------------------------------------------------------------------------

    def status(self) -> RepoStatus:
        proc = self._server("list")
        if proc.returncode != 0:
            raise self._fail("list", proc)
        line = next(
            (ln for ln in proc.stdout.splitlines() if ln.split(" ")[0] == self.repository), None
        )
        if line is None:
            return RepoStatus(self.repository, exists=False)
        status = RepoStatus(self.repository, exists=True)
        tags = self.tags()
        status.revision = max((tag.revision for tag in tags), default=0)
        if "in transaction" in line:
            owner = self._owner()
            if owner is None:
                status.transactions.append(OpenTransaction(lease="", owner=None, stale=False,
                                                           detail="not opened by dirac-release"))  # fmt: skip
            else:
                status.transactions.append(
                    OpenTransaction(
                        lease=owner["lease"],
                        owner=Owner(**owner["owner"]),
                        stale=self._stale(owner["owner"]),
                    )
                )
        whitelist = self.runner.run(f"cat {_q(self.whitelist)} 2>/dev/null")
        for entry in whitelist.stdout.splitlines():
            if len(entry) == 15 and entry.startswith("E") and entry[1:].isdigit():
                status.whitelist_expires = datetime.strptime(entry[1:], "%Y%m%d%H%M%S").replace(
                    tzinfo=UTC
                )
        return status

    def tags(self) -> list[Tag]:
        proc = self._server(f"tag -l -x {_q(self.repository)}")
        if proc.returncode != 0:
            raise self._fail("tag -l -x", proc)
        tags = []
        for line in proc.stdout.splitlines():
            parts = line.split(" ", 6)
            if len(parts) < 6:
                continue
            description = parts[6] if len(parts) > 6 else ""
            digest = (
                description.rsplit("manifests sha256 ", 1)[1].split()[0]
                if "manifests sha256 " in description
                else ""
            )
            tags.append(Tag(name=parts[0], revision=int(parts[3]), timestamp=int(parts[4]), digest=digest,
                            description=description))  # fmt: skip
        return tags

    def read_manifest(self, rel: str) -> dict[str, Any] | None:
        return self._read_json(f"{self.mount}/{rel}/{contract.MANIFEST_REL}")

    def manifest_digest(self, rel: str) -> str | None:
        proc = self.runner.run(f"sha256sum < {_q(f'{self.mount}/{rel}/{contract.MANIFEST_REL}')}")
        digest = proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout.strip() else ""
        return digest if len(digest) == 64 else None

    def listing(self, path: str) -> dict[str, dict[str, Any]] | None:
        """path -> manifest-shaped entry, computed on the node (sha256sum, find)."""
        quoted = _q(path)
        script = (
            f"cd {quoted} || exit 3; "
            "find . -type f ! -name .cvmfscatalog -printf 'F\\t%P\\t%s\\t%m\\n'; "
            "find . -type l -printf 'L\\t%P\\t%l\\n'; "
            "find . -type f ! -name .cvmfscatalog -print0 | xargs -0 -r sha256sum | sed 's/^/S\\t/'"
        )
        proc = self.runner.run(script)
        if proc.returncode == 3:
            return None
        if proc.returncode != 0:
            raise InfrastructureError(
                f"cannot list {path} on {self.runner.where}", fix=proc.stderr.strip()
            )
        entries: dict[str, dict[str, Any]] = {}
        for line in proc.stdout.splitlines():
            kind, _, rest = line.partition("\t")
            if kind == "F":
                rel, size, mode = rest.split("\t")
                entries[rel] = {
                    "path": rel,
                    "size": int(size),
                    "mode": f"{contract.normal_mode(int(mode, 8)):o}",
                }
            elif kind == "L":
                rel, target = rest.split("\t")
                entries[rel] = {"path": rel, "link": target}
            elif kind == "S":
                digest, _, rel = rest.partition("  ")
                entries[rel.removeprefix("./")]["sha256"] = digest
        return entries

    def compare(self, path: str, manifest: dict[str, Any]) -> list[str]:
        found = self.listing(path)
        if found is None:
            return [f"{path} does not exist on {self.runner.where}"]
        found.pop(contract.MANIFEST_REL, None)
        listed = {entry["path"]: entry for entry in manifest["files"]}
        problems = [f"{p}: missing" for p in sorted(set(listed) - set(found))]
        problems += [f"{p}: not in the manifest" for p in sorted(set(found) - set(listed))]
        problems += [
            f"{p}: differs from the manifest"
            for p in sorted(set(found) & set(listed))
            if found[p] != listed[p]
        ]
        return problems

    def verify_published(
        self, rel: str, manifest: dict[str, Any], *, shallow: bool = False
    ) -> list[str]:
        if shallow:
            # CVMFS storage is content-addressed and its catalogs signed: a published file
            # cannot change outside a transaction. A fast look is that the tree is there.
            parent, _, name = rel.rpartition("/")
            return [] if name in self.entries(parent) else [f"/{rel} is not published"]
        check = self._server(f"check -s {_q(rel)} {_q(self.repository)}")
        problems = (
            []
            if check.returncode == 0
            else [f"cvmfs_server check: {(check.stdout + check.stderr).strip()}"]
        )
        return problems + self.compare(f"{self.mount}/{rel}", manifest)

    def entries(self, rel_dir: str) -> dict[str, str | None]:
        proc = self.runner.run(
            f"find {_q(f'{self.mount}/{rel_dir}')} -mindepth 1 -maxdepth 1 ! -name '.*' -printf '%f\\t%y\\t%l\\n' 2>/dev/null"
        )
        found: dict[str, str | None] = {}
        for line in proc.stdout.splitlines():
            name, kind, target = line.split("\t")
            found[name] = target if kind == "l" else None
        return dict(sorted(found.items()))

    def clear_stale(self, publication: str | None = None) -> list[str]:
        owner = self._owner()
        if owner is None:
            return []
        held = OpenTransaction(
            lease=owner["lease"], owner=Owner(**owner["owner"]), stale=self._stale(owner["owner"])
        )
        check_clearable(self.repository, held, publication)
        proc = self._server(f"abort -f {_q(self.repository)}")
        if proc.returncode != 0 and "not in a transaction" not in (proc.stdout + proc.stderr):
            raise self._fail("abort", proc)
        self.runner.run(f"rm -f {_q(self.owner_file)}")
        note = f"aborted the stale transaction of {held.describe()}"
        self.notes.append(note)
        return [note]

    def _create_lease_path(self, lease: str) -> None:
        """ENOENT: the lease path does not exist yet. Create it in a root-level transaction."""
        opened = self._server(f"transaction {_q(self.repository)}")
        if opened.returncode != 0:
            raise self._fail("transaction (to create the lease path)", opened)
        made = self.runner.run(f"mkdir -p {_q(f'{self.mount}/{lease}')}")
        published = (
            self._server(f"publish -m {_q(f'create /{lease}')} {_q(self.repository)}")
            if made.returncode == 0
            else made
        )
        if published.returncode != 0:
            self._server(f"abort -f {_q(self.repository)}")
            raise self._fail("publish (creating the lease path)", published)
        self.notes.append(f"created /{lease} in its own revision (the lease path did not exist)")

    def open(self, lease: str, owner: Owner, wait_s: float) -> ServerTransaction:
        if not self.status().exists:
            raise BadInput(
                f"repository {self.repository} does not exist on {self.runner.where}",
                fix="create it on the stratum 0 (cvmfs_server mkfs) or fix the repository name",
            )
        deadline = time.monotonic() + wait_s
        created = False
        while True:
            held = self._owner()
            if held is not None and self._stale(held["owner"]):
                self.clear_stale(owner.publication)
                continue
            # cvmfs_server's -t 0 means "retry forever": only ever pass a positive bound.
            remaining = int(deadline - time.monotonic())
            retry = f"-t {remaining} " if remaining >= 1 else ""
            proc = self._server(f"transaction {retry}{_q(f'{self.repository}/{lease}')}")
            if proc.returncode == 0:
                record = {"owner": owner.as_dict(), "lease": lease}
                self.runner.run(
                    f"mkdir -p {_q(os.path.dirname(self.owner_file))} && cat > {_q(self.owner_file)}",
                    input_text=json.dumps(record),
                )
                return ServerTransaction(self, lease)
            if proc.returncode == errno.ENOENT and not created:
                self._create_lease_path(lease)
                created = True
                continue
            if proc.returncode == 1 and "does not exist" in proc.stdout + proc.stderr:
                raise BadInput(
                    f"cvmfs_server on {self.runner.where} has no repository {self.repository}",
                    fix="check the repository name in release.toml (cvmfs_server list shows what exists)",
                )
            if proc.returncode == errno.EINVAL:
                raise BadInput(
                    f"cvmfs_server does not know repository {self.repository}",
                    fix=proc.stderr.strip(),
                )
            if proc.returncode in (errno.EEXIST, errno.EBUSY) and time.monotonic() < deadline:
                time.sleep(POLL_S)
                continue
            if proc.returncode in (errno.EEXIST, errno.EBUSY):
                who = self._owner()
                desc = (
                    OpenTransaction(
                        lease=who["lease"], owner=Owner(**who["owner"]), stale=False
                    ).describe()
                    if who
                    else "a transaction not opened by dirac-release"
                )
                raise InfrastructureError(
                    f"{self.repository} is busy on {self.runner.where}: {desc}; waited {wait_s:.0f}s",
                    fix="never abort another publisher's transaction: retry when it has finished, or raise 'wait'",
                )
            raise self._fail("transaction", proc)


class ServerTransaction:
    def __init__(self, backend: ServerBackend, lease: str) -> None:
        self.backend = backend
        self.lease = lease
        self._changes = 0

    def sync_tree(self, rel: str, source: Path, manifest: dict[str, Any]) -> None:
        runner = self.backend.runner
        parent = f"{self.backend.mount}/{rel.rsplit('/', 1)[0]}"
        if source.name != rel.rsplit("/", 1)[1]:
            raise BadInput(f"{source} must be named like its destination {rel}")
        # The same checks as the directory backend's, before a byte leaves this machine.
        problems = check_tree(source, manifest, str(manifest["platform"]))
        if problems:
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise BadInput(
                f"the bundle {source} does not match its manifest: {shown}{more}",
                fix="nothing was published; rebuild the bundle and never edit it by hand",
            )
        packer = subprocess.Popen(
            [
                "tar",
                "--hard-dereference",
                "--owner=0",
                "--group=0",
                "-C",
                str(source.parent),
                "-cf",
                "-",
                source.name,
            ],
            stdout=subprocess.PIPE,
        )
        try:
            proc = runner.run(
                f"mkdir -p {_q(parent)} && tar --no-same-owner -C {_q(parent)} -xf -",
                stdin=packer.stdout,
            )
        finally:
            if packer.stdout is not None:
                packer.stdout.close()
            packer.wait(timeout=TIMEOUT_S)
        if proc.returncode != 0 or packer.returncode != 0:
            raise InfrastructureError(
                f"copying {source.name} to {runner.where} failed", fix=proc.stderr.strip() or None
            )
        self._changes += 1

    def mark_catalog(self, rel: str) -> None:
        self.backend.runner.run(f"touch {_q(f'{self.backend.mount}/{rel}/.cvmfscatalog')}")

    def set_link(self, rel_dir: str, name: str, target: str) -> None:
        if self.backend.entries(rel_dir).get(name) == target:
            return
        folder = f"{self.backend.mount}/{rel_dir}"
        tmp = f"{folder}/.{name}.dirac-release"
        proc = self.backend.runner.run(
            f"mkdir -p {_q(folder)} && ln -sfn {_q(target)} {_q(tmp)} && mv -T {_q(tmp)} {_q(f'{folder}/{name}')}"
        )
        if proc.returncode != 0:
            raise InfrastructureError(
                f"cannot move the link {name} on {self.backend.runner.where}",
                fix=proc.stderr.strip(),
            )
        self._changes += 1

    def remove(self, rel: str) -> None:
        proc = self.backend.runner.run(f"rm -rf {_q(f'{self.backend.mount}/{rel}')}")
        if proc.returncode != 0:
            raise InfrastructureError(f"cannot remove /{rel}", fix=proc.stderr.strip())
        self._changes += 1

    def verify_staged(self, rel: str, manifest: dict[str, Any]) -> list[str]:
        return self.backend.compare(f"{self.backend.mount}/{rel}", manifest)

    def changes(self) -> int:
        return self._changes

    def publish(self, tag: str | None, message: str, digest: str) -> int:
        named = f"-a {_q(tag)} " if tag is not None else ""
        proc = self.backend._server(
            f"publish {named}-m {_q(message)} {_q(self.backend.repository)}"
        )
        if proc.returncode != 0:
            if "already in use" in proc.stdout + proc.stderr:
                raise BadInput(f"tag {tag} is already used in {self.backend.repository}")
            raise self.backend._fail("publish", proc)
        self.backend.runner.run(f"rm -f {_q(self.backend.owner_file)}")
        return next((t.revision for t in self.backend.tags() if t.name == (tag or "trunk")), 0)

    def abort(self) -> None:
        proc = self.backend._server(f"abort -f {_q(self.backend.repository)}")
        self.backend.runner.run(f"rm -f {_q(self.backend.owner_file)}")
        if proc.returncode != 0 and "not in a transaction" not in proc.stdout + proc.stderr:
            raise self.backend._fail("abort", proc)
