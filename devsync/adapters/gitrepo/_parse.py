"""What devsync hands git and reads back: pathspecs, log records, status names, and
credentials redacted from what git says.

Small functions that start no git process and need no GitPython: `GitRepo` runs the commands
and hands their output here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# Past this many bytes of pathspecs (a `COPY .` of 50,000 files) one command line would hit
# the kernel's argument limit (E2BIG): ask about everything and filter here instead.
_MAX_PATHSPEC_BYTES = 64 * 1024

# %x1e starts a record, %x1f separates fields; the summary goes last so that an odd
# character in it cannot shift the other fields.
LOG_FORMAT = "--format=%x1e%H%x1f%h%x1f%aN%x1f%aE%x1f%aI%x1f%s"
_RECORD_START = re.compile(rb"^[0-9a-f]{40}(?:[0-9a-f]{24})?\x1f")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def as_list(paths: Iterable[str]) -> list[str]:
    # A lone string would otherwise be taken one character at a time.
    return [paths] if isinstance(paths, str) else list(paths)


def as_bytes(value: str | bytes | None) -> bytes:
    # GitPython decodes stderr even when asked for bytes on stdout.
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return value or b""


def first_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:")):
            return redact_text(ln)
    return redact_text(lines[0]) if lines else "unknown error"


def too_many(specs: list[str]) -> bool:
    return sum(len(s) + 1 for s in specs) > _MAX_PATHSPEC_BYTES


def under(wanted: set[str], names: Iterable[str]) -> set[str]:
    """The names that are one of `wanted` or inside one of them ("" is the whole tree)."""
    if "" in wanted:
        return set(names)
    out = set()
    for name in names:
        probe = name
        while probe:
            if probe in wanted:
                out.add(name)
                break
            probe = probe.rpartition("/")[0]
    return out


def pathspec(rel: str) -> str:
    # top: relative to the root whatever the cwd; literal: `*` or `?` in a name is a name.
    return f":(top,literal){rel}"


def plausible_rev(rev: str) -> bool:
    # A leading "-" would be read as an option.
    return bool(rev) and not rev.startswith("-") and "\0" not in rev and "\n" not in rev


def relative_to(path: str, root: Path) -> str | None:
    for base in (os.fspath(root), os.path.realpath(root)):
        for candidate in (path, os.path.join(os.path.realpath(os.path.dirname(path)),
                                              os.path.basename(path))):
            rel = os.path.relpath(candidate, base)
            if rel != ".." and not rel.startswith("../"):
                return rel
    return None


def read_chunks(stream: Any) -> Iterator[bytes]:
    while True:
        chunk = stream.read1(65536)
        if not chunk:
            return
        yield chunk


def split_records(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Records of `LOG_FORMAT` output; a \\x1e inside a summary or a file name does not
    start a record, since what follows it is not a sha and a field separator."""
    pending: bytes | None = None
    tail = b""
    for chunk in chunks:
        pieces = (tail + chunk).split(b"\x1e")
        tail = pieces.pop()
        for piece in pieces:
            if pending is None:
                pending = piece
            elif _RECORD_START.match(piece):
                if pending:
                    yield pending
                pending = piece
            else:
                pending += b"\x1e" + piece
    if pending is None:
        pending = tail
    elif _RECORD_START.match(tail):
        if pending:
            yield pending
        pending = tail
    else:
        pending += b"\x1e" + tail
    if pending:
        yield pending


def match_paths(names: list[bytes], wanted: dict[str, list[str]]) -> set[str]:
    hits: set[str] = set()
    for raw in names:
        if not raw:
            continue
        name = raw.decode("utf-8", "surrogateescape")
        while True:
            if name in wanted:
                hits.add(name)
            if not name:
                break
            cut = name.rfind("/")
            name = name[:cut] if cut > 0 else ""
    return hits


def redact_url(url: str) -> str:
    """`url` without credentials: `https://user:token@host/x` -> `https://host/x`.

    For ssh URLs the user name is kept (it is an account such as `git`, not a secret) and
    only a password is dropped; scp-like `git@host:path` and local paths are unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "/?#":
        pos = rest.find(stop)
        if pos != -1:
            end = min(end, pos)
    authority, path = rest[:end], rest[end:]
    at = authority.rfind("@")
    if at == -1:
        return url
    userinfo, host = authority[:at], authority[at + 1:]
    if scheme.lower() in ("ssh", "git+ssh", "ssh+git"):
        user = userinfo.partition(":")[0]
        return f"{scheme}://{user}@{host}{path}" if user else f"{scheme}://{host}{path}"
    return f"{scheme}://{host}{path}"


def redact_text(text: str) -> str:
    """Free text (an error message) with credentials removed from any URL in it."""
    return _URL_USERINFO.sub(r"\1", text)
