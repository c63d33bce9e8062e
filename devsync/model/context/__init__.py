"""The build context as the docker CLI sends it, and the COPY/ADD hashes the daemon derives from it.

The classic builder (dockerd 20.10) extracts the context tar, computing a tarsum v1 for every
tar entry on the way, then names each COPY/ADD source by `file:<tarsum>`, `dir:<sha256>` or
`multi:<sha256>` in the step's `CreatedBy`. Those strings are the cache keys, so predicting them
means reproducing three things exactly:

1. which entries the client puts in the tar (the CLI's walk, .dockerignore, the Dockerfile and
   .dockerignore that are always sent) — `scan_context`;
2. the header fields of each entry, which depend on the client ("flavor"): the modern CLI
   writes permission bits only, docker 20.10's CLI adds the file-type bits, and the Python SDK
   keeps the owner's uid/gid — `TarFlavor`, `BuildContext.tarsum`. Each flavor has a "git
   modes" variant that writes the modes a fresh `git checkout` under umask 022 (CI's) would
   have produced, so a developer with another umask still hits the deployed image's cache;
3. how the daemon resolves a source on the extracted tree (symlinks followed inside the context,
   wildcards matched over a walk, a directory hashed together with its own entry) —
   `BuildContext.source_hash`.

`BuildContext.write_tar` produces a context that makes the daemon compute the same hashes as
the chosen CLI, so a devsync build through the Engine API hits the cache of a CLI build.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from devsync.errors import DockerfileError
from devsync.model.dockerignore import (
    DOCKERIGNORE,
    BadPatternError,
    MatchInfo,
    PatternMatcher,
    clean_path,
    go_match,
    matches_single_parent,
    read_dockerignore,
    trim_build_files_from_excludes,
)

_CHUNK = 1 << 20
_BLOCK = 512


class BuildContextError(DockerfileError):
    """A build context (or a COPY/ADD source in it) that docker would refuse."""


class TarFlavor(Enum):
    """How a client writes the context tar headers (and so which tarsums the daemon sees).

    The `*_GIT_MODES` variants write headers like their `base`, except that permission bits
    are those git would check out under umask 022 (`git_mode`): what CI's checkout had when
    the deployed image was built, whatever the developer's umask made of the same commit.
    """

    CLI_MODERN = "cli-modern"  # docker >= 23: mode = permission bits, uid/gid 0
    CLI_LEGACY = "cli-legacy"  # docker 20.10: mode with file-type bits, uid/gid 0
    SDK_DEFAULT = "sdk-default"  # docker-py's own archive: permission bits, owner's uid/gid
    CLI_MODERN_GIT_MODES = "cli-modern+git-modes"
    CLI_LEGACY_GIT_MODES = "cli-legacy+git-modes"
    SDK_DEFAULT_GIT_MODES = "sdk-default+git-modes"

    @property
    def base(self) -> TarFlavor:
        """The client whose headers this flavor writes (itself for the plain flavors)."""
        return _GIT_MODES_BASE.get(self, self)

    @property
    def git_modes(self) -> bool:
        """Whether permission bits are normalized to git's (see `git_mode`)."""
        return self in _GIT_MODES_BASE

    def with_git_modes(self) -> TarFlavor:
        """The git-modes variant of this flavor's base."""
        return _WITH_GIT_MODES[self.base]


_GIT_MODES_BASE = {
    TarFlavor.CLI_MODERN_GIT_MODES: TarFlavor.CLI_MODERN,
    TarFlavor.CLI_LEGACY_GIT_MODES: TarFlavor.CLI_LEGACY,
    TarFlavor.SDK_DEFAULT_GIT_MODES: TarFlavor.SDK_DEFAULT,
}
_WITH_GIT_MODES = {base: variant for variant, base in _GIT_MODES_BASE.items()}
PLAIN_FLAVORS = (TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY, TarFlavor.SDK_DEFAULT)
GIT_MODES_FLAVORS = tuple(_WITH_GIT_MODES[f] for f in PLAIN_FLAVORS)

_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


