"""Tests for devsync.model.versions: semver precedence, picking tags, bumping, splitting references.

The precedence cases are semver.org's own examples; reference validity is also checked
against the real docker CLI and engine 20.10 (`docker tag` accepts exactly what
split_reference accepts).
"""

from __future__ import annotations

import datetime
import random

import pytest

from devsync.devtools import sandbox
from devsync.errors import DevsyncError
from devsync.model.versions import (
    InvalidReferenceError,
    InvalidVersionError,
    base_versions,
    is_base_tag,
    latest_base_tag,
    latest_version_tag,
    next_base_tag,
    next_version,
    parse_base_tag,
    parse_version,
    registry_of,
    split_reference,
)

# -- parse_version ----------------------------------------------------------------------------


@pytest.mark.parametrize("tag", [
    "0.0.0", "1.2.3", "v1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7",
    "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85",
    "1.0.0+21AF26D3----117B344092BD", "1.0.0-rc.1+build.1", "99999999999999999999.0.0",
    "1.0.0-0A", "1.0.0--", "1.0.0-00a",
])
def test_valid_versions_parse(tag: str) -> None:
    assert parse_version(tag) is not None


@pytest.mark.parametrize("tag", [
    "", "latest", "main", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "V1.2.3",
    "vv1.2.3", " 1.2.3", "1.2.3 ", "1.2.3\n", "1.2.3-", "1.2.3+", "1.2.3-01", "1.2.3-rc..1",
    "1.2.3-rc_1", "1.2.3+a..b", "-1.2.3", "1.2.-3", "base-1.2.3", "1.2.3-beta!", "a1.2.3",
    "١.٢.٣",  # Arabic-Indic digits are digits to Python's \d, never to semver
])
def test_non_versions_are_none(tag: str) -> None:
    assert parse_version(tag) is None


SEMVER_ORDER = [
    # semver.org section 11, plus numeric fields compared as numbers
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
    "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.9", "1.0.10", "1.1.0-0", "1.1.0", "1.9.0",
    "1.10.0", "2.0.0-9", "2.0.0-10", "2.0.0-a", "2.0.0", "10.0.0",
]


def test_semver_precedence() -> None:
    keys = [parse_version(tag) for tag in SEMVER_ORDER]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)
    shuffled = SEMVER_ORDER[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=parse_version) == SEMVER_ORDER  # type: ignore[arg-type]


def test_build_metadata_and_prefix_do_not_change_precedence() -> None:
    assert parse_version("1.0.0+build.9") == parse_version("1.0.0") == parse_version("v1.0.0")
    assert parse_version("1.0.0-rc.1+b") == parse_version("1.0.0-rc.1")


# -- latest_version_tag / latest_base_tag -----------------------------------------------------


def test_latest_version_tag_compares_numerically() -> None:
    assert latest_version_tag(["1.0.9", "1.0.10", "1.0.2"]) == "1.0.10"
    assert latest_version_tag(["1.9.0", "1.10.0"]) == "1.10.0"
    assert latest_version_tag(["9.9.9", "10.0.0"]) == "10.0.0"


def test_latest_version_tag_ignores_non_versions_and_base_tags() -> None:
    tags = ["latest", "main", "base-9.0.0", "1.2.0", "v1.3.0", "1.4", "feature-x", "sha-abc"]
    assert latest_version_tag(tags) == "v1.3.0"
    assert latest_version_tag(tags, exclude_prefix="") == "v1.3.0"  # base-9.0.0 never parses
    assert latest_version_tag(["release-2.0.0", "1.0.0"], exclude_prefix="release-") == "1.0.0"


def test_latest_version_tag_ranks_prereleases_below_their_release() -> None:
    assert latest_version_tag(["1.1.0-rc.1", "1.1.0", "1.1.0-rc.2"]) == "1.1.0"
    # but a pre-release of a higher version is higher (semver precedence)
    assert latest_version_tag(["1.0.0", "1.1.0-rc.1"]) == "1.1.0-rc.1"


def test_latest_version_tag_none_when_nothing_parses() -> None:
    assert latest_version_tag([]) is None
    assert latest_version_tag(["latest", "base-1.0.0", "dev"]) is None
    assert latest_version_tag(iter(["x"])) is None


