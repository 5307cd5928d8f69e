"""vodemo-diracx: run a real DiracX server from this bundle, with its state kept elsewhere.

All state (signing keys, sqlite databases, the config git repository, secrets) lives in
``--state`` (default ``$VODEMO_STATE``, else /opt/dirac/state), never in the version
directory, so installing a new version and switching ``versions/<tag>`` keeps it. Each start
prepares only what is missing, then execs uvicorn: the PID a supervisor (runit) started is
the DiracX server itself and its signals reach it directly.

Sandboxes need S3. A moto S3 server (in memory) is started as a child of this process and
dies with it (PR_SET_PDEATHSIG), so one runit service supervises both: a restart of the
service restarts S3 and DiracX together and DiracX re-creates its bucket on start. S3 starts
while DiracX imports (``vodemo.app`` waits for it only then), not before. Two
separate runit services would let an S3 restart wipe the bucket under a running DiracX.
Sandboxes do not survive a restart; point ``--s3-endpoint`` at a real S3 to keep them.

Secrets are never printed. The legacy-exchange key is in ``<state>/secrets/legacy-exchange.key``
(mode 0600, base64url of 32 random bytes); the server only gets its sha256.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import vodemo

DEFAULT_STATE = "/opt/dirac/state"
GROUP = "vodemo_user"
USER_SUB = "vodemo-demo-user"
USER_NAME = "demo"
BUCKET = "sandboxes"
STEP_TIMEOUT = 120  # seconds, for each preparation step
S3_START_TIMEOUT = 60
S3_WAIT = "VODEMO_S3_WAIT"  # "<pid> <url>" of the S3 child DiracX waits for (vodemo.app)
PREPARE_LOCK_TIMEOUT = 600  # another service's first preparation (several steps)

# Children run with this bundle's site-packages exactly as the bin/ entry points do
# (site.addsitedir, so .pth hooks such as the diracx client importer run too).
_BOOT = (
    "import runpy, site, sys; "
    "p = sys.argv[1]; sys.path.insert(0, p); site.addsitedir(p); "
    "sys.argv = [sys.argv[2]] + sys.argv[3:]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def _site_dir() -> str:
    return str(Path(vodemo.__file__).resolve().parent.parent)


def python_module(module: str, *args: str) -> list[str]:
    """Command line running `python -m module args` with this bundle's packages."""
    return [sys.executable, "-c", _BOOT, _site_dir(), module, *args]


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    site_dir = _site_dir()
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = site_dir + (os.pathsep + old if old else "")
    env.update(extra or {})
    return env


def _say(message: str) -> None:
    print(f"vodemo-diracx: {message}", file=sys.stderr, flush=True)


