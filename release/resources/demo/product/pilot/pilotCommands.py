"""The demo pilot's two generic commands: look at the node, then find and run the release."""

import json
import os
import platform
import subprocess

from pilotTools import CommandBase


class CheckWorkerNode(CommandBase):
    def execute(self):
        return "%s, Python %s" % (platform.machine(), platform.python_version())


class InstallDIRAC(CommandBase):
    """Nothing to install: source the release's diracosrc from CVMFS and run it once."""

    def execute(self):
        p = self.params
        folder = "%sdirac/%s/Linux-%s" % (p.project.lower(), p.release, p.arch)
        for location in p.locations:
            rc = os.path.join(location, folder, "diracosrc")
            if os.path.isfile(rc):
                out = subprocess.check_output(["bash", "-c", 'source "$0" && vodemo-info', rc])
                info = json.loads(out.decode())
                if "v" + info["vodemo"] != p.release:
                    raise SystemExit("InstallDIRAC: %s runs vodemo %s" % (rc, info["vodemo"]))
                return "vodemo %s from %s (diracosrc sourced)" % (info["vodemo"], os.path.dirname(rc))
        raise SystemExit("InstallDIRAC: no %s under %s" % (folder, ", ".join(p.locations)))