def test_latest_version_tag_is_independent_of_order() -> None:
    tags = ["1.0.0", "v1.0.0", "0.9.0"]
    assert latest_version_tag(tags) == latest_version_tag(tags[::-1]) == "v1.0.0"
    assert latest_version_tag(["2.0.0", "2.0.0"]) == "2.0.0"


def test_latest_base_tag() -> None:
    tags = ["1.5.0", "base-1.2.0", "base-1.10.0", "base-1.9.0", "base-latest", "base-2.0.0-rc.1",
            "base-1.2", "xbase-3.0.0"]
    assert latest_base_tag(tags) == "base-2.0.0-rc.1"
    assert latest_base_tag([t for t in tags if "rc" not in t]) == "base-1.10.0"
    assert latest_base_tag(["1.0.0", "base-", "base-x"]) is None
    assert latest_base_tag(["b-1.0.0", "base-2.0.0"], prefix="b-") == "b-1.0.0"
    assert latest_base_tag(["base-v1.0.0", "base-0.9.0"]) == "base-v1.0.0"


# -- base tag schemes: base-X.Y.Z, base-X.Y, calendar ----------------------------------------


def test_base_tags_order_as_versions_across_schemes() -> None:
    oldest_first = [
        "base-0.9", "base-1", "base-1.1", "base-1.2.0-rc.1", "base-1.2.0", "base-1.9",
        "base-1.10", "base-v1.10.1", "base-1.11.0", "base-2", "base-2024.04", "base-2024.05",
        "base-2024.05.1", "base-2024.05.02", "base-20240430", "base-20240501",
        "base-20240501.1", "base-20240501.2",
    ]
    shuffled = oldest_first[7:] + oldest_first[:7][::-1]
    assert [v.tag for v in base_versions(shuffled)] == oldest_first
    assert latest_base_tag(["base-1.9", "base-1.10"]) == "base-1.10"


def test_base_tags_of_equal_rank_are_told_apart_by_the_tag_itself() -> None:
    # `base-1.1` and `base-1.1.0` rank alike (a missing field is 0)
    one_one, one_one_zero = parse_base_tag("base-1.1"), parse_base_tag("base-1.1.0")
    assert one_one is not None and one_one_zero is not None
    assert one_one.key == one_one_zero.key
    tags = ["base-1.1", "base-1.1.0"]
    assert latest_base_tag(tags) == latest_base_tag(tags[::-1]) == "base-1.1.0"


@pytest.mark.parametrize("tag", [
    "base-", "base-latest", "base-x1.0", "base-1..2", "base-1.2.", "base-1.2.3.4.5",
    "base-1.2.0+build", "1.2.0", "xbase-1.2", "base-1.2-", "base-1.2-rc..1",
])
def test_not_a_base_version(tag: str) -> None:
    assert parse_base_tag(tag) is None
    assert next_base_tag([tag]) is None


def _calendar(tag: str) -> str | None:
    version = parse_base_tag(tag)
    assert version is not None, tag
    return version.calendar


def test_calendar_schemes_are_recognised_only_for_real_dates() -> None:
    assert _calendar("base-2024.05") == "%Y.%m"
    assert _calendar("base-2024.05.31") == "%Y.%m.%d"
    assert _calendar("base-20240501") == "%Y%m%d"
    assert _calendar("base-20240501.3") == "%Y%m%d"  # the fourth base of that day
    assert _calendar("base-2024.02.30") == "%Y.%m"  # not a day: February's 30th base
    for not_a_date in ("base-2024.13", "base-2024.5", "base-24.04", "base-20241301",
                       "base-12345678", "base-1.2", "base-1234.05", "base-20240501.1.2"):
        assert _calendar(not_a_date) is None, not_a_date


TODAY = datetime.date(2024, 5, 1)


