"""Version tags and image references: which deployed tag is the latest, and what is in a name.

Tags are semantic versions (https://semver.org, 2.0.0), optionally prefixed with `v`; anything
else (`latest`, `main`, `1.2`, `01.2.3`) is not a version and is ignored when picking the
latest. Precedence is semver's: numeric fields compare as numbers (`1.0.10` > `1.0.9`), a
pre-release ranks below its release, build metadata is ignored. (Docker tags cannot contain
`+`, so build metadata only matters for strings that never came from a registry.)

References are split the way the Docker Engine 20.10 parses them (docker/distribution's
reference grammar); no normalisation (`app` stays `app`, not `docker.io/library/app`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from devsync.errors import DevsyncError

__all__ = [
    "InvalidReferenceError",
    "InvalidVersionError",
    "VersionKey",
    "latest_base_tag",
    "latest_version_tag",
    "next_version",
    "parse_version",
    "registry_of",
    "split_reference",
]

# A sort key: (major, minor, patch, is_release, pre-release identifiers). Numeric identifiers
# are (0, n) and alphanumeric ones (1, s), so numbers sort first and ints never meet strs.
VersionKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]

_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER = re.compile(
    rf"(?P<v>v?)(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)

# docker/distribution reference grammar (reference/regexp.go)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
# upstream writes the separator as `[._]|__|[-]*`; an empty separator only joins two runs
# that `[a-z0-9]+` already matches, and `-+` keeps Python's backtracking regex linear
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_NAME_MAX = 255
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")

_PARTS = ("major", "minor", "patch")


class InvalidVersionError(DevsyncError, ValueError):
    """A string that is not a semantic version, or an unknown part to bump."""


class InvalidReferenceError(DevsyncError, ValueError):
    """An image reference the Docker Engine would reject."""


def parse_version(tag: str) -> VersionKey | None:
    """The semver precedence key of `tag` (`1.2.3`, `v1.2.3-rc.1`), or None if not a version."""
    match = _SEMVER.fullmatch(tag)
    if match is None:
        return None
    pre = match["pre"]
    identifiers = tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in pre.split(".")
    ) if pre else ()
    return (int(match["major"]), int(match["minor"]), int(match["patch"]),
            0 if pre else 1, identifiers)


def latest_version_tag(tags: Iterable[str], exclude_prefix: str = "base-") -> str | None:
    """The highest semver tag not starting with `exclude_prefix`; None when no tag is one.

    Tags of equal precedence (`1.0.0` and `v1.0.0`) are told apart by the tag itself, so the
    answer never depends on the order the registry lists them in.
    """
    best: tuple[VersionKey, str] | None = None
    for tag in tags:
        if exclude_prefix and tag.startswith(exclude_prefix):
            continue
        key = parse_version(tag)
        if key is not None and (best is None or (key, tag) > best):
            best = (key, tag)
    return best[1] if best else None


def latest_base_tag(tags: Iterable[str], prefix: str = "base-") -> str | None:
    """The highest `{prefix}X.Y.Z` tag (e.g. `base-1.4.0`), or None when there is none."""
    best: tuple[VersionKey, str] | None = None
    for tag in tags:
        if not tag.startswith(prefix):
            continue
        key = parse_version(tag[len(prefix):])
        if key is not None and (best is None or (key, tag) > best):
            best = (key, tag)
    return best[1] if best else None


def next_version(version: str, part: str = "minor") -> str:
    """The version after `version` when bumping `part` (major, minor or patch).

    Lower parts reset to zero, pre-release and build are dropped, and a `v` prefix is kept. A
    pre-release of exactly the bumped version becomes that release (`1.3.0-rc.1` -> `1.3.0`
    for minor), as semver orders them.
    """
    if part not in _PARTS:
        raise InvalidVersionError(
            f"unknown version part {part!r}: expected major, minor or patch"
        )
    match = _SEMVER.fullmatch(version)
    if match is None:
        raise InvalidVersionError(
            f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)"
        )
    major, minor, patch = int(match["major"]), int(match["minor"]), int(match["patch"])
    pre = match["pre"] is not None
    if part == "major":
        if not (pre and minor == 0 and patch == 0):
            major += 1
        minor = patch = 0
    elif part == "minor":
        if not (pre and patch == 0):
            minor += 1
        patch = 0
    elif not pre:
        patch += 1
    return f"{match['v']}{major}.{minor}.{patch}"


def split_reference(ref: str) -> tuple[str, str | None, str | None]:
    """`(repository, tag, digest)` of an image reference, as the Docker Engine splits it.

    A `:` after the last `/` starts the tag (`host:5000/app` has none, `app:5000` has one);
    `@` starts the digest. Raises InvalidReferenceError, with the engine's wording, for what
    the engine would refuse.
    """
    if _IMAGE_ID.fullmatch(ref):
        raise InvalidReferenceError(
            f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings"
        )
    match = _REFERENCE.fullmatch(ref)
    if match is None:
        if not ref:
            reason = "repository name must have at least one component"
        elif _REFERENCE.fullmatch(ref.lower()):
            reason = "repository name must be lowercase"
        else:
            reason = "invalid reference format"
        raise InvalidReferenceError(f"{ref!r}: {reason}")
    name = match["name"]
    if len(name) > _NAME_MAX:
        raise InvalidReferenceError(
            f"{ref!r}: repository name must not be more than {_NAME_MAX} characters"
        )
    return name, match["tag"], match["digest"]


def registry_of(repository: str) -> str:
    """The registry host of `repository`: its first component if that names a host, else
    `docker.io` (`localhost:5000/app` -> `localhost:5000`, `team/app` -> `docker.io`)."""
    first, slash, _ = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        # the engine treats the legacy Docker Hub name as Docker Hub
        return "docker.io" if first == "index.docker.io" else first
    return "docker.io"