def git_mode(mode: int) -> int:
    """The permission bits git would check out for an entry with st_mode `mode` (umask 022).

    Git records only 644 or 755 for a regular file (755 when any execute bit is set) and
    nothing for a directory, so a checkout under umask 022 has 0644/0755 files and 0755
    directories. Symlinks and other kinds keep their bits (git stores no mode for them, and a
    symlink's 0777 is the same everywhere). Setuid, setgid and sticky bits are kept: git never
    sets them, so they are a deliberate local choice (or a setgid shared directory), not an
    umask artefact, and sending them keeps the image faithful to the files; the cost is a cache
    miss that the plan's mode reasons point at.
    """
    perm = stat.S_IMODE(mode)
    special = perm & _SPECIAL_BITS
    if stat.S_ISREG(mode):
        return special | (0o755 if perm & 0o111 else 0o644)
    if stat.S_ISDIR(mode):
        return special | 0o755
    return perm


FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"
FIFO = "fifo"
CHARDEV = "chardev"
BLOCKDEV = "blockdev"

_TYPEFLAG = {
    FILE: b"0",
    HARDLINK: b"1",
    SYMLINK: b"2",
    CHARDEV: b"3",
    BLOCKDEV: b"4",
    DIR: b"5",
    FIFO: b"6",
}


@dataclass(frozen=True)
class ContextEntry:
    """One entry of the context tar, in the CLI's walk order."""

    name: str  # as written in the tar: slash-separated, directories end with "/"
    kind: str  # file, dir, symlink, hardlink, fifo, chardev or blockdev
    mode: int  # st_mode on disk (file-type and permission bits)
    uid: int  # owner on disk; only SDK_DEFAULT writes it, the CLI writes 0
    gid: int
    size: int  # content bytes in the tar (0 for everything but regular files)
    linkname: str  # symlink target, or for a hard link the name of its first copy
    abspath: str  # absolute path on disk (a str: building 10,000 Paths costs a third of a scan)
    mtime: int = 0
    rdev: int = 0
    capability: bytes | None = None  # security.capability xattr, which the CLI sends

    @property
    def path(self) -> Path:
        return Path(self.abspath)

    @property
    def rel(self) -> str:
        """The cleaned relative path (the daemon's key for this entry's tarsum)."""
        return self.name.rstrip("/")

    def tar_mode(self, flavor: TarFlavor) -> int:
        perm = git_mode(self.mode) if flavor.git_modes else stat.S_IMODE(self.mode)
        if flavor.base is TarFlavor.CLI_LEGACY:
            return perm | stat.S_IFMT(self.mode)
        return perm

    def tar_owner(self, flavor: TarFlavor) -> tuple[int, int]:
        if flavor.base is TarFlavor.SDK_DEFAULT:
            return self.uid, self.gid
        return 0, 0

    def tar_xattrs(self, flavor: TarFlavor) -> dict[str, bytes]:
        cap = self.capability
        base = flavor.base
        if cap is None or base is TarFlavor.SDK_DEFAULT:
            return {}
        if base is TarFlavor.CLI_MODERN and len(cap) > 3 and cap[3] == 3:
            # the modern CLI downgrades VFS_CAP_REVISION_3 to revision 2
            cap = cap[:3] + b"\x02" + cap[4:20]
        return {"security.capability": cap}

    def devices(self) -> tuple[int, int]:
        if self.kind in (CHARDEV, BLOCKDEV):
            return os.major(self.rdev), os.minor(self.rdev)
        return 0, 0


# ---------------------------------------------------------------- scanning


def scan_context(
    context_dir: Path | str,
    dockerfile_rel: str = "Dockerfile",
    *,
    ignore_flavor: TarFlavor = TarFlavor.CLI_MODERN,
) -> BuildContext:
    """Walk `context_dir` exactly as `docker build` would and list what it sends.

    `ignore_flavor` picks the .dockerignore semantics: CLI_LEGACY (and its git-modes variant)
    follows docker 20.10's walk, the others the modern CLI's (they differ only for unusual
    patterns). Nothing is hashed here.
    """
    root = Path(os.path.realpath(context_dir))
    if not root.is_dir():
        raise BuildContextError(f"build context {context_dir} is not a directory")
    dockerfile = _dockerfile_name(root, dockerfile_rel)
    legacy = ignore_flavor.base is TarFlavor.CLI_LEGACY
    excludes = read_dockerignore(root)
    matcher = PatternMatcher(
        trim_build_files_from_excludes(excludes, dockerfile, legacy=legacy), legacy=legacy
    )
    entries = _Walker(root, matcher, legacy).walk()
    return BuildContext(root, dockerfile, entries, excludes)