@pytest.mark.parametrize(("tag", "expected"), [
    # a scheme is kept: after base-1.1 comes base-1.2, not base-1.2.0
    ("base-1.1", "base-1.2"),
    ("base-1.9", "base-1.10"),
    ("base-1.0.0", "base-1.1.0"),
    ("base-1.2.7", "base-1.3.0"),
    ("base-v1.9.3", "base-v1.10.0"),
    ("base-7", "base-8"),
    ("base-1.05", "base-1.06"),  # zero padding kept
    ("base-1.2.3.4", "base-1.3.0.0"),
    # a pre-release of exactly the next version becomes that release
    ("base-1.3.0-rc.1", "base-1.3.0"),
    ("base-1.3-rc.1", "base-1.3"),
    ("base-1.3.1-rc.1", "base-1.4.0"),
    # calendar versions: today's date in the same format ...
    ("base-2024.04", "base-2024.05"),
    ("base-2023.12.24", "base-2024.05.01"),
    ("base-20240430", "base-20240501"),
    ("base-20240430.4", "base-20240501"),
    ("base-v20240430", "base-v20240501"),
    # ... or, when today's exists (or the clock is behind), the same date counted up
    ("base-2024.05", "base-2024.05.1"),
    ("base-2024.05.1", "base-2024.05.2"),
    ("base-20240501", "base-20240501.1"),
    ("base-20240501.1", "base-20240501.2"),
    ("base-2024.05.01", "base-2024.05.01.1"),
    ("base-2025.01", "base-2025.01.1"),
    ("base-20240501-rc.1", "base-20240501"),
])
def test_next_base_tag_keeps_the_scheme(tag: str, expected: str) -> None:
    assert next_base_tag([tag], today=TODAY) == expected
    # always strictly newer, so it never names a tag that exists
    assert parse_base_tag(expected).key > parse_base_tag(tag).key  # type: ignore[union-attr]


def test_next_base_tag_follows_the_newest_tag() -> None:
    tags = ["1.0.7", "base-1.0", "base-1.1", "base-1.10", "base-1.9", "latest"]
    assert next_base_tag(tags, today=TODAY) == "base-1.11"
    assert next_base_tag(["base-1.0.0", "base-1.1"], today=TODAY) == "base-1.2"
    assert next_base_tag(["base-1.1.0", "base-1.1"], today=TODAY) == "base-1.2.0"
    assert next_base_tag(["base-20240501", "base-20240501.1", "base-1.0"],
                         today=TODAY) == "base-20240501.2"
    assert next_base_tag([], today=TODAY) is None
    assert next_base_tag(["b-1.1", "base-2.0"], today=TODAY, prefix="b-") == "b-1.2"


def test_is_base_tag_marks_any_base_tag() -> None:
    for tag in ("base-1.1", "base-1.2.0", "base-2024.05", "base-20240501", "base-alpine"):
        assert is_base_tag(tag)
    for tag in ("base-", "1.1", "latest", "xbase-1.0", "Base-1.0"):
        assert not is_base_tag(tag)


# -- next_version -----------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "part", "expected"), [
    ("1.2.0", "minor", "1.3.0"),
    ("1.2.7", "minor", "1.3.0"),
    ("1.2.7", "patch", "1.2.8"),
    ("1.2.7", "major", "2.0.0"),
    ("0.0.0", "patch", "0.0.1"),
    ("v1.9.3", "minor", "v1.10.0"),
    ("1.2.3+build.5", "patch", "1.2.4"),
    # a pre-release of exactly the next version becomes that release
    ("1.3.0-rc.1", "minor", "1.3.0"),
    ("1.3.1-rc.1", "minor", "1.4.0"),
    ("1.2.4-rc.1", "patch", "1.2.4"),
    ("2.0.0-beta", "major", "2.0.0"),
    ("2.1.0-beta", "major", "3.0.0"),
])
def test_next_version(version: str, part: str, expected: str) -> None:
    assert next_version(version, part) == expected
    # the bump always moves forward in semver precedence
    assert parse_version(expected) > parse_version(version)  # type: ignore[operator]


def test_next_version_defaults_to_minor() -> None:
    assert next_version("1.2.0") == "1.3.0"


@pytest.mark.parametrize(("version", "part"), [
    ("1.2", "minor"), ("latest", "patch"), ("", "major"), ("1.2.3", "build"), ("1.2.3", ""),
    ("1.2.3", "Minor"),
])
def test_next_version_rejects_bad_input(version: str, part: str) -> None:
    with pytest.raises(InvalidVersionError) as info:
        next_version(version, part)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DevsyncError)
    assert "\n" not in info.value.message


