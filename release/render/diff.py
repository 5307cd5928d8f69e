"""`render --diff`: what a render changes against the previous render of the same environment.

The previous render is the folder this render replaces (the same version rendered before,
e.g. after release.toml or the values changed), else the nearest older version rendered
for that environment. Rendered files never hold a secret, so the diff can be shown as is.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 4 * 1024 * 1024


def previous_render(env_folder: Path, tag: str) -> Path | None:
    """rendered/<env>/<tag> if it exists, else the newest version below `tag` rendered there."""
    from release.errors import BadInput
    from release.version import parse_version_arg

    same = env_folder / tag
    if same.is_dir() and not same.is_symlink():
        return same
    if not env_folder.is_dir():
        return None
    try:
        wanted = parse_version_arg(tag).version
    except BadInput:
        return None
    older = []
    for folder in env_folder.iterdir():
        if folder.name.startswith(".") or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            version = parse_version_arg(folder.name).version
        except BadInput:
            continue
        if version < wanted:
            older.append((version, folder))
    return max(older)[1] if older else None


def read_render(folder: Path | None) -> dict[str, str]:
    """Relative path -> text of every file of a rendered folder (none for None)."""
    if folder is None:
        return {}
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_FILE_BYTES:
            try:
                files[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
    return files


def diff_renders(
    before: dict[str, str], after: dict[str, str], before_name: str, after_name: str
) -> dict[str, Any]:
    """Per file: added, removed or changed, with a unified diff; unchanged files are counted."""
    changes: list[dict[str, Any]] = []
    unchanged = 0
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            unchanged += 1
            continue
        status = "added" if old is None else "removed" if new is None else "changed"
        text = "".join(
            difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                (new or "").splitlines(keepends=True),
                fromfile=f"{before_name}/{name}" if old is not None else "/dev/null",
                tofile=f"{after_name}/{name}" if new is not None else "/dev/null",
            )
        )
        changes.append({"file": name, "status": status, "diff": text})
    return {"against": before_name if before else None, "changes": changes, "unchanged": unchanged}
