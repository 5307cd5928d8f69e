"""Locking: resolve the product and its dependencies for one target platform, with hashes.

The lock is the identity of a bundle: two builds with the same lock install the same bytes,
so the lock's digest keys the bundle cache.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from release.base.record import PlatformRecord
from release.build.sdist import BuiltWheel, NoSource, build_pure_wheel, missing_wheels
from release.build.source import ProductSource
from release.build.uvtool import NoWheel, run_uv, uv_env, uv_version
from release.config import Platform, Product

#: Sources built into wheels for one resolution, at most (each one found by a failed try).
MAX_SOURCE_BUILDS = 8


@dataclass(frozen=True)
class Lock:
    platform: str
    python_platform: str
    text: str
    #: Pure-Python wheels built from sources that the lock pins (their hashes are in it).
    source_wheels: tuple[BuiltWheel, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def pins(self) -> dict[str, str]:
        """name -> version of every locked distribution."""
        pins: dict[str, str] = {}
        for line in self.text.splitlines():
            if "==" in line and not line.startswith((" ", "#")):
                name, _, rest = line.partition("==")
                pins[name.strip()] = rest.split()[0].rstrip("\\").strip().split(";")[0]
        return pins


def product_requirement(source: ProductSource, product: Product) -> str:
    """The product pinned to its version, with its extras: DIRAC[server]==8.0.55."""
    if not product.extras:
        return source.requirement
    return f"{source.distribution}[{','.join(product.extras)}]=={source.version}"


def inputs_fingerprint(
    source: ProductSource,
    product: Product,
    arch: str,
    platform: Platform,
    base: PlatformRecord | None = None,
) -> str:
    """Everything that decides the lock. With exclude-newer fixed, equal inputs give equal locks."""
    payload = {
        "source": source.as_dict(),
        "version": str(source.version),
        "wheel": source.wheel_sha256,
        "requirement": product_requirement(source, product),
        "base": base.digest if base else None,
        "requirements": list(product.requirements),
        "python": product.python,
        "platform": platform.python_platform(arch),
        "uv": uv_version(),
        "format": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def compile_lock(
    source: ProductSource,
    product: Product,
    arch: str,
    platform: Platform,
    cache_dir: Path,
    *,
    refresh: bool = False,
    base: PlatformRecord | None = None,
) -> Lock:
    """Resolve for `arch` on this machine, wheels only; cached when the inputs pin the index date.

    What the base provides is left out of the resolution by name (uv's --excludes): neither
    it nor what only it needs is locked. --no-emit-package would only hide it from the
    output, and still demand a wheel for gfal2.
    """
    python_platform = platform.python_platform(arch)
    cached = None
    if source.exclude_newer:
        key = inputs_fingerprint(source, product, arch, platform, base)
        cached = cache_dir / "locks" / f"{key}.lock"
        if cached.is_file() and not refresh:
            wheels = _cached_source_wheels(cached)
            if wheels is not None:
                return Lock(arch, python_platform, cached.read_text(encoding="utf-8"), wheels)
    built: list[BuiltWheel] = []
    with tempfile.TemporaryDirectory(prefix="dirac-release-lock-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text(
            "\n".join([product_requirement(source, product), *product.requirements]) + "\n",
            encoding="utf-8",
        )
        args = [
            "pip", "compile", "requirements.in", "--no-config", "--quiet", "--no-header",
            "--generate-hashes", "--only-binary", ":all:",
            "--python-platform", python_platform, "--python-version", product.python,
            "--output-file", "requirements.lock",
        ]  # fmt: skip
        if source.exclude_newer:
            args += ["--exclude-newer", source.exclude_newer]
        if source.find_links is not None:
            args += ["--find-links", str(source.find_links)]
        if base is not None:
            (work / "base-provides.txt").write_text(
                "".join(f"{d['name']}\n" for d in base.distributions.values()), encoding="utf-8"
            )
            args += ["--excludes", "base-provides.txt"]
        links = work / "source-wheels"
        for attempt in range(MAX_SOURCE_BUILDS + 1):
            try:
                run_uv(
                    args + (["--find-links", str(links)] if built else []),
                    cwd=work, env=uv_env(), what=f"resolving for {arch}", platform=arch,
                    searched=f"base {base.label}" if base is not None else None,
                )  # fmt: skip
                break
            except NoWheel as refusal:
                done = {wheel.name for wheel in built}
                todo = [m for m in missing_wheels(refusal.stderr) if m[0] not in done]
                if not todo or attempt == MAX_SOURCE_BUILDS:
                    raise
                for name, specifier in todo:
                    try:
                        wheel = build_pure_wheel(
                            name, specifier, source.exclude_newer, product.python, cache_dir
                        )
                    except NoSource:
                        raise refusal from None
                    links.mkdir(exist_ok=True)
                    (links / wheel.wheel.name).symlink_to(wheel.wheel)
                    built.append(wheel)
        text = (work / "requirements.lock").read_text(encoding="utf-8")
    pins = Lock(arch, python_platform, text).pins()
    used = tuple(w for w in built if _pinned(pins, w))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        sidecar = cached.with_suffix(".sources.json")
        partial = sidecar.with_suffix(f".tmp{id(text)}")
        partial.write_text(json.dumps([{**w.as_dict(), "path": str(w.wheel)} for w in used]))
        partial.replace(sidecar)
        tmp_file = cached.with_suffix(f".tmp{id(text)}")
        tmp_file.write_text(text, encoding="utf-8")
        tmp_file.replace(cached)
    return Lock(arch, python_platform, text, used)


def _pinned(pins: dict[str, str], wheel: BuiltWheel) -> bool:
    from packaging.utils import canonicalize_name

    return any(
        canonicalize_name(name) == canonicalize_name(wheel.name) and version == wheel.version
        for name, version in pins.items()
    )


def _cached_source_wheels(cached: Path) -> tuple[BuiltWheel, ...] | None:
    """The source-built wheels a cached lock pins, still intact; None to resolve again."""
    sidecar = cached.with_suffix(".sources.json")
    if not sidecar.is_file():
        return ()  # a lock cached before sources were built: it pins none
    try:
        entries = json.loads(sidecar.read_text(encoding="utf-8"))
        wheels = []
        for entry in entries:
            path = Path(entry["path"])
            with path.open("rb") as handle:
                if hashlib.file_digest(handle, "sha256").hexdigest() != entry["wheel_sha256"]:
                    return None
            wheels.append(BuiltWheel(entry["name"], entry["version"], entry["built_from"],
                                     entry["sdist_sha256"], path, entry["wheel_sha256"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tuple(wheels)