# -- split_reference / registry_of ------------------------------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(("ref", "expected"), [
    ("app", ("app", None, None)),
    ("app:1.0", ("app", "1.0", None)),
    ("app:5000", ("app", "5000", None)),
    ("team/app:v2", ("team/app", "v2", None)),
    ("host:5000/app", ("host:5000/app", None, None)),
    ("host:5000/app:1.2.3", ("host:5000/app", "1.2.3", None)),
    ("host:5000/team/app:latest", ("host:5000/team/app", "latest", None)),
    ("registry.example.com/app:dev", ("registry.example.com/app", "dev", None)),
    ("localhost/app", ("localhost/app", None, None)),
    (f"app@{DIGEST}", ("app", None, DIGEST)),
    (f"host:5000/app:1@{DIGEST}", ("host:5000/app", "1", DIGEST)),
    ("Registry.Example.com/app", ("Registry.Example.com/app", None, None)),
    ("a.b-c/d__e/f_g.h-i---j:T_a.g-", ("a.b-c/d__e/f_g.h-i---j", "T_a.g-", None)),
    ("app:" + "t" * 128, ("app", "t" * 128, None)),
])
def test_split_reference(ref: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_reference(ref) == expected


@pytest.mark.parametrize(("ref", "reason"), [
    ("", "repository name must have at least one component"),
    ("App", "repository name must be lowercase"),
    ("host:5000/Team/app", "repository name must be lowercase"),
    ("app:", "invalid reference format"),
    (":tag", "invalid reference format"),
    ("app:-x", "invalid reference format"),
    ("app:" + "t" * 129, "invalid reference format"),
    ("app:a/b", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("/app", "invalid reference format"),
    ("app/", "invalid reference format"),
    ("app_/x", "invalid reference format"),
    ("a___b", "invalid reference format"),
    ("-app", "invalid reference format"),
    ("host:port/app", "invalid reference format"),
    ("app@sha256:abc", "invalid reference format"),
    ("app@", "invalid reference format"),
    ("app name", "invalid reference format"),
    ("app:1\n", "invalid reference format"),
    ("a" * 256, "repository name must not be more than 255 characters"),
    ("0123456789abcdef" * 4, "cannot specify 64-byte hexadecimal strings"),
])
def test_split_reference_rejects_what_docker_rejects(ref: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match=reason) as info:
        split_reference(ref)
    assert isinstance(info.value, ValueError)


def test_split_reference_stays_fast_on_hostile_input() -> None:
    # Go's regexps are linear; a naive port of the grammar backtracks exponentially here
    for ref in ("a-" * 5000 + "!", "a" * 20000 + ":", "a." * 5000 + "/" + "b_" * 5000 + "!"):
        with pytest.raises(InvalidReferenceError):
            split_reference(ref)


@pytest.mark.parametrize(("repository", "registry"), [
    ("app", "docker.io"),
    ("team/app", "docker.io"),
    ("library/busybox", "docker.io"),
    ("localhost", "docker.io"),  # a repository named localhost on Docker Hub
    ("localhost/app", "localhost"),
    ("localhost:5000/app", "localhost:5000"),
    ("host:5000/team/app", "host:5000"),
    ("registry.example.com/app", "registry.example.com"),
    ("registry.example.com/team/app", "registry.example.com"),
    ("docker.io/library/app", "docker.io"),
    ("index.docker.io/library/app", "docker.io"),
    ("ghcr.io/org/app", "ghcr.io"),
    ("host:5000", "docker.io"),  # repository "host" with tag 5000
])
def test_registry_of(repository: str, registry: str) -> None:
    assert registry_of(repository) == registry


# -- the real docker CLI and engine agree on what is a valid reference ------------------------

TAG_REFS = [
    "app", "app:1.0", "app:5000", "team/app:v2", "host:5000/app", "host:5000/app:1.2.3",
    "registry.example.com/app:dev", "localhost/app", "Registry.Example.com/app",
    "a.b-c/d__e/f_g.h-i---j:T_a.g-", "app:" + "t" * 128,
    "App", "host:5000/Team/app", "app:", "app:-x", "app:" + "t" * 129, "a//b", "/app", "app/",
    "app_/x", "a___b", "-app", "host:port/app", "a" * 256, "0123456789abcdef" * 4,
]


@pytest.mark.engine
def test_docker_tag_accepts_exactly_the_valid_references(
    engine: sandbox.PrivateEngine, busybox_image: str
) -> None:
    disagreements = []
    for ref in TAG_REFS:
        try:
            split_reference(ref)
            ours = True
        except InvalidReferenceError:
            ours = False
        proc = sandbox.docker_cli(engine, "tag", busybox_image, ref, check=False,
                                  cli="/usr/bin/docker")
        if (proc.returncode == 0) != ours:
            disagreements.append((ref, ours, proc.stderr.strip()))
    assert disagreements == []
