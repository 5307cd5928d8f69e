"""`dirac-release pilot upload`: a VO's built pilot files PUT to its HTTPS locations, read back.

DIRAC's PilotSyncAgent uploads the pilot files it builds to its `UploadLocations` by HTTPS PUT
with the host certificate; a site whose pilots download from the pilotFileServer rather than
from CVMFS needs the release's files there too. This does the same for the files `pilot build`
wrote, with what the agent leaves out:

- the folder is checked first exactly as the wrapper would (`publishable.read_checked`), for
  every VO asked for, before any byte is sent: a tampered or unbuilt folder is refused (exit 2)
  with nothing uploaded anywhere;
- each file goes to `<location>/<file name>` with its own bytes as the body;
- a file whose bytes the server already serves (GET, same sha512) is not sent again, so a
  rerun is cheap and changes nothing;
- every file is read back afterwards and compared with checksums.sha512: a server that
  stored something else is a failure naming the file, not a silent success;
- connection errors and 5xx answers are retried a bounded number of times with a bounded
  backoff; every request has a timeout; 401/403 and TLS failures stop with the location and
  the fix.

The upload is not atomic: HTTP PUT replaces one file at a time, so while it runs a wrapper
downloading from the location may see some new files with the old checksums.sha512, and stop
with a checksum mismatch (it then fails that one pilot; the next one is fine). To keep that
window as short as the protocol allows, the data files go first and checksums.sha512 last
(see `send_order`). A release's pilots should come from CVMFS, which does publish atomically;
the HTTPS location is the agent's fallback, and this command keeps it in step with the release.

The client key is only ever handed to the TLS library by its path: dirac-release never reads
it, and no message carries more than its path.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from release.errors import BadInput, CheckFailed, ConfigError, InfrastructureError
from release.pilot import archive

if TYPE_CHECKING:
    from release.config import ReleaseConfig

#: Statuses a PUT may answer with when it stored the body (202: what the PilotSyncAgent takes).
PUT_OK = frozenset({200, 201, 202, 204})
#: Tries per request on a connection error or a 5xx answer.
TRIES = 3
#: Seconds to wait before the 2nd and 3rd try (bounded: a dead server costs at most 3 s here).
BACKOFF = (1.0, 2.0)
#: Seconds any one connect, send or read may take.
TIMEOUT = 30.0
#: A GET longer than this is not one of our files (a server streaming forever is cut off).
MAX_BODY = 256 * 1024 * 1024

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Credentials:
    """Where the client certificate, its key and the CA are (paths only, never contents)."""

    cert: Path
    key: Path
    ca: Path | None

    def context(self, vo: str, where: str) -> ssl.SSLContext:
        """A TLS client context that verifies the server and presents the certificate.

        Loading it before anything is sent turns a missing or mismatched certificate into a
        configuration error (exit 2) rather than a failure halfway through an upload.
        """
        for what, path in (("upload_cert", self.cert), ("upload_key", self.key),
                           ("upload_ca", self.ca)):  # fmt: skip
            if path is not None and not path.exists():
                raise ConfigError(f"pilots.{vo}.{what}: {path} does not exist", where=where,
                                  fix="give a path relative to release.toml")  # fmt: skip
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.ca is not None:
            try:
                if self.ca.is_dir():
                    context.load_verify_locations(capath=str(self.ca))
                else:
                    context.load_verify_locations(cafile=str(self.ca))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"pilots.{vo}.upload_ca: {self.ca} holds no usable CA certificate "
                    f"({type(exc).__name__})",
                    where=where,
                    fix="give a PEM file of CA certificates, or a folder of them with hashed "
                    "names (openssl rehash), like /etc/grid-security/certificates",
                ) from exc
        try:
            # The password callback answers an encrypted key with nothing instead of letting
            # OpenSSL prompt on the terminal (a pipeline would hang there).
            context.load_cert_chain(str(self.cert), str(self.key), password=lambda: b"")
        except (ssl.SSLError, OSError) as exc:
            # The library's text names no byte of the key; only its class is shown anyway.
            raise ConfigError(
                f"pilots.{vo}: the client certificate {self.cert} and key {self.key} cannot "
                f"be loaded ({type(exc).__name__})",
                where=where,
                fix="give PEM files of one certificate and its unencrypted private key (the "
                "host certificate the server authorizes, e.g. hostcert.pem and hostkey.pem)",
            ) from exc
        return context


@dataclass
class Target:
    """One VO's checked files and where they go."""

    vo: str
    tag: str
    folder: Path
    files: dict[str, bytes]
    locations: tuple[str, ...]
    credentials: Credentials
    context: ssl.SSLContext


