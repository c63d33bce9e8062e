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

Every file's digest goes through the context's `FileDigests` (`digests`): by default a memo
for the life of the context; a persistent cache keyed by what `stat` says makes a warm plan
of a large repository a stat walk (devsync.adapters.hashcache).

`BuildContext` and `scan_context` are the surface; the parts live in private modules:
  _entries  `ContextEntry`, `TarFlavor` and `git_mode`: one entry and its header per client
  _scan     the CLI's walk and the Dockerfile name it sends
  _daemon   the extracted tree the daemon resolves COPY/ADD sources on, `daemon_removes`,
            `copy_created_by`
  _tar      ustar/PAX headers as Go writes them, and reading file contents
  _digests  `FileDigests`, `hash_entry`: sha256(header + content) per file, once, in parallel
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
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
from devsync.model.context._digests import (
    DigestJob,
    FileDigest,
    FileDigests,
    hash_entry,
    hash_jobs,
    hash_variants,
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
    TarStream,
    header_plan,
    tar_chunks,
    tar_size,
)
from devsync.model.dockerignore import (
    DOCKERIGNORE,
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
    "DigestJob",
    "FileDigest",
    "FileDigests",
    "TarFlavor",
    "TarStream",
    "copy_created_by",
    "daemon_removes",
    "git_mode",
    "hash_entry",
    "hash_jobs",
    "hash_variants",
    "scan_context",
]


