""".dockerignore reading and matching, ported from Moby so devsync sends exactly what docker sends.

Two generations of the matcher exist and both matter here:

* the legacy one (docker 20.10 `pkg/fileutils`): every pattern becomes a regexp in which only
  `.` and `$` are escaped (so `+`, `(`, `|`, `{` keep their regexp meaning), and the CLI's
  walk uses the buggy `Matches`, which checks a single parent prefix of the path;
* the modern one (`moby/patternmatcher`, docker >= 23): exact/prefix/suffix fast paths, all
  regexp metacharacters escaped, and the walk carries per-pattern results from parent to child
  (`MatchesUsingParentResults`).

The daemon (20.10 here) always uses the legacy semantics when it decides to delete the
Dockerfile and .dockerignore from the extracted context.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devsync.errors import DockerfileError
from devsync.model.files import read_regular

DOCKERIGNORE = ".dockerignore"
_BOM = b"\xef\xbb\xbf"
# bufio.Scanner's default limit: a longer line makes the CLI refuse the .dockerignore.
_MAX_LINE = 64 * 1024


class DockerignoreError(DockerfileError):
    """A .dockerignore the docker CLI would refuse (bad pattern, unreadable, huge line)."""


class BadPatternError(ValueError):
    """Go's `filepath.ErrBadPattern`."""


# ---------------------------------------------------------------- Go path helpers


def clean_path(path: str) -> str:
    """Go's `path.Clean` / `filepath.Clean` on Linux (lexical, keeps leading `..`)."""
    if (path and "//" not in path and "/." not in path and path[0] != "."
            and path[-1] != "/"):
        return path  # no empty, "." or ".." element: already clean (the common case)
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def _dirname(path: str) -> str:
    """Go's `filepath.Dir` on Linux."""
    i = path.rfind("/")
    return clean_path(path[: i + 1])


