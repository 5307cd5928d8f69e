"""A VO's built pilot folder as CVMFS serves it: checked as the wrapper would, then laid out.

A pilot wrapper trusts a pilot folder through its checksums.sha512 alone, and finds out
only on a worker node. So before anything is published, the folder `pilot build` wrote is
checked the same way (every file against checksums.sha512, pilot.tar holding exactly the
loose modules) and its pilot.json must install this very release: a byte changed after the
build is refused here (exit 2, nothing opened) rather than by every grid job. The folder is
published inside the release's own version folder, `<prefix>/<tag>/pilot/<vo>/`, in the
release's transaction: it appears with the release, is as immutable as the release, and
`<prefix>/pilot` (where the wrapper looks) is a link that `promote` moves with `pro`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.errors import BadInput
from release.pilot import archive

if TYPE_CHECKING:
    from release.config import ReleaseConfig

#: Beside the built folders: the trees handed to the publisher (hardlinks and a manifest).
STAGING = ".publish"


def _refuse(folder: Path, what: str, vo: str, tag: str) -> BadInput:
    return BadInput(
        f"the pilot files of {vo} for {tag} {what}",
        where=str(folder),
        fix=f"build them again (dirac-release pilot build --vo {vo} --version {tag}); never "
        "edit a built pilot folder by hand",
    )


def read_checked(folder: Path, vo: str, tag: str) -> dict[str, bytes]:
    """The folder's files, once they pass every check the wrapper and the Pilot would make."""
    if not folder.is_dir():
        raise BadInput(
            f"the pilot files of {vo} for {tag} are not built",
            where=str(folder),
            fix=f"build them first: dirac-release pilot build --vo {vo} --version {tag}",
        )
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    others = sorted(p.name for p in folder.iterdir() if not p.is_file() or p.is_symlink())
    if others:
        raise _refuse(folder, f"hold what is not a plain file: {', '.join(others)}", vo, tag)
    for name in (archive.CHECKSUMS_NAME, archive.JSON_NAME, archive.TAR_NAME):
        if name not in files:
            raise _refuse(folder, f"lack {name}", vo, tag)
    listed: dict[str, str] = {}
    for number, line in enumerate(files[archive.CHECKSUMS_NAME].decode("ascii", "replace")
                                  .splitlines(), 1):  # fmt: skip
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 128:
            raise _refuse(folder, f"have a malformed {archive.CHECKSUMS_NAME} (line {number})",
                          vo, tag)  # fmt: skip
        listed[name] = digest
    unlisted = sorted(set(files) - set(listed) - {archive.CHECKSUMS_NAME})
    missing = sorted(set(listed) - set(files))
    if unlisted or missing:
        what = "; ".join(
            part
            for part in (
                f"not in {archive.CHECKSUMS_NAME}: {', '.join(unlisted)}" if unlisted else "",
                f"listed but missing: {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise _refuse(folder, f"do not match {archive.CHECKSUMS_NAME} ({what})", vo, tag)
    wrong = [name for name, digest in listed.items() if archive.sha512(files[name]) != digest]
    if wrong:
        raise _refuse(
            folder,
            f"differ from {archive.CHECKSUMS_NAME} for {', '.join(sorted(wrong))} (the pilot "
            "wrapper would stop on every worker node with a checksum mismatch)",
            vo,
            tag,
        )
    with tarfile.open(fileobj=io.BytesIO(files[archive.TAR_NAME]), mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
        modules = {name for name in files if name.endswith(".py")}
        if set(members) != modules or any(
            tar.extractfile(members[name]).read() != files[name]  # type: ignore[union-attr]
            for name in modules
        ):
            raise _refuse(folder, f"have a {archive.TAR_NAME} that is not their loose modules",
                          vo, tag)  # fmt: skip
    from release.pilot import pilotjson

    try:
        document = json.loads(files[archive.JSON_NAME])
    except ValueError as exc:
        raise _refuse(
            folder, f"have a {archive.JSON_NAME} that is not JSON ({exc})", vo, tag
        ) from exc
    pilotjson.validate(document, vo, tag, f"{folder / archive.JSON_NAME}")
    return files


def stage(
    config: ReleaseConfig, product: str, tag: str, root: Path
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Per VO of the product: a checked tree (hardlinks to the built files) and its manifest."""
    from cvmfs import manifest_rules
    from cvmfs.bundle_contract import normal_mode
    from cvmfs.tree_check import ANY_ARCH
    from release.build import manifest as mf

    staged: dict[str, tuple[Path, dict[str, Any]]] = {}
    for vo in config.product_pilots(product):
        folder = root / vo / tag
        files = read_checked(folder, vo, tag)
        tree = root / STAGING / vo / tag
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir(parents=True)
        for name in files:
            os.link(folder / name, tree / name)
        # The entries from the bytes just checked (the tree is hardlinks to those files), not
        # from reading them all again: the publisher verifies the staged and published trees
        # against these entries, so a file changed meanwhile is still caught.
        entries = [
            {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "mode": f"{normal_mode((folder / name).lstat().st_mode):o}"}
            for name, data in sorted(files.items())
        ]  # fmt: skip
        manifest = {
            "schema": mf.SCHEMA,
            "product": f"pilot-{vo}",
            "version": tag.lstrip("v"),
            "tag": tag,
            "platform": ANY_ARCH,
            "files": entries,
            "totals": {"files": len(entries), "bytes": sum(len(d) for d in files.values())},
        }
        manifest_rules.validate(f"pilot files of {vo}", manifest)
        mf.manifest_path(tree).parent.mkdir(parents=True, exist_ok=True)
        mf.manifest_path(tree).write_text(mf.dump(manifest), encoding="utf-8")
        staged[vo] = (tree, manifest)
    return staged
