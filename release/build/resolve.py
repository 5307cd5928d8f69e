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
from release.build.source import ProductSource
from release.build.uvtool import run_uv, uv_env, uv_version
from release.config import Platform, Product


@dataclass(frozen=True)
class Lock:
    platform: str
    python_platform: str
    text: str

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
            return Lock(arch, python_platform, cached.read_text(encoding="utf-8"))
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
        run_uv(
            args, cwd=work, env=uv_env(), what=f"resolving for {arch}", platform=arch,
            searched=f"base {base.label}" if base is not None else None,
        )  # fmt: skip
        text = (work / "requirements.lock").read_text(encoding="utf-8")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp_file = cached.with_suffix(f".tmp{id(text)}")
        tmp_file.write_text(text, encoding="utf-8")
        tmp_file.replace(cached)
    return Lock(arch, python_platform, text)