def _get_esc(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPatternError(chunk)
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPatternError(chunk)
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise BadPatternError(chunk)
    return r, rest


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern and pattern[0] == "*":
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk and chunk[0] == "^":
                negated = True
                chunk = chunk[1:]
            matched = False
            nrange = 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if not failed and lo <= r <= hi:
                    matched = True
                nrange += 1
            if matched == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPatternError("trailing backslash")
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def go_match(pattern: str, name: str) -> bool:
    """Go's `filepath.Match` on Linux; raises BadPatternError where Go returns ErrBadPattern."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        t, ok = _match_chunk(chunk, name)
        if ok and (not t or pattern):
            name = t
            continue
        if star:
            i = 0
            found = False
            while i < len(name) and name[i] != "/":
                t, ok = _match_chunk(chunk, name[i + 1 :])
                if ok:
                    if not pattern and t:
                        i += 1
                        continue
                    name = t
                    found = True
                    break
                i += 1
            if found:
                continue
        # Go checks the rest of the pattern before answering "no match".
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return name == ""


# ---------------------------------------------------------------- reading the file


def parse_dockerignore(data: bytes) -> list[str]:
    """The patterns of a .dockerignore, exactly as `ignorefile.ReadAll` returns them."""
    patterns: list[str] = []
    # bufio.ScanLines: split on \n, drop one trailing \r per line, no empty final token
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines):
        if len(raw) > _MAX_LINE:
            raise DockerignoreError(
                f".dockerignore line {number + 1} is longer than 64 KiB; docker refuses it"
            )
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if number == 0 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        pattern = line.decode("utf-8", "surrogateescape")
        if pattern.startswith("#"):
            continue
        pattern = _go_trim_space(pattern)
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = _go_trim_space(pattern[1:])
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        if invert:
            pattern = "!" + pattern
        patterns.append(pattern)
    return patterns


_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _go_trim_space(s: str) -> str:
    return s.strip(_GO_SPACE)


def read_dockerignore(context_dir: Path) -> list[str]:
    """The patterns of `context_dir/.dockerignore` ([] when there is none)."""
    try:
        data = read_regular(Path(context_dir) / DOCKERIGNORE)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DockerignoreError(
            f"cannot read {Path(context_dir) / DOCKERIGNORE}: {exc.strerror or exc}"
        ) from exc
    return parse_dockerignore(data)


# ---------------------------------------------------------------- patterns


_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"
_MODERN_ESCAPES = frozenset(".+()|{}$")
_LEGACY_ESCAPES = frozenset(".$")


def _go_regexp(go_re: str) -> re.Pattern[str] | None:
    """Compile a Go RE2 expression of the shapes built here; None where it does not compile."""
    # Go's unescaped final `$` (no multiline flag) is Python's `\Z`
    backslashes = len(go_re) - 1 - len(go_re[:-1].rstrip("\\"))
    if backslashes % 2 == 0:
        go_re = go_re[:-1] + r"\Z"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(go_re)
    except re.error:
        return None


@dataclass
class Pattern:
    """One cleaned pattern; compiled lazily like Moby (a bad regexp fails at first match)."""

    cleaned: str
    exclusion: bool
    legacy: bool
    dirs: list[str] = field(init=False)
    _kind: str | None = field(default=None, init=False, repr=False)
    _regexp: re.Pattern[str] | None = field(default=None, init=False, repr=False)
    _bad: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.dirs = self.cleaned.split("/")

    def __str__(self) -> str:
        return self.cleaned

    def _compile(self) -> None:
        # Builds the very regexp string Go builds, then hands it to `re`.
        legacy = self.legacy
        escapes = _LEGACY_ESCAPES if legacy else _MODERN_ESCAPES
        reg = ["^"]
        kind = _EXACT
        pat = self.cleaned
        i = 0
        index = 0
        while i < len(pat):
            ch = pat[i]
            i += 1
            if ch == "*":
                if i < len(pat) and pat[i] == "*":
                    i += 1
                    if i < len(pat) and pat[i] == "/":
                        i += 1
                    if i >= len(pat):
                        if kind == _EXACT and not legacy:
                            kind = _PREFIX
                        else:
                            reg.append(".*")
                            kind = _REGEXP
                    else:
                        reg.append("(.*/)?")
                        kind = _REGEXP
                    if index == 0:
                        kind = _SUFFIX
                else:
                    reg.append("[^/]*")
                    kind = _REGEXP
            elif ch == "?":
                reg.append("[^/]")
                kind = _REGEXP
            elif ch in escapes:
                reg.append("\\" + ch)
            elif ch == "\\":
                if i < len(pat):
                    reg.append("\\" + pat[i])
                    i += 1
                    kind = _REGEXP
                else:
                    reg.append("\\")
            elif ch in "[]":
                reg.append(ch)
                kind = _REGEXP
            else:
                reg.append(ch)
            index += 1
        if legacy:
            # 20.10 always matched with the regexp
            kind = _REGEXP
        if kind == _REGEXP:
            self._regexp = _go_regexp("".join(reg) + "$")
            self._bad = self._regexp is None
        self._kind = kind

    def match(self, path: str) -> bool:
        """Does this single pattern match `path`? Raises BadPatternError like Moby."""
        if self._kind is None:
            self._compile()
        if self._bad:
            raise BadPatternError(self.cleaned)
        if self._kind == _EXACT:
            return path == self.cleaned
        if self._kind == _PREFIX:
            return path.startswith(self.cleaned[:-2])
        if self._kind == _SUFFIX:
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        assert self._regexp is not None
        return self._regexp.match(path) is not None


@dataclass(frozen=True)
class MatchInfo:
    """Per-pattern results of a directory, handed down to its children during a walk."""

    parent_matched: tuple[bool, ...] = ()


class PatternMatcher:
    """Moby's PatternMatcher. `legacy=True` compiles patterns the way docker 20.10 did."""

    def __init__(self, patterns: Iterable[str], *, legacy: bool = False) -> None:
        self.legacy = legacy
        self.patterns: list[Pattern] = []
        self._exclusions = False
        self._infos: dict[tuple[bool, ...], MatchInfo] = {}
        self._depths: set[int] | None = None
        for raw in patterns:
            p = _go_trim_space(raw)
            if not p:
                continue
            p = clean_path(p)
            exclusion = False
            if p[0] == "!":
                if len(p) == 1:
                    raise DockerignoreError('illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
                self._exclusions = True
            try:
                go_match(p, ".")
            except BadPatternError as exc:
                raise DockerignoreError(
                    f"syntax error in .dockerignore pattern {p!r}"
                ) from exc
            self.patterns.append(Pattern(p, exclusion, legacy))

    @property
    def exclusions(self) -> bool:
        """True when any pattern is an exception (`!pattern`)."""
        return self._exclusions

    def _match(self, pattern: Pattern, path: str) -> bool:
        try:
            return pattern.match(path)
        except BadPatternError as exc:
            raise DockerignoreError(
                f"syntax error in .dockerignore pattern {pattern.cleaned!r}"
            ) from exc

    def matches(self, rel_path: str) -> bool:
        """`MatchesOrParentMatches`: the path or any of its parent directories is excluded."""
        matched = False
        parent = _dirname(rel_path)
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            match = self._match(pattern, rel_path)
            if not match and parent != ".":
                for i in range(len(parent_dirs)):
                    if self._match(pattern, "/".join(parent_dirs[: i + 1])):
                        match = True
                        break
            if match:
                matched = not pattern.exclusion
        return matched

    def matches_single_parent(self, rel_path: str) -> bool:
        """The deprecated `Matches`: only the parent prefix as deep as the pattern is checked.

        Docker 20.10's CLI walk, `TrimBuildFilesFromExcludes` (all versions) and the daemon's
        removal of the Dockerfile/.dockerignore use this one.
        """
        matched = False
        parent = _dirname(rel_path)
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            if not self.legacy and pattern.exclusion != matched:
                # the modern implementation skips patterns that cannot change the result
                continue
            match = self._match(pattern, rel_path)
            if (
                not match
                and parent != "."
                and len(pattern.dirs) <= len(parent_dirs)
            ):
                match = self._match(pattern, "/".join(parent_dirs[: len(pattern.dirs)]))
            if match:
                matched = not pattern.exclusion
        return matched

    def matches_using_parent_results(
        self, rel_path: str, parent: MatchInfo = MatchInfo()
    ) -> tuple[bool, MatchInfo]:
        """`MatchesUsingParentResults`: what the modern CLI walk uses for every entry."""
        parent_matched = parent.parent_matched
        patterns = self.patterns
        if parent_matched and len(parent_matched) != len(patterns):
            raise ValueError("wrong number of values in parent_matched")
        matched = False
        results = [False] * len(patterns)
        try:
            for i, pattern in enumerate(patterns):
                match = parent_matched[i] if parent_matched else False
                if not match:
                    if pattern.exclusion != matched:
                        continue
                    match = pattern.match(rel_path)
                    if not match and not parent_matched:
                        parent_path = _dirname(rel_path)
                        if parent_path != ".":
                            dirs = parent_path.split("/")
                            for j in range(len(dirs)):
                                if pattern.match("/".join(dirs[: j + 1])):
                                    match = True
                                    break
                results[i] = match
                if match:
                    matched = not pattern.exclusion
        except BadPatternError as exc:
            raise DockerignoreError(
                f"syntax error in .dockerignore pattern {pattern.cleaned!r}"
            ) from exc
        # (a walk asks this for every entry, and the answers take few values: share them)
        key = tuple(results)
        info = self._infos.get(key)
        if info is None:
            info = self._infos[key] = MatchInfo(key)
        return matched, info

    def cannot_match_at(self, depth: int) -> bool:
        """Whether no pattern can match a path of `depth` segments. Only said of plain
        patterns (no `**`, no class, no escape): their `*` and `?` never match a slash, so
        each matches paths of as many segments as it has. A walk then skips asking."""
        if self._depths is None:
            plain = all("**" not in p.cleaned and "[" not in p.cleaned and "\\" not in p.cleaned
                        for p in self.patterns)
            # (-1: not plain, nothing is said)
            self._depths = {len(p.dirs) for p in self.patterns} if plain else {-1}
        return -1 not in self._depths and depth not in self._depths

    def exception_reaches_into(self, rel_dir: str) -> bool:
        """Whether an exception pattern starts with `rel_dir/` (so the walk must enter it)."""
        dir_slash = rel_dir + "/"
        return any(
            p.exclusion and (p.cleaned + "/").startswith(dir_slash) for p in self.patterns
        )


def is_ignored(rel_path: str, patterns: Sequence[str], *, legacy: bool = False) -> bool:
    """Package-level `MatchesOrParentMatches`: is `rel_path` excluded by `patterns`?"""
    pm = PatternMatcher(patterns, legacy=legacy)
    path = clean_path(rel_path)
    if path == ".":
        return False
    return pm.matches(path)


def matches_single_parent(rel_path: str, patterns: Sequence[str], *, legacy: bool = False) -> bool:
    """Package-level deprecated `Matches` (what `TrimBuildFilesFromExcludes` calls)."""
    pm = PatternMatcher(patterns, legacy=legacy)
    path = clean_path(rel_path)
    if path == ".":
        return False
    return pm.matches_single_parent(path)


def trim_build_files_from_excludes(
    excludes: Sequence[str], dockerfile: str, *, legacy: bool = False
) -> list[str]:
    """The CLI keeps the Dockerfile and .dockerignore in the context even when ignored."""
    out = list(excludes)
    if matches_single_parent(DOCKERIGNORE, out, legacy=legacy):
        out.append("!" + DOCKERIGNORE)
    if matches_single_parent(dockerfile, out, legacy=legacy):
        out.append("!" + dockerfile)
    return out


# ---------------------------------------------------------------- as git pathspecs


def context_pathspecs(context: str, patterns: Sequence[str]) -> list[str]:
    """The build context as git pathspecs (from the repository's top): the context
    directory (`context`, repo-relative; "." for the top), less what `patterns` exclude, so
    that `git log -- PATHSPECS` names only commits that change what a build is sent.

    Each exclusion `P` becomes `:(top,exclude,glob)CONTEXT/P` and `.../P/**` (docker
    excludes what is under an excluded directory; git's `*`, like Go's, stops at `/`). A
    pattern that could reach something a later `!` pattern brings back is left out: git
    cannot take a file back once excluded, and a commit too many is better than one missed.
    Patterns git's glob reads otherwise (`**` inside a name) are left out too.
    """
    literal = "" if context in ("", ".") else context.rstrip("/")
    out = [f":(top,literal){literal}" if literal else ":(top)"]
    prefix = "".join("\\" + c if c in "\\*?[" else c for c in literal) + "/" if literal else ""
    kept = [p[1:] for p in patterns if p.startswith("!")]
    for pattern in patterns:
        if pattern.startswith("!") or not pattern or pattern == ".":
            continue
        if any(_may_overlap(pattern, back) for back in kept):
            continue
        if "**" in pattern and any("**" in part and part != "**"
                                   for part in pattern.split("/")):
            continue
        out += [f":(top,exclude,glob){prefix}{pattern}",
                f":(top,exclude,glob){prefix}{pattern}/**"]
    return out


def _may_overlap(excluded: str, brought_back: str) -> bool:
    """Whether `brought_back` (a `!` pattern) may name something at or under `excluded`,
    judged on their literal leading directories (up to the first wildcard)."""
    def literal(pattern: str) -> list[str]:
        parts: list[str] = []
        for part in pattern.split("/"):
            if any(c in part for c in "*?[\\"):
                break
            parts.append(part)
        return parts

    a, b = literal(excluded), literal(brought_back)
    n = min(len(a), len(b))
    return a[:n] == b[:n]
