"""The cache keys of dockerd 20.10's embedded BuildKit (v0.8) that can be computed before a build.

FROM an image (`solver/llbsolver/ops/source.go`, `source/containerimage/pull.go`): the op's
digest is `sha256("buildkit.source.v0:" + ChainID(diff IDs))`, so the key depends on the base's
layers only (not on its tag or config); the record's digest is `sha256("<op digest>@0")`.

COPY/ADD from the context (`solver/llbsolver/ops/file.go`, `llbsolver.NewContentHashFunc`):
each source path is checksummed over the files as the client sent them (`cache/contenthash`),
the checksums joined with NUL and hashed again; the record that a COPY's second input links to
is `sha256("<that digest>@-1")`. A wildcard source that matches one path of the same base
name is that path's checksum; otherwise sha256 over its matches in key order, NUL between
them, each its base name followed by its checksum. The checksums:
  file      sha256 of a tarsum-v1 header (name emptied; mode's permission and set-id bits,
            uid, gid, size, type flag, link target, user and group names empty, device
            numbers, extended attributes) followed by the content; no modification time;
  symlink   the header alone (mode 0777, the target as link name);
  hard link the checksum of the file it links to;
  directory sha256 of NUL + its header's checksum, then for each child in byte order of its
            name: NUL + name + the child's checksum. The context root, which the client never
            sends, has the header checksum `sha256("")`.
The docker CLI's session sends every file with uid and gid 0 (its `resetUIDAndGID`), so the
owner on disk never counts; the mode does (a chmod, a umask).

Measured against the records of images that the docker 20.10 CLI built with inline cache (see
tests/model/test_buildkit.py and tests/ops/test_plan_exact_buildkit.py).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from devsync.model.context import BuildContext, ContextEntry

_SOURCE_CACHE_TYPE = "buildkit.source.v0"
_EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()
_WILDCARD = re.compile(r"[*?\[\\]")
_TYPEFLAG = {"file": b"0", "hardlink": b"0", "symlink": b"2", "chardev": b"3",
             "blockdev": b"4", "dir": b"5", "fifo": b"6"}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(diff_ids: Sequence[str]) -> str:
    """The OCI ChainID of a layer stack."""
    if not diff_ids:
        return ""
    chain = diff_ids[0]
    for diff in diff_ids[1:]:
        chain = _sha(f"{chain} {diff}".encode())
    return chain


def record_digest(op_digest: str, output: int) -> str:
    """The digest a cache record has for output `output` of an op (solver `rootKey`)."""
    return _sha(f"{op_digest}@{output}".encode())


def from_key(diff_ids: Sequence[str]) -> str:
    """The record digest of `FROM` an image with these layers."""
    return record_digest(_sha(f"{_SOURCE_CACHE_TYPE}:{chain_id(diff_ids)}".encode()), 0)


def content_key(checksums: Sequence[str]) -> str:
    """The record digest a COPY links to, from its sources' checksums (in selector order)."""
    return record_digest(_sha(b"\0".join(c.encode() for c in checksums)), -1)


class SelectionError(ValueError):
    """A COPY source that the build would fail on (not in the context)."""


@dataclass
class Selection:
    """What one COPY selected: its content key, and whether it is exact."""

    key: str
    exact: bool = True  # False: a wildcard that matched a directory (not measured)
    paths: list[str] = field(default_factory=list)


