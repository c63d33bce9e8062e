"""File digests remembered on disk, keyed by what `stat` says, as git's index keys its hashes.

A plan of a large repository reads and hashes every file a `COPY .` sends; they rarely change
between two plans. `HashCache` is the `FileDigests` of one scan (devsync.model.context) that
remembers, per regular file of a build context:
- its signature: size, mtime_ns, ctime_ns, inode, mode, device (`ContextEntry.stat_key`);
  any write, chmod, chown, xattr change or replacement moves one of them;
- what the scan learnt of it (readable, its security.capability xattr), so that a warm scan
  is a stat walk;
- a digest per header: sha256(header + content), the header being whatever the caller hashes
  first (the tarsum fields of one way of sending the context, or BuildKit's contenthash
  header), known by a 16-byte blake2b of it. So one cache serves every sender and builder.
And, when no file of the scan was racy, the COPY/ADD source hashes found for the scan's
listing (`recall`: keyed by a sha256 of every entry's header fields and signature, see
`BuildContext.listing_key`): a warm plan of an unchanged tree then hashes nothing and does
not even look its 20,000 digests up.

Git's "racy" rule: a file changed in the same timestamp granule as it was read may keep its
signature while its content changes. So an entry is remembered only when its mtime and ctime
are older, by the file system's granule (`racy_margin`), than the moment its content was
read: the moment the scan began (no file was read earlier), or for a file racy then, the
moment its hashing began (`compute`: a rehash that proves what it holds). On loading, entries
not that much older than the cache's own stamp (the latest such moment) are dropped again.
A racy file is re-hashed by the next scans until it has been left alone for the margin.
The granule: a file whose mtime and ctime both have a sub-second part lives on a file system
with fine timestamps (ext4, xfs, btrfs, tmpfs, APFS, NTFS: 1-100 ns, set from a kernel clock
at most a tick, 1-10 ms, behind the system's): `FINE_RACY_NS`. Whole seconds may be all the
file system keeps (ext3, HFS+, FAT's 2 s): `RACY_NS`.

On disk: `<cache dir>/hashes/<key>.bin`, <key> = 16 hex digits of sha256(realpath(context)),
the cache dir `$DEVSYNC_CACHE_DIR`, else platformdirs' user cache dir. The file is a magic line,
a JSON header line (format, machine, user, context, stamp, sizes) and fixed-size binary tables,
then a sha256 of all that. Anything else (truncated, corrupt, another format or devsync, another
machine, user or context, hostile: a link, a device, absurd sizes or offsets) is dropped, never
trusted: the scan hashes what it needs and the next save writes a good cache. A save writes a
new file and renames it into place, so a reader sees the old cache or the new one, whole, and
concurrent devsync processes cannot corrupt it (the last to save wins; what the other hashed is
hashed again next time). Only what this scan saw is written: deleted files drop out.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Sequence
from itertools import accumulate

from devsync.model.context import FILE, ContextEntry, DigestJob, FileDigests

CACHE_DIR_ENV = "DEVSYNC_CACHE_DIR"
FORMAT = 2
MAGIC = b"devsync file digests\n"
# Older than the scan's start by this much, a file's next change moves its mtime or ctime:
# covers ext4's and xfs's coarse clock ticks, 1 s (ext3, HFS+) and 2 s (FAT) granules.
RACY_NS = 2_000_000_000
# With sub-second timestamps: ten times the coarsest kernel tick (HZ=100), for the clock
# the file system stamps with lagging the one devsync reads.
FINE_RACY_NS = 100_000_000
_SECOND = 1_000_000_000
_MAX_FILE = 1 << 30  # a cache of a million files is ~250 MB
_MAX_HEADER = 64 * 1024
# The tables, one after the other: the signatures, the variant counts, the variants, the
# capabilities (record index, length; then their bytes), the paths (NUL between). A record
# is read from them when its file is asked about: loading 20,000 is a split and a dict.
_KEY = struct.Struct("<QqqQIQ")  # size, mtime_ns, ctime_ns, inode, mode, device (StatKey)
_COUNT = struct.Struct("<H")  # variants of a record
_CAP = struct.Struct("<II")  # record index, capability length
_MAX_VARIANTS = 256  # per file: a few senders x builders in practice
_TIMES = struct.Struct("<qq")  # mtime_ns, ctime_ns inside a signature
_TIMES_AT = 8
_VARIANT_ID = 16
_DIGEST = 32
_VARIANT = _VARIANT_ID + _DIGEST
_CHECKSUM = 32
_MAX_ANSWERS = 64  # source hashes remembered for one listing (a few COPY steps x flavors)

StatKey = tuple[int, int, int, int, int, int]


def cache_dir() -> str:
    """`$DEVSYNC_CACHE_DIR`, else platformdirs' `user_cache_dir("devsync")`."""
    override = os.environ.get(CACHE_DIR_ENV, "")
    if override:
        return os.path.abspath(override)
    if sys.platform.startswith("linux"):
        # platformdirs' answer on Linux, without its import (as devsync.prompt.statestore)
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        if os.path.isabs(xdg):
            return os.path.join(xdg, "devsync")
        home = os.environ.get("HOME", "")
        if os.path.isabs(home):
            return os.path.join(home.rstrip("/") or "/", ".cache", "devsync")
    import platformdirs

    return str(platformdirs.user_cache_dir("devsync"))


