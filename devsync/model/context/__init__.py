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

`BuildContext` and `scan_context` are the surface; the parts live in private modules:
  _entries  `ContextEntry`, `TarFlavor` and `git_mode`: one entry and its header per client
  _scan     the CLI's walk and the Dockerfile name it sends
  _daemon   the extracted tree the daemon resolves COPY/ADD sources on, `daemon_removes`,
            `copy_created_by`
  _tar      ustar/PAX headers as Go writes them, and reading file contents
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from devsync.model.context._daemon import (
    CopyInfo,
    ExtractedTree,
    ResolveError,
    contains_wildcards,
    copy_created_by,
    daemon_removes,
    is_url,
    sha256_join,
)
from devsync.model.context._entries import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    GIT_MODES_FLAVORS,
    HARDLINK,
    PLAIN_FLAVORS,
    SYMLINK,
    TYPEFLAG,
    BuildContextError,
    ContextEntry,
    TarFlavor,
    git_mode,
)
from devsync.model.context._scan import Walker, dockerfile_name
from devsync.model.context._tar import (
    BLOCK,
    header_plan,
    header_size,
    read_exactly,
    tar_header,
    write_file,
)
from devsync.model.dockerignore import (
    BadPatternError,
    PatternMatcher,
    clean_path,
    go_match,
    read_dockerignore,
    trim_build_files_from_excludes,
)

__all__ = [
    "BLOCKDEV",
    "CHARDEV",
    "DIR",
    "FIFO",
    "FILE",
    "GIT_MODES_FLAVORS",
    "HARDLINK",
    "PLAIN_FLAVORS",
    "SYMLINK",
    "BuildContext",
    "BuildContextError",
    "ContextEntry",
    "TarFlavor",
    "copy_created_by",
    "daemon_removes",
    "git_mode",
    "scan_context",
]


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
    dockerfile = dockerfile_name(root, dockerfile_rel)
    legacy = ignore_flavor.base is TarFlavor.CLI_LEGACY
    excludes = read_dockerignore(root)
    matcher = PatternMatcher(
        trim_build_files_from_excludes(excludes, dockerfile, legacy=legacy), legacy=legacy
    )
    entries = Walker(root, matcher, legacy).walk()
    return BuildContext(root, dockerfile, entries, excludes)


