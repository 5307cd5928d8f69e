#!/usr/bin/python3
"""Supervise DIRAC's runit services and report what they run (runs on the host).

One module call does what would otherwise be a task per service and step (write, link,
restart, wait, health): in a rolling batch every task costs the controller a worker process
and an SSH round trip per host, so fewer, bigger tasks are what make batches cheap.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: dirac_services
short_description: Supervise DIRAC runit services under /opt/dirac and report what they run
description:
  - C(supervise) writes each service's C(<root>/runit/<name>/run) (atomically, only when its
    content differs), links it into C(<root>/startup), starts one C(runsvdir) when none runs,
    restarts the services whose run script changed (all of them with C(restart)), then waits,
    (a C(runsvdir) started here starts every service from the current run scripts and pro:
    none was running, so none is restarted, which would kill them in their start-up),
    bounded, until runit shows each running for C(min_uptime) seconds and each C(health_url)
    answers 200. Check mode reports what would change, with diffs, and waits for nothing.
  - C(status) asks runit for each service's state and the running process for its working
    folder (not the pro link); with C(version), fails unless every service runs inside
    C(<root>/versions/<version>/).
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [supervise, status]
  root:
    description: The DIRAC root folder.
    type: path
    default: /opt/dirac
  services:
    description: The services, each C(name) (System/Component), C(run) (the run script, for
      supervise) and optionally C(health_url).
    type: list
    elements: dict
    required: true
  restart:
    description: Restart every service, not only those whose run script changed (the version,
      the installed tree or a secret changed).
    type: bool
    default: false
  min_uptime:
    description: Seconds a service must have been running to count as up.
    type: int
    default: 2
  up_timeout:
    description: Bound, in seconds, of the wait until the services are up.
    type: int
    default: 20
  health_timeout:
    description: Bound, in seconds, of the wait until each health URL answers 200.
    type: int
    default: 90
  version:
    description: With C(status), the version every service must run.
    type: str
"""

SV_TRIES = 10  # runsvdir looks for new services every 5 s: until then sv cannot reach them.
POLL_S = 0.5
HEALTH_GET_S = 5
UP = re.compile(r"^run: .*\(pid (\d+)\) (\d+)s")


def _startup_name(name):
    return name.replace("/", "_")


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _write_atomic(path, content, mode):
    tmp = f"{path}.new"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def _ensure_link(src, dest):
    """Point dest at src (new link, then rename); True when it changed."""
    try:
        if os.readlink(dest) == src:
            return False
    except OSError:
        pass
    tmp = f"{dest}.new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(src, tmp)
    os.rename(tmp, dest)
    return True


def _sv(*args):
    try:
        proc = subprocess.run(["sv", *args], capture_output=True, text=True, check=False)
    except OSError as exc:  # runit is not installed
        return 127, f"sv: {exc.strerror}"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _running(status):
    """(pid, seconds up) from an `sv status` line, or None when the service is not running."""
    match = UP.match(status)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _is_up(status, min_uptime):
    running = _running(status)
    return running is not None and running[1] >= min_uptime


def _runsvdir_running(startup):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"runsvdir" and startup.encode() in argv:
            return int(pid)
    return None


def _start_runsvdir(module, startup):
    with open(os.devnull, "r+b") as null:
        proc = subprocess.Popen(
            ["runsvdir", "-P", startup, "log: " + "." * 200],
            stdin=null,
            stdout=null,
            stderr=null,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    time.sleep(0.2)
    if proc.poll() is not None:
        module.fail_json(msg=f"runsvdir -P {startup} exited at once ({proc.returncode})")
    return proc.pid


def _restarted(out, service_dir):
    """Whether sv's report says this service restarted (`ok: run: <dir>: (pid N) 0s`)."""
    return any(line.startswith(f"ok: run: {service_dir}:") for line in out.splitlines())


def _restart(module, service_dirs):
    """Restart the services together: sv stops and starts them all, then waits for all, so one
    service's stop and start overlap the others'. Retried for the ones runsvdir has not
    picked up yet."""
    pending, out = list(service_dirs), ""
    for attempt in range(SV_TRIES):
        rc, out = _sv("restart", *pending)
        pending = [] if rc == 0 else [d for d in pending if not _restarted(out, d)]
        if not pending:
            return
        if attempt + 1 < SV_TRIES:
            time.sleep(1)
    module.fail_json(msg=f"sv restart {' '.join(pending)} failed {SV_TRIES} times: {out}")


def _health(url):
    """(answered 200, what it answered) for one GET of a health URL."""
    try:
        # The scheme was checked to be http(s) before anything changed.
        with urllib.request.urlopen(url, timeout=HEALTH_GET_S) as response:  # noqa: S310
            return response.status == 200, (
                f"{response.status} {response.read(200).decode(errors='replace')}"
            )
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))