def cache_path(context_dir: str | os.PathLike[str]) -> str:
    real = os.path.realpath(os.fspath(context_dir))
    key = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    return os.path.join(cache_dir(), "hashes", key + ".bin")


_MACHINE: str | None = None


def machine_id() -> str:
    """This machine, as systemd names it (else its host name): inode numbers and the like
    mean nothing on another one."""
    global _MACHINE
    if _MACHINE is None:
        found = ""
        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            with contextlib.suppress(OSError, UnicodeDecodeError), \
                    open(path, encoding="ascii") as f:
                found = f.read(64).strip()
            if found:
                break
        _MACHINE = found or f"host:{os.uname().nodename}"
    return _MACHINE


def racy_margin(mtime_ns: int, ctime_ns: int) -> int:
    """How much older than a read a file's mtime and ctime must be for its next change to
    move one of them: `FINE_RACY_NS` when both show the file system keeps sub-second
    timestamps, else `RACY_NS`."""
    return FINE_RACY_NS if mtime_ns % _SECOND and ctime_ns % _SECOND else RACY_NS


def variant_id(header: bytes) -> bytes:
    return hashlib.blake2b(header, digest_size=_VARIANT_ID).digest()


# One file as remembered: its signature, capability and digest rows (variant id + sha256
# each), immutable: the digests found by a scan are kept beside (`HashCache._new`).
_Record = tuple[StatKey, "bytes | None", bytes]


def _merged(rows: bytes, new: dict[bytes, bytes] | None) -> bytes:
    """Every variant row, each id once (a new digest for an id replaces the old)."""
    if not new:
        return rows
    out = bytearray()
    for i in range(0, len(rows), _VARIANT):
        if rows[i:i + _VARIANT_ID] not in new:
            out += rows[i:i + _VARIANT]
    for vid, digest in new.items():
        out += vid + digest
    return bytes(out)


