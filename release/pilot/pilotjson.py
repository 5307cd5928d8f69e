"""pilot.json: the VO's settings written the way the Pilot parses them, checked by a schema.

The Pilot reads `Version`, `CommandExtensions` and `CVMFS_locations` with `.split(',')`, and
`RemoteLogging`/`CheckVersion` with `.upper() == 'TRUE'`: a JSON list or boolean there makes it
fail on the worker node. So the writer joins those into strings, and
`pilot-json.schema.json` (kept beside this module) states every key's type as the Pilot reads
it; a folder is put in place only when its pilot.json passes it and names the release first.

The VO's Pilot section is written twice, under `Defaults/Pilot` and `<vo>/Pilot`: the Pilot
merges `Defaults` first and the VO's section over it, and falls back to `Defaults` alone when
it cannot tell its VO (no proxy yet). A folder serves one VO, so both say the same.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from release.config.pilots import PilotSettings
from release.errors import BadInput

SCHEMA_PATH = Path(__file__).with_name("pilot-json.schema.json")

#: Scalars of the Pilot section copied as they are (strings and whole numbers).
_PLAIN = (
    "Project", "pilotFileServer", "RemoteLoggerURL", "RemoteLoggerTimerInterval",
    "RemoteLoggerBufsize", "PilotLogLevel", "UploadSE", "UploadPath", "GenericPilotGroup",
    "GenericPilotDN",
)  # fmt: skip


def _true_false(value: bool) -> str:
    return "True" if value else "False"


def release_versions(settings: PilotSettings, tag: str, where: str) -> list[str]:
    """The `Version` entries: the release first, then the fallbacks the VO listed."""
    if settings.Version is None:
        return [tag]
    if settings.Version[0] != tag:
        raise BadInput(
            f"Version starts with {settings.Version[0]!r}, not with the release being built "
            f"({tag}): the Pilot installs the first entry",
            where=f"{where}.Version",
            fix=f"list the release first, e.g. Version = {json.dumps([tag, *(v for v in settings.Version if v != tag)])}, "
            "or leave Version out and the build writes the release alone",
        )
    return list(settings.Version)


def compose(
    vo: str,
    settings: PilotSettings,
    *,
    tag: str,
    cvmfs_location: str,
    timestamp: int,
    where: str,
) -> dict[str, Any]:
    """The whole pilot.json of one VO's folder."""
    pilot: dict[str, Any] = {
        "Version": ", ".join(release_versions(settings, tag, where)),
        "CVMFS_locations": ", ".join(dict.fromkeys([cvmfs_location, *settings.CVMFS_locations])),
    }
    for key in _PLAIN:
        value = getattr(settings, key)
        if value is not None:
            pilot[key] = value
    if settings.CheckVersion is not None:
        pilot["CheckVersion"] = _true_false(settings.CheckVersion)
    if settings.RemoteLogging is not None:
        pilot["RemoteLogging"] = _true_false(settings.RemoteLogging)
    if settings.Commands:
        pilot["Commands"] = {ce: list(names) for ce, names in settings.Commands.items()}
    if settings.CommandExtensions:
        pilot["CommandExtensions"] = ", ".join(settings.CommandExtensions)
    if settings.RemoteLoggerCEsWhiteList is not None:
        pilot["RemoteLoggerCEsWhiteList"] = list(settings.RemoteLoggerCEsWhiteList)
    document: dict[str, Any] = {
        # The newest input's commit time, not the clock: the same inputs give the same bytes.
        "timestamp": datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "CEs": {name: ce.model_dump(exclude_none=True) for name, ce in settings.CEs.items()},
        "GenericPilotDNs": list(settings.GenericPilotDNs),
        "ConfigurationServers": list(settings.ConfigurationServers),
    }
    if settings.DefaultSetup is not None:
        document["DefaultSetup"] = settings.DefaultSetup
    if settings.PreferredURLPatterns is not None:
        document["PreferredURLPatterns"] = list(settings.PreferredURLPatterns)
    document["Defaults"] = {"Pilot": pilot}
    document[vo] = {"Pilot": pilot}
    return document


def encode(document: dict[str, Any]) -> bytes:
    """Stable bytes: keys in the order written, two-space indent, a final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@functools.cache
def _validator() -> Any:
    """Built once per process: a build checks every VO's file, and publish checks them again."""
    from release.jsonschema_loader import load_jsonschema

    jsonschema = load_jsonschema()
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(_inlined(schema, schema.get("$defs", {})))


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with each local `#/$defs/<name>` reference replaced by its definition.

    The same schema, validated about twice as fast: jsonschema resolves a `$ref` through its
    registry on every use, and a pilot.json goes through about forty of them. The definitions
    do not refer to themselves, so the expansion ends.
    """
    if isinstance(node, list):
        return [_inlined(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if set(siblings) - {"description", "title"}:
            raise ValueError(f"{SCHEMA_PATH.name}: {ref} has validating siblings")
        return {**_inlined(defs[ref.removeprefix("#/$defs/")], defs), **siblings}
    return {key: _inlined(value, defs) for key, value in node.items()}


def validate(document: dict[str, Any], vo: str, tag: str, where: str) -> None:
    """Refuse a pilot.json the Pilot would misread: the schema, then the release first."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = "/".join(str(part) for part in first.absolute_path) or "(top level)"
        raise BadInput(
            f"pilot.json does not match {SCHEMA_PATH.name} at {path}: {first.message}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            where=where,
            fix="correct the setting in release.toml; the schema states what the Pilot reads",
        )
    for section in ("Defaults", vo):
        first_version = document[section]["Pilot"]["Version"].split(",", 1)[0].strip()
        if first_version != tag:
            raise BadInput(
                f"pilot.json's {section}/Pilot/Version starts with {first_version!r}, not "
                f"with the release {tag}: the Pilot would install another release",
                where=f"{where}.Version",
                fix=f"list {tag} first, or leave Version out",
            )
