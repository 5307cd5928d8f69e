"""[repositories.*]: a CVMFS repository, its links and tag format, and how to reach it."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from release import names
from release.config.base import _Frozen, _ssh_target


class Repository(_Frozen):
    """A CVMFS repository that releases are published to, and how to reach it."""

    backend: Literal["directory", "server"] = "directory"
    prefix: str = "dirac"
    links: tuple[str, ...] = ()
    keep: int = Field(default=5, ge=1, le=1000, strict=True)
    tag_format: str = "{product}-{tag}"
    wait: float = Field(default=120.0, ge=0, le=7200, strict=True)
    # directory backend: the stratum folder that holds <repository>/ (like /cvmfs)
    path: str | None = None
    # server backend: cvmfs_server on this node, or on `host` over SSH
    host: str | None = None
    user: str | None = None
    ssh_key: str | None = None
    ssh_options: tuple[str, ...] = ()
    cvmfs_server: str = "cvmfs_server"
    mount_root: str = "/cvmfs"
    stratum_root: str = "/srv/cvmfs"
    spool_root: str = "/var/spool/cvmfs"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        fix = "a relative path inside the repository, like 'dirac' or 'lhcb/dirac'"
        if len(value) > 255:
            raise names.BadValue(
                f"prefix {names.shown(value)} is longer than 255 characters", f"use {fix}"
            )
        if value.startswith("/") or not value:
            raise names.BadValue(f"prefix {names.shown(value)} must be {fix}", f"use {fix}")
        for segment in value.split("/"):
            names.check("prefix segment", segment)
        return value

    @field_validator("links")
    @classmethod
    def _links(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            names.check("link", name)
            if name == "pro":
                raise ValueError(
                    "'pro' is moved only by promotion; list only the links publish moves"
                )
            if _looks_like_release(name):
                raise names.BadValue(
                    f"link name {names.shown(name)} looks like a release version or tag: a "
                    "release folder of that name would collide with it",
                    "name links with a word that is not a version, like 'latest'",
                )
        if len(set(value)) != len(value):
            twice = sorted({name for name in value if value.count(name) > 1})
            raise names.BadValue(
                f"link {names.shown(twice[0])} is listed twice", "list each link once"
            )
        return value

    @field_validator("tag_format")
    @classmethod
    def _tag_format(cls, value: str) -> str:
        """Only bare {product}, {tag}, {version}: str.format would otherwise reach attributes
        and items of the values (or fail with a traceback at publish time), and a format
        without {tag} or {version} gives every release the same CVMFS tag."""
        import string

        allowed = ("product", "tag", "version")
        fix = 'use only {product}, {tag} and {version}, bare, e.g. tag_format = "{product}-{tag}"'
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise names.BadValue(
                f"tag_format {names.shown(value)} is not a format: {exc}",
                fix + " (write {{ and }} for literal braces)",
            ) from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in allowed or spec or conversion:
                written = (
                    "{" + field + (f"!{conversion}" if conversion else "")
                    + (f":{spec}" if spec else "") + "}"
                )  # fmt: skip
                raise names.BadValue(
                    f"tag_format placeholder {names.shown(written)} is not allowed",
                    fix,
                )
        if not any(field in ("tag", "version") for _, field, _, _ in parsed):
            raise names.BadValue(
                f"tag_format {names.shown(value)} contains neither {{tag}} nor {{version}}: "
                "every release needs its own CVMFS tag",
                fix,
            )
        example = value.format(product="DIRAC", tag="v9.0.0a29", version="9.0.0a29")
        problem = names.name_problem(example)
        if problem is not None:
            raise names.BadValue(
                f"tag_format {names.shown(value)} gives the tag {names.shown(example)}, which "
                f"{problem}",
                fix,
            )
        return value

    @model_validator(mode="after")
    def _links_are_not_tags(self) -> Repository:
        """A link that reads as this repository's tag of some release is refused.

        Tags and links are different namespaces to CVMFS, but people (and `cvmfs` listings)
        read them side by side: `latest` next to `vodemo-v1.0.0` is clear, a link named like a
        tag is a release that is not one.
        """
        pattern = _tag_pattern(self.tag_format)
        for name in self.links:
            if pattern is not None and pattern.fullmatch(name):
                raise names.BadValue(
                    f"link name {names.shown(name)} reads as a tag of tag_format "
                    f"{names.shown(self.tag_format)}: it would be taken for a release",
                    "name links with a word that is not a version, like 'latest'",
                )
        return self

    @field_validator("host", "user")
    @classmethod
    def _ssh_args(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _ssh_target(str(info.field_name), value)

    @model_validator(mode="after")
    def _backend_needs(self) -> Repository:
        if self.backend == "directory" and not self.path:
            raise ValueError("the directory backend needs 'path', the stratum folder")
        return self


# Release-like spellings: a PEP 440 version with or without 'v' (what a version folder is
# named, before or after normalisation), and the legacy vXrY[pZ] DIRAC tags.
_VERSION_LIKE = r"[vV]?[0-9][0-9A-Za-z.!+_-]*"
_LEGACY_LIKE = r"[vV][0-9]+r[0-9]+(?:p[0-9]+)?(?:-pre[0-9]+)?"


def _looks_like_release(name: str) -> bool:
    """Whether `name` could be (or be mistaken for) a release folder in the prefix.

    Wider than PEP 440 on purpose: 'v1.2.3.x' or 'v2-beta' is no valid version but reads as
    one, and a name that starts with a digit or 'v' + digit is never a useful link name.
    """
    return bool(
        re.fullmatch(_LEGACY_LIKE, name, re.ASCII | re.IGNORECASE)
        or re.fullmatch(_VERSION_LIKE, name, re.ASCII)
    )


def _tag_pattern(tag_format: str) -> re.Pattern[str] | None:
    """A regex matching what `tag_format` gives for any product and release (None if invalid)."""
    import string

    parts: list[str] = []
    try:
        for literal, field, _spec, _conversion in string.Formatter().parse(tag_format):
            parts.append(re.escape(literal))
            if field == "product":
                parts.append(r"[A-Za-z][A-Za-z0-9_.-]*")
            elif field in ("tag", "version"):
                parts.append(_VERSION_LIKE)
            elif field is not None:
                return None
    except ValueError:
        return None
    return re.compile("".join(parts), re.ASCII)
