"""A tiny Pilot-like repository, a VO's modules repository and a release.toml using them.

Written here, not copied: dirac-pilot.py only says it started and lists the .py files beside
it; pilotCommands.py defines two command classes; the VO's myvoCommands.py defines one.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import git

DIRAC_PILOT = textwrap.dedent(
    '''\
    """A stand-in for the Pilot's entry point: say that it started, and with what."""
    import os
    import sys

    print("dirac-pilot.py started with", " ".join(sys.argv[1:]))
    print("files:", " ".join(sorted(n for n in os.listdir(".") if n.endswith(".py"))))
    '''
)
PILOT_COMMANDS = textwrap.dedent(
    '''\
    """Two commands, as classes, the way the Pilot looks them up."""
    from pilotTools import CommandBase


    class CheckWorkerNode(CommandBase):
        def execute(self):
            return "checked"


    class InstallDIRAC(CommandBase):
        def execute(self):
            return "installed"
    '''
)
PILOT_TOOLS = textwrap.dedent(
    '''\
    """What the commands share."""


    class CommandBase(object):
        def __init__(self, params):
            self.params = params
    '''
)
MYVO_COMMANDS = textwrap.dedent(
    '''\
    """The VO's own command."""
    from pilotTools import CommandBase


    class MyVOConfigure(CommandBase):
        def execute(self):
            return "configured for myvo"
    '''
)


def commit_files(repo: git.Repo, files: dict[str, str], message: str) -> str:
    root = Path(repo.working_dir)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repo.index.add(list(files))
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test").set_value("user", "email", "test@example.org")
    return repo.index.commit(message).hexsha


def make_pilot_repo(path: Path) -> tuple[git.Repo, str]:
    """A Pilot-like repository: Pilot/*.py plus a test file and a README that never ship."""
    repo = git.Repo.init(path, initial_branch="master")
    sha = commit_files(
        repo,
        {
            "Pilot/dirac-pilot.py": DIRAC_PILOT,
            "Pilot/pilotCommands.py": PILOT_COMMANDS,
            "Pilot/pilotTools.py": PILOT_TOOLS,
            "Pilot/proxyTools.py": '"""Proxy helpers."""\n',
            "Pilot/tests/Test_Pilot.py": "def test():\n    pass\n",
            "README.md": "a pilot\n",
        },
        "pilot",
    )
    return repo, sha


def make_vo_repo(path: Path, tag: str = "v1.0.0", extra: dict[str, str] | None = None) -> git.Repo:
    """The VO's pilot modules, tagged."""
    repo = git.Repo.init(path, initial_branch="main")
    commit_files(repo, {"pilot/myvoCommands.py": MYVO_COMMANDS, **(extra or {})}, "modules")
    repo.create_tag(tag)
    return repo


CONFIG = """\
[products.DIRAC]
source = {{ index = "DIRAC" }}
repository = "dirac.egi.eu"

[repositories."dirac.egi.eu"]
backend = "directory"
path = "stratum"
prefix = "dirac"

[build]
out = "dist"
cache_dir = "cache"

[pilots.myvo]
product = "DIRAC"
pilot = {{ git = "{pilot}", commit = "{commit}" }}
modules = {{ git = "{modules}", tag = "v1.0.0", path = "pilot" }}

[pilots.myvo.settings]
CheckVersion = false
Commands = {{ Defaults = ["CheckWorkerNode", "InstallDIRAC", "MyVOConfigure"], HTCondorCE = ["CheckWorkerNode", "InstallDIRAC"] }}
CommandExtensions = ["myvo"]
pilotFileServer = "dirac.example.org:8443"
RemoteLogging = true
RemoteLoggerURL = "https://dirac.example.org:8443/WorkloadManagement/TornadoPilotLogging"
ConfigurationServers = ["dips://dirac.example.org:9135/Configuration/Server"]
GenericPilotDNs = ["/DC=org/DC=example/CN=pilot"]
CEs = {{ "ce01.example.org" = {{ Site = "LCG.Example.org", GridCEType = "HTCondorCE" }} }}

[pilots.dteam]
product = "DIRAC"
pilot = {{ git = "{pilot}", commit = "{commit}" }}

[pilots.dteam.settings]
Commands = {{ Defaults = ["CheckWorkerNode", "InstallDIRAC"] }}
RemoteLogging = false
ConfigurationServers = ["dips://dteam.example.org:9135/Configuration/Server"]
"""


def write_pilot_config(tmp: Path, *, modules_url: bool = True) -> tuple[Path, str]:
    """release.toml with two VOs: myvo (its modules from a tagged repository) and dteam."""
    _, commit = make_pilot_repo(tmp / "Pilot")
    make_vo_repo(tmp / "MyVOPilot")
    modules = (tmp / "MyVOPilot").as_uri() if modules_url else str(tmp / "MyVOPilot")
    path = tmp / "conf" / "release.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG.format(pilot=tmp / "Pilot", commit=commit, modules=modules))
    return path, commit
