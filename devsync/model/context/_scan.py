"""The docker CLI's walk of a build context: which entries it sends, in which order.

The CLI's `TarWithOptions` walk with the .dockerignore semantics of the chosen CLI
(devsync.model.dockerignore), `ValidateContextDirectory`'s readability check, and the
Dockerfile name the CLI passes on. Nothing is hashed here.
"""

from __future__ import annotations

import os
import stat
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

from devsync.model.context._entries import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    HARDLINK,
    SYMLINK,
    BuildContextError,
    ContextEntry,
)
from devsync.model.dockerignore import MatchInfo, PatternMatcher, clean_path

if TYPE_CHECKING:
    from devsync.model.context._digests import FileDigests


_name = attrgetter("name")


def dockerfile_name(root: Path, dockerfile_rel: str) -> str:
    name = dockerfile_rel.replace(os.sep, "/")
    path = root / name
    if name == "Dockerfile" and not os.path.lexists(path) and os.path.lexists(root / "dockerfile"):
        # the CLI and the daemon both fall back to the lowercase name
        name, path = "dockerfile", root / "dockerfile"
    if not os.path.lexists(path):
        raise BuildContextError(f"cannot locate the Dockerfile {dockerfile_rel} in {root}")
    # the CLI resolves symlinks and sends the Dockerfile's real relative path
    real = os.path.relpath(os.path.realpath(path), root)
    if real == ".." or real.startswith("../"):
        raise BuildContextError(
            f"the Dockerfile {dockerfile_rel} lies outside the build context {root}",
            hint="devsync predicts only builds whose Dockerfile is inside the context",
        )
    return clean_path(real.replace(os.sep, "/"))


class Walker:
    """The CLI's `TarWithOptions` walk (plus `ValidateContextDirectory`'s readability check)."""

    def __init__(self, root: Path, matcher: PatternMatcher, legacy: bool,
                 facts: FileDigests | None = None) -> None:
        self.root = root
        self.pm = matcher
        self.legacy = legacy
        # what a cache of digests knows of files it saw unchanged (readable, capability)
        self.facts = facts
        self.entries: list[ContextEntry] = []
        self.seen_inodes: dict[int, str] = {}

    def walk(self) -> list[ContextEntry]:
        self._visit(str(self.root), "", MatchInfo())
        return self.entries

    def _visit(self, abs_dir: str, rel_dir: str, info: MatchInfo) -> None:
        try:
            with os.scandir(abs_dir) as it:
                items = list(it)
            # byte order of the names; for ASCII names (the usual) that of the strings
            if all(d.name.isascii() for d in items):
                items.sort(key=_name)
            else:
                items.sort(key=lambda d: os.fsencode(d.name))
        except OSError as exc:
            shown = rel_dir or "."
            raise BuildContextError(
                f"cannot read directory {shown!r} of the build context: "
                f"{exc.strerror or exc}; docker refuses such a context",
                hint=f"fix its permissions or add {shown} to .dockerignore",
            ) from exc
        pm = self.pm
        use_patterns = bool(pm.patterns)
        parent = info.parent_matched
        if use_patterns and not self.legacy and parent and not any(parent) \
                and pm.cannot_match_at(rel_dir.count("/") + 2 if rel_dir else 1):
            # nothing above matched, and no pattern can match a path this deep: every
            # entry here would get its parent's answers (a large tree's common case)
            use_patterns = False
        for de in items:
            rel = de.name if not rel_dir else f"{rel_dir}/{de.name}"
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished during the walk
            is_dir = stat.S_ISDIR(st.st_mode)
            child_info = info
            skip = False
            if use_patterns:
                if self.legacy:
                    skip = pm.matches_single_parent(rel)
                else:
                    skip, child_info = pm.matches_using_parent_results(rel, info)
            if skip:
                # an excluded directory is still entered when an exception starts inside it
                if is_dir and pm.exclusions and pm.exception_reaches_into(rel):
                    self._visit(de.path, rel, child_info)
                continue
            entry = self._entry(de.path, rel, st)
            if entry is not None:
                self.entries.append(entry)
            if is_dir:
                self._visit(de.path, rel, child_info)

    def _entry(self, path: str, rel: str, st: os.stat_result) -> ContextEntry | None:
        mode = st.st_mode
        if self.facts is not None and stat.S_ISREG(mode) and st.st_nlink == 1:
            # the common case, short: a file the cache saw unchanged (readable, capability)
            known = self.facts.known_facts(rel, st)
            if known is not None:
                return ContextEntry(rel, FILE, mode, st.st_uid, st.st_gid, st.st_size, "", path,
                                    int(st.st_mtime), st.st_rdev, known[0], st.st_mtime_ns,
                                    st.st_ctime_ns, st.st_ino, st.st_dev, rel)
        linkname = ""
        size = 0
        capability: bytes | None = None
        if stat.S_ISDIR(mode):
            kind = DIR
        elif stat.S_ISREG(mode):
            kind = FILE
            size = st.st_size
            known = self.facts.known_facts(rel, st) if self.facts is not None else None
            if known is not None:
                capability = known[0]
            else:
                if not os.access(path, os.R_OK):
                    raise BuildContextError(
                        f"no permission to read {rel!r} in the build context; docker refuses "
                        "such a context",
                        hint=f"fix its permissions or add {rel} to .dockerignore",
                    )
                # capabilities only mean something on regular files (setcap refuses others)
                try:
                    capability = os.getxattr(path, "security.capability",
                                             follow_symlinks=False)
                except OSError:
                    capability = None
                if self.facts is not None:
                    self.facts.note_facts(rel, st, capability)
        elif stat.S_ISLNK(mode):
            kind = SYMLINK
            linkname = os.readlink(path)
        elif stat.S_ISFIFO(mode):
            kind = FIFO
        elif stat.S_ISCHR(mode):
            kind = CHARDEV
        elif stat.S_ISBLK(mode):
            kind = BLOCKDEV
        else:
            return None  # sockets: Go's tar refuses them and the CLI leaves them out
        if kind != DIR and st.st_nlink > 1:
            first = self.seen_inodes.get(st.st_ino)
            if first is None:
                self.seen_inodes[st.st_ino] = rel
            else:
                kind, linkname, size, capability = HARDLINK, first, 0, None
        return ContextEntry(
            name=rel + "/" if kind == DIR else rel,
            kind=kind,
            mode=mode,
            uid=st.st_uid,
            gid=st.st_gid,
            size=size,
            linkname=linkname,
            abspath=path,
            mtime=int(st.st_mtime),
            rdev=st.st_rdev,
            capability=capability,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            ino=st.st_ino,
            dev=st.st_dev,
        )
