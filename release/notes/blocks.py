"""The release-notes block of a pull request's description, read as DIRAC writes it.

```
BEGINRELEASENOTES
*WMS
FIX: SandboxStore not able to ...
NEW: ...
ENDRELEASENOTES
```

A `*System` line opens a subsystem (abbreviations such as WMS expand to DIRAC's full system
names), each entry is `NEW:`, `CHANGE:` or `FIX:` (`BUGFIX:` is the older spelling of FIX),
and a line that starts with neither continues the entry above it. Every problem names its
line, so `notes check` can say exactly what to fix in the description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BEGIN, END = "BEGINRELEASENOTES", "ENDRELEASENOTES"
KINDS = ("NEW", "CHANGE", "FIX")
_LEGACY_KINDS = {"BUGFIX": "FIX"}
#: DIRAC's systems as its notes abbreviate them (keys compared in upper case).
SYSTEMS = {
    "WMS": "WorkloadManagement",
    "DMS": "DataManagement",
    "RSS": "ResourceStatus",
    "TS": "Transformation",
    "RMS": "RequestManagement",
    "SMS": "StorageManagement",
    "CS": "Configuration",
    "FW": "Framework",
    "PS": "ProductionManagement",
    "MON": "Monitoring",
}
_ENTRY = re.compile(r"^([A-Za-z]+)\s*:\s*(.*)$")


@dataclass(frozen=True)
class Entry:
    system: str
    kind: str
    text: str

    def key(self) -> tuple[str, str, str]:
        """What makes two notes the same note (a backport repeats it word for word)."""
        return (self.system, self.kind, " ".join(self.text.split()).lower())


@dataclass
class Block:
    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    found: bool = False


def system_name(raw: str) -> str:
    name = raw.strip().strip("*").strip()
    return SYSTEMS.get(name.upper(), name.replace(" ", ""))


def parse_block(body: str | None) -> Block:
    """The entries of the block in `body`, and every problem with its line number."""
    block = Block()
    lines = (body or "").replace("\r\n", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    if not starts:
        block.problems.append(f"no {BEGIN} ... {END} block in the description")
        return block
    block.found = True
    if len(starts) > 1:
        block.problems.append(f"line {starts[1] + 1}: a second {BEGIN}; keep one block")
    first = starts[0]
    ends = [i for i, line in enumerate(lines) if line.strip() == END and i > first]
    if not ends:
        block.problems.append(f"line {first + 1}: {BEGIN} has no {END} after it")
        return block
    system: str | None = None
    last: Entry | None = None
    for number in range(first + 1, ends[0]):
        line = lines[number].strip()
        where = f"line {number + 1}"
        if not line:
            last = None
            continue
        if line.startswith("*"):
            system = system_name(line)
            if not system:
                block.problems.append(f"{where}: '*' names no system")
            last = None
            continue
        match = _ENTRY.match(line)
        kind = match.group(1).upper() if match else None
        kind = _LEGACY_KINDS.get(kind or "", kind)
        if match and kind in KINDS:
            if system is None:
                block.problems.append(
                    f"{where}: {kind} entry before any *System line; start with e.g. *Core"
                )
                continue
            text = match.group(2).strip()
            if not text:
                block.problems.append(f"{where}: {kind}: says nothing")
                continue
            last = Entry(system, kind, text)
            block.entries.append(last)
        elif match and match.group(1).isupper() and last is None:
            block.problems.append(
                f"{where}: {match.group(1)}: is not an entry kind (use NEW, CHANGE or FIX)"
            )
        elif last is not None:
            # A wrapped line continues the entry above it.
            merged = Entry(last.system, last.kind, f"{last.text} {line}")
            block.entries[-1] = merged
            last = merged
        else:
            block.problems.append(
                f"{where}: {line[:60]!r} is neither a *System line nor a NEW/CHANGE/FIX entry"
            )
    if not block.entries and not block.problems:
        block.problems.append(f"line {first + 1}: the block holds no entry")
    return block