class ContentHasher:
    """BuildKit's checksums of a build context as the docker CLI sends it."""

    def __init__(self, context: BuildContext) -> None:
        self.context = context
        self._children: dict[str, list[ContextEntry]] = {}
        for e in context.entries:
            parent = posixpath.dirname(e.rel)
            self._children.setdefault(parent, []).append(e)
        for kids in self._children.values():
            kids.sort(key=lambda e: posixpath.basename(e.rel).encode("utf-8", "surrogateescape"))
        self._memo: dict[str, str] = {}

    # -- one path

    def header(self, e: ContextEntry) -> bytes:
        kind = e.kind
        mode = 0o777 if kind == "symlink" else stat.S_IMODE(e.mode)
        size = e.size if kind == "file" else 0
        link = e.linkname if kind == "symlink" else ""
        major, minor = e.devices() if e.rdev else (0, 0)
        out = b"namemode%duid0gid0size%dtypeflag%slinkname%sunamegnamedevmajor%ddevminor%d" % (
            mode, size, _TYPEFLAG.get(kind, b"0"), link.encode("utf-8", "surrogateescape"),
            major, minor)
        if e.capability is not None:
            out += b"xattrsecurity.capability" + e.capability
        return out

    def checksum(self, rel: str) -> str:
        """The checksum of the entry at `rel` ("" for the root), links not followed."""
        if rel in self._memo:
            return self._memo[rel]
        if rel == "":
            digest = self._dir("", _EMPTY)
        else:
            e = self.context.entry(rel)
            if e is None:
                raise SelectionError(f"{rel}: not in the build context")
            if e.kind == "hardlink":
                digest = self.checksum(e.linkname.rstrip("/"))
            elif e.kind == "dir":
                digest = self._dir(rel, _sha(self.header(e)))
            elif e.kind == "file" and e.size:
                digest = "sha256:" + self.context.digests(e, self.header(e))
            else:
                digest = _sha(self.header(e))
        self._memo[rel] = digest
        return digest

    def _dir(self, rel: str, header_digest: str) -> str:
        h = hashlib.sha256(b"\0" + header_digest.encode())
        kids = self._children.get(rel, [])
        # hash the files not known yet in one batch (over the cores)
        self._prefetch(kids)
        for kid in kids:
            name = posixpath.basename(kid.rel).encode("utf-8", "surrogateescape")
            h.update(b"\0" + name + self.checksum(kid.rel).encode())
        return "sha256:" + h.hexdigest()

    def _prefetch(self, kids: list[ContextEntry]) -> None:
        digests = self.context.digests
        jobs = [(e, [self.header(e)]) for e in kids
                if e.kind == "file" and e.size and e.rel not in self._memo
                and digests.known(e, self.header(e)) is None]
        if len(jobs) > 1:
            digests.compute(jobs)

    def follow(self, rel: str) -> str:
        """`rel` with symlinks followed (within the context), as BuildKit resolves a COPY
        source; SelectionError when it is not there."""
        for _hop in range(255):
            parts = [p for p in rel.split("/") if p not in ("", ".")]
            resolved = ""
            for i, part in enumerate(parts):
                candidate = posixpath.join(resolved, part) if resolved else part
                e = self.context.entry(candidate)
                if e is not None and e.kind == "symlink":
                    target = e.linkname
                    base = "" if target.startswith("/") else resolved
                    rest = "/".join(parts[i + 1:])
                    rel = posixpath.normpath(posixpath.join("/", base, target, rest)).lstrip("/")
                    break
                if part == "..":
                    resolved = posixpath.dirname(resolved)
                    continue
                resolved = candidate
            else:
                if resolved and self.context.entry(resolved) is None:
                    raise SelectionError(f"{resolved}: not in the build context")
                return resolved
        raise SelectionError(f"{rel}: too many levels of symbolic links")

    # -- a COPY's sources

    def select(self, sources: Sequence[str]) -> Selection:
        """The content key of a COPY of `sources` (expanded, relative to the context)."""
        paths = sorted(set(posixpath.normpath(posixpath.join("/", s)) for s in sources))
        plain = [p for p in paths if not _WILDCARD.search(p)]
        # (BuildKit drops a plain source inside another one: its files are already selected)
        plain = [p for p in plain if not any(p != q and p.startswith(q + "/") for q in plain)]
        wild = [p for p in paths if _WILDCARD.search(p)]
        selectors = sorted([(p, False) for p in plain] + [(p, True) for p in wild])
        checksums: list[str] = []
        exact = True
        for path, wildcard in selectors:
            if not wildcard:
                checksums.append(self.checksum(self.follow(path.lstrip("/"))))
                continue
            matches = self._matches(path)
            if any(kind == "dir" for _rel, _digest, kind in matches):
                exact = False  # (a directory matched by a wildcard: not measured)
            if not matches:
                checksums.append(_EMPTY)
            elif len(matches) == 1 and \
                    posixpath.basename(path) == posixpath.basename(matches[0][0]):
                checksums.append(matches[0][1])
            else:
                h = hashlib.sha256()
                for i, (rel, digest, _kind) in enumerate(matches):
                    if i:
                        h.update(b"\0")
                    h.update(posixpath.basename(rel).encode("utf-8", "surrogateescape")
                             + digest.encode())
                checksums.append("sha256:" + h.hexdigest())
        return Selection(content_key(checksums), exact, [p for p, _w in selectors])

    def _matches(self, pattern: str) -> list[tuple[str, str, str]]:
        """(path, checksum, kind) of each entry a wildcard matches, in BuildKit's key order
        (a matched directory's contents are not matched again)."""
        regex = _path_match_regex(pattern.lstrip("/"))
        out: list[tuple[str, str, str]] = []
        skip: str | None = None
        for e in sorted(self.context.entries, key=lambda e: e.rel.replace("/", "\0")):
            if skip is not None and e.rel.startswith(skip + "/"):
                continue
            if regex.fullmatch(e.rel):
                rel = self.follow(e.rel) if e.kind == "symlink" else e.rel
                target = self.context.entry(rel) if rel else None
                out.append((e.rel, self.checksum(rel), target.kind if target else "dir"))
                if e.kind == "dir":
                    skip = e.rel
        return out


def _path_match_regex(pattern: str) -> re.Pattern[str]:
    """Go's path.Match as a regex: `*` and `?` stay within one path segment."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))