def _wait_ready(module, dirs, urls, min_uptime, up_timeout, health_timeout):
    """Poll runit and the health URLs together until every service has run min_uptime
    seconds and every health URL answered 200 from the process still running.

    One loop for both: a service answers its health URL while it is still proving it stays
    up, so the wait is the longer of the two, not their sum. A health answer counts only for
    the process that gave it (its pid): a service that restarted since must answer again.
    Both bounds hold; failing names the services and what they last showed.
    """
    started = time.monotonic()
    answers, healthy_pid = {}, {}
    while True:
        status = {name: _sv("status", path)[1] for name, path in dirs.items()}
        pids = {name: (_running(text) or (None, 0))[0] for name, text in status.items()}
        for name, url in urls.items():
            if healthy_pid.get(name) is not None and healthy_pid[name] == pids.get(name):
                continue
            ok, answers[name] = _health(url)
            healthy_pid[name] = pids.get(name, -1) if ok else None
        down = {n: s for n, s in status.items() if not _is_up(s, min_uptime)}
        unhealthy = [n for n in urls if healthy_pid.get(n) is None or (
            n in pids and healthy_pid[n] != pids[n])]  # fmt: skip
        if not down and not unhealthy:
            return status, answers
        waited = time.monotonic() - started
        if down and waited >= up_timeout:
            module.fail_json(
                msg="; ".join(
                    f"{name} is not running steadily after {up_timeout} s: {text}"
                    for name, text in down.items()
                ),
                status=status,
            )
        if unhealthy and waited >= health_timeout:
            name = unhealthy[0]
            module.fail_json(
                msg=f"{name}: {urls[name]} did not answer 200 within {health_timeout} s "
                f"(last: {answers.get(name)})",
                health=answers,
            )
        time.sleep(POLL_S)


def supervise(module):
    p = module.params
    root, services = p["root"], p["services"]
    startup = os.path.join(root, "startup")
    diffs, written, linked = [], [], []
    dirs = {}
    for service in services:
        url = service.get("health_url")
        if url and not str(url).startswith(("http://", "https://")):
            module.fail_json(msg=f"service {service['name']}: health_url {url!r} is not http(s)")
    for service in services:
        name, run = service["name"], service.get("run")
        if run is None:
            module.fail_json(msg=f"service {name}: action=supervise needs its run script")
        folder = os.path.join(root, "runit", name)
        script = os.path.join(folder, "run")
        dirs[name] = os.path.join(startup, _startup_name(name))
        before = _read(script)
        if before != run:
            written.append(name)
            diffs.append({"before_header": script, "after_header": script,
                          "before": before or "", "after": run})  # fmt: skip
            if not module.check_mode:
                os.makedirs(folder, mode=0o755, exist_ok=True)
                _write_atomic(script, run, 0o755)
        if not module.check_mode:
            os.makedirs(startup, mode=0o755, exist_ok=True)
            if _ensure_link(folder, dirs[name]):
                linked.append(name)
        elif os.path.realpath(dirs[name]) != os.path.realpath(folder):
            linked.append(name)
    changed = bool(written or linked)
    runsvdir = _runsvdir_running(startup)
    started = []
    if runsvdir is None:
        # Nothing supervised runs (e.g. the host has just booted): runsvdir starts every
        # service with what is in place now, the new version included.
        changed = True
        started = [s["name"] for s in services]
        if not module.check_mode:
            runsvdir = _start_runsvdir(module, startup)
    restart = [s["name"] for s in services
               if not started and (p["restart"] or s["name"] in written)]  # fmt: skip
    changed = changed or bool(restart)
    if module.check_mode:
        module.exit_json(changed=changed, written=written, linked=linked, restarted=restart,
                         started=started, diff=diffs)  # fmt: skip
    if restart:
        _restart(module, [dirs[name] for name in restart])
    urls = {s["name"]: s["health_url"] for s in services if s.get("health_url")}
    status, health = _wait_ready(
        module, dirs, urls, p["min_uptime"], p["up_timeout"], p["health_timeout"]
    )
    module.exit_json(changed=changed, written=written, linked=linked, restarted=restart,
                     started=started, runsvdir=runsvdir, status=status, health=health,
                     diff=diffs)  # fmt: skip


def status(module):
    p = module.params
    root, version = p["root"], p["version"]
    report = []
    for service in p["services"]:
        name = service["name"]
        _, text = _sv("status", os.path.join(root, "startup", _startup_name(name)))
        pid = (_running(text) or (None, 0))[0]
        try:
            tree = os.readlink(f"/proc/{pid}/cwd") if pid else ""
        except OSError:
            tree = ""
        report.append({"name": name, "status": text, "pid": pid, "tree": tree})
    result = {
        "changed": False,
        "services": report,
        "names": [s["name"] for s in report],
        "status": [s["status"] for s in report],
        "trees": [s["tree"] for s in report],
    }
    if version:
        prefix = os.path.join(root, "versions", version) + "/"
        wrong = [s for s in report if not s["tree"].startswith(prefix)]
        if wrong:
            module.fail_json(
                msg="; ".join(
                    f"{s['name']} does not run {version}: its process runs in "
                    f"'{s['tree']}' ({s['status']})"
                    for s in wrong
                ),
                **result,
            )
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["supervise", "status"]},
            "root": {"type": "path", "default": "/opt/dirac"},
            "services": {"type": "list", "elements": "dict", "required": True},
            "restart": {"type": "bool", "default": False},
            "min_uptime": {"type": "int", "default": 2},
            "up_timeout": {"type": "int", "default": 20},
            "health_timeout": {"type": "int", "default": 90},
            "version": {"type": "str"},
        },
        supports_check_mode=True,
    )
    if module.params["action"] == "supervise":
        supervise(module)
    status(module)


if __name__ == "__main__":
    main()
