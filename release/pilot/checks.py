"""What the Pilot would get silently wrong, refused before anything is written.

Both refusals mirror how the Pilot really behaves. Its files and the VO's are merged flat into
one folder and the Pilot's win a name clash, so a VO module named like a Pilot module would be
dropped without a word. A command is looked up by class name in `<extension>Commands` for
each of `CommandExtensions`, then in `pilotCommands`; a name found nowhere makes the pilot stop
on the worker node, after a job slot was already spent. Classes are read with `ast`, never by
importing: pilot modules import the Pilot's own modules and run code at import time.
"""

from __future__ import annotations

import ast
import functools

from release.config.suggest import close_match
from release.errors import BadInput

PILOT_COMMANDS = "pilotCommands.py"


def defined_classes(name: str, source: bytes, where: str) -> set[str]:
    """The top-level class names of one module."""
    try:
        return set(_classes(name, source))
    except (SyntaxError, ValueError) as exc:
        raise BadInput(
            f"{name} is not valid Python: {exc}",
            where=where,
            fix="fix the module at its source; the Pilot could not import it either",
        ) from None


@functools.lru_cache(maxsize=512)
def _classes(name: str, source: bytes) -> frozenset[str]:
    """Parsed once per content: every VO of a build shares the Pilot's modules."""
    tree = ast.parse(source, filename=name)
    return frozenset(node.name for node in tree.body if isinstance(node, ast.ClassDef))


def check_no_shadowing(pilot: dict[str, bytes], modules: dict[str, bytes], where: str) -> None:
    """Refuse a VO module with the name of a Pilot module: the Pilot's would win, silently."""
    clash = sorted(set(pilot) & set(modules))
    if clash:
        raise BadInput(
            f"the VO's modules {', '.join(clash)} have the name of a Pilot module: the pilot "
            "keeps the Pilot's file and drops the VO's without a word",
            where=where,
            fix="rename the VO's module (e.g. myvoCommands.py, listed in CommandExtensions as "
            "'myvo'); to change a Pilot module, change the Pilot and pin its new commit",
        )


def check_commands(
    commands: dict[str, tuple[str, ...]],
    extensions: tuple[str, ...],
    pilot: dict[str, bytes],
    modules: dict[str, bytes],
    where: str,
) -> None:
    """Refuse a command of `Commands` that the Pilot's lookup would not find."""
    files = {**modules, **pilot}  # as merged: the Pilot's win (a clash is refused before)
    searched = [f"{ext}Commands.py" for ext in extensions] + [PILOT_COMMANDS]
    for ext, module in zip(extensions, searched, strict=False):
        if module not in files:
            raise BadInput(
                f"CommandExtensions lists {ext!r} but no {module} is among the pilot files "
                f"({', '.join(sorted(files))})",
                where=f"{where}.CommandExtensions",
                fix=f"add {module} to the VO's modules, or remove {ext!r} from CommandExtensions",
            )
    if PILOT_COMMANDS not in files:
        raise BadInput(
            f"the Pilot at this commit has no {PILOT_COMMANDS}",
            where=where,
            fix="pin a commit of the Pilot repository (DIRACGrid/Pilot or a fork of it)",
        )
    classes = {name: defined_classes(name, files[name], name) for name in sorted(files)
               if name.endswith(".py")}  # fmt: skip
    found = set().union(*(classes[name] for name in searched))
    for ce_type, names in commands.items():
        for command in names:
            if command in found:
                continue
            elsewhere = [name for name, defined in classes.items() if command in defined]
            key = f"{where}.Commands.{ce_type}"
            if elsewhere:
                ext = elsewhere[0].removesuffix("Commands.py")
                fix = (
                    f"{elsewhere[0]} defines it, but the Pilot looks for commands only in "
                    f"{', '.join(searched)}: add {ext!r} to CommandExtensions"
                    if elsewhere[0].endswith("Commands.py")
                    else f"{elsewhere[0]} defines it, but the Pilot looks for commands only "
                    f"in {', '.join(searched)}: move it into a <extension>Commands.py module"
                )
            else:
                close = close_match(command, sorted(found))
                fix = (f"did you mean {close!r}? " if close else "") + (
                    f"commands defined: {', '.join(sorted(found))}"
                )
            raise BadInput(
                f"command {command!r} is defined by no pilot module ({', '.join(searched)})",
                where=key,
                fix=fix,
            )