@dataclass
class Upload:
    """What happened at one location: files sent, files already there, files read back."""

    vo: str
    tag: str
    location: str
    sent: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    status: str = "planned"

    def as_dict(self) -> dict[str, Any]:
        return {
            "vo": self.vo,
            "tag": self.tag,
            "location": self.location,
            "status": self.status,
            "sent": self.sent,
            "unchanged": self.unchanged,
            "verified": self.verified,
            "wrong": self.wrong,
        }


def send_order(files: dict[str, bytes]) -> list[str]:
    """The data files by name, then checksums.sha512 last.

    A wrapper downloading meanwhile checks the files it got against the checksums.sha512 it
    got. Sending the checksums last means that, file by file, the location holds new data with
    the old checksums (a mismatch the wrapper reports) for the shortest time the one-file-at-a-
    time PUT allows, and that a new checksums.sha512 never appears before the files it lists;
    an upload cut off midway leaves the old checksums, which the next run replaces.
    """
    return [*sorted(n for n in files if n != archive.CHECKSUMS_NAME), archive.CHECKSUMS_NAME]


def _expected(files: dict[str, bytes]) -> dict[str, str]:
    """Name -> the sha512 a server must serve: checksums.sha512's lines, and its own digest."""
    listed = {}
    for line in files[archive.CHECKSUMS_NAME].decode("ascii").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    return {**listed, archive.CHECKSUMS_NAME: archive.sha512(files[archive.CHECKSUMS_NAME])}


def select(
    config: ReleaseConfig, *, version: str, vo: str | None = None, out: Path | None = None
) -> list[Target]:
    """Every VO asked for with upload locations, its folder checked and its TLS context loaded.

    All of it happens before the first request: one bad folder or certificate among several
    VOs stops the command with nothing sent anywhere.
    """
    from release.pilot.build import output_root
    from release.pilot.publishable import read_checked
    from release.version import parse_version_arg

    tag = parse_version_arg(version).tag
    where = str(config.path)
    if vo is not None and vo not in config.pilots:
        from release.config.suggest import close_match

        close = close_match(vo, config.pilots)
        raise BadInput(
            f"unknown VO {vo!r}",
            where=where,
            fix=(f"did you mean {close!r}? " if close else "")
            + f"VOs with a [pilots.<vo>] table: {', '.join(config.pilots) or 'none'}",
        )
    example = ('e.g. upload = ["https://dirac.example.org:8443/pilot"], upload_cert = '
               '"hostcert.pem", upload_key = "hostkey.pem" in [pilots.<vo>]')  # fmt: skip
    if vo is not None and not config.pilots[vo].upload:
        raise BadInput(f"pilots.{vo} has no upload locations", where=where, fix=example)
    chosen = [vo] if vo else [name for name, p in config.pilots.items() if p.upload]
    if not chosen:
        raise BadInput("no [pilots.<vo>] table has upload locations", where=where, fix=example)
    root = output_root(config, out)
    targets = []
    for name in chosen:
        deployment = config.pilots[name]
        # The model refuses upload locations without both; "" never reaches here.
        credentials = Credentials(
            cert=config.resolve_path(deployment.upload_cert or ""),
            key=config.resolve_path(deployment.upload_key or ""),
            ca=config.resolve_path(deployment.upload_ca) if deployment.upload_ca else None,
        )
        folder = root / name / tag
        files = read_checked(folder, name, tag)
        context = credentials.context(name, where)
        targets.append(Target(name, tag, folder, files, deployment.upload, credentials, context))
    return targets