def scan_context(
    context_dir: Path | str,
    dockerfile_rel: str = "Dockerfile",
    *,
    ignore_flavor: TarFlavor = TarFlavor.CLI_MODERN,
    digests: FileDigests | None = None,
) -> BuildContext:
    """Walk `context_dir` exactly as `docker build` would and list what it sends.

    `ignore_flavor` picks the .dockerignore semantics: CLI_LEGACY (and its git-modes variant)
    follows docker 20.10's walk, the others the modern CLI's (they differ only for unusual
    patterns). Nothing is hashed here. `digests`: where the context's file digests come from
    (a persistent cache also spares the walk the readability and capability checks of files
    it saw unchanged); default, a memo of this context's own.
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
    digests = digests if digests is not None else FileDigests()
    entries = Walker(root, matcher, legacy, digests).walk()
    return BuildContext(root, dockerfile, entries, excludes, digests)


# in every listing key: a devsync that derives source hashes otherwise changes it
_LISTING_VERSION = "devsync context listing 1"
# what a listing key takes of each entry besides its name, kind, link name and capability:
# the other header fields and the signature, as 64-bit numbers (times may be negative)
_LISTED_NUMBERS = (("Q", ("mode", "uid", "gid", "size", "rdev", "ino", "dev")),
                   ("q", ("mtime_ns", "ctime_ns")))


def _tarsum_header(e: ContextEntry, flavor: TarFlavor, mode: int, uid: int, gid: int) -> bytes:
    major, minor = e.devices() if e.rdev else (0, 0)
    header = b"name%smode%duid%dgid%dsize%dtypeflag%slinkname%sunamegnamedevmajor%ddevminor%d" % (
        e.name.encode("utf-8", "surrogateescape"), mode, uid, gid, e.size, TYPEFLAG[e.kind],
        e.linkname.encode("utf-8", "surrogateescape"), major, minor)
    if e.capability is not None:
        header += b"".join(xk.encode() + xv for xk, xv in sorted(e.tar_xattrs(flavor).items()))
    return header


@dataclass
class BuildContext:
    """What `docker build CONTEXT` sends, with lazily computed, cached tarsums."""

    context_dir: Path
    dockerfile: str  # the name the CLI passes to the daemon (pass the same to the API)
    entries: list[ContextEntry]
    excludes: list[str]  # the .dockerignore patterns as read
    digests: FileDigests = field(default_factory=FileDigests, repr=False)
    # Flavors whose tarsums are wanted too: a file hashed for one flavor is hashed for these
    # in the same read (the plan tries several; see `tarsums`).
    companion_flavors: tuple[TarFlavor, ...] = field(default=(), repr=False)
    # ... for batches of at most this many files (None: any): the few files a warm plan
    # finds changed, or a short COPY's, whose other flavors' sums a plan that misses a step
    # goes on to try; not a cold COPY of a whole tree, whose first flavor usually hits
    companion_batch_max: int | None = field(default=None, repr=False)
    # when the walk was done (time.monotonic): how old the listing is
    scanned_at: float = field(default_factory=time.monotonic, repr=False)
    _by_rel: dict[str, ContextEntry] = field(init=False, repr=False)
    _tarsums: dict[tuple[object, ...], str] = field(init=False, repr=False)
    _source_hashes: dict[tuple[object, ...], str | None] = field(init=False, repr=False)
    _plain: set[str] | bool | None = field(init=False, repr=False, default=None)  # False: not
    _index: dict[str, int] | None = field(init=False, repr=False, default=None)
    _listing: str | None = field(init=False, repr=False, default=None)
    _tree: ExtractedTree | None = field(init=False, repr=False, default=None)
    _resolved: dict[tuple[tuple[str, ...], str], tuple[list[CopyInfo], bool]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        self._by_rel = {e.rel: e for e in self.entries}
        self._tarsums = {}
        self._resolved = {}
        self._source_hashes = {}

    # -- entries

    def entry(self, rel: str) -> ContextEntry | None:
        """The entry sent for `rel` (a cleaned relative path), if any."""
        return self._by_rel.get(clean_path(rel))

    def __len__(self) -> int:
        return len(self.entries)

    def tar_size_estimate(self, flavor: TarFlavor = TarFlavor.CLI_MODERN, *,
                          files: Mapping[str, bytes] | None = None) -> int:
        """The exact number of bytes `write_tar(..., flavor)` produces (no file is read)."""
        return tar_size(self.entries, flavor, files or {})

    # -- tarsums

    def tarsum(self, rel: str, flavor: TarFlavor) -> str:
        """The daemon's tarsum v1 of one entry (hex sha256), as sent by `flavor`."""
        e = self._by_rel.get(clean_path(rel))
        if e is None:
            raise KeyError(f"{rel} is not in the build context")
        return self.tarsums([e], flavor)[0]

    @staticmethod
    def tarsum_header(e: ContextEntry, flavor: TarFlavor) -> bytes:
        """The header fields tarsum v1 hashes before the entry's content (the daemon's
        selection: name, mode, owner, size, type, link name, blanked user and group names,
        device numbers, then the extended attributes sorted by name)."""
        uid, gid = e.tar_owner(flavor)
        return _tarsum_header(e, flavor, e.tar_mode(flavor), uid, gid)

    def tarsums(self, entries: Sequence[ContextEntry], flavor: TarFlavor) -> list[str]:
        """The tarsums of `entries` as sent by `flavor`, in order. The contents not known yet
        (to this context, or to its `digests`) are hashed in one batch over the cores, each
        file read once for `flavor` and the `companion_flavors`."""
        memo = self._tarsums
        digests = self.digests
        out: list[str | None] = []
        misses: list[tuple[int, ContextEntry, tuple[object, ...], bytes]] = []
        for e in entries:
            mode = e.tar_mode(flavor)
            uid, gid = e.tar_owner(flavor)
            # Flavors differ only in these header fields, and often not for a given entry
            # (the SDK writes the CLI's headers for a root-owned checkout, git's modes are
            # often the disk's): such flavors share one sum rather than each hashing the file.
            key: tuple[object, ...] = (e.rel, mode, uid, gid) if e.capability is None else \
                (e.rel, mode, uid, gid, *sorted(e.tar_xattrs(flavor).items()))
            digest = memo.get(key)
            if digest is None:
                header = _tarsum_header(e, flavor, mode, uid, gid)
                if e.kind != FILE or not e.size:
                    digest = hashlib.sha256(header).hexdigest()
                else:
                    digest = digests.known(e, header)
                    if digest is None:
                        misses.append((len(out), e, key, header))
                if digest is not None:
                    memo[key] = digest
            out.append(digest)
        if misses:
            limit = self.companion_batch_max
            companions = [f for f in self.companion_flavors if f is not flavor] \
                if limit is None or len(misses) <= limit else []
            jobs: list[DigestJob] = []
            for _i, e, _key, header in misses:
                headers = [header]
                for f in companions:
                    other = self.tarsum_header(e, f)
                    if other not in headers:  # (flavors that write the same header)
                        headers.append(other)
                jobs.append((e, headers))
            for (i, _e, key, _header), found in zip(misses, digests.compute(jobs),
                                                     strict=True):
                memo[key] = out[i] = found[0]
        return out  # type: ignore[return-value]  # (every None was filled in)

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
        memo_key = (tuple(sources), flavor, instruction.upper())
        if memo_key in self._source_hashes:
            return self._source_hashes[memo_key]
        listing = self.listing_key()
        what = ""
        if listing is not None:
            # the same listing (signatures included) gave this answer before: the content
            # has not changed (see FileDigests.vouches); a warm plan of a large context hashes
            # nothing and need not even look its files' digests up
            what = "\0".join((instruction.upper(), flavor.value, *sources))
            found = self.digests.recall(listing, what)
            if found is not None:
                self._source_hashes[memo_key] = found
                return found
        infos, has_url = self._resolve(sources, instruction)
        if has_url:
            self._source_hashes[memo_key] = None
            return None
        by_rel = self._by_rel
        sums = iter(self.tarsums([by_rel[k] for info in infos for has_sum, k in info.keys
                                  if has_sum], flavor))
        hashes: list[str] = []
        for info in infos:
            parts = [next(sums) if has_sum else k for has_sum, k in info.keys]
            hashes.append("file:" + parts[0] if info.kind == "file"
                          else "dir:" + sha256_join(sorted(parts)))
        result = hashes[0] if len(hashes) == 1 else "multi:" + sha256_join(hashes)
        self._source_hashes[memo_key] = result
        if listing is not None:
            self.digests.remember(listing, what, result)
        return result

    def listing_key(self) -> str | None:
        """A sha256 of everything a COPY/ADD source hash is derived from but the files'
        contents: the Dockerfile name, the .dockerignore patterns, and every entry with its
        header fields and file signature; None when the `digests` cannot vouch that the same
        signatures mean the same contents (`FileDigests.vouches`)."""
        if self._listing is None:
            if not self.digests.vouches():
                return None
            import marshal
            from array import array

            # column by column (no Python loop over 20,000 entries), each column's length
            # first: names and link names hold no NUL, numbers have a fixed width
            entries = self.entries
            h = hashlib.sha256(marshal.dumps((_LISTING_VERSION, self.dockerfile,
                                              self.excludes, len(entries))))
            columns: list[bytes] = [
                "\0".join(map(attrgetter(name), entries)).encode("utf-8", "surrogateescape")
                for name in ("name", "kind", "linkname")]
            try:
                columns += [array(code, map(attrgetter(name), entries)).tobytes()
                            for code, names in _LISTED_NUMBERS for name in names]
            except OverflowError:  # (a number no file system gives: no key, no recall)
                return None
            columns.append(marshal.dumps(list(map(attrgetter("capability"), entries))))
            for column in columns:
                h.update(len(column).to_bytes(8, "little"))
                h.update(column)
            self._listing = h.hexdigest()
        return self._listing

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
        path = orig[1:] if orig.startswith("/") else orig
        path = path[2:] if path.startswith("./") else path
        if allow_wildcards and contains_wildcards(path):
            tree = self._extracted
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
        direct = self._direct_copy_info(clean_path(path or "."))
        if direct is not None:
            return direct
        tree = self._extracted
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
        by_rel = self._by_rel
        for rel, child in tree.walk_nodes(full):
            if rel == ".":
                continue
            if child.kind != SYMLINK:
                # its parents are real directories (the walk enters nothing else), so the
                # daemon's FollowSymlinkInScope of it is itself
                keys.append((rel in by_rel, rel))
                continue
            try:
                keys.append(self._hash_key(rel))
            except ResolveError:
                continue  # walkSource skips what it cannot hash
        return [CopyInfo("dir", keys)]

    def _direct_copy_info(self, path: str) -> list[CopyInfo] | None:
        """A source resolved from the entries, without building the extracted tree, when the
        context has no symbolic link and lists every directory it sends (the walk of a plain
        checkout): then the daemon finds each path as itself, and a directory's walk is the
        entries that follow it, but for what it deletes first (`daemon_removes`). None when
        the tree must be asked (that, errors included, is the reference)."""
        removed = self._plain_removed()
        if removed is None or path in removed:
            return None
        if path == ".":
            return [CopyInfo("dir", [(True, e.rel) for e in self.entries
                                     if e.rel not in removed])]
        found = self._by_rel.get(path)
        if found is None:
            return None
        if found.kind != DIR:
            return [CopyInfo("file", [(True, path)])]
        if self._index is None:
            self._index = {e.rel: i for i, e in enumerate(self.entries)}
        keys = [(True, path)]
        prefix = path + "/"
        for e in self.entries[self._index[path] + 1:]:
            if not e.rel.startswith(prefix):
                break
            if e.rel not in removed:
                keys.append((True, e.rel))
        return [CopyInfo("dir", keys)]

    def _plain_removed(self) -> set[str] | None:
        """What the daemon deletes from a plain context (see `_direct_copy_info`), or None
        when the context is not plain."""
        if self._plain is False:
            return None
        if self._plain is not None and self._plain is not True:
            return self._plain
        dirs = {""}
        removed: set[str] = set()
        plain = True
        for e in self.entries:
            if e.kind == SYMLINK or e.rel.rpartition("/")[0] not in dirs:
                plain = False
                break
            if e.kind == DIR:
                dirs.add(e.rel)
        if plain and DOCKERIGNORE in self._by_rel:
            for name in (DOCKERIGNORE, self.dockerfile):
                rel = clean_path(name)
                if rel in self._by_rel and daemon_removes(name, self.excludes):
                    if rel in dirs:
                        plain = False  # (a directory would take its contents along)
                    removed.add(rel)
        self._plain = removed if plain else False
        return removed if plain else None

    def _hash_key(self, path: str) -> tuple[bool, str]:
        """archiveContext.Hash: the tarsum of the followed path, else the path string itself."""
        full = self._extracted.follow(path)
        if full in self._by_rel:
            return True, full
        return False, path

    # -- sending

    def write_tar(self, fileobj: BinaryIO, flavor: TarFlavor, *,
                  files: Mapping[str, bytes] | None = None, plain_first: bool = False) -> None:
        """Write the context tar, headers written the way `flavor` writes them.

        `files` (slash-separated names) are sent instead of the context's entries of those
        names, or after them: regular files, 0644, owned by root.

        `plain_first`: for BuildKit's `/build?version=2`, whose Dockerfile frontend takes the
        body for a tar only if the first 1024 bytes hold a whole tar header: an entry that
        needs a PAX header first (a long or non-ASCII name) makes it read the tar as the
        Dockerfile ("unknown instruction: PAXHEADERS.0/..."). The first entry sent is then
        one that needs none (BuildKit unpacks the context, so order does not matter to it)."""
        entries = self._plain_first(flavor) if plain_first else self.entries
        for chunk in tar_chunks(entries, flavor, files or {}):
            fileobj.write(chunk)

    def tar_stream(self, flavor: TarFlavor, *,
                   files: Mapping[str, bytes] | None = None) -> TarStream:
        """The tar `write_tar` writes, as a stream of known size made as it is read: a build
        request sends the context while the files are still being read."""
        files = files or {}
        return TarStream(tar_chunks(self.entries, flavor, files),
                         tar_size(self.entries, flavor, files))

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
