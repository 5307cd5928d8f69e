"""The build stage: from a tag to verified bundles for every platform.

Order matters for safety: every platform is resolved before anything is installed (a missing
aarch64 wheel refuses the whole build before x86_64 writes a byte), every platform is built
and verified in a private staging folder, and only then are all of them moved into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvmfs.bundle_contract import SUMS_NAME, format_sums, parse_sums_line
from release import __version__
from release.base.record import PlatformRecord
from release.build import manifest as mf
from release.build.layout import (
    MANIFEST_NAME,
    META_DIR,
    BaseRuntime,
    install,
    platform_dir,
    site_packages,
)
from release.build.resolve import Lock, compile_lock
from release.build.smoke import BaseAtHand, run_smoke, top_level_modules
from release.build.source import ProductSource, build_wheel, resolve_source
from release.build.tarball import FORMAT as TARBALL_FORMAT
from release.build.tarball import write_tarball_apart
from release.build.uvtool import uv_version
from release.config import PlatformName, Product, ReleaseConfig
from release.deflate import Deflate
from release.errors import BadInput, InfrastructureError
from release.ledger import Ledger
from release.progress import Progress
from release.version import ReleaseVersion, parse_version_arg

#: Bump when the bundle layout changes, so older cached bundles are rebuilt.
LAYOUT_VERSION = 2
LOCK_WAIT_S = 600


@dataclass
class PlatformBundle:
    platform: str
    tree: Path
    tarball: Path
    tarball_sha256: str
    manifest_sha256: str
    distributions: int
    files: int
    size: int
    elf_files: int
    seconds: float
    cached: bool
    smoke: str = "skipped"
    smoke_detail: str = ""
    #: Seconds per phase (install, base check, scan, smoke, tarball): where a build's time goes.
    phases: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "tree": str(self.tree),
            "tarball": str(self.tarball),
            "tarball_sha256": self.tarball_sha256,
            "manifest_sha256": self.manifest_sha256,
            "distributions": self.distributions,
            "files": self.files,
            "size": self.size,
            "elf_files": self.elf_files,
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
            "smoke": self.smoke,
            "smoke_detail": self.smoke_detail,
            "phases": {name: round(seconds, 2) for name, seconds in self.phases.items()},
        }


@dataclass
class BuildReport:
    product: str
    version: ReleaseVersion
    source: ProductSource
    out: Path
    bundles: list[PlatformBundle] = field(default_factory=list)
    seconds: float = 0.0
    #: Seconds of the phases shared by the platforms (the product's wheel, the locks).
    phases: dict[str, float] = field(default_factory=dict)
    #: The product's VOs' pilot folders built with the release: VO -> sha512 of checksums.
    pilots: dict[str, str] = field(default_factory=dict)

    @property
    def version_dir(self) -> Path:
        return self.out / self.version.tag

    def as_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "version": str(self.version),
            "tag": self.version.tag,
            "source": self.source.as_dict(),
            "out": str(self.version_dir),
            "sums": str(self.version_dir / SUMS_NAME),
            "seconds": round(self.seconds, 3),
            "phases": {name: round(seconds, 2) for name, seconds in self.phases.items()},
            "platforms": [bundle.as_dict() for bundle in self.bundles],
            **({"pilots": self.pilots} if self.pilots else {}),
        }


def _tarball_name(product: str, tag: str, arch: str) -> str:
    return f"{product}-{tag}-{platform_dir(arch)}.tar.gz"


def _bundle_key(
    lock: Lock,
    source: ProductSource,
    product: Product,
    deflate: Deflate,
    base: _OnBase | None = None,
) -> str:
    payload = {
        "lock": lock.sha256,
        # What the base decides in the bundle: the record, where diracosrc looks for the
        # base, and the overrides the manifest lists.
        "base": [
            base.record.digest,
            list(base.runtime.candidates),
            [o.model_dump() for o in product.base_overrides],
        ]
        if base
        else None,
        "python": product.python,
        "source": source.as_dict(),
        "compression": deflate.key,
        "tarball": TARBALL_FORMAT,
        "layout": LAYOUT_VERSION,
        "builder": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def check_writable(out: Path) -> None:
    """Refuse an unwritable output before any work, naming the folder that blocks it.

    Tried for real (a temporary file), because root passes every permission check yet still
    cannot write to a read-only mount or /proc.
    """
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(f"{probe} is not a folder", where=str(out), fix="choose another --out")
    try:
        handle, name = tempfile.mkstemp(dir=probe, prefix=".dirac-release-probe-")
    except OSError as exc:
        raise BadInput(
            f"cannot write to {probe} ({exc.strerror})",
            where=str(out),
            fix="choose a writable --out, or fix the permissions of that folder",
        ) from None
    os.close(handle)
    Path(name).unlink()


def read_sums(path: Path) -> dict[str, str]:
    """The version's SHA256SUMS so far, to merge this build's lines into.

    A line the publisher would refuse is dropped: rewriting the file repairs it rather than
    carrying the damage along.
    """
    sums: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parsed = parse_sums_line(line)
            if parsed is not None:
                sums[parsed[0]] = parsed[1]
    return sums


def _write_sums(path: Path, sums: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(format_sums(sums), encoding="utf-8")
    tmp.replace(path)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextlib.contextmanager
def _build_lock(cache_dir: Path, target: Path) -> Iterator[None]:
    """One build per output version at a time; a second one waits, bounded."""
    locks = cache_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
    from filelock import FileLock, Timeout

    try:
        with FileLock(locks / f"build-{key}.lock", timeout=LOCK_WAIT_S):
            yield
    except Timeout:
        raise InfrastructureError(
            f"another build of {target} has held its lock for {LOCK_WAIT_S}s"
        ) from None


def _cached(
    version_dir: Path,
    arch: str,
    key: str,
    tarball: Path,
    sums: dict[str, str],
    ledger: Ledger,
    seconds_from: float,
) -> PlatformBundle | None:
    """A finished bundle for the same key, still intact: reuse it instead of rebuilding."""
    tree = version_dir / platform_dir(arch)
    manifest = mf.read_manifest(tree)
    if manifest is None or manifest.get("bundle_key") != key or not tarball.is_file():
        return None
    manifest_rel = f"{platform_dir(arch)}/{META_DIR}/{MANIFEST_NAME}"
    if sums.get(tarball.name) is None or sums.get(manifest_rel) != mf.manifest_digest(
        mf.manifest_path(tree)
    ):
        return None
    if not mf.quick_check(tree, manifest) or _sha256(tarball) != sums[tarball.name]:
        return None
    smoke, detail = "skipped", "cached bundle, smoke test not recorded"
    for record in reversed(ledger.records("build")):
        earlier = {p["platform"]: p for p in record.get("platforms", [])}.get(arch)
        if earlier and earlier.get("manifest_sha256") == sums[manifest_rel]:
            smoke, detail = earlier["smoke"], earlier["smoke_detail"]
            break
    return PlatformBundle(
        platform=arch,
        tree=tree,
        tarball=tarball,
        tarball_sha256=sums[tarball.name],
        manifest_sha256=sums[manifest_rel],
        distributions=len(manifest["distributions"]),
        files=manifest["totals"]["files"],
        size=manifest["totals"]["bytes"],
        elf_files=manifest["totals"]["elf_files"],
        seconds=time.monotonic() - seconds_from,
        cached=True,
        smoke=smoke,
        smoke_detail=detail,
    )


def _build_one(
    staging: Path,
    name: str,
    product: Product,
    source: ProductSource,
    lock: Lock,
    key: str,
    deflate: Deflate,
    progress: Progress,
    started: float,
    base: _OnBase | None = None,
    members: Path | None = None,
) -> PlatformBundle:
    arch = lock.platform
    tree = staging / platform_dir(arch)
    phases: dict[str, float] = {}
    mark = _phase_clock(phases)
    progress.step(arch, "installing wheels")
    install(lock, source, product.python, tree, base.runtime if base else None)
    mark("install")
    base_use = None
    if base is not None:
        from release.base.check import check_base

        progress.step(arch, f"checking what base {base.record.label} provides")
        base_use = check_base(
            tree / site_packages(product.python),
            base.record,
            product=name,
            distribution=source.distribution,
            version=str(source.version),
            extras=product.extras,
            extra_requirements=product.requirements,
            overrides=product.base_overrides,
        ).as_dict(base.record)
        mark("base check")
    progress.step(arch, "hashing files, checking ELF headers")
    manifest_rel = f"{META_DIR}/{MANIFEST_NAME}"
    scan = mf.scan_tree(tree, arch, skip=frozenset({manifest_rel}))
    mf.raise_wrong_arch(scan, arch, tree)
    site = tree / site_packages(product.python)
    dists = mf.distributions(site)
    mark("hash and ELF check")
    progress.step(arch, "smoke test")
    modules = (
        list(product.smoke_imports)
        if product.smoke_imports is not None
        else (top_level_modules(site, source.distribution))
    )
    smoke = run_smoke(
        tree, arch, product.python, modules, base.at_hand if base else None,
        product.smoke_commands,
    )  # fmt: skip
    mark("smoke test")
    manifest = {
        "schema": mf.SCHEMA,
        "product": name,
        "version": str(source.version),
        "tag": source.version.tag,
        "platform": arch,
        "python_platform": lock.python_platform,
        "python": product.python,
        "source": source.as_dict(),
        "lock_sha256": lock.sha256,
        "bundle_key": key,
        "builder": {"dirac-release": __version__, "uv": uv_version(), "layout": LAYOUT_VERSION},
        "distributions": dists,
        **({"base": base_use} if base_use is not None else {}),
        **(
            {"built_from_source": [w.as_dict() for w in lock.source_wheels]}
            if lock.source_wheels
            else {}
        ),
        "files": scan.files,
        "totals": {
            "files": len(scan.files),
            "bytes": scan.total_bytes,
            "elf_files": scan.elf_files,
        },
    }
    text = mf.dump(manifest)
    mf.manifest_path(tree).write_text(text, encoding="utf-8")
    progress.step(arch, "packing tarball")
    tarball = staging / _tarball_name(name, source.version.tag, arch)
    digest = write_tarball_apart(
        tree, f"{source.version.tag}/{platform_dir(arch)}", tarball, source.source_date_epoch,
        deflate.level, engine=deflate.engine, cache=members, sha256={f["path"]: f["sha256"] for f in scan.files if "sha256" in f},
    )  # fmt: skip
    mark("tarball")
    return PlatformBundle(
        platform=arch,
        tree=tree,
        tarball=tarball,
        tarball_sha256=digest,
        manifest_sha256=mf.digest_bytes(text.encode()),
        distributions=len(dists),
        files=len(scan.files),
        size=scan.total_bytes,
        elf_files=scan.elf_files,
        seconds=time.monotonic() - started,
        cached=False,
        smoke=smoke.status,
        smoke_detail=smoke.detail,
        phases=phases,
    )


def _phase_clock(phases: dict[str, float]) -> Callable[[str], None]:
    """mark(name) books the time since the previous mark (or the clock's start) to name."""
    last = [time.monotonic()]

    def mark(name: str) -> None:
        now = time.monotonic()
        phases[name] = phases.get(name, 0.0) + now - last[0]
        last[0] = now

    return mark


@dataclass(frozen=True)
class _OnBase:
    """A platform's base: its record (what it provides), where bundles find it at run time,
    and the base itself when it is on this machine (for the smoke test)."""

    record: PlatformRecord
    runtime: BaseRuntime
    at_hand: BaseAtHand | None


def _bases(
    config: ReleaseConfig, product: Product, arches: list[PlatformName]
) -> dict[str, _OnBase]:
    """Each platform's base, checked before anything is resolved or written."""
    if product.base is None:
        return {}
    from release.base.record import check_unchanged, load_platform

    name, base = product.base, config.bases[product.base]
    repository = None
    if config.repositories:
        with contextlib.suppress(BadInput):
            repository = config.repository(None, product)
    found: dict[str, _OnBase] = {}
    for arch in arches:
        record = load_platform(config, name, arch)
        root = check_unchanged(config, record)
        at_hand = BaseAtHand(record.label, root, record.layout) if root is not None else None
        folder = f"diracos/{base.version}/{platform_dir(arch)}"
        candidates = [base.location.replace("{arch}", arch)] if base.location else []
        candidates.append(f"$DIRAC_RELEASE_PREFIX/../../{folder}")
        if repository is not None:
            repo_name, repo = repository
            candidates.append(f"{repo.mount_root}/{repo_name}/{repo.prefix}/{folder}")
        found[arch] = _OnBase(record, BaseRuntime(record.label, arch, tuple(candidates)), at_hand)
    return found


def _clean_stale_staging(out: Path) -> None:
    """Remove staging folders of builds whose process is gone (a crash or SIGKILL)."""
    for stale in out.glob(".staging-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)


def _commit(staging: Path, version_dir: Path, built: list[PlatformBundle]) -> list[PlatformBundle]:
    """Move finished bundles into place: tree, then tarball, then SHA256SUMS (the commit mark)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    sums_path = version_dir / SUMS_NAME
    sums = read_sums(sums_path)
    placed = []
    for bundle in built:
        final_tree = version_dir / bundle.tree.name
        final_tarball = version_dir / bundle.tarball.name
        if final_tree.exists():
            final_tree.rename(staging / f"old-{bundle.tree.name}")
        bundle.tree.rename(final_tree)
        bundle.tarball.replace(final_tarball)
        sums[final_tarball.name] = bundle.tarball_sha256
        sums[f"{final_tree.name}/{META_DIR}/{MANIFEST_NAME}"] = bundle.manifest_sha256
        bundle.tree, bundle.tarball = final_tree, final_tarball
        placed.append(bundle)
    _write_sums(sums_path, sums)
    return placed


def _build_pilots(
    config: ReleaseConfig, product: str, tag: str, out: Path, progress: Progress
) -> dict[str, str]:
    """The pilot folders of the product's VOs for this release, beside the bundles in
    `<out>/pilots/` (VO -> sha512 of its checksums.sha512): a release is published with them."""
    vos = config.product_pilots(product)
    if not vos:
        return {}
    from release.pilot.archive import CHECKSUMS_NAME, sha512
    from release.pilot.build import build_pilots
    from release.pilot.layout import version_rel
    from release.pilot.wrapper import write_wrapper
    from release.targets import for_product

    progress.step("pilots", f"pilot files of {', '.join(vos)}")
    built = [b for vo in vos for b in build_pilots(config, version=tag, vo=vo, out=out / "pilots")]
    layout = for_product(config, product).layout
    for b in built:
        # The script a SiteDirector would submit for these files once published: made now,
        # where the package index is reachable, for certification to run on the hosts.
        progress.step("pilots", f"pilot wrapper of {b.vo}")
        location = "file:" + layout.client_path(version_rel(layout.version_dir(tag), b.vo))
        write_wrapper(config, b.vo, b.folder, location)
    progress.done("pilots", "done")
    return {b.vo: sha512(b.files[CHECKSUMS_NAME]) for b in built}


def build_release(
    config: ReleaseConfig,
    *,
    version: str,
    product_name: str | None = None,
    platform: str = "all",
    out: Path | None = None,
    allow_dirty: bool = False,
    refresh: bool = False,
    progress: Progress | None = None,
) -> BuildReport:
    """Build (or reuse) the bundles of one product version for the chosen platforms."""
    started = time.monotonic()
    progress = progress or Progress(enabled=False)
    name, product = config.product(product_name)
    release_version = parse_version_arg(version)
    arches = config.platform_names(platform)
    out = (out or config.resolve_path(config.build.out)).absolute()
    check_writable(out)
    cache_dir = config.resolve_path(config.build.cache_dir)

    bases = _bases(config, product, arches)
    shared: dict[str, float] = {}
    mark = _phase_clock(shared)
    source = resolve_source(config, name, product, release_version, allow_dirty=allow_dirty)
    for arch in arches:
        progress.step(arch, f"building the {name} wheel" if source.kind == "git" else "resolving")
    source = build_wheel(source, product, cache_dir)
    mark("source and wheel")
    report = BuildReport(product=name, version=release_version, source=source, out=out,
                         phases=shared)  # fmt: skip
    deflate = Deflate(config.build.deflate, config.build.compression_level)

    def lock_for(arch: PlatformName) -> Lock:
        progress.step(arch, "resolving")
        on_base = bases.get(arch)
        return compile_lock(
            source, product, arch, config.platforms[arch], cache_dir, refresh=refresh,
            base=on_base.record if on_base else None,
        )  # fmt: skip

    jobs = min(config.build.jobs, len(arches))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        locks = list(pool.map(lock_for, arches))
    mark("locks")

    version_dir = out / release_version.tag
    ledger = config.ledger(name, release_version.tag)
    created_out = not out.exists()
    with _build_lock(cache_dir, version_dir):
        sums = read_sums(version_dir / SUMS_NAME)
        todo: list[tuple[Lock, str]] = []
        for lock in locks:
            on_base = bases.get(lock.platform)
            key = _bundle_key(lock, source, product, deflate, on_base)
            tarball = version_dir / _tarball_name(name, release_version.tag, lock.platform)
            hit = (
                None
                if refresh
                else _cached(version_dir, lock.platform, key, tarball, sums, ledger, started)
            )
            if hit is not None:
                progress.done(lock.platform, "cached")
                report.bundles.append(hit)
            else:
                todo.append((lock, key))
        if todo:
            out.mkdir(parents=True, exist_ok=True)
            _clean_stale_staging(out)
            staging = Path(tempfile.mkdtemp(dir=out, prefix=f".staging-{os.getpid()}-"))
            try:
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    futures = [
                        pool.submit(
                            _build_one,
                            staging,
                            name,
                            product,
                            source,
                            lock,
                            key,
                            deflate,
                            progress,
                            started,
                            bases.get(lock.platform),
                            cache_dir / "tar-members",
                        )
                        for lock, key in todo
                    ]
                    built = [future.result() for future in futures]
                report.bundles.extend(_commit(staging, version_dir, built))
                for bundle in built:
                    progress.done(bundle.platform, "done")
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                if created_out:
                    shutil.rmtree(out, ignore_errors=True)
                raise
            shutil.rmtree(staging, ignore_errors=True)
    report.bundles.sort(key=lambda bundle: arches.index(bundle.platform))  # type: ignore[arg-type]
    report.pilots = _build_pilots(config, name, release_version.tag, out, progress)
    report.seconds = time.monotonic() - started
    if not all(bundle.cached for bundle in report.bundles):
        ledger.record("build", report.as_dict())  # a rebuild that reused everything did nothing
    return report