def _run(*args: str, what: str) -> str:
    try:
        proc = subprocess.run(
            python_module(*args), capture_output=True, text=True, env=_child_env(),
            timeout=STEP_TIMEOUT, cwd="/", check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise SystemExit(f"vodemo-diracx: {what} took more than {STEP_TIMEOUT} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise SystemExit(f"vodemo-diracx: {what} failed ({proc.returncode}):\n{tail}")
    return proc.stdout


def _write_secret(path: Path, data: str) -> None:
    """Write a secret file atomically with mode 0600 from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_secret(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o600)  # tighten a file someone loosened
    return path.read_text().strip()


@contextlib.contextmanager
def _state_lock(state: Path) -> Iterator[None]:
    """Serialize the preparation: the DiracX server and its task workers start together."""
    with open(state / ".prepare.lock", "a+b") as handle:
        deadline = time.monotonic() + PREPARE_LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SystemExit(
                        f"vodemo-diracx: {state} stayed locked for {PREPARE_LOCK_TIMEOUT} s "
                        "by another preparation"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _known_databases() -> set[str]:
    """The DIRACX_DB_URL_* settings the databases installed in this bundle need."""
    from importlib.metadata import entry_points

    return {f"DIRACX_DB_URL_{ep.name.upper()}" for ep in entry_points(group="diracx.dbs.sql")}


def prepare_state(state: Path) -> dict[str, str]:
    """Create what is missing in `state`; return the DiracX settings (env vars) it implies."""
    state.mkdir(parents=True, exist_ok=True)
    with _state_lock(state):
        return _prepare_state(state)


def _prepare_state(state: Path) -> dict[str, str]:
    secrets_dir = state / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    secrets_dir.chmod(0o700)
    created: list[str] = []

    jwks = secrets_dir / "jwks.json"
    if not jwks.is_file():
        _run("diracx.logic", "rotate-jwk", "--jwks-path", str(jwks), what="rotate-jwk")
        jwks.chmod(0o600)
        created.append("signing keys")

    state_key = secrets_dir / "state.key"
    if not state_key.is_file():
        _write_secret(state_key, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        created.append("state key")

    legacy_key = secrets_dir / "legacy-exchange.key"
    if not legacy_key.is_file():
        _write_secret(legacy_key, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        created.append("legacy-exchange key")

    db_dir = state / "db"
    db_env = state / "db-urls.json"
    db_urls: dict[str, str] = json.loads(db_env.read_text()) if db_env.is_file() else {}
    # A newer bundle may bring databases (e.g. the task queue's): their URLs are added.
    if not db_urls or not _known_databases() <= set(db_urls):
        db_dir.mkdir(exist_ok=True)
        out = _run("diracx.db", "generate-local-urls", str(db_dir), what="generate-local-urls")
        urls: dict[str, str] = {}
        for line in out.splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                name, _, value = words[1].partition("=")
                urls[name] = value
        if not any(name.startswith("DIRACX_DB_URL_") for name in urls):
            raise SystemExit("vodemo-diracx: generate-local-urls printed no database URL")
        tmp = db_env.with_suffix(".tmp")
        tmp.write_text(json.dumps(urls, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, db_env)
        created.append("database URLs")
        db_urls = urls

    created += _prepare_config(state / "cs")

    if created:
        _say(f"prepared in {state}: {', '.join(created)}")
    else:
        _say(f"reusing the state in {state}")

    encoded = _read_secret(legacy_key)
    try:  # base64url, with or without its padding (keys placed from a vault may lack it)
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        raw = b""
    if len(raw) < 16:
        raise SystemExit(
            f"vodemo-diracx: {legacy_key} is not a base64url key of at least 16 bytes; "
            "replace it (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    hashed = hashlib.sha256(raw).hexdigest()
    env = dict(db_urls)
    env.update(
        {
            "DIRACX_CONFIG_BACKEND_URL": f"git+file://{state / 'cs'}",
            "DIRACX_SERVICE_AUTH_TOKEN_KEYSTORE": f"file://{jwks}",
            "DIRACX_SERVICE_AUTH_STATE_KEY": _read_secret(state_key),
            "DIRACX_LEGACY_EXCHANGE_HASHED_API_KEY": hashed,
        }
    )
    return env


def _registry(repo: Path) -> dict:
    import yaml

    path = repo / "default.yml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    return (data or {}).get("Registry") or {}


def _prepare_config(repo: Path) -> list[str]:
    url = f"git+file://{repo}"  # absolute: a relative path would be read as a URL host
    created = []
    if not (repo / ".git").is_dir():
        _run("diracx.cli", "internal", "generate-cs", url, what="generate-cs")
        created.append("config repository")
    if vodemo.VO not in _registry(repo):
        _run("diracx.cli", "internal", "add-vo", url, "--vo", vodemo.VO,
             "--default-group", GROUP, "--idp-url", "https://idp.vodemo.invalid",
             "--idp-client-id", "vodemo-diracx", what="add-vo")  # fmt: skip
        created.append(f"VO {vodemo.VO}")
    registry = _registry(repo)[vodemo.VO]
    if GROUP not in (registry.get("Groups") or {}):
        _run("diracx.cli", "internal", "add-group", url, "--vo", vodemo.VO, "--group", GROUP,
             what="add-group")  # fmt: skip
        created.append(f"group {GROUP}")
    if USER_SUB not in (registry.get("Users") or {}):
        _run("diracx.cli", "internal", "add-user", url, "--vo", vodemo.VO, "--group", GROUP,
             "--sub", USER_SUB, "--preferred-username", USER_NAME, what="add-user")  # fmt: skip
        created.append(f"user {USER_NAME}")
    return created


def _die_with_parent() -> None:
    """In the S3 child: get SIGTERM when the DiracX process (our parent) goes away."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(1)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start_s3(host: str, port: int) -> subprocess.Popen[bytes]:
    """Start moto's S3 server as a child; `wait_for_s3` says when it answers."""
    if not _port_free(host, port):
        raise SystemExit(f"vodemo-diracx: the S3 port {host}:{port} is in use (--s3-port)")
    # preexec_fn is safe here: no thread has been started in this process.
    return subprocess.Popen(
        python_module("moto.server", "-H", host, "-p", str(port)),
        env=_child_env(),
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )


def wait_for_s3(pid: int, url: str) -> None:
    """Wait (bounded) until the S3 server child `pid` answers at `url`; exit if it ended.

    It runs in the DiracX process after the exec (the child stays ours): DiracX creates its
    bucket when it starts, so the wait comes after DiracX's long import, not before it.
    """
    deadline = time.monotonic() + S3_START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            ended, status = os.waitpid(pid, os.WNOHANG)
            if ended:
                code = os.waitstatus_to_exitcode(status)
                raise SystemExit(f"vodemo-diracx: the S3 server exited ({code})")
        try:
            with _OPENER.open(f"{url}/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    raise SystemExit(f"vodemo-diracx: the S3 server did not answer within {S3_START_TIMEOUT} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vodemo-diracx", description="Run DiracX for the vodemo VO from this bundle."
    )
    parser.add_argument("--state", default=os.environ.get("VODEMO_STATE", DEFAULT_STATE),
                        help="state directory, outside the version directory "
                        "(default: $VODEMO_STATE or %(default)s)")  # fmt: skip
    parser.add_argument("--host", default=os.environ.get("VODEMO_HOST", "127.0.0.1"),
                        help="address to listen on (default: $VODEMO_HOST or %(default)s)")  # fmt: skip
    parser.add_argument("--port", type=int, default=int(os.environ.get("VODEMO_PORT", "8000")))
    parser.add_argument("--s3-port", type=int, default=8001,
                        help="port of the moto S3 server started for sandboxes")  # fmt: skip
    parser.add_argument("--s3-endpoint", default="",
                        help="use this S3 endpoint instead of starting moto")  # fmt: skip
    parser.add_argument("--public-url", default=os.environ.get("VODEMO_PUBLIC_URL", ""),
                        help="URL clients use (token issuer); default $VODEMO_PUBLIC_URL, "
                        "else http://HOST:PORT")  # fmt: skip
    parser.add_argument("--prepare-only", action="store_true",
                        help="prepare the state and exit")  # fmt: skip
    args = parser.parse_args(argv)

    state = Path(args.state).expanduser().absolute()
    settings = prepare_state(state)
    if args.prepare_only:
        return 0

    public = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    s3_endpoint = args.s3_endpoint
    if not s3_endpoint:
        s3 = start_s3(args.host, args.s3_port)
        s3_endpoint = f"http://{args.host}:{args.s3_port}"
        settings[S3_WAIT] = f"{s3.pid} {s3_endpoint}"  # vodemo.app waits for it
    settings.update(
        {
            "DIRACX_SERVICE_AUTH_TOKEN_ISSUER": public,
            "DIRACX_SERVICE_AUTH_ALLOWED_REDIRECTS": json.dumps(
                [f"{public}/api/docs/oauth2-redirect"]
            ),
            "DIRACX_SANDBOX_STORE_BUCKET_NAME": BUCKET,
            "DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET": "true",
            "DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS": json.dumps(
                {
                    "endpoint_url": s3_endpoint,
                    "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "vodemo"),
                    "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "vodemo"),
                }
            ),
        }
    )
    _say(f"state {state}; DiracX on {public}; S3 on {s3_endpoint}")
    command = python_module(
        "uvicorn", "--factory", "vodemo.app:create_app",
        "--host", args.host, "--port", str(args.port), "--no-access-log",
    )  # fmt: skip
    # The working folder stays where the supervisor started us (the version's tree): it is how
    # a deployment asks a running service which version it runs.
    os.execve(sys.executable, command, _child_env(settings))
    return 1  # not reached
