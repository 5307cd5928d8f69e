"""The version policy: which tags may be released, from where, and to which channels.

A DIRAC release tag is the letter ``v`` followed by a normalized PEP 440 version (``v8.0.44``,
``v9.0.0a28``, ``v9.1.0rc1``). The rule is deliberately narrower than PEP 440:

* The tag must be spelled exactly as ``"v" + str(Version(...))``. Installers, CVMFS paths and
  release notes all use the normalized spelling; a tag like ``v9.0.0-alpha28`` would build a
  ``9.0.0a28`` wheel that no longer matches its own tag, and nobody could find one from the other.
* Only final releases and ``a``/``b``/``rc`` pre-releases exist. Dev, post and local versions and
  epochs are refused: DIRAC never publishes them, and letting one through would put a version on
  the grid that sorts somewhere nobody expects.
* Legacy tags (``v7r3p38``) predate DIRAC's move to PEP 440. They stay in the history of old
  repositories, so they are recognised (to be skipped, or refused with a clear reason) rather
  than reported as garbage.

Every refusal is a :class:`~release.errors.BadInput` whose ``fix`` shows the accepted spelling,
so the person who typed the tag can copy it instead of reading PEP 440.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from packaging.version import InvalidVersion, Version

from release.errors import BadInput

__all__ = [
    "Channel",
    "ReleaseVersion",
    "check_branch",
    "is_legacy_tag",
    "next_version",
    "parse_tag",
    "parse_version_arg",
]

# v7r3p38, v6r22, v7r0-pre12, v6r20p3-pre1: DIRAC's own scheme before 8.0.
_LEGACY_TAG = re.compile(r"v[0-9]+r[0-9]+(?:p[0-9]+)?(?:-pre[0-9]+)?", re.IGNORECASE | re.ASCII)
# rel-v8r0: the maintenance branch of one series, named in the legacy style on purpose.
_RELEASE_BRANCH = re.compile(r"rel-v([0-9]{1,6})r([0-9]{1,6})", re.ASCII)


MAX_TAG_LENGTH = 64
_MAX_DIGITS = 6
_NUMBER = rf"(?:0|[1-9][0-9]{{0,{_MAX_DIGITS - 1}}})"
# What a release version is spelled as, exactly: X.Y.Z and an optional a/b/rc pre-release.
_RELEASE_SPELLING = re.compile(
    rf"{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:(?:a|b|rc){_NUMBER})?\Z", re.ASCII
)


def branch_series(branch: str | None) -> str | None:
    """The series a maintenance branch releases ("8.0" for rel-v8r0), None for other branches."""
    if branch is None:
        return None
    match = _RELEASE_BRANCH.fullmatch(branch.removeprefix("refs/heads/"))
    return f"{int(match.group(1))}.{int(match.group(2))}" if match else None


_INTEGRATION_BRANCH = "integration"

_EXAMPLES = "e.g. v8.0.44 (final release) or v9.0.0a28 (pre-release; a, b or rc)"


class Channel(StrEnum):
    """Where a built release may be installed; the values appear in paths and JSON output."""

    CERTIFICATION = "certification"
    PRODUCTION = "production"


@dataclass(frozen=True, order=True)
class ReleaseVersion:
    """A version that passed the policy, so later stages never re-check the spelling.

    Construction validates again (``__post_init__``) so that code building one from an arbitrary
    :class:`~packaging.version.Version` cannot smuggle a dev or local version past the policy.
    Ordering compares the wrapped version, so ``sorted()`` follows PEP 440 (``a`` < ``b`` <
    ``rc`` < final), not string order.
    """

    version: Version

    def __post_init__(self) -> None:
        problem = _policy_problem(self.version, lambda v: "v" + str(v))
        if problem is not None:
            reason, fix = problem
            raise BadInput(f"version {self.version} {reason}", fix=fix)

    @property
    def tag(self) -> str:
        """The git tag that names this release."""
        return "v" + str(self.version)

    @property
    def is_prerelease(self) -> bool:
        """Pre-releases are certified but never promoted to production."""
        return self.version.pre is not None

    @property
    def series(self) -> str:
        """``major.minor``: the unit DIRAC maintains a ``rel-vXrY`` branch for."""
        return f"{self.version.major}.{self.version.minor}"

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Channels in the order a release walks through them.

        Every release is certified first; only a final release may then be promoted, because
        production sites must never pick up an ``a``/``b``/``rc`` build.
        """
        if self.is_prerelease:
            return (Channel.CERTIFICATION,)
        return (Channel.CERTIFICATION, Channel.PRODUCTION)

    def __str__(self) -> str:
        return str(self.version)


