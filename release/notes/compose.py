"""From merged pull requests to one release's notes: duplicates of backports dropped, formatted.

A fix merged into a release branch is swept (cherry-picked) into `integration` by another pull
request whose title starts with `[sweep:<branch>]` and whose description carries the same
notes; when both are in one release, the notes would appear twice. A note is dropped when an
earlier pull request of the same release already says it word for word (whitespace and case
aside), and a sweep is recognised by its title and by the `Sweep #N` it names, so one whose
notes were edited on the way is still reported as the backport it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from release.notes.blocks import KINDS, Entry, parse_block

_SWEEP_TITLE = re.compile(r"^\[sweep:[^\]]+\]", re.IGNORECASE)
_SWEEP_OF = re.compile(r"\bsweep #(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Pull:
    number: int
    title: str
    body: str | None


@dataclass
class Notes:
    tag: str
    entries: list[tuple[Entry, int]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    without_notes: list[int] = field(default_factory=list)
    problems: dict[int, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "entries": [
                {"system": e.system, "kind": e.kind, "text": e.text, "pr": pr}
                for e, pr in self.entries
            ],
            "dropped": self.dropped,
            "without_notes": self.without_notes,
            "problems": {str(k): v for k, v in self.problems.items()},
        }


def sweep_of(pull: Pull) -> int | None:
    """The pull request a sweep backports, when this is one."""
    if not _SWEEP_TITLE.match(pull.title):
        return None
    match = _SWEEP_OF.search(pull.body or "") or _SWEEP_OF.search(pull.title)
    return int(match.group(1)) if match else 0


def compose(tag: str, pulls: list[Pull]) -> Notes:
    """`pulls` in merge order; the first to say a note keeps it (a sweep comes last)."""
    notes = Notes(tag)
    numbers = {p.number for p in pulls}
    seen: dict[tuple[str, str, str], int] = {}
    # Originals before sweeps: where both say a note, the original keeps it.
    for pull in sorted(pulls, key=lambda p: sweep_of(p) is not None):
        origin = sweep_of(pull)
        if origin and origin in numbers:
            notes.dropped.append(f"#{pull.number}: a sweep of #{origin}, which this release holds")
            continue
        block = parse_block(pull.body)
        if not block.found:
            notes.without_notes.append(pull.number)
            continue
        if block.problems:
            notes.problems[pull.number] = block.problems
        for entry in block.entries:
            first = seen.get(entry.key())
            if first is not None:
                notes.dropped.append(
                    f"#{pull.number}: {entry.kind} {entry.text[:50]!r} repeats #{first}"
                )
                continue
            seen[entry.key()] = pull.number
            notes.entries.append((entry, pull.number))
    return notes


def _ordered(notes: Notes) -> dict[str, list[tuple[Entry, int]]]:
    systems: dict[str, list[tuple[Entry, int]]] = {}
    for entry, number in notes.entries:
        systems.setdefault(entry.system, []).append((entry, number))
    return {
        system: sorted(items, key=lambda item: (KINDS.index(item[0].kind), item[1]))
        for system, items in sorted(systems.items(), key=lambda kv: kv[0].lower())
    }


def as_dirac(notes: Notes) -> str:
    """DIRAC's release.notes: `[tag]`, then `*System`, then `KIND: (#N) text`."""
    out = [f"[{notes.tag}]", ""]
    for system, items in _ordered(notes).items():
        out += [f"*{system}", ""]
        out += [f"{entry.kind}: (#{number}) {entry.text}" for entry, number in items]
        out.append("")
    return "\n".join(out)


def as_markdown(notes: Notes, repository: str | None = None) -> str:
    def link(number: int) -> str:
        if repository:
            return f"[#{number}](https://github.com/{repository}/pull/{number})"
        return f"#{number}"

    out = [f"## {notes.tag}", ""]
    for system, items in _ordered(notes).items():
        out += [f"### {system}", ""]
        out += [f"- **{entry.kind}** {entry.text} ({link(number)})" for entry, number in items]
        out.append("")
    if not notes.entries:
        out += ["No release notes in the pull requests of this release.", ""]
    return "\n".join(out)