class HashCache(FileDigests):
    """The persistent `FileDigests` of one scan of `context_dir` (see the module doc).

    `clock` (nanoseconds, the file system's clock) says when the scan begins: made just
    before the scan, this object is good for that one scan; `load` it first, `save` after.
    """

    def __init__(self, context_dir: str | os.PathLike[str], *, path: str | None = None,
                 clock: Callable[[], int] = time.time_ns, workers: int | None = None) -> None:
        super().__init__(workers=workers)
        self.root = os.path.realpath(os.fspath(context_dir))
        self.path = path or cache_path(self.root)
        self.clock = clock
        self.started_ns = clock()
        # the file's records by path: an index into its tables (`_record`)
        self._loaded: dict[str, int] = {}
        self._keys = b""
        self._offsets: list[int] = [0]
        self._variants = b""
        self._caps: dict[int, bytes] = {}
        # what this scan found (and may write): a loaded record's index, or a new record
        self._seen: dict[str, int | _Record] = {}
        self._new: dict[str, dict[bytes, bytes]] = {}  # digests found since, per file
        self._dirty = False
        self.problem: str | None = None  # why the file on disk was not used, if it was not
        self.racy = 0  # files found too new to be remembered
        self.proved = 0  # of those, files remembered after all once hashed (see `compute`)
        self._stamp_ns = self.started_ns  # when the newest remembered content was read
        # results derived from a listing alone (`recall`): (listing key, {question: answer}),
        # as read from the file and as found by this scan
        self._recalled: tuple[str, dict[str, str]] | None = None
        self._remembered: tuple[str, dict[str, str]] | None = None

    @classmethod
    def open(cls, context_dir: str | os.PathLike[str], **kwargs: object) -> HashCache:
        """A cache for a scan that starts now, loaded from its file."""
        cache = cls(context_dir, **kwargs)  # type: ignore[arg-type]
        cache.load()
        return cache

    # -- reading and writing the file

    def load(self) -> None:
        """Read the cache file; anything wrong with it makes an empty cache (`problem`)."""
        try:
            data = _read_regular(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.problem = f"unreadable: {exc.strerror or exc}"
            return
        try:
            self._parse(data)
        except _Rejected as exc:
            self.problem = str(exc)
            self._loaded, self._keys, self._offsets = {}, b"", [0]
            self._variants, self._caps = b"", {}
            self._dirty = True  # (the next save replaces it)

    def _record(self, ref: int | _Record) -> _Record:
        if not isinstance(ref, int):
            return ref
        offsets = self._offsets
        key: StatKey = _KEY.unpack_from(self._keys, ref * _KEY.size)
        return key, self._caps.get(ref), \
            self._variants[offsets[ref] * _VARIANT:offsets[ref + 1] * _VARIANT]

    def _parse(self, data: bytes) -> None:
        if not data.startswith(MAGIC):
            raise _Rejected("not a devsync digest cache")
        if len(data) < len(MAGIC) + _CHECKSUM:
            raise _Rejected("truncated")
        body, checksum = data[:-_CHECKSUM], data[-_CHECKSUM:]
        if hashlib.sha256(body).digest() != checksum:
            raise _Rejected("checksum mismatch (truncated or damaged)")
        end = body.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
        if end < 0:
            raise _Rejected("no header")
        try:
            head = json.loads(body[len(MAGIC):end])
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _Rejected("unreadable header") from exc
        if not isinstance(head, dict):
            raise _Rejected("unreadable header")
        expected = {"format": FORMAT, "machine": machine_id(), "uid": os.geteuid(),
                    "context": self.root}
        for name, value in expected.items():
            if head.get(name) != value:
                raise _Rejected(f"made for another {name}")
        sizes: list[int] = []
        for name in ("stamp_ns", "newest_ns", "records", "variants", "caps", "cap_bytes",
                     "paths"):
            value = head.get(name)
            if type(value) is not int or value < 0:
                raise _Rejected("unreadable header")
            sizes.append(value)
        stamp, newest, n, n_variants, n_caps, cap_bytes, paths_len = sizes
        self._recalled = _answers(head.get("answers"))
        tables = memoryview(body)[end + 1:]
        bounds = list(accumulate((n * _KEY.size, n * _COUNT.size, n_variants * _VARIANT,
                                  n_caps * _CAP.size, cap_bytes, paths_len), initial=0))
        if len(tables) != bounds[-1]:
            raise _Rejected("sizes do not add up")
        keys, counts_raw, variants, cap_table, cap_blob, paths = (
            tables[a:b] for a, b in itertools.pairwise(bounds))
        counts = [c for (c,) in _COUNT.iter_unpack(counts_raw)]
        if sum(counts) != n_variants or (counts and max(counts) > _MAX_VARIANTS):
            raise _Rejected("a record does not follow the format")
        caps: dict[int, bytes] = {}
        pos = 0
        last = -1
        for index, length in _CAP.iter_unpack(cap_table):
            if not last < index < n or pos + length > cap_bytes:
                raise _Rejected("a record does not follow the format")
            caps[index] = bytes(cap_blob[pos:pos + length])
            pos, last = pos + length, index
        if pos != cap_bytes:
            raise _Rejected("a record does not follow the format")
        rels = bytes(paths).decode("utf-8", "surrogateescape").split("\0") if n else []
        loaded = dict(zip(rels, range(n), strict=False))
        if len(rels) != n or len(loaded) != n or "" in loaded:
            raise _Rejected("a record does not follow the format")
        self._keys, self._variants, self._caps = bytes(keys), bytes(variants), caps
        self._offsets = list(accumulate(counts, initial=0))
        latest = min(stamp, self.started_ns)
        if n and newest >= latest - RACY_NS:
            # some records may be racy for this stamp: dropped (hashed again)
            for rel, (_size, mtime, ctime, *_rest) in zip(rels, _KEY.iter_unpack(keys),
                                                         strict=True):
                limit = latest - racy_margin(mtime, ctime)
                if mtime >= limit or ctime >= limit:
                    del loaded[rel]
        self._loaded = loaded

    def save(self) -> bool:
        """Write what this scan saw (atomically) when it differs from the file; False when
        the cache cannot be written (a cache only: nothing is lost)."""
        if not self._dirty and self._seen.keys() == self._loaded.keys():
            return True
        records = sorted(self._seen.items())
        new = self._new
        keys = bytearray()
        counts = bytearray()
        variants = bytearray()
        cap_table = bytearray()
        cap_blob = bytearray()
        newest = 0
        loaded_keys, offsets, loaded_variants = self._keys, self._offsets, self._variants
        size = _KEY.size
        for i, (rel, ref) in enumerate(records):
            if isinstance(ref, int):  # (as loaded: its bytes copied)
                keys += loaded_keys[ref * size:(ref + 1) * size]
                times = _TIMES.unpack_from(loaded_keys, ref * size + _TIMES_AT)
                rows = loaded_variants[offsets[ref] * _VARIANT:offsets[ref + 1] * _VARIANT]
                cap = self._caps.get(ref)
            else:
                key, cap, rows = ref
                keys += _KEY.pack(*key)
                times = key[1:3]
            newest = max(newest, *times)
            rows = _merged(rows, new.get(rel))
            counts += _COUNT.pack(min(len(rows) // _VARIANT, _MAX_VARIANTS))
            variants += rows[:_MAX_VARIANTS * _VARIANT]
            if cap is not None:
                cap_table += _CAP.pack(i, len(cap))
                cap_blob += cap
        paths = "\0".join(rel for rel, _record in records).encode("utf-8", "surrogateescape")
        head: dict[str, object] = {
            "format": FORMAT, "machine": machine_id(), "uid": os.geteuid(),
            "context": self.root, "stamp_ns": self._stamp_ns, "newest_ns": newest,
            "records": len(records), "variants": len(variants) // _VARIANT,
            "caps": len(cap_table) // _CAP.size, "cap_bytes": len(cap_blob),
            "paths": len(paths)}
        answers = self._remembered or self._recalled
        if answers is not None:
            head["answers"] = {"listing": answers[0], "hashes": answers[1]}
        body = b"".join((MAGIC, json.dumps(head).encode(), b"\n", keys, counts, variants,
                         cap_table, cap_blob, paths))
        try:
            _write_atomically(self.path, body + hashlib.sha256(body).digest())
        except OSError:
            return False
        self._dirty = False
        self._new = {}
        # what was written is what is known now (as the next scan will load it)
        started, self.started_ns = self.started_ns, self._stamp_ns
        try:
            self._parse(body + hashlib.sha256(body).digest())
        finally:
            self.started_ns = started
        # (every record written is loaded again: each was older than the stamp by its margin;
        # one that were not would only be hashed again)
        self._seen = dict(self._loaded)
        return True

    # -- FileDigests

    def _racy(self, mtime_ns: int, ctime_ns: int, at: int | None = None) -> bool:
        limit = (self.started_ns if at is None else at) - racy_margin(mtime_ns, ctime_ns)
        return mtime_ns >= limit or ctime_ns >= limit

    def compute(self, jobs: Sequence[DigestJob]) -> list[list[str]]:
        """`FileDigests.compute`; and a file that was racy when the scan began but is no
        longer when its hashing begins is remembered with the digests just read: any change
        after that moment moves its mtime (git's rule, with the read's own time)."""
        began = self.clock()
        racy = [(entry, capability) for entry, _headers in jobs
                if entry.kind == FILE and entry.size and entry.rel not in self._seen
                and self._racy(entry.mtime_ns, entry.ctime_ns)
                and not self._racy(entry.mtime_ns, entry.ctime_ns, began)
                for capability in (entry.capability,)]
        for entry, capability in racy:
            self._seen[entry.rel] = (entry.stat_key, capability, b"")
            self.proved += 1
        if racy:
            self._stamp_ns = max(self._stamp_ns, began)
            self._dirty = True
        return super().compute(jobs)

    def known_facts(self, rel: str, st: os.stat_result) -> tuple[bytes | None] | None:
        # (a record loaded is not racy: `_parse` drops those; nor is one this object noted)
        index = self._loaded.get(rel)
        if index is None or _KEY.unpack_from(self._keys, index * _KEY.size) != (
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, st.st_dev):
            return None
        self._seen[rel] = index
        return (self._caps.get(index),)

    def vouches(self) -> bool:
        # every regular file of the scan was seen through `known_facts`/`note_facts`
        return self.racy == 0

    def recall(self, listing: str, what: str) -> str | None:
        for answers in (self._remembered, self._recalled):
            if answers is not None and answers[0] == listing and what in answers[1]:
                return answers[1][what]
        return None

    def remember(self, listing: str, what: str, value: str) -> None:
        if not self.vouches():
            return
        if self._remembered is None or self._remembered[0] != listing:
            recalled = self._recalled
            same = recalled is not None and recalled[0] == listing
            self._remembered = (listing, dict(recalled[1]) if same and recalled else {})
        answers = self._remembered[1]
        if answers.get(what) != value and (what in answers or len(answers) < _MAX_ANSWERS):
            answers[what] = value
            self._dirty = True

    def note_facts(self, rel: str, st: os.stat_result, capability: bytes | None) -> None:
        if not st.st_size or self._racy(st.st_mtime_ns, st.st_ctime_ns):
            if st.st_size:
                self.racy += 1
            return
        self._seen[rel] = ((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                            st.st_mode, st.st_dev), capability, b"")
        self._dirty = True

    def lookup(self, entry: ContextEntry, header: bytes) -> str | None:
        rel = entry.rel
        ref = self._seen.get(rel)
        if ref is None:
            return super().lookup(entry, header)  # (a racy file hashed earlier in this scan)
        if isinstance(ref, int):
            if _KEY.unpack_from(self._keys, ref * _KEY.size) != entry.stat_key:
                return super().lookup(entry, header)
            rows = self._variants
            start, end = self._offsets[ref] * _VARIANT, self._offsets[ref + 1] * _VARIANT
        else:
            if ref[0] != entry.stat_key:
                return super().lookup(entry, header)
            rows, start, end = ref[2], 0, len(ref[2])
        vid = variant_id(header)
        new = self._new.get(rel)
        if new is not None and vid in new:
            return new[vid].hex()
        at = rows.find(vid, start, end)
        while at >= 0 and (at - start) % _VARIANT:  # (found inside a digest: not an id)
            at = rows.find(vid, at + 1, end)
        return rows[at + _VARIANT_ID:at + _VARIANT].hex() if at >= 0 else None

    def store(self, entry: ContextEntry, header: bytes, digest: str) -> None:
        if entry.kind != FILE or not entry.size:
            return
        ref = self._seen.get(entry.rel)
        if ref is None or self._record(ref)[0] != entry.stat_key:
            # a file the scan did not note (racy, or scanned without this cache): in memory
            super().store(entry, header, digest)
            return
        self._new.setdefault(entry.rel, {})[variant_id(header)] = bytes.fromhex(digest)
        self._dirty = True


def _answers(found: object) -> tuple[str, dict[str, str]] | None:
    """The header's remembered answers (`HashCache.recall`), checked (_Rejected if odd)."""
    if found is None:
        return None
    if not isinstance(found, dict) or set(found) != {"listing", "hashes"}:
        raise _Rejected("unreadable header")
    listing, hashes = found["listing"], found["hashes"]
    if not isinstance(listing, str) or len(listing) != 64 or not isinstance(hashes, dict) \
            or len(hashes) > _MAX_ANSWERS or not all(
                isinstance(k, str) and isinstance(v, str) and len(v) < 200
                for k, v in hashes.items()):
        raise _Rejected("unreadable header")
    return listing, dict(hashes)


class _Rejected(Exception):
    """The cache file cannot be trusted (the message says why)."""


def _read_regular(path: str) -> bytes:
    """The whole file at `path` if it is a regular file of a sane size (not through a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "not a regular file")
        if st.st_size > _MAX_FILE:
            raise OSError(0, "too large")
        chunks = []
        left = st.st_size + 1  # (one more: a file growing under us is read to the limit)
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_atomically(path: str, data: bytes) -> None:
    import tempfile

    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".digests-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