def is_legacy_tag(s: str) -> bool:
    """Whether ``s`` is an old ``vXrY[pZ][-preN]`` DIRAC tag, which history may still carry."""
    return _LEGACY_TAG.fullmatch(s) is not None


def parse_tag(tag: str, *, where: str | None = None) -> ReleaseVersion:
    """Accept only a tag this tool may release; refuse everything else with the right spelling.

    ``where`` names the origin (an option, a config key) so the error points at it.
    """
    return _parse(tag, require_prefix=True, where=where)


def parse_version_arg(text: str, *, where: str | None = None) -> ReleaseVersion:
    """Like :func:`parse_tag`, but a bare version (``1.0.0a1``) is accepted too.

    Command-line options take either form because people copy versions from PyPI (bare) as
    often as from git (tagged). Suggestions keep the form the user typed.
    """
    return _parse(text, require_prefix=False, where=where)


def check_branch(version: ReleaseVersion, branch: str | None) -> None:
    """Refuse a release made from a branch that must not produce it.

    The rules keep pre-releases and maintenance releases on their own lines:

    * ``integration`` is where the next series is developed, so it releases pre-releases only; a
      final release from it would skip the maintenance branch its fixes must live on.
    * ``rel-vXrY`` maintains series ``X.Y``, so it releases ``X.Y.*`` only (final or
      pre-release, e.g. ``9.1.0rc1`` from ``rel-v9r1``); anything else would mix two series.
    * ``master``, ``main`` and any other name carry no rule: extensions and DiracX use their own
      branching models, which this tool does not try to guess.
    * ``None`` (unknown, e.g. a detached checkout) carries no rule either.

    A leading ``refs/heads/`` is ignored so ``GITHUB_REF`` can be passed as is.
    """
    if branch is None:
        return
    name = branch.removeprefix("refs/heads/")
    if name == _INTEGRATION_BRANCH:
        if not version.is_prerelease:
            raise BadInput(
                f"branch {name!r} releases pre-releases only, but {version.tag} is a final release",
                fix=(
                    f"Release {version.tag} from its maintenance branch "
                    f"rel-v{version.version.major}r{version.version.minor}, or tag a pre-release "
                    f"such as v{version.version.base_version}a1 on {name!r}."
                ),
            )
        return
    match = _RELEASE_BRANCH.fullmatch(name)
    if match is None:
        return
    major, minor = int(match.group(1)), int(match.group(2))
    if (version.version.major, version.version.minor) != (major, minor):
        raise BadInput(
            f"branch {name!r} releases only the {major}.{minor} series ({major}.{minor}.*), "
            f"but {version.tag} belongs to series {version.series}",
            fix=(
                f"Release {version.tag} from rel-v{version.version.major}r{version.version.minor}"
                f" (or from integration if it is a pre-release), or pick a {major}.{minor}.* "
                f"version on {name!r}."
            ),
        )


def next_version(v: ReleaseVersion) -> ReleaseVersion:
    """The release after ``v`` in the same line, for suggestions and release automation.

    The smallest component is bumped: the pre-release number if there is one (``9.0.0a28`` ->
    ``9.0.0a29``), otherwise the last release component (``8.0.44`` -> ``8.0.45``, ``1.0`` ->
    ``1.1``). Moving to another phase or series is a human decision, so it is never guessed.
    """
    release = ".".join(str(part) for part in v.version.release)
    if v.version.pre is not None:
        phase, number = v.version.pre
        return ReleaseVersion(Version(f"{release}{phase}{number + 1}"))
    *head, last = v.version.release
    return ReleaseVersion(Version(".".join(str(part) for part in (*head, last + 1))))


