"""The demo VO's own pilot command, found through CommandExtensions = ["vodemo"]."""

from pilotTools import CommandBase


class VODemoConfigure(CommandBase):
    def execute(self):
        return "configured for %s" % self.params.vo