def _dockerfile_name(root: Path, dockerfile_rel: str) -> str:
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


class _Walker:
    """The CLI's `TarWithOptions` walk (plus `ValidateContextDirectory`'s readability check)."""

    def __init__(self, root: Path, matcher: PatternMatcher, legacy: bool) -> None:
        self.root = root
        self.pm = matcher
        self.legacy = legacy
        self.entries: list[ContextEntry] = []
        self.seen_inodes: dict[int, str] = {}

    def walk(self) -> list[ContextEntry]:
        self._visit(str(self.root), "", MatchInfo())
        return self.entries

    def _visit(self, abs_dir: str, rel_dir: str, info: MatchInfo) -> None:
        try:
            with os.scandir(abs_dir) as it:
                items = sorted(it, key=lambda d: os.fsencode(d.name))
        except OSError as exc:
            shown = rel_dir or "."
            raise BuildContextError(
                f"cannot read directory {shown!r} of the build context: "
                f"{exc.strerror or exc}; docker refuses such a context",
                hint=f"fix its permissions or add {shown} to .dockerignore",
            ) from exc
        pm = self.pm
        use_patterns = bool(pm.patterns)
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
        linkname = ""
        size = 0
        if stat.S_ISDIR(mode):
            kind = DIR
        elif stat.S_ISREG(mode):
            kind = FILE
            size = st.st_size
            if not os.access(path, os.R_OK):
                raise BuildContextError(
                    f"no permission to read {rel!r} in the build context; docker refuses "
                    "such a context",
                    hint=f"fix its permissions or add {rel} to .dockerignore",
                )
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
                kind, linkname, size = HARDLINK, first, 0
        capability: bytes | None = None
        if kind == FILE:
            # capabilities only mean something on regular files (setcap refuses others)
            try:
                capability = os.getxattr(path, "security.capability", follow_symlinks=False)
            except OSError:
                capability = None
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
        )


# ---------------------------------------------------------------- the daemon's view


@dataclass
class _Node:
    kind: str
    linkname: str = ""
    children: dict[str, _Node] | None = None


class _ResolveError(Exception):
    """The daemon's FollowSymlinkInScope failed (escape, too many links, not a directory)."""


def daemon_removes(name: str, excludes: Sequence[str]) -> bool:
    """Whether the daemon deletes `name` (`.dockerignore`, or the Dockerfile it builds from)
    from the context after reading the Dockerfile: `removeDockerfile` (engine 20.10) does when
    the sent `.dockerignore` has patterns that match it."""
    return bool(excludes) and matches_single_parent(name, excludes, legacy=True)


@dataclass
class _Info:
    """One resolved COPY source: a file's tarsum key, or the keys of a directory's walk."""

    kind: str  # "file" or "dir"
    keys: list[tuple[bool, str]]  # (has a tarsum, rel) or (False, literal string)


