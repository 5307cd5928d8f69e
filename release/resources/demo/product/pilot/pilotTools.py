"""What the demo pilot's commands share: the parameters read from pilot.json and the options."""

import os
import platform


class PilotParams(object):
    """The VO's Pilot section of pilot.json, read the way the Pilot reads it (comma lists)."""

    def __init__(self, argv, document):
        self.vo = "Defaults"
        for arg in argv:
            if arg.startswith("--VO="):
                self.vo = arg.split("=", 1)[1]
        section = dict(document.get("Defaults", {}).get("Pilot", {}))
        section.update(document.get(self.vo, {}).get("Pilot", {}))
        self.section = section
        self.release = section["Version"].split(",", 1)[0].strip()
        self.project = section.get("Project", "DIRAC")
        self.extensions = [e.strip() for e in section.get("CommandExtensions", "").split(",") if e.strip()]
        commands = section.get("Commands", {})
        self.commands = commands.get(os.environ.get("DEMO_CE_TYPE", "Defaults"), commands.get("Defaults", []))
        self.locations = [c.strip() for c in section.get("CVMFS_locations", "").split(",") if c.strip()]
        self.arch = platform.machine()


class CommandBase(object):
    def __init__(self, params):
        self.params = params
