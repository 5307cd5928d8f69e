"""What a bundle's manifest may say, checked before any of its files is touched.

The manifest is the contract a publication is checked against, so it is itself untrusted
input: its shape is validated strictly (no coercion, every field present), its paths are
plain relative names, nothing is listed twice or below a file or a link, and every symlink is
resolved the way the kernel would resolve it (each intermediate link followed, up to the
kernel's 40 hops) inside the virtual tree the manifest describes. A link that leaves the
tree that way, or that loops, is refused, however it is chained.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from cvmfs.bundle_contract import MANIFEST_NAME as MANIFEST_NAME
from cvmfs.bundle_contract import MANIFEST_REL as MANIFEST_REL
from cvmfs.bundle_contract import META_DIR as META_DIR
from cvmfs.bundle_contract import SCHEMA as SCHEMA
from cvmfs.errors import BadInput

#: Names the publisher writes itself; a bundle may not bring its own.
RESERVED_NAMES = frozenset({".cvmfscatalog", ".cvmfsdirtab", ".cvmfsautocatalog"})
#: The kernel's limit on links followed in one resolution (ELOOP beyond it).
MAX_LINK_HOPS = 40
MAX_PATH = 4096
MAX_NAME = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FIX = "rebuild the bundle with dirac-release build; never edit a bundle or its manifest by hand"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class FileEntry(_Strict):
    path: str
    size: int = Field(ge=0)
    sha256: Annotated[str, Field(pattern=_SHA256.pattern)]
    mode: Literal["755", "644"]


class LinkEntry(_Strict):
    path: str
    link: str = Field(min_length=1, max_length=MAX_PATH)


def _entry_kind(value: Any) -> str:
    return "link" if isinstance(value, dict) and "link" in value else "file"


Entry = Annotated[
    Annotated[FileEntry, Tag("file")] | Annotated[LinkEntry, Tag("link")],
    Discriminator(_entry_kind),
]


class Totals(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    files: int = Field(ge=0)
    bytes: int = Field(ge=0)


class ManifestShape(BaseModel):
    """The fields the publisher relies on; anything else in the manifest is carried along."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    schema_: Literal["dirac-release/manifest/v1"] = Field(alias="schema")  # = SCHEMA
    product: str = Field(min_length=1, max_length=200)
    tag: str = Field(min_length=1, max_length=200)
    platform: str = Field(min_length=1, max_length=50)
    files: list[Entry]
    totals: Totals


_SHAPE = TypeAdapter(ManifestShape)


def _where(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """`files[12] (lib/x.so).sha256` from a pydantic location, naming the path when known."""
    out = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            files = data.get("files")
            if index == 1 and loc[0] == "files" and isinstance(files, list):
                path = files[part].get("path") if isinstance(files[part], dict) else None
                if isinstance(path, str):
                    out += f" ({_short(path)})"
        elif part not in ("file", "link"):
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _short(text: str, limit: int = 80) -> str:
    shown = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
    return repr(shown)[1:-1]


def check_shape(data: object, label: str) -> dict[str, Any]:
    """The manifest as a dict whose every entry has the right fields and types, or BadInput."""
    if not isinstance(data, dict):
        raise BadInput(f"the {label} manifest is not a JSON object", fix=FIX)
    try:
        _SHAPE.validate_python(data)
    except ValidationError as exc:
        errors = exc.errors()
        shown = "; ".join(f"{_where(tuple(err['loc']), data)}: {err['msg']}" for err in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise BadInput(f"the {label} manifest is malformed: {shown}{more}", fix=FIX) from None
    return data


# The common case, decided by one match: ASCII components of safe characters, none of them
# '.' or '..' (the full rules below give the reason for anything else).
_COMPONENT = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9_.+@=,~%-]{1,255}"
_PLAIN_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*\Z", re.ASCII)


def path_problem(path: str) -> str | None:
    """Why a manifest path cannot be a name inside a bundle, or None when it can."""
    if len(path) <= MAX_PATH and _PLAIN_PATH.match(path):
        last = path.rpartition("/")[2]
        if last not in RESERVED_NAMES and path != MANIFEST_REL:
            return None
    if not path:
        return "is empty"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        return f"is longer than {MAX_PATH} bytes"
    if _CONTROL.search(path):
        return "contains a control character (NUL, line break, ...)"
    if path.startswith("/"):
        return "is absolute"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' component"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME for part in parts):
        return f"has a component longer than {MAX_NAME} bytes"
    if parts[-1] in RESERVED_NAMES or path == MANIFEST_REL:
        return "is a name the publisher writes itself"
    return None


def link_escapes(path: str, links: dict[str, str]) -> str | None:
    """Resolve the link at `path` as the kernel would; why it is refused, or None.

    Components that the manifest does not list are taken as directories: the tree can grow
    nothing after publication, and that reading can only find more escapes, never fewer.
    """
    here = path.split("/")[:-1]
    target = links[path]
    if target.startswith("/"):
        return f"points outside the bundle: {_short(target)} is absolute"
    pending = deque(target.split("/"))
    hops = 1
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return f"-> {_short(target)} resolves outside the bundle"
            here.pop()
            continue
        candidate = "/".join([*here, part])
        inner = links.get(candidate)
        if inner is None:
            here.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return f"-> {_short(target)} does not resolve (more than {MAX_LINK_HOPS} links: a loop)"
        if inner.startswith("/"):
            return f"-> {_short(target)} resolves outside the bundle (through {candidate}, an absolute link)"
        pending.extendleft(reversed(inner.split("/")))
    return None


def check_entries(label: str, manifest: dict[str, Any]) -> None:
    """Paths, duplicates, nesting and link resolution: the bundle stays inside its folder."""
    problems: list[str] = []
    seen: set[str] = set()
    links: dict[str, str] = {}
    for entry in manifest["files"]:
        path = entry["path"]
        why = path_problem(path)
        if why is not None:
            problems.append(f"unsafe path {_short(path)}: it {why}")
            continue
        if path in seen:
            problems.append(f"{_short(path)} is listed twice")
            continue
        seen.add(path)
        if "link" in entry:
            if _CONTROL.search(entry["link"]):
                problems.append(f"link {_short(path)} has a control character in its target")
                continue
            links[path] = entry["link"]
    if not problems:
        for path in sorted(seen):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                ancestor = "/".join(parts[:depth])
                if ancestor in seen:
                    kind = "a symlink" if ancestor in links else "a file"
                    problems.append(
                        f"{_short(path)} is listed below {ancestor}, which is {kind}: "
                        "nothing may be written through it"
                    )
                    break
        for path in sorted(links):
            why = link_escapes(path, links)
            if why is not None:
                problems.append(f"symlink {_short(path)} {why}")
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BadInput(f"the {label} manifest is unsafe: {shown}{more}", fix=FIX)


def check_totals(label: str, manifest: dict[str, Any]) -> None:
    files = manifest["files"]
    size = sum(entry.get("size", 0) for entry in files)
    totals = manifest["totals"]
    if totals["files"] != len(files) or totals["bytes"] != size:
        raise BadInput(
            f"the {label} manifest's totals ({totals['files']} files, {totals['bytes']} bytes) "
            f"do not match its entries ({len(files)} files, {size} bytes)",
            fix=FIX,
        )


def validate(label: str, data: object) -> dict[str, Any]:
    """Every rule above, in order; the manifest itself when it passes."""
    manifest = check_shape(data, label)
    check_entries(label, manifest)
    check_totals(label, manifest)
    return manifest
