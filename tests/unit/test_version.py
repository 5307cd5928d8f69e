"""The version policy: what may be released, from which branch, and what comes next."""

from __future__ import annotations

import pytest
from packaging.version import Version

from release.errors import EXIT_BAD_INPUT, BadInput
from release.version import (
    Channel,
    ReleaseVersion,
    check_branch,
    is_legacy_tag,
    next_version,
    parse_tag,
    parse_version_arg,
)


def rv(text: str) -> ReleaseVersion:
    return parse_version_arg(text)


def words_of(text: str) -> list[str]:
    return [word.strip(".,:;()") for word in text.split()]


# --- accepted tags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "bare", "series", "prerelease"),
    [
        ("v8.0.44", "8.0.44", "8.0", False),
        ("v9.0.0a28", "9.0.0a28", "9.0", True),
        ("v0.0.1a13", "0.0.1a13", "0.0", True),
        ("v9.1.0rc1", "9.1.0rc1", "9.1", True),
        ("v9.1.0b2", "9.1.0b2", "9.1", True),
        ("v0.7.0", "0.7.0", "0.7", False),
        ("v10.12.300", "10.12.300", "10.12", False),
    ],
)
def test_parse_tag_accepts_release_tags(tag: str, bare: str, series: str, prerelease: bool) -> None:
    parsed = parse_tag(tag)
    assert parsed.version == Version(bare)
    assert parsed.tag == tag
    assert str(parsed) == bare
    assert parsed.series == series
    assert parsed.is_prerelease is prerelease


# --- refused tags ----------------------------------------------------------------------------


def refusal(tag: str) -> BadInput:
    with pytest.raises(BadInput) as info:
        parse_tag(tag)
    assert info.value.exit_code == EXIT_BAD_INPUT == 2
    assert info.value.fix, f"refusal of {tag!r} must say how to fix it"
    return info.value


@pytest.mark.parametrize("tag", ["v7r3p38", "v6r22", "v7r0-pre12", "v6r20p3-pre1", "V7R3P38"])
def test_legacy_tags_are_refused_as_legacy(tag: str) -> None:
    error = refusal(tag)
    assert "legacy DIRAC tag" in error.message
    assert "PEP 440" in error.message
    assert "cannot" in error.message
    assert error.fix is not None
    assert "v8.0.44" in error.fix


@pytest.mark.parametrize(
    ("tag", "words", "suggestion"),
    [
        ("8.0.44", "'v' prefix", "v8.0.44"),
        ("9.0.0a28", "'v' prefix", "v9.0.0a28"),
        ("v9.0.0.dev3", "dev version", "v9.0.0"),
        ("v9.0.0a3.dev1", "dev version", "v9.0.0a3"),
        ("v9.0.0+abc", "local version", "v9.0.0"),
        ("v9.0.0a2+ubuntu1", "local version", "v9.0.0a2"),
        ("v8.0.44.post1", "post release", "v8.0.45"),
        ("v9.0.0rc1.post1", "post release", "v9.0.0rc2"),
        ("v1!2.0", "epoch", "v2.0.0"),
        ("v1.0", "three", "v1.0.0"),
        ("v1.0.0.0", "three", "v1.0.0"),
        ("v2", "three", "v2.0.0"),
        ("v9.0a1", "three", "v9.0.0a1"),
        ("v9.0.0-alpha28", "normalized", "v9.0.0a28"),
        ("v9.0.0A28", "normalized", "v9.0.0a28"),
        ("v9.0.0c1", "normalized", "v9.0.0rc1"),
        ("v9.0.0pre1", "normalized", "v9.0.0rc1"),
        ("v08.0.44", "normalized", "v8.0.44"),
        ("V8.0.44", "normalized", "v8.0.44"),
        ("vv8.0.44", "normalized", "v8.0.44"),
        (" v8.0.44", "whitespace", "v8.0.44"),
        ("v8.0.44\n", "whitespace", "v8.0.44"),
        ("v8.0. 44", "whitespace", "v8.0.44"),
    ],
)
def test_refusal_suggests_the_right_spelling(tag: str, words: str, suggestion: str) -> None:
    error = refusal(tag)
    assert words in error.message
    assert repr(tag) in error.message
    assert error.fix is not None
    # A whole word, not a prefix of something longer (v8.0.45 vs v8.0.450).
    assert suggestion in words_of(error.fix)
    # And it really is acceptable, so copying it works.
    assert parse_tag(suggestion).tag == suggestion