@dataclass
class BuildContext:
    """What `docker build CONTEXT` sends, with lazily computed, cached tarsums."""

    context_dir: Path
    dockerfile: str  # the name the CLI passes to the daemon (pass the same to the API)
    entries: list[ContextEntry]
    excludes: list[str]  # the .dockerignore patterns as read
    _by_rel: dict[str, ContextEntry] = field(init=False, repr=False)
    _tarsums: dict[tuple[object, ...], str] = field(init=False, repr=False)
    _tree: ExtractedTree | None = field(init=False, repr=False, default=None)
    _resolved: dict[tuple[tuple[str, ...], str], tuple[list[CopyInfo], bool]] = field(
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
        total = 2 * BLOCK
        for e in self.entries:
            uid, gid = e.tar_owner(flavor)
            body = header_plan(name=e.name, linkname=e.linkname, uid=uid, gid=gid,
                               size=e.size, mtime=e.mtime, xattrs=e.tar_xattrs(flavor))[3]
            total += header_size(body) + -(-e.size // BLOCK) * BLOCK
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
            ("typeflag", TYPEFLAG[e.kind].decode()),
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
            for chunk in read_exactly(e):
                h.update(chunk)
        digest = h.hexdigest()
        self._tarsums[cache_key] = digest
        return digest

    # -- COPY / ADD sources

    @property
    def _extracted(self) -> ExtractedTree:
        if self._tree is None:
            self._tree = ExtractedTree(self.entries, self.dockerfile, self.excludes)
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
        return "multi:" + sha256_join(hashes)

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

    def _info_hash(self, info: CopyInfo, flavor: TarFlavor) -> str:
        parts = [self.tarsum(k, flavor) if has_sum else k for has_sum, k in info.keys]
        if info.kind == "file":
            return "file:" + parts[0]
        return "dir:" + sha256_join(sorted(parts))

    def _resolve(self, sources: Sequence[str], instruction: str) -> tuple[list[CopyInfo], bool]:
        cache_key = (tuple(sources), instruction.upper())
        cached = self._resolved.get(cache_key)
        if cached is not None:
            return cached
        infos: list[CopyInfo] = []
        has_url = False
        for orig in sources:
            if is_url(orig):
                if instruction.upper() != "ADD":
                    raise BuildContextError(f"{instruction} failed: source can't be a URL")
                has_url = True
                continue
            infos.extend(self._calc_copy_info(orig, True, instruction))
        if not infos and not has_url:
            raise BuildContextError(f"{instruction} failed: no source files were specified")
        self._resolved[cache_key] = (infos, has_url)
        return infos, has_url

    def _calc_copy_info(self, orig: str, allow_wildcards: bool, instruction: str) -> list[CopyInfo]:
        tree = self._extracted
        path = orig[1:] if orig.startswith("/") else orig
        path = path[2:] if path.startswith("./") else path
        if allow_wildcards and contains_wildcards(path):
            infos: list[CopyInfo] = []
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
        except ResolveError as exc:
            raise BuildContextError(
                f"{instruction} failed: forbidden path outside the build context: {orig}"
            ) from exc
        if node is None:
            raise BuildContextError(
                f"{instruction} failed: file not found in build context or excluded by "
                f".dockerignore: {orig}"
            )
        if node.kind != DIR:
            return [CopyInfo("file", [self._hash_key(path)])]
        keys: list[tuple[bool, str]] = []
        for rel in tree.walk(full):
            if rel == ".":
                continue
            try:
                keys.append(self._hash_key(rel))
            except ResolveError:
                continue  # walkSource skips what it cannot hash
        return [CopyInfo("dir", keys)]

    def _hash_key(self, path: str) -> tuple[bool, str]:
        """archiveContext.Hash: the tarsum of the followed path, else the path string itself."""
        full = self._extracted.follow(path)
        if full in self._by_rel:
            return True, full
        return False, path

    # -- sending

    def write_tar(self, fileobj: BinaryIO, flavor: TarFlavor, *,
                  files: Mapping[str, bytes] | None = None, plain_first: bool = False) -> None:
        """Stream the context tar, headers written the way `flavor` writes them.

        `files` (slash-separated names) are sent instead of the context's entries of those
        names, or after them: regular files, 0644, owned by root.

        `plain_first`: for BuildKit's `/build?version=2`, whose Dockerfile frontend takes the
        body for a tar only if the first 1024 bytes hold a whole tar header: an entry that
        needs a PAX header first (a long or non-ASCII name) makes it read the tar as the
        Dockerfile ("unknown instruction: PAXHEADERS.0/..."). The first entry sent is then
        one that needs none (BuildKit unpacks the context, so order does not matter to it)."""
        extra = dict(files or {})
        entries = self._plain_first(flavor) if plain_first else self.entries
        for e in entries:
            content = extra.pop(e.rel, None)
            if content is not None and e.kind == FILE:
                write_file(fileobj, e.name, content, mtime=e.mtime)
                continue
            uid, gid = e.tar_owner(flavor)
            major, minor = e.devices()
            fileobj.write(
                tar_header(
                    name=e.name,
                    mode=e.tar_mode(flavor),
                    uid=uid,
                    gid=gid,
                    size=e.size,
                    mtime=e.mtime,
                    typeflag=TYPEFLAG[e.kind],
                    linkname=e.linkname,
                    devmajor=major,
                    devminor=minor,
                    xattrs=e.tar_xattrs(flavor),
                )
            )
            if e.kind == FILE and e.size:
                for chunk in read_exactly(e):
                    fileobj.write(chunk)
                pad = -e.size % BLOCK
                if pad:
                    fileobj.write(b"\0" * pad)
        for name, content in extra.items():
            write_file(fileobj, name, content, mtime=0)
        fileobj.write(b"\0" * (2 * BLOCK))

    def _plain_first(self, flavor: TarFlavor) -> list[ContextEntry]:
        for i, e in enumerate(self.entries):
            uid, gid = e.tar_owner(flavor)
            body = header_plan(name=e.name, linkname=e.linkname, uid=uid, gid=gid,
                               size=e.size, mtime=e.mtime, xattrs=e.tar_xattrs(flavor))[3]
            if not body:
                return [e, *self.entries[:i], *self.entries[i + 1:]]
        raise BuildContextError(
            "every name in the build context needs a long-name header (over 100 bytes, or "
            "not ASCII), which the Engine API's BuildKit cannot take first",
            hint="build through the docker CLI (DEVSYNC_DOCKER_CLI), or rename one file")
