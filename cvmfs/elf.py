"""ELF architecture check: the bytes in an aarch64 bundle must be AArch64 code.

Cross-resolution trusts wheel tags; reading the ELF header of every file checks what the tags
claim, so a mis-tagged wheel or a hand-copied library cannot reach the other architecture.
It lives in the publisher because the publisher re-checks every tree it publishes and must
stand alone; the build (`release.build.elf`) re-exports it, so both read headers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

ELF_MAGIC = b"\x7fELF"

#: e_machine values (System V ABI) for the platforms we build, and a few we name in errors.
MACHINES: dict[int, str] = {
    3: "x86",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "S390",
    40: "ARM",
    62: "x86_64",
    183: "aarch64",
    243: "RISC-V",
}
EXPECTED: dict[str, int] = {"x86_64": 62, "aarch64": 183}


@dataclass(frozen=True)
class ElfHeader:
    machine: int
    bits: int
    little_endian: bool

    @property
    def machine_name(self) -> str:
        return MACHINES.get(self.machine, f"e_machine {self.machine}")


def read_header(head: bytes) -> ElfHeader | None:
    """Parse the first 20 bytes of a file; None when it is not ELF."""
    if len(head) < 20 or not head.startswith(ELF_MAGIC):
        return None
    bits = {1: 32, 2: 64}.get(head[4], 0)
    little = head[5] != 2
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    return ElfHeader(machine=machine, bits=bits, little_endian=little)


def matches(header: ElfHeader, arch: str) -> bool:
    """Only 64-bit little-endian objects of the platform's machine: what we build for."""
    return header.machine == EXPECTED[arch] and header.bits == 64 and header.little_endian