def test_post_release_refusal_says_dirac_never_uses_them() -> None:
    error = refusal("v8.0.44.post1")
    assert "never" in error.message


@pytest.mark.parametrize("tag", ["", "vfoo", "v", "latest", "v8.0.x", "   ", "v9.0.0-foo"])
def test_non_versions_are_refused_with_the_general_form(tag: str) -> None:
    error = refusal(tag)
    assert error.fix is not None
    assert "v8.0.44" in error.fix
    assert "v9.0.0a28" in error.fix


def test_where_is_passed_through_for_the_cli() -> None:
    with pytest.raises(BadInput) as info:
        parse_tag("v7r3p38", where="--tag")
    assert info.value.where == "--tag"
    assert info.value.render().startswith("--tag: ")


# --- parse_version_arg -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["v1.0.0a1", "1.0.0a1"])
def test_version_arg_accepts_tag_or_bare_version(text: str) -> None:
    parsed = parse_version_arg(text)
    assert parsed.version == Version("1.0.0a1")
    assert parsed.tag == "v1.0.0a1"


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("1.0.0-a1", "1.0.0a1"),  # bare in, bare out
        ("v1.0.0-a1", "v1.0.0a1"),  # tag in, tag out
        ("1.0.0+local", "1.0.0"),
        ("1.0.0.post2", "1.0.1"),
        ("1.0.0.dev1", "1.0.0"),
        (" 1.0.0", "1.0.0"),
        (" v1.0.0", "v1.0.0"),
    ],
)
def test_version_arg_refusals_keep_the_users_form(text: str, suggestion: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_version_arg(text)
    assert info.value.exit_code == 2
    assert info.value.fix is not None
    assert suggestion in words_of(info.value.fix)


@pytest.mark.parametrize("text", ["v7r3p38", "7r3p38", "v7r0-pre12"])
def test_version_arg_refuses_legacy(text: str) -> None:
    with pytest.raises(BadInput, match="legacy DIRAC tag") as info:
        parse_version_arg(text)
    assert info.value.exit_code == 2


# --- legacy detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "legacy"),
    [
        ("v7r3p38", True),
        ("v6r22", True),
        ("v7r0-pre12", True),
        ("v6r20p3-pre1", True),
        ("v8.0.44", False),
        ("v9.0.0a28", False),
        ("7r3p38", False),  # a tag always had the v
        ("v7r3p38x", False),
        ("rel-v7r3", False),
        ("", False),
    ],
)
def test_is_legacy_tag(text: str, legacy: bool) -> None:
    assert is_legacy_tag(text) is legacy


# --- ReleaseVersion --------------------------------------------------------------------------


def test_prerelease_goes_to_certification_only() -> None:
    for text in ("9.0.0a28", "9.0.0b1", "9.1.0rc1"):
        assert rv(text).channels == (Channel.CERTIFICATION,)


def test_final_release_is_certified_then_promotable() -> None:
    assert rv("8.0.44").channels == (Channel.CERTIFICATION, Channel.PRODUCTION)


def test_channel_values_are_the_strings_used_in_paths() -> None:
    assert str(Channel.CERTIFICATION) == "certification"
    assert f"{Channel.PRODUCTION}" == "production"
    assert Channel("production") is Channel.PRODUCTION


