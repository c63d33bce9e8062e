"""The build context as the daemon sees it, and the COPY/ADD hashes it derives from it.

The classic builder (dockerd 20.10) extracts the context tar, then resolves each COPY/ADD
source on the extracted tree (symlinks followed inside the context, wildcards matched over a
walk, a directory hashed together with its own entry) and names it by `file:<tarsum>`,
`dir:<sha256>` or `multi:<sha256>` in the step's `CreatedBy` (`copy_created_by`). Before that
it deletes the Dockerfile and .dockerignore when .dockerignore lists them (`daemon_removes`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from devsync.model.context._entries import DIR, FILE, HARDLINK, SYMLINK, ContextEntry
from devsync.model.dockerignore import DOCKERIGNORE, clean_path, matches_single_parent


@dataclass
class _Node:
    kind: str
    linkname: str = ""
    children: dict[str, _Node] | None = None


class ResolveError(Exception):
    """The daemon's FollowSymlinkInScope failed (escape, too many links, not a directory)."""


def daemon_removes(name: str, excludes: Sequence[str]) -> bool:
    """Whether the daemon deletes `name` (`.dockerignore`, or the Dockerfile it builds from)
    from the context after reading the Dockerfile: `removeDockerfile` (engine 20.10) does when
    the sent `.dockerignore` has patterns that match it."""
    return bool(excludes) and matches_single_parent(name, excludes, legacy=True)


@dataclass
class CopyInfo:
    """One resolved COPY source: a file's tarsum key, or the keys of a directory's walk."""

    kind: str  # "file" or "dir"
    keys: list[tuple[bool, str]]  # (has a tarsum, rel) or (False, literal string)


class ExtractedTree:
    """The context as the daemon sees it after extracting the tar (implied dirs included,
    the Dockerfile/.dockerignore removed when .dockerignore lists them)."""

    def __init__(self, entries: Sequence[ContextEntry], dockerfile: str,
                 excludes: Sequence[str]) -> None:
        self.root = _Node(DIR, children={})
        # directory rel -> its node: the walk lists a directory before what is in it, so an
        # entry's parent is one lookup away (a large context has tens of thousands of them)
        dirs: dict[str, _Node] = {"": self.root}
        for e in entries:
            parent_rel, _, name = e.rel.rpartition("/")
            parent = dirs.get(parent_rel)
            if parent is None:
                parent = self._make_dirs(parent_rel, dirs)
            children = parent.children
            assert children is not None
            if e.kind == DIR:
                existing = children.get(name)
                if existing is None or existing.kind != DIR:
                    existing = children[name] = _Node(DIR, children={})
                dirs[e.rel] = existing
            elif e.kind == SYMLINK:
                children[name] = _Node(SYMLINK, linkname=e.linkname)
            else:
                children[name] = _Node(FILE if e.kind == HARDLINK else e.kind)
        if any(e.rel == DOCKERIGNORE for e in entries):
            for name in (DOCKERIGNORE, dockerfile):
                if daemon_removes(name, excludes):
                    self._remove(name)

    def _make_dirs(self, rel: str, dirs: dict[str, _Node]) -> _Node:
        """The directory `rel`, made (with its parents) where the walk sent no entry for it
        (an excluded directory entered for an exception inside it)."""
        parent = self.root
        done = ""
        for part in rel.split("/"):
            done = f"{done}/{part}" if done else part
            assert parent.children is not None
            nxt = parent.children.get(part)
            if nxt is None:
                nxt = parent.children[part] = _Node(DIR, children={})
            parent = nxt
            if nxt.kind == DIR:
                dirs[done] = nxt
        return parent

    def _remove(self, path: str) -> None:
        try:
            full = self.follow(path)
        except ResolveError:
            return
        if full == ".":
            return
        parent_rel, _, base = full.rpartition("/")
        try:
            parent = self.lookup(parent_rel or ".")
        except ResolveError:
            return
        if parent is not None and parent.children is not None:
            parent.children.pop(base, None)

    def lookup(self, rel: str) -> _Node | None:
        """Lstat on the extracted tree (`rel` cleaned, symlinks not followed)."""
        node = self.root
        if rel == ".":
            return node
        for part in rel.split("/"):
            if node.children is None:
                if node.kind == DIR:
                    return None
                raise ResolveError(f"{rel}: not a directory")
            nxt = node.children.get(part)
            if nxt is None:
                return None
            node = nxt
        return node

    def follow(self, path: str) -> str:
        """moby/sys/symlink.FollowSymlinkInScope(join(root, path), root), relative to root."""
        cleaned = clean_path(path.lstrip("/")) if path else "."
        if cleaned == ".." or cleaned.startswith("../"):
            raise ResolveError(f"{path} is outside the build context")
        if cleaned == ".":
            return "."
        todo = cleaned
        b = ""
        n = 0
        while todo:
            if n > 255:
                raise ResolveError(f"too many links in {path}")
            n += 1
            i = todo.find("/")
            if i == -1:
                p, todo = todo, ""
            else:
                p, todo = todo[:i], todo[i + 1 :]
            if p == "":
                continue
            clean_p = clean_path("/" + b + p)
            if clean_p == "/":
                b = ""
                continue
            node = self.lookup(clean_p[1:])
            if node is None or node.kind != SYMLINK:
                b += p + "/"
                continue
            dest = node.linkname
            if dest.startswith("/"):
                b = ""
            todo = dest + "/" + todo
        return clean_path("/" + b)[1:] or "."

    def walk(self, start: str) -> Iterator[str]:
        """filepath.Walk from `start` (cleaned rel): pre-order, names in byte order."""
        for rel, _node in self.walk_nodes(start):
            yield rel

    def walk_nodes(self, start: str) -> Iterator[tuple[str, _Node]]:
        """`walk`, with each path's node (only directories are entered: every path below
        `start` has real directories for parents)."""
        node = self.lookup(start)
        if node is None:
            return
        stack: list[tuple[str, _Node]] = [(start, node)]
        while stack:
            rel, node = stack.pop()
            yield rel, node
            if node.kind == DIR and node.children:
                names = sorted(node.children, key=os.fsencode, reverse=True)
                prefix = "" if rel == "." else rel + "/"
                stack.extend((prefix + name, node.children[name]) for name in names)


def contains_wildcards(name: str) -> bool:
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 1
        elif ch in "*?[":
            return True
        i += 1
    return False


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def sha256_join(items: Sequence[str]) -> str:
    return hashlib.sha256(",".join(items).encode("utf-8", "surrogateescape")).hexdigest()


def copy_created_by(instruction: str, source_hash: str, dest: str,
                    chown: str | None = None) -> str:
    """The `CreatedBy` the classic builder records for a COPY/ADD step (note the quirks)."""
    chown_part = f"--chown={chown}" if chown else ""
    return f"/bin/sh -c #(nop) {instruction.upper()} {chown_part}{source_hash} in {dest} "