class _ExtractedTree:
    """The context as the daemon sees it after extracting the tar (implied dirs included,
    the Dockerfile/.dockerignore removed when .dockerignore lists them)."""

    def __init__(self, entries: Sequence[ContextEntry], dockerfile: str,
                 excludes: Sequence[str]) -> None:
        self.root = _Node(DIR, children={})
        for e in entries:
            parent = self.root
            parts = e.rel.split("/")
            for part in parts[:-1]:
                assert parent.children is not None
                nxt = parent.children.get(part)
                if nxt is None:
                    nxt = parent.children[part] = _Node(DIR, children={})
                parent = nxt
            assert parent.children is not None
            existing = parent.children.get(parts[-1])
            if e.kind == DIR:
                if existing is None or existing.kind != DIR:
                    parent.children[parts[-1]] = _Node(DIR, children={})
            elif e.kind == SYMLINK:
                parent.children[parts[-1]] = _Node(SYMLINK, linkname=e.linkname)
            else:
                parent.children[parts[-1]] = _Node(FILE if e.kind == HARDLINK else e.kind)
        if any(e.rel == DOCKERIGNORE for e in entries):
            for name in (DOCKERIGNORE, dockerfile):
                if daemon_removes(name, excludes):
                    self._remove(name)

    def _remove(self, path: str) -> None:
        try:
            full = self.follow(path)
        except _ResolveError:
            return
        if full == ".":
            return
        parent_rel, _, base = full.rpartition("/")
        try:
            parent = self.lookup(parent_rel or ".")
        except _ResolveError:
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
                raise _ResolveError(f"{rel}: not a directory")
            nxt = node.children.get(part)
            if nxt is None:
                return None
            node = nxt
        return node

    def follow(self, path: str) -> str:
        """moby/sys/symlink.FollowSymlinkInScope(join(root, path), root), relative to root."""
        cleaned = clean_path(path.lstrip("/")) if path else "."
        if cleaned == ".." or cleaned.startswith("../"):
            raise _ResolveError(f"{path} is outside the build context")
        if cleaned == ".":
            return "."
        todo = cleaned
        b = ""
        n = 0
        while todo:
            if n > 255:
                raise _ResolveError(f"too many links in {path}")
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
        node = self.lookup(start)
        if node is None:
            return
        stack: list[tuple[str, _Node]] = [(start, node)]
        while stack:
            rel, node = stack.pop()
            yield rel
            if node.kind == DIR and node.children:
                names = sorted(node.children, key=os.fsencode, reverse=True)
                prefix = "" if rel == "." else rel + "/"
                stack.extend((prefix + name, node.children[name]) for name in names)


def _contains_wildcards(name: str) -> bool:
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 1
        elif ch in "*?[":
            return True
        i += 1
    return False


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _sha256_join(items: Sequence[str]) -> str:
    return hashlib.sha256(",".join(items).encode("utf-8", "surrogateescape")).hexdigest()


def copy_created_by(instruction: str, source_hash: str, dest: str,
                    chown: str | None = None) -> str:
    """The `CreatedBy` the classic builder records for a COPY/ADD step (note the quirks)."""
    chown_part = f"--chown={chown}" if chown else ""
    return f"/bin/sh -c #(nop) {instruction.upper()} {chown_part}{source_hash} in {dest} "


# ---------------------------------------------------------------- the context