def _parse(text: str, *, require_prefix: bool, where: str | None) -> ReleaseVersion:
    kind = "tag" if require_prefix else "version"
    generic_fix = f"Release tags are 'v' + a PEP 440 version, {_EXAMPLES}."

    def refuse(reason: str, fix: str) -> NoReturn:
        raise BadInput(reason, where=where, fix=fix)

    if not text:
        refuse(f"empty {kind}", generic_fix)
    if len(text) > MAX_TAG_LENGTH:
        # Never parse (or echo) a huge value: int() of thousands of digits raises, and a
        # message must stay readable.
        refuse(
            f"{kind} {text[:20]!r}... is {len(text)} characters long; a release tag has at most "
            f"{MAX_TAG_LENGTH}",
            generic_fix,
        )
    if any(ch.isspace() for ch in text):
        # Usually a copy-paste accident: say what the tag would be without it, if anything.
        stripped = "".join(text.split())
        try:
            parsed = _parse(stripped, require_prefix=require_prefix, where=None)
            bare = not require_prefix and stripped[:1] not in ("v", "V")
            fix = f"Use {parsed.version if bare else parsed.tag}."
        except BadInput as exc:
            fix = exc.fix or generic_fix
        refuse(f"{kind} {text!r} contains whitespace", fix)
    if is_legacy_tag(text) or (not require_prefix and is_legacy_tag("v" + text)):
        refuse(
            f"{text!r} is a legacy DIRAC tag (vXrY[pZ]) from before DIRAC adopted PEP 440 "
            "versions; this tool cannot release it",
            generic_fix,
        )

    has_prefix = text[:1] in ("v", "V")
    try:
        version = Version(text[1:] if has_prefix else text)
    except InvalidVersion:
        refuse(f"{kind} {text!r} is not 'v' + a PEP 440 version", generic_fix)

    # Spell suggestions in the form the user chose: a bare version argument stays bare.
    keep_bare = not require_prefix and not has_prefix

    def spell(v: Version) -> str:
        return str(v) if keep_bare else "v" + str(v)

    numbers = (*version.release, *(version.pre[1:] if version.pre else ()))
    if any(number >= 10**_MAX_DIGITS for number in numbers):
        refuse(
            f"{kind} {text!r} has a number longer than {_MAX_DIGITS} digits",
            f"Release tags are vX.Y.Z with numbers of at most {_MAX_DIGITS} digits, {_EXAMPLES}.",
        )
    problem = _policy_problem(version, spell)
    if problem is not None:
        reason, fix = problem
        refuse(f"{kind} {text!r} {reason}", fix)
    if len(version.release) != 3:
        # v1.0, v1.0.0 and v1.0.0.0 are one version to PEP 440 but three tags and three release
        # folders: only the X.Y.Z spelling exists.
        refuse(
            f"{kind} {text!r} has {len(version.release)} release number(s); DIRAC-family "
            "releases have exactly three (X.Y.Z)",
            f"Use {spell(_strip_extras(version))}."
            if len(version.release) < 3 or not any(version.release[3:])
            else "Tag the release as X.Y.Z, e.g. v9.0.1.",
        )
    if require_prefix and not has_prefix:
        refuse(
            f"tag {text!r} lacks the 'v' prefix that DIRAC release tags carry",
            f"Use {spell(version)}.",
        )
    if text != spell(version):
        refuse(
            f"{kind} {text!r} is not in normalized PEP 440 form",
            f"Use {spell(version)} (the spelling wheels and release paths use).",
        )
    if not _RELEASE_SPELLING.fullmatch(text.removeprefix("v")):
        # The last gate, whatever packaging accepts: ASCII digits only (re.ASCII: \d and
        # int() take any script's digits), no leading zeros, bounded numbers.
        refuse(
            f"{kind} {text!r} has a number longer than {_MAX_DIGITS} digits",
            f"Release tags are vX.Y.Z with numbers of at most {_MAX_DIGITS} digits, {_EXAMPLES}.",
        )
    return ReleaseVersion(version)


def _policy_problem(version: Version, spell: Callable[[Version], str]) -> tuple[str, str] | None:
    """The first reason DIRAC's policy refuses ``version``, with a fix; None if it is fine."""
    clean = _strip_extras(version)
    if version.epoch != 0:
        return ("has an epoch (N!), which DIRAC never uses", f"Drop the epoch: {spell(clean)}.")
    if version.dev is not None:
        return (
            "is a dev version, which DIRAC never releases",
            f"Tag a pre-release (a, b, rc) or a final release instead, e.g. {spell(clean)}.",
        )
    if version.local is not None:
        return (
            "has a local version label (+...), which cannot be published",
            f"Drop the label: {spell(clean)}.",
        )
    if version.post is not None:
        following = next_version(ReleaseVersion(clean)).version
        return (
            "is a post release, which DIRAC never uses (a fix gets a new release)",
            f"Release the next version instead, e.g. {spell(following)}.",
        )
    return None


def _strip_extras(version: Version) -> Version:
    """``version`` reduced to release + pre-release: the part DIRAC's policy allows."""
    numbers = (*version.release, 0, 0)[: max(3, len(version.release))]
    if len(numbers) > 3 and not any(numbers[3:]):
        numbers = numbers[:3]
    release = ".".join(str(part) for part in numbers)
    pre = "".join(str(part) for part in version.pre) if version.pre else ""
    return Version(release + pre)
