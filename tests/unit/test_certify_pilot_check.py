"""Certify's `pilot wrapper` check: what counts as a pilot that ran, and what it says otherwise.

The run itself (DIRAC's wrapper on lab hosts against the published files) is in the demo and
the lab tests; here the judgement of its output and the script's own header.
"""

from __future__ import annotations

from pathlib import Path

from release.certify import _pilot_check
from release.pilot.wrapper import HEADER, described, judge, wrapper_path

GOOD = (
    "Checking 'pilot.json' for checksum\nChecksum matched\nChecking 'pilot.tar' for checksum\n"
    "Checksum matched\ndirac-pilot.py started with --VO=vodemo\n"
    "command CheckWorkerNode: x86_64, Python 3.11.2\n"
    "command InstallDIRAC: vodemo 1.0.0 from /cvmfs/r/p/v1.0.0/Linux-x86_64 (diracosrc sourced)\n"
    "pilot: all 2 commands done\n"
)


def test_a_pilot_that_ran_every_command_passes_with_what_it_did() -> None:
    passed, evidence = judge(0, GOOD, "")
    assert passed
    assert evidence.startswith("2 files matched checksums.sha512; command CheckWorkerNode")
    assert "InstallDIRAC: vodemo 1.0.0" in evidence


def test_what_fails_the_check() -> None:
    # The wrapper's own refusal: a changed byte in pilot.tar.
    passed, evidence = judge(1, "Checksum matched\n", "Checksum mismatch for file 'pilot.tar'\n")
    assert (
        not passed and "exit 1, 1 files matched: Checksum mismatch for file 'pilot.tar'" in evidence
    )
    # Exit 0, but the pilot never said it finished (a command that was not reached).
    assert not judge(0, GOOD.replace("pilot: all 2 commands done\n", ""), "")[0]
    # Nothing checked at all (an empty location).
    assert not judge(0, "pilot: all 0 commands done\n", "")[0]
    assert judge(None, "", "")[1] == "exit None, 0 files matched: no output"


def test_the_script_says_what_made_it_and_where_it_reads(tmp_path: Path) -> None:
    text = "#!/bin/bash\n" + HEADER.format(dirac="9.1.22", location="file:/cvmfs/r/p/v1/pilot/vo")
    assert described(text + "echo hi\n") == ("9.1.22", "file:/cvmfs/r/p/v1/pilot/vo")
    assert described("#!/bin/bash\necho hi\n") == ("?", "?")
    folder = tmp_path / "pilots" / "vo" / "v1.0.0"
    assert wrapper_path(folder) == tmp_path / "pilots" / "vo" / "v1.0.0.wrapper.sh"


def test_the_host_check_names_dirac_the_location_and_the_outcome() -> None:
    pilot = {"vo": "vodemo", "location": "file:/cvmfs/r/p/v1/pilot/vodemo", "script": "s",
             "dirac": "9.1.22"}  # fmt: skip
    check = _pilot_check(pilot, {"pilot_rc": "0", "pilot_stdout": GOOD}, "cctbdirac01", 1.0)
    assert check.result == "passed" and check.target == "cctbdirac01"
    assert check.evidence.startswith("DIRAC 9.1.22 PilotWrapper on file:/cvmfs/r/p/v1/pilot/vodemo")
    # verify.yml did not run it (an older playbook, a skipped block): failed, never passed.
    assert _pilot_check(pilot, {"pilot_rc": ""}, "h", 1.0).result == "failed"
    missing = {"vo": "vodemo", "location": "x", "error": "no pilot wrapper script at /p: build"}
    assert _pilot_check(missing, {}, "h", 1.0).evidence == "no pilot wrapper script at /p: build"
