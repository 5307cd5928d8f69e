"""The ELF reader the build checks its trees with: the publisher's own (`cvmfs.elf`).

One copy, so the build cannot accept an object the publisher refuses; it lives in `cvmfs`
because the publisher stands alone and the build may depend on it, not the other way round.
"""

from cvmfs.elf import ELF_MAGIC, EXPECTED, MACHINES, ElfHeader, matches, read_header

__all__ = ["ELF_MAGIC", "EXPECTED", "MACHINES", "ElfHeader", "matches", "read_header"]
