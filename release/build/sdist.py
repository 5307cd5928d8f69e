"""Pure-Python distributions published only as a source, built once into a wheel.

Bundles hold wheels only: nothing is compiled for a target at build time. Real releases
still meet distributions that were published only as sources at their date (rucio-clients at
DIRAC v8.0.55's commit, tornado-m2crypto). When such a source builds into a `py3-none-any`
wheel it holds no code for any platform, so it is built here, once: from the index's file
(its sha256 checked), with build dependencies as the index was at the release's date and
SOURCE_DATE_EPOCH at the source's upload time (the same wheel bytes on every machine), then
cached by the source's digest. A source whose wheel is tagged for a platform would compile
code for the target, and is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from release.build.uvtool import run_uv, uv_env
from release.errors import BadInput, InfrastructureError

DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT_S = 60
MAX_SOURCE_BYTES = 200 * 1024 * 1024
#: Wheel tags that carry no code for any platform.
PURE_TAGS = ("-py3-none-any.whl", "-py2.py3-none-any.whl")


class NoSource(BadInput):
    """Neither a wheel nor a source: the resolver's own refusal says it better."""


@dataclass(frozen=True)
class BuiltWheel:
    name: str
    version: str
    sdist: str  # the source's file name
    sdist_sha256: str
    wheel: Path
    wheel_sha256: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "built_from": self.sdist,
            "sdist_sha256": self.sdist_sha256,
            "wheel": self.wheel.name,
            "wheel_sha256": self.wheel_sha256,
        }


def index_url() -> str:
    """The index uv resolves against (its own variables), as a simple-API base URL."""
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value.rstrip("/")
    return DEFAULT_INDEX


def _get(url: str, accept: str | None = None) -> bytes:
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (the index's https URL)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            data: bytes = response.read(MAX_SOURCE_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise InfrastructureError(
            f"the package index cannot be reached ({url}): {exc}",
            fix="check the network, or the index settings (UV_DEFAULT_INDEX)",
        ) from None
    if len(data) > MAX_SOURCE_BYTES:
        raise InfrastructureError(f"{url} is larger than {MAX_SOURCE_BYTES} bytes")
    return data


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def find_source(name: str, specifier: str, exclude_newer: str | None) -> dict[str, str]:
    """The newest source of `name` in `specifier` on the index at `exclude_newer`."""
    from packaging.specifiers import SpecifierSet
    from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
    from packaging.version import Version

    key = canonicalize_name(name)
    base = index_url()
    page = _get(f"{base}/{key}/", "application/vnd.pypi.simple.v1+json")
    try:
        files = json.loads(page)["files"]
    except (ValueError, KeyError, TypeError):
        raise InfrastructureError(
            f"the index at {base} gave no JSON file list for {name} (PEP 691)"
        ) from None
    wanted = SpecifierSet(specifier)
    cutoff = _parse_time(exclude_newer) if exclude_newer else None
    best: tuple[Version, dict[str, str]] | None = None
    for entry in files:
        filename = str(entry.get("filename", ""))
        if not filename.endswith((".tar.gz", ".zip")) or entry.get("yanked"):
            continue
        try:
            found_name, version = parse_sdist_filename(filename)
        except InvalidSdistFilename:
            continue
        uploaded = entry.get("upload-time")
        if found_name != key or not wanted.contains(version):
            continue
        if cutoff is not None and (not uploaded or _parse_time(uploaded) > cutoff):
            continue
        sha256 = (entry.get("hashes") or {}).get("sha256")
        if not sha256 or (best is not None and version <= best[0]):
            continue
        best = (version, {"filename": filename, "url": str(entry["url"]), "sha256": sha256,
                          "uploaded": str(uploaded or ""), "version": str(version)})  # fmt: skip
    if best is None:
        raise NoSource(
            f"{name}{specifier} has neither a wheel nor a source on the index"
            + (f" at {exclude_newer}" if exclude_newer else ""),
            fix=f"pin a version of {name} that was published, or move exclude_newer",
        )
    return best[1]


def build_pure_wheel(
    name: str, specifier: str, exclude_newer: str | None, python: str, cache_dir: Path
) -> BuiltWheel:
    """Build (once; cached by the source's digest) a py3-none-any wheel from the source."""
    from filelock import FileLock

    source = find_source(name, specifier, exclude_newer)
    folder = cache_dir / "source-wheels" / source["sha256"]
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Both platforms may need the same source at once: one builds it, the other waits.
    with FileLock(folder.parent / f".{source['sha256']}.lock", timeout=TIMEOUT_S * 10):
        for cached in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
            return _built(name, source, cached)
        return _build(name, source, exclude_newer, python, folder)


def _build(
    name: str, source: dict[str, str], exclude_newer: str | None, python: str, folder: Path
) -> BuiltWheel:
    from urllib.parse import urljoin

    url = urljoin(index_url() + "/", source["url"])
    data = _get(url)
    if hashlib.sha256(data).hexdigest() != source["sha256"]:
        raise InfrastructureError(
            f"{source['filename']} from {url} does not match the index's sha256",
            fix="try again; if it persists, the index or a proxy serves altered files",
        )
    epoch = str(int(_parse_time(source["uploaded"]).timestamp())) if source["uploaded"] else "0"
    with tempfile.TemporaryDirectory(prefix="dirac-release-sdist-") as tmp:
        work = Path(tmp)
        (work / source["filename"]).write_bytes(data)
        env = uv_env()
        env["SOURCE_DATE_EPOCH"] = epoch
        if exclude_newer:
            env["UV_EXCLUDE_NEWER"] = exclude_newer
        run_uv(
            ["build", "--wheel", "--no-config", "--quiet", "--python", python,
             "--out-dir", str(work / "out"), str(work / source["filename"])],
            cwd=work, env=env, what=f"building {source['filename']} into a wheel",
        )  # fmt: skip
        wheels = sorted((work / "out").glob("*.whl"))
        if len(wheels) != 1:
            raise InfrastructureError(f"building {source['filename']} gave {len(wheels)} wheels")
        if not wheels[0].name.endswith(PURE_TAGS):
            tag = "-".join(wheels[0].name.removesuffix(".whl").split("-")[-3:])
            raise BadInput(
                f"{name} {source['version']} is published only as a source, and it compiles "
                f"code for the target (its wheel is tagged {tag}); bundles hold no code "
                "compiled at build time",
                fix=f"pin a version of {name} with wheels for every platform, or provide it "
                "from the product's base",
            )
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / wheels[0].name
        partial = folder / f".{wheels[0].name}.{os.getpid()}"
        shutil.copyfile(wheels[0], partial)
        partial.replace(final)
    return _built(name, source, final)


def _built(name: str, source: dict[str, str], wheel: Path) -> BuiltWheel:
    with wheel.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return BuiltWheel(name, source["version"], source["filename"], source["sha256"], wheel, digest)


_NO_WHEELS = re.compile(
    r"`?([A-Za-z0-9][A-Za-z0-9._-]*)`?((?:[=<>!~]=?[^\s,`]+)(?:,\s*[=<>!~]=?[^\s,`]+)*)?`?"
    r"\s+(?:has|have)\s+no\s+(?:usable\s+)?wheels"
)


def missing_wheels(stderr: str) -> list[tuple[str, str]]:
    """(name, specifier) of what uv found only as sources, from its resolution error."""
    found = []
    for name, spec in _NO_WHEELS.findall(stderr):
        if name.lower() in ("versions", "of", "and", "because", "all"):
            continue
        if (name, spec) not in found:
            found.append((name, spec.replace(" ", "")))
    return found
