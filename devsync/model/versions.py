"""Version tags and image references: which deployed tag is the latest, and what is in a name.

Tags are semantic versions (https://semver.org, 2.0.0), optionally prefixed with `v`; anything
else (`latest`, `main`, `1.2`, `01.2.3`) is not a version and is ignored when picking the
latest. Precedence is semver's: numeric fields compare as numbers (`1.0.10` > `1.0.9`), a
pre-release ranks below its release, build metadata is ignored. (Docker tags cannot contain
`+`, so build metadata only matters for strings that never came from a registry.)

Base images are tagged `base-<version>`, in one of three schemes, all ordered as versions
(numeric fields compare as numbers: `base-1.10` is newer than `base-1.9`; a missing field is
0, so `base-1.1` and `base-1.1.0` rank alike; a pre-release such as `-rc.1` ranks below its
release):
- semantic versions, `base-1.2.0` (optionally `v1.2.0`);
- two-part versions, `base-1.2` (and more generally one to four numeric fields);
- calendar versions: `base-2024.05` (YYYY.MM), `base-2024.05.01` (YYYY.MM.DD) and
  `base-20240501` (YYYYMMDD), optionally followed by `.N` for another base of the same day or
  month (`base-20240501.1`).
The next base keeps the newest tag's scheme: a version gets its second field raised and the
fields after it reset (`1.1` -> `1.2`, `1.2.0` -> `1.3.0`, a single number `7` -> `8`); a
calendar version becomes today's date in the same format, or, when today's tag already exists,
the same date with `.N` counting up (`20240501` -> `20240501.1` -> `20240501.2`).

References are split the way the Docker Engine 20.10 parses them (docker/distribution's
reference grammar); no normalisation (`app` stays `app`, not `docker.io/library/app`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass

from devsync.errors import DevsyncError, UsageError

__all__ = [
    "BASE_PREFIX",
    "BaseVersion",
    "InvalidReferenceError",
    "InvalidVersionError",
    "VersionKey",
    "base_versions",
    "is_base_tag",
    "latest_base_tag",
    "latest_version_tag",
    "next_base_tag",
    "next_version",
    "parse_base_tag",
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

BASE_PREFIX = "base-"
_BASE_VERSION = re.compile(
    rf"(?P<v>v?)(?P<fields>[0-9]+(?:\.[0-9]+){{0,3}})(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
)
_BASE_FIELDS = 4  # the most numeric fields a base version has (YYYY.MM.DD.N)
# calendar schemes by the digit widths of their date fields, longest first
_CALENDARS = (((4, 2, 2), "%Y.%m.%d"), ((4, 2), "%Y.%m"), ((8,), "%Y%m%d"))
_CALENDAR_YEARS = range(1990, 3000)


class InvalidVersionError(UsageError, ValueError):
    """A string that is not a semantic version, or an unknown part to bump (a usage error:
    versions come from the command line)."""


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


def latest_base_tag(tags: Iterable[str], prefix: str = BASE_PREFIX) -> str | None:
    """The newest `{prefix}<version>` tag in any base scheme (`base-1.10` > `base-1.9`), or
    None when there is none. Ties (`base-1.1`, `base-1.1.0`) go to the greater string, so the
    answer never depends on the order the registry lists them in."""
    found = base_versions(tags, prefix)
    return found[-1].tag if found else None


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


@dataclass(frozen=True)
class BaseVersion:
    """A base image's tag read as a version (see the module's docstring for the schemes)."""

    tag: str  # the whole tag, e.g. `base-1.1`
    prefix: str  # `base-`
    v: str  # `v` when the version is written `v1.2.0`, else empty
    fields: tuple[str, ...]  # the numeric fields as written, zeros kept (`2024`, `05`)
    pre: str | None  # the pre-release after `-`, if any
    calendar: str | None  # the strftime format of the leading date fields, if a date

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(int(f) for f in self.fields)

    @property
    def key(self) -> tuple[tuple[int, ...], int, tuple[tuple[int, int | str], ...]]:
        """The precedence key: fields as numbers (missing ones are 0), then a release above
        its pre-releases, then semver's pre-release order."""
        numbers = self.numbers + (0,) * (_BASE_FIELDS - len(self.fields))
        identifiers = tuple(
            (0, int(part)) if part.isdigit() else (1, part) for part in self.pre.split(".")
        ) if self.pre else ()
        return numbers, 0 if self.pre else 1, identifiers

    def next(self, today: datetime.date) -> str:
        """The tag of the base after this one, in this one's scheme."""
        fields = list(self.fields)
        if self.calendar is not None:
            width = len(self.calendar.split("."))
            today_fields = today.strftime(self.calendar).split(".")
            if tuple(int(f) for f in today_fields) > self.numbers[:width]:
                fields = today_fields
            elif not self.pre:  # today's base exists (or the clock is behind): count up
                counter = int(fields[width]) + 1 if len(fields) > width else 1
                fields = [*fields[:width], str(counter)]
        elif not self.pre or any(self.numbers[2:]):
            # a pre-release of exactly the next version becomes that release, as semver
            # orders them (`1.3.0-rc.1` -> `1.3.0`); any other goes one version up
            bumped = 1 if len(fields) > 1 else 0
            fields = [_same_width(int(f) + 1 if i == bumped else 0 if i > bumped else int(f), f)
                      for i, f in enumerate(fields)]
        return f"{self.prefix}{self.v}{'.'.join(fields)}"


