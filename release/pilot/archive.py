"""pilot.tar and checksums.sha512, the same bytes for the same files on any machine.

pilot.tar is flat (the wrapper extracts it into the job's folder and runs dirac-pilot.py
there): entries sorted by name, one fixed mtime, owner 0:0 without names, mode 0644, and the
ustar format, which has no pax headers carrying access or change times.
checksums.sha512 is what `sha512sum -c` and the pilot wrapper read: `<hex>  <name>` lines.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

CHECKSUMS_NAME = "checksums.sha512"
TAR_NAME = "pilot.tar"
JSON_NAME = "pilot.json"


def pilot_tar(files: dict[str, bytes], mtime: int) -> bytes:
    """The tar of `files` (flat names), reproducibly."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def checksums(files: dict[str, bytes]) -> bytes:
    """One `<sha512>  <name>` line per file, sorted by name (never listing itself)."""
    lines = [f"{sha512(files[name])}  {name}\n" for name in sorted(files) if name != CHECKSUMS_NAME]
    return "".join(lines).encode("ascii")