def test_versions_sort_by_pep440_not_by_text() -> None:
    texts = ["9.0.0", "8.0.44", "9.0.0rc1", "8.0.9", "9.0.0a28", "9.0.0b1", "9.0.0a3", "10.0.0a1"]
    ordered = [str(v) for v in sorted(rv(t) for t in texts)]
    assert ordered == [
        "8.0.9",
        "8.0.44",
        "9.0.0a3",
        "9.0.0a28",
        "9.0.0b1",
        "9.0.0rc1",
        "9.0.0",
        "10.0.0a1",
    ]
    assert rv("8.0.9") < rv("8.0.44") <= rv("8.0.44")
    assert rv("9.0.0") > rv("9.0.0rc1") >= rv("9.0.0rc1")
    assert max(rv(t) for t in texts) == rv("10.0.0a1")


def test_release_version_is_hashable_and_equal_by_version() -> None:
    assert rv("v8.0.44") == rv("8.0.44")
    assert len({rv("8.0.44"), parse_tag("v8.0.44"), rv("8.0.45")}) == 2


@pytest.mark.parametrize("text", ["1.0.dev1", "1.0+x", "1.0.post1", "1!1.0"])
def test_release_version_cannot_be_built_around_the_policy(text: str) -> None:
    with pytest.raises(BadInput) as info:
        ReleaseVersion(Version(text))
    assert info.value.exit_code == 2


# --- branch rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "branch"),
    [
        ("9.0.0a28", "integration"),
        ("9.1.0rc1", "integration"),
        ("8.0.44", "rel-v8r0"),
        ("8.0.45a1", "rel-v8r0"),
        ("9.1.0rc1", "rel-v9r1"),
        ("9.1.0", "rel-v9r1"),
        ("10.12.3", "rel-v10r12"),
        ("8.0.44", "master"),
        ("9.0.0a1", "main"),
        ("1.2.3", "feature/whatever"),
        ("8.0.44", None),
        ("9.0.0a28", None),
        ("8.0.44", "refs/heads/rel-v8r0"),
        ("9.0.0a1", "refs/heads/integration"),
    ],
)
def test_branch_allows(version: str, branch: str | None) -> None:
    check_branch(rv(version), branch)


@pytest.mark.parametrize(
    ("version", "branch", "rule"),
    [
        ("9.0.0", "integration", "pre-releases only"),
        ("8.0.44", "integration", "pre-releases only"),
        ("9.0.0", "refs/heads/integration", "pre-releases only"),
        ("9.0.0", "rel-v8r0", "8.0 series"),
        ("8.1.0", "rel-v8r0", "8.0 series"),
        ("9.1.0rc1", "rel-v9r0", "9.0 series"),
        ("18.0.1", "rel-v8r0", "8.0 series"),
    ],
)
def test_branch_refuses(version: str, branch: str, rule: str) -> None:
    with pytest.raises(BadInput) as info:
        check_branch(rv(version), branch)
    error = info.value
    assert error.exit_code == 2
    assert rule in error.message
    assert branch.removeprefix("refs/heads/") in error.message
    assert f"v{version}" in error.message
    assert error.fix is not None


def test_final_release_refused_on_integration_points_to_its_maintenance_branch() -> None:
    with pytest.raises(BadInput) as info:
        check_branch(rv("9.1.0"), "integration")
    assert info.value.fix is not None
    assert "rel-v9r1" in info.value.fix


# --- next version ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "following"),
    [
        ("9.0.0a28", "9.0.0a29"),
        ("9.0.0b9", "9.0.0b10"),
        ("9.1.0rc1", "9.1.0rc2"),
        ("8.0.44", "8.0.45"),
        ("8.0.9", "8.0.10"),
        ("0.0.1a13", "0.0.1a14"),
    ],
)
def test_next_version_bumps_the_smallest_component(current: str, following: str) -> None:
    bumped = next_version(rv(current))
    assert bumped.version == Version(following)
    assert str(bumped) == following
    assert bumped > rv(current)
