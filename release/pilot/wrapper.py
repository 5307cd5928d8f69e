"""The pilot wrapper script for a release's pilot files, written by DIRAC's own PilotWrapper.py.

The wrapper is what a grid job starts with, so it is the consumer whose word counts: it reads
checksums.sha512, pilot.json and pilot.tar from the published folder (a `file:` location on
a host's /cvmfs), checks every file, unpacks the tar and starts dirac-pilot.py, whose
commands source the release's diracosrc from the same /cvmfs. The build writes the script
beside the pilot folder (`<tag>.wrapper.sh`), as the VO's SiteDirector would, with DIRAC's
`PilotWrapper.py` (it imports nothing else of DIRAC) taken once from the DIRAC wheel of the
package index into the build cache: certification runs it on every host, where the package
index may not be reachable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from release.errors import InfrastructureError

if TYPE_CHECKING:
    from release.config import ReleaseConfig

WRAPPER_IN_WHEEL = "DIRAC/WorkloadManagementSystem/Utilities/PilotWrapper.py"
#: The last line the demo's stand-in pilot prints when every command ran.
DONE_MARK = "pilot: all "


def wrapper_generator(config: ReleaseConfig, requirement: str) -> tuple[Path, str]:
    """PilotWrapper.py of `requirement` (installed once, no dependencies) and DIRAC's version."""
    from release.build.uvtool import uv_binary, uv_env

    cache = config.resolve_path(config.build.cache_dir) / "pilot-wrapper"
    target = cache / hashlib.sha256(requirement.encode()).hexdigest()[:16]
    if not (target / WRAPPER_IN_WHEEL).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=".install-"))
        try:
            proc = subprocess.run(
                [uv_binary(), "pip", "install", "--no-deps", "--no-config", "--quiet",
                 "--target", str(staging), "--python", sys.executable, requirement],
                capture_output=True, text=True, env=uv_env(), timeout=600, check=False,
            )  # fmt: skip
            if proc.returncode != 0 or not (staging / WRAPPER_IN_WHEEL).is_file():
                last = (proc.stderr.strip().splitlines() or ["no PilotWrapper.py in it"])[-1]
                raise InfrastructureError(
                    f"cannot fetch DIRAC's pilot wrapper ({requirement}) from the package "
                    f"index: {last}",
                    fix="check the network and the index (UV_INDEX_URL), or set "
                    "pilots.<vo>.wrapper to a requirement the index has",
                )
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    # The wheel's metadata folder: `dirac-9.1.22.dist-info` (normalised, lower case) or older
    # spellings; the version is what a reader of the evidence needs.
    versions = sorted(
        p.name for p in target.glob("*.dist-info") if p.name.lower().startswith("dirac-")
    )
    version = versions[0][len("dirac-") :].removesuffix(".dist-info") if versions else "?"
    return target / WRAPPER_IN_WHEEL, version


def wrapper_script(generator: Path, vo: str, location: str) -> str:
    """The bash script a SiteDirector would submit, reading the pilot files at `location`."""
    spec = importlib.util.spec_from_file_location("dirac_release_pilot_wrapper", generator)
    if spec is None or spec.loader is None:
        raise InfrastructureError(f"{generator} cannot be loaded", fix="remove it and run again")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script: str = module.pilotWrapperScript(pilotOptions=f"--VO={vo}", location=location)
    return script


#: The line after the shebang says what made the script and for which folder.
HEADER = "# dirac-release: written by DIRAC {dirac} PilotWrapper.py for {location}\n"


def wrapper_path(folder: Path) -> Path:
    """Beside the VO's pilot folder of a release (never inside: the folder's files are fixed)."""
    return folder.parent / f"{folder.name}.wrapper.sh"


def write_wrapper(config: ReleaseConfig, vo: str, folder: Path, location: str) -> Path:
    """The wrapper script for the pilot files that will be at `location`, next to `folder`."""
    generator, dirac = wrapper_generator(config, config.pilots[vo].wrapper)
    script = wrapper_script(generator, vo, location)
    first, _, rest = script.partition("\n")
    text = (first + "\n" + HEADER.format(dirac=dirac, location=location) + rest
            if first.startswith("#!") else HEADER.format(dirac=dirac, location=location) + script)  # fmt: skip
    path = wrapper_path(folder)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def described(script: str) -> tuple[str, str]:
    """(DIRAC version, location) from a script's header line; ('?', '?') when absent."""
    import re

    found = re.search(r"^# dirac-release: written by DIRAC (\S+) PilotWrapper.py for (\S+)$",
                      script, re.MULTILINE)  # fmt: skip
    return (found.group(1), found.group(2)) if found else ("?", "?")


def judge(rc: int | None, stdout: str, stderr: str) -> tuple[bool, str]:
    """(passed, evidence) from a wrapper run: every file checked, the pilot's commands done."""
    checked = stdout.count("Checksum matched")
    commands = [line.strip() for line in stdout.splitlines() if line.startswith("command ")]
    if rc == 0 and checked and DONE_MARK in stdout and "Checksum mismatch" not in stderr:
        return True, f"{checked} files matched checksums.sha512; " + "; ".join(commands)
    tail = " | ".join((stderr.strip() or stdout.strip()).splitlines()[-4:])
    return False, f"exit {rc}, {checked} files matched: {tail or 'no output'}"