def _same_width(number: int, written: str) -> str:
    """`number` padded with zeros to the width `written` had (`05` + 1 -> `06`)."""
    return str(number).zfill(len(written))


def _calendar_format(fields: tuple[str, ...]) -> str | None:
    """The date format the leading fields are written in (and at most one counter after
    them), or None when they are not a date."""
    widths = tuple(len(f) for f in fields)
    for date_widths, fmt in _CALENDARS:
        n = len(date_widths)
        if widths[:n] != date_widths or len(fields) > n + 1:
            continue
        try:
            day = datetime.datetime.strptime(".".join(fields[:n]), fmt)
        except ValueError:
            continue
        if day.year in _CALENDAR_YEARS:
            return fmt
    return None


def is_base_tag(tag: str, prefix: str = BASE_PREFIX) -> bool:
    """A tag that names a base image (`base-` and something): the zero-config layout's mark.
    Any such tag counts, versions or not (`base-1.1`, `base-2024.05`, `base-alpine`)."""
    return tag.startswith(prefix) and len(tag) > len(prefix)


def parse_base_tag(tag: str, prefix: str = BASE_PREFIX) -> BaseVersion | None:
    """`base-1.1`, `base-1.2.0-rc.1`, `base-20240501` as a version; None for any other tag."""
    if not tag.startswith(prefix):
        return None
    match = _BASE_VERSION.fullmatch(tag[len(prefix):])
    if match is None:
        return None
    fields = tuple(match["fields"].split("."))
    return BaseVersion(tag=tag, prefix=prefix, v=match["v"], fields=fields, pre=match["pre"],
                       calendar=_calendar_format(fields))


def base_versions(tags: Iterable[str], prefix: str = BASE_PREFIX) -> list[BaseVersion]:
    """The base tags among `tags`, oldest first (equal ranks ordered by the tag itself)."""
    found = [v for v in (parse_base_tag(tag, prefix) for tag in tags) if v is not None]
    return sorted(set(found), key=lambda v: (v.key, v.tag))


def next_base_tag(tags: Iterable[str], today: datetime.date | None = None,
                  prefix: str = BASE_PREFIX) -> str | None:
    """The tag for a new base: the one after the newest of `tags`, in its scheme; None when
    no tag is a base version."""
    found = base_versions(tags, prefix)
    return found[-1].next(today or datetime.date.today()) if found else None


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