class _Location:
    """Requests to one HTTPS folder: a kept-alive connection, timeouts, bounded retries."""

    def __init__(self, location: str, context: ssl.SSLContext, vo: str) -> None:
        parts = urlsplit(location)
        self.location = location
        self.vo = vo
        self.host = parts.hostname or ""
        self.port = parts.port or 443
        self.path = parts.path.rstrip("/")
        self.context = context
        self.connection: http.client.HTTPSConnection | None = None

    def url(self, name: str) -> str:
        return f"{self.location}/{quote(name)}"

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _once(self, method: str, name: str, body: bytes | None) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=TIMEOUT
            )
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        self.connection.request(method, f"{self.path}/{quote(name)}", body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read(MAX_BODY + 1)
        if response.will_close:
            self.close()
        return response.status, data

    def request(self, method: str, name: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; retried on connection errors and 5xx answers."""
        for attempt in range(TRIES):
            last = attempt == TRIES - 1
            try:
                status, data = self._once(method, name, body)
            except ssl.SSLError as exc:
                self.close()
                raise self._tls_error(exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if last:
                    raise InfrastructureError(
                        f"{method} {self.url(name)} failed {TRIES} times: "
                        f"{type(exc).__name__}: {exc}",
                        where=f"pilots.{self.vo}.upload",
                        fix="check that the server is up and reachable from here (a "
                        "connection reset just after connecting can also be a server refusing "
                        "the client certificate, upload_cert), then run the same command "
                        "again (files already there are not sent again)",
                    ) from exc
            else:
                if status < 500 or last:
                    return status, data
                self.close()
            time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        raise AssertionError("unreachable")  # pragma: no cover

    def _tls_error(self, exc: ssl.SSLError) -> InfrastructureError:
        verify = isinstance(exc, ssl.SSLCertVerificationError)
        fix = (
            "the server's certificate is not signed by a CA in upload_ca (or has expired, or "
            "is not for this host name): set pilots.<vo>.upload_ca to the CA that signs it, "
            "e.g. /etc/grid-security/certificates"
            if verify
            else "the server refused the TLS handshake, most often because it does not "
            "accept the client certificate (upload_cert): check that its CA trusts it"
        )
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
        return InfrastructureError(
            f"TLS with {self.location} failed: {reason}",
            where=f"pilots.{self.vo}.upload",
            fix=fix.replace("<vo>", self.vo),
        )

    def refused(self, method: str, name: str, status: int, data: bytes) -> InfrastructureError:
        """An answer that is neither success nor 'not there', named with what to do."""
        if status in (401, 403):
            fix = (
                f"the server does not let the client certificate of pilots.{self.vo} "
                f"({'write' if method == 'PUT' else 'read'}) here: ask its admin to authorize "
                "that certificate's DN for this folder, or set upload_cert to the one it "
                "authorizes"
            )
        else:
            fix = "check the location's URL and the server's log"
        from release.credentials import redact

        snippet = redact(data[:200].decode("utf-8", "replace")).strip()
        return InfrastructureError(
            f"{method} {self.url(name)} answered {status}" + (f": {snippet}" if snippet else ""),
            where=f"pilots.{self.vo}.upload",
            fix=fix,
        )

    def get_digest(self, name: str) -> str | None:
        """The sha512 of what the server serves as `name`, None when it has nothing there."""
        status, data = self.request("GET", name)
        if status == 404:
            return None
        if status != 200:
            raise self.refused("GET", name, status, data)
        return hashlib.sha512(data).hexdigest()

    def put(self, name: str, data: bytes) -> None:
        status, answer = self.request("PUT", name, data)
        if status not in PUT_OK:
            raise self.refused("PUT", name, status, answer)


def upload(targets: list[Target], progress: Progress) -> list[Upload]:
    """Every target's files to each of its locations, then every file read back and compared."""
    results = []
    for target in targets:
        expected = _expected(target.files)
        for location in target.locations:
            result = Upload(target.vo, target.tag, location)
            results.append(result)
            client = _Location(location, target.context, target.vo)
            try:
                for name in send_order(target.files):
                    if client.get_digest(name) == expected[name]:
                        result.unchanged.append(name)
                        continue
                    client.put(name, target.files[name])
                    result.sent.append(name)
                    progress(f"{target.vo}: {name} sent to {location} "
                             f"({len(target.files[name])} bytes)")  # fmt: skip
                for name in send_order(target.files):
                    if client.get_digest(name) == expected[name]:
                        result.verified.append(name)
                    else:
                        result.wrong.append(name)
            finally:
                client.close()
            result.status = "failed" if result.wrong else ("sent" if result.sent else "unchanged")
            progress(
                f"{target.vo}: {location}: {len(result.sent)} sent, {len(result.unchanged)} "
                f"unchanged, {len(result.verified)}/{len(target.files)} read back"
                + (f", WRONG: {', '.join(result.wrong)}" if result.wrong else "")
            )
    return results


def plan(targets: list[Target]) -> list[Upload]:
    """What an upload would send, in order, without contacting any server."""
    results = []
    for target in targets:
        for location in target.locations:
            result = Upload(target.vo, target.tag, location, status="planned")
            result.sent = send_order(target.files)
            results.append(result)
    return results


def check_outcome(results: list[Upload]) -> None:
    """Exit 1 when a server serves other bytes than were sent (after the table is shown)."""
    wrong = [r for r in results if r.wrong]
    if wrong:
        raise CheckFailed(
            "; ".join(
                f"{r.location} serves other bytes than {r.vo}'s built {', '.join(r.wrong)}"
                for r in wrong
            ),
            where="pilot upload",
            fix="the server stored something else than it was sent (a proxy rewriting bodies, "
            "a full disk, another writer): fix it, then run the same command again; until "
            "then pilots downloading from there fail with a checksum mismatch",
        )