@dataclass
class BuildContext:
    """What `docker build CONTEXT` sends, with lazily computed, cached tarsums."""

    context_dir: Path
    dockerfile: str  # the name the CLI passes to the daemon (pass the same to the API)
    entries: list[ContextEntry]
    excludes: list[str]  # the .dockerignore patterns as read
    _by_rel: dict[str, ContextEntry] = field(init=False, repr=False)
    _tarsums: dict[tuple[object, ...], str] = field(init=False, repr=False)
    _tree: _ExtractedTree | None = field(init=False, repr=False, default=None)
    _resolved: dict[tuple[tuple[str, ...], str], tuple[list[_Info], bool]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        self._by_rel = {e.rel: e for e in self.entries}
        self._tarsums = {}
        self._resolved = {}

    # -- entries

    def entry(self, rel: str) -> ContextEntry | None:
        """The entry sent for `rel` (a cleaned relative path), if any."""
        return self._by_rel.get(clean_path(rel))

    def __len__(self) -> int:
        return len(self.entries)

    def tar_size_estimate(self, flavor: TarFlavor = TarFlavor.CLI_MODERN) -> int:
        """The exact number of bytes `write_tar(..., flavor)` produces (no file is read)."""
        total = 2 * _BLOCK
        for e in self.entries:
            uid, gid = e.tar_owner(flavor)
            body = _header_plan(name=e.name, linkname=e.linkname, uid=uid, gid=gid,
                                size=e.size, mtime=e.mtime, xattrs=e.tar_xattrs(flavor))[3]
            total += _header_size(body) + -(-e.size // _BLOCK) * _BLOCK
        return total

    # -- tarsums

    def tarsum(self, rel: str, flavor: TarFlavor) -> str:
        """The daemon's tarsum v1 of one entry (hex sha256), as sent by `flavor`."""
        key = clean_path(rel)
        e = self._by_rel.get(key)
        if e is None:
            raise KeyError(f"{rel} is not in the build context")
        uid, gid = e.tar_owner(flavor)
        xattrs = sorted(e.tar_xattrs(flavor).items())
        mode = e.tar_mode(flavor)
        # Flavors differ only in these header fields, and often not for a given entry (the
        # SDK writes the CLI's headers for a root-owned checkout, git's modes are often the
        # disk's): such flavors share one sum rather than each reading and hashing the file.
        cache_key = (key, mode, uid, gid, *xattrs)
        cached = self._tarsums.get(cache_key)
        if cached is not None:
            return cached
        h = hashlib.sha256()
        major, minor = e.devices()
        for k, v in (
            ("name", e.name),
            ("mode", str(mode)),
            ("uid", str(uid)),
            ("gid", str(gid)),
            ("size", str(e.size)),
            ("typeflag", _TYPEFLAG[e.kind].decode()),
            ("linkname", e.linkname),
            ("uname", ""),  # blanked by the daemon since Go 1.10
            ("gname", ""),
            ("devmajor", str(major)),
            ("devminor", str(minor)),
        ):
            h.update(k.encode() + v.encode("utf-8", "surrogateescape"))
        for xk, xv in xattrs:
            h.update(xk.encode() + xv)
        if e.kind == FILE and e.size:
            for chunk in _read_exactly(e):
                h.update(chunk)
        digest = h.hexdigest()
        self._tarsums[cache_key] = digest
        return digest

    # -- COPY / ADD sources

    @property
    def _extracted(self) -> _ExtractedTree:
        if self._tree is None:
            self._tree = _ExtractedTree(self.entries, self.dockerfile, self.excludes)
        return self._tree

    def source_hash(self, sources: Sequence[str], flavor: TarFlavor, *,
                    instruction: str = "COPY") -> str | None:
        """The `file:`/`dir:`/`multi:` string the daemon computes for these COPY/ADD sources.

        `sources` are already variable-expanded and relative to the context. Returns None for
        an ADD with a URL source (the daemon hashes the download). Raises BuildContextError
        where the build itself would fail (missing source, path outside the context, ...).
        """
        infos, has_url = self._resolve(sources, instruction)
        if has_url:
            return None
        hashes = [self._info_hash(info, flavor) for info in infos]
        if len(hashes) == 1:
            return hashes[0]
        return "multi:" + _sha256_join(hashes)

    def check_sources(self, sources: Sequence[str], *, instruction: str = "COPY") -> None:
        """Raise where `source_hash` would (the build itself would fail), without hashing."""
        self._resolve(sources, instruction)

    def git_modes_differ(self) -> bool:
        """Whether any entry's mode is not what git would check out (see `git_mode`)."""
        return any(git_mode(e.mode) != stat.S_IMODE(e.mode) for e in self.entries)

    def files_under(self, sources: Sequence[str], *, instruction: str = "COPY") -> list[str]:
        """The context entries (rel paths, directories included) a COPY/ADD step hashes."""
        infos, _ = self._resolve(sources, instruction)
        out: set[str] = set()
        for info in infos:
            out.update(rel for has_sum, rel in info.keys if has_sum)
        return sorted(out, key=os.fsencode)

    def _info_hash(self, info: _Info, flavor: TarFlavor) -> str:
        parts = [self.tarsum(k, flavor) if has_sum else k for has_sum, k in info.keys]
        if info.kind == "file":
            return "file:" + parts[0]
        return "dir:" + _sha256_join(sorted(parts))

    def _resolve(self, sources: Sequence[str], instruction: str) -> tuple[list[_Info], bool]:
        cache_key = (tuple(sources), instruction.upper())
        cached = self._resolved.get(cache_key)
        if cached is not None:
            return cached
        infos: list[_Info] = []
        has_url = False
        for orig in sources:
            if _is_url(orig):
                if instruction.upper() != "ADD":
                    raise BuildContextError(f"{instruction} failed: source can't be a URL")
                has_url = True
                continue
            infos.extend(self._calc_copy_info(orig, True, instruction))
        if not infos and not has_url:
            raise BuildContextError(f"{instruction} failed: no source files were specified")
        self._resolved[cache_key] = (infos, has_url)
        return infos, has_url

    def _calc_copy_info(self, orig: str, allow_wildcards: bool, instruction: str) -> list[_Info]:
        tree = self._extracted
        path = orig[1:] if orig.startswith("/") else orig
        path = path[2:] if path.startswith("./") else path
        if allow_wildcards and _contains_wildcards(path):
            infos: list[_Info] = []
            for rel in tree.walk("."):
                if rel == ".":
                    continue
                try:
                    matched = go_match(path, rel)
                except BadPatternError:
                    matched = False
                if matched:
                    infos.extend(self._calc_copy_info(rel, False, instruction))
            return infos
        try:
            full = tree.follow(path)
            node = tree.lookup(full)
        except _ResolveError as exc:
            raise BuildContextError(
                f"{instruction} failed: forbidden path outside the build context: {orig}"
            ) from exc
        if node is None:
            raise BuildContextError(
                f"{instruction} failed: file not found in build context or excluded by "
                f".dockerignore: {orig}"
            )
        if node.kind != DIR:
            return [_Info("file", [self._hash_key(path)])]
        keys: list[tuple[bool, str]] = []
        for rel in tree.walk(full):
            if rel == ".":
                continue
            try:
                keys.append(self._hash_key(rel))
            except _ResolveError:
                continue  # walkSource skips what it cannot hash
        return [_Info("dir", keys)]

    def _hash_key(self, path: str) -> tuple[bool, str]:
        """archiveContext.Hash: the tarsum of the followed path, else the path string itself."""
        full = self._extracted.follow(path)
        if full in self._by_rel:
            return True, full
        return False, path

    # -- sending

    def write_tar(self, fileobj: BinaryIO, flavor: TarFlavor, *,
                  files: Mapping[str, bytes] | None = None) -> None:
        """Stream the context tar, headers written the way `flavor` writes them.

        `files` (slash-separated names) are sent instead of the context's entries of those
        names, or after them: regular files, 0644, owned by root."""
        extra = dict(files or {})
        for e in self.entries:
            content = extra.pop(e.rel, None)
            if content is not None and e.kind == FILE:
                _write_file(fileobj, e.name, content, mtime=e.mtime)
                continue
            uid, gid = e.tar_owner(flavor)
            major, minor = e.devices()
            fileobj.write(
                _tar_header(
                    name=e.name,
                    mode=e.tar_mode(flavor),
                    uid=uid,
                    gid=gid,
                    size=e.size,
                    mtime=e.mtime,
                    typeflag=_TYPEFLAG[e.kind],
                    linkname=e.linkname,
                    devmajor=major,
                    devminor=minor,
                    xattrs=e.tar_xattrs(flavor),
                )
            )
            if e.kind == FILE and e.size:
                for chunk in _read_exactly(e):
                    fileobj.write(chunk)
                pad = -e.size % _BLOCK
                if pad:
                    fileobj.write(b"\0" * pad)
        for name, content in extra.items():
            _write_file(fileobj, name, content, mtime=0)
        fileobj.write(b"\0" * (2 * _BLOCK))


def _write_file(fileobj: BinaryIO, name: str, content: bytes, *, mtime: int) -> None:
    fileobj.write(_tar_header(name=name, mode=0o644, uid=0, gid=0, size=len(content),
                              mtime=mtime, typeflag=_TYPEFLAG[FILE], linkname="",
                              devmajor=0, devminor=0, xattrs={}))
    fileobj.write(content)
    pad = -len(content) % _BLOCK
    if pad:
        fileobj.write(b"\0" * pad)


def _read_exactly(e: ContextEntry) -> Iterator[bytes]:
    remaining = e.size
    try:
        with open(e.abspath, "rb") as f:
            while remaining:
                chunk = f.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
    except OSError as exc:
        raise BuildContextError(
            f"cannot read {e.rel!r} in the build context: {exc.strerror or exc}"
        ) from exc
    if remaining:
        raise BuildContextError(f"{e.rel!r} changed while devsync was reading the build context")


# ---------------------------------------------------------------- tar headers


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 8 ** (width - 1)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's splitUSTARPath."""
    length = len(name)
    if length <= 100:
        return None
    if length > 156:
        length = 156
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    nlen = len(name) - i - 1
    if i <= 0 or nlen > 100 or nlen == 0 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def _pax_record(key: bytes, value: bytes) -> bytes:
    payload = b" " + key + b"=" + value + b"\n"
    size = len(payload) + 1
    while True:
        record = str(size).encode() + payload
        if len(record) == size:
            return record
        size = len(record)


def _ustar_block(*, name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                 typeflag: bytes, linkname: bytes, devmajor: int, devminor: int,
                 prefix: bytes = b"") -> bytes:
    block = bytearray(_BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:257] = linkname[:100].ljust(100, b"\0")
    block[257:265] = b"ustar\x0000"
    block[329:337] = _octal(devmajor, 8)
    block[337:345] = _octal(devminor, 8)
    block[345:500] = prefix[:155].ljust(155, b"\0")
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _header_plan(*, name: str, linkname: str, uid: int, gid: int, size: int, mtime: int,
                 xattrs: dict[str, bytes]) -> tuple[bytes, bytes, bytes, bytes]:
    """(ustar name, ustar prefix, link name, PAX body) the way Go's tar.Writer decides them."""
    bname = name.encode("utf-8", "surrogateescape")
    blink = linkname.encode("utf-8", "surrogateescape")
    pax: list[tuple[bytes, bytes]] = []
    prefix = b""
    if len(bname) > 100 or not bname.isascii():
        split = _split_ustar(bname) if bname.isascii() else None
        if split is None:
            pax.append((b"path", bname))
            bname = bname[:100] if bname.isascii() else b""
        else:
            prefix, bname = split
    if len(blink) > 100 or not blink.isascii():
        pax.append((b"linkpath", blink))
        blink = blink[:100] if blink.isascii() else b""
    for key, value, width in (("uid", uid, 8), ("gid", gid, 8), ("size", size, 12),
                              ("mtime", mtime, 12)):
        if not _fits(value, width):
            pax.append((key.encode(), str(value).encode()))
    for xk, xv in sorted(xattrs.items()):
        pax.append((b"SCHILY.xattr." + xk.encode(), xv))
    body = b"".join(_pax_record(k, v) for k, v in sorted(pax))
    return bname, prefix, blink, body


def _header_size(plan_body: bytes) -> int:
    if not plan_body:
        return _BLOCK
    return 2 * _BLOCK + -(-len(plan_body) // _BLOCK) * _BLOCK


def _tar_header(*, name: str, mode: int, uid: int, gid: int, size: int, mtime: int,
                typeflag: bytes, linkname: str, devmajor: int, devminor: int,
                xattrs: dict[str, bytes]) -> bytes:
    """A ustar header like Go's tar.Writer, with a PAX header first when a field needs it."""
    bname, prefix, blink, body = _header_plan(name=name, linkname=linkname, uid=uid, gid=gid,
                                              size=size, mtime=mtime, xattrs=xattrs)
    main = _ustar_block(
        name=bname,
        mode=mode,
        typeflag=typeflag,
        devmajor=devmajor,
        devminor=devminor,
        uid=uid if _fits(uid, 8) else 0,
        gid=gid if _fits(gid, 8) else 0,
        size=size if _fits(size, 12) else 0,
        mtime=mtime if _fits(mtime, 12) else 0,
        linkname=blink,
        prefix=prefix,
    )
    if not body:
        return main
    base = name.rstrip("/").rpartition("/")[2].encode("utf-8", "surrogateescape")
    pax_name = (b"PaxHeaders.0/" + base)[:100]
    if not pax_name.isascii():
        pax_name = b"PaxHeaders.0/entry"
    head = _ustar_block(name=pax_name, mode=0o644, uid=0, gid=0, size=len(body), mtime=0,
                        typeflag=b"x", linkname=b"", devmajor=0, devminor=0)
    return head + body + b"\0" * (-len(body) % _BLOCK) + main
