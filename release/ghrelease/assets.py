"""What a GitHub release of a version carries, made from the checked bundles.

The tarballs (one per platform), each platform's manifest, an SBOM of the bundled
distributions (CycloneDX 1.5 JSON, one component per distribution per platform with its
package URL), and a `SHA256SUMS` over all of them by the names they have on the release, so
`sha256sum -c SHA256SUMS` works in a folder of downloaded assets. Everything is made from
the build output after the bundle contract's checks (SHA256SUMS of the build, manifests), and
the same bundles always give the same bytes. The SBOM is checked against CycloneDX's own JSON
schema (cyclonedx-python-lib, offline) before anything is uploaded: a consumer's scanner that
rejects it would otherwise find out after the release is public.

Each built container image of the product's VOs goes too, one OCI archive per architecture
(`<vo>-<tag>-oci-<arch>.tar`: the image's OCI layout as a tar, what `skopeo copy
oci-archive:...` and `apptainer build x.sif oci-archive:...` read), written reproducibly
(sorted, owner 0, time 0), so a site can take the image without CVMFS.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from release.errors import CheckFailed

SBOM_SPEC = "1.5"


@dataclass(frozen=True)
class Asset:
    name: str
    path: Path
    sha256: str
    size: int
    content_type: str


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sbom(product: str, tag: str, manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """CycloneDX JSON: the release as the application, each bundled distribution a library."""
    components = []
    for arch, manifest in sorted(manifests.items()):
        for dist in manifest.get("distributions", []):
            name, version = str(dist["name"]), str(dist["version"])
            purl = f"pkg:pypi/{name.lower().replace('_', '-')}@{version}"
            components.append({
                "type": "library",
                "bom-ref": f"{arch}/{purl}",
                "name": name,
                "version": version,
                "purl": purl,
                "properties": [{"name": "dirac-release:platform", "value": f"Linux-{arch}"}],
            })  # fmt: skip
    digest = hashlib.sha256(
        "".join(f"{a} {json.dumps(m.get('distributions', []), sort_keys=True)}\n"
                for a, m in sorted(manifests.items())).encode()
    ).hexdigest()  # fmt: skip
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SBOM_SPEC,
        # The same bundles give the same document: the serial number derives from them.
        "serialNumber": f"urn:uuid:{uuid.UUID(digest[:32])}",
        "version": 1,
        "metadata": {
            "component": {
                "type": "application",
                "bom-ref": f"{product}@{tag}",
                "name": product,
                "version": tag,
            },
            "tools": {"components": [{"type": "application", "name": "dirac-release"}]},
        },
        "components": components,
    }


def check_sbom(document: dict[str, Any], where: str) -> None:
    """Refuse an SBOM that CycloneDX's schema for SBOM_SPEC rejects, naming the first fault."""
    from release.jsonschema_loader import load_jsonschema

    load_jsonschema()  # before cyclonedx imports it (the IRI grammar loads when first used)
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    version = SchemaVersion.from_version(SBOM_SPEC)
    fault = JsonStrictValidator(version).validate_str(json.dumps(document))
    if fault is not None:
        error: Any = getattr(fault, "data", None)
        what = (f"{error.json_path}: {error.message}" if hasattr(error, "json_path")
                else str(fault).strip().splitlines()[0])  # fmt: skip
        raise CheckFailed(
            f"the SBOM is not valid CycloneDX {SBOM_SPEC}: {what[:300]}",
            where=where,
            fix="a bundled distribution's name or version cannot be written as CycloneDX "
            "asks; look at the manifests' distributions, then run the same command again",
        )


def oci_archive(layout: Path, dest: Path) -> None:
    """The OCI layout folder as an uncompressed tar, the same bytes for the same layout."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(layout).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            elif info.isdir():
                tar.addfile(info)


def make_assets(
    out_dir: Path, product: str, tag: str, trees: dict[str, Path],
    manifests: dict[str, dict[str, Any]], tarballs: list[Path],
    images: dict[str, Path] | None = None,
) -> list[Asset]:  # fmt: skip
    """Write the release's files into out_dir (replaced), return them with their digests."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    files: list[tuple[Path, str]] = []
    for tarball in tarballs:
        dest = out_dir / tarball.name
        shutil.copyfile(tarball, dest)
        files.append((dest, "application/gzip"))
    for arch, tree in sorted(trees.items()):
        dest = out_dir / f"{product}-{tag}-Linux-{arch}.manifest.json"
        shutil.copyfile(tree / ".dirac-release" / "manifest.json", dest)
        files.append((dest, "application/json"))
    for name, layout in sorted((images or {}).items()):
        dest = out_dir / name
        oci_archive(layout, dest)
        files.append((dest, "application/x-tar"))
    bom = out_dir / f"{product}-{tag}.cdx.json"
    document = sbom(product, tag, manifests)
    check_sbom(document, str(bom))
    bom.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    files.append((bom, "application/vnd.cyclonedx+json"))
    assets = [Asset(p.name, p, _sha256(p), p.stat().st_size, ct) for p, ct in files]
    sums = out_dir / "SHA256SUMS"
    sums.write_text(
        "".join(f"{a.sha256}  {a.name}\n" for a in sorted(assets, key=lambda a: a.name))
    )
    assets.append(Asset(sums.name, sums, _sha256(sums), sums.stat().st_size, "text/plain"))
    return assets
