"""The demo's stand-in for DIRAC's Pilot (written for the demo: the real one is DIRACGrid/Pilot).

It does what a pilot does first, in a few lines: read pilot.json, take its VO's Pilot section
and run its commands in order, each looked up as the Pilot looks them up: in
`<extension>Commands.py` for each CommandExtensions entry, then in pilotCommands.py. Python 3
of the worker node, no DIRAC needed: the release comes from CVMFS.
"""

import importlib
import json
import sys

from pilotTools import PilotParams


def find_command(name, extensions):
    for module_name in [ext + "Commands" for ext in extensions] + ["pilotCommands"]:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise SystemExit("dirac-pilot.py: no module defines the command " + name)


def main(argv):
    print("dirac-pilot.py started with " + " ".join(argv))
    params = PilotParams(argv, json.load(open("pilot.json")))
    print("pilot: VO %s, release %s, project %s" % (params.vo, params.release, params.project))
    for name in params.commands:
        result = find_command(name, params.extensions)(params).execute()
        print("command %s: %s" % (name, result))
    print("pilot: all %d commands done" % len(params.commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
