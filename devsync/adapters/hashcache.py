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
import json
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import add, and_, mul, ne

from devsync.model.context import FILE, ContextEntry, DigestJob, FileDigests

CACHE_DIR_ENV = "DEVSYNC_CACHE_DIR"
FORMAT = 1
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
# path offset, path length, size, mtime_ns, ctime_ns, inode, device, mode,
# capability offset, capability length (-1: none), first variant, variant count
_RECORD = struct.Struct("<IIqqqQQIIiII")
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


def _digest_in(rows: bytes, vid: bytes) -> bytes | None:
    for i in range(0, len(rows), _VARIANT):
        if rows[i:i + _VARIANT_ID] == vid:
            return rows[i + _VARIANT_ID:i + _VARIANT]
    return None


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
        self._loaded: dict[str, _Record] = {}
        self._seen: dict[str, _Record] = {}  # what this scan found (and may write)
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
            self._loaded = self._parse(data)
        except _Rejected as exc:
            self.problem = str(exc)
            self._loaded = {}
            self._dirty = True  # (the next save replaces it)

    def _parse(self, data: bytes) -> dict[str, _Record]:
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
        for name in ("stamp_ns", "records", "variants", "blob"):
            value = head.get(name)
            if type(value) is not int or value < 0:
                raise _Rejected("unreadable header")
            sizes.append(value)
        stamp, n_records, n_variants, n_blob = sizes
        self._recalled = _answers(head.get("answers"))
        tables = body[end + 1:]
        records_end = n_records * _RECORD.size
        variants_end = records_end + n_variants * _VARIANT
        if len(tables) != variants_end + n_blob:
            raise _Rejected("sizes do not add up")
        variants = tables[records_end:variants_end]
        blob = tables[variants_end:]
        # The records' paths, capabilities and variants follow each other in the order
        # `save` writes them: anything else is refused, which also bounds the work a
        # crafted file can ask for by its size. Checked column by column (a warm plan
        # loads 20,000 records: no Python loop over them).
        if not n_records:
            if n_blob or n_variants:
                raise _Rejected("a record does not follow the format")
            return {}
        (path_off, path_len, size, mtime, ctime, ino, dev, mode, cap_off, cap_len, first,
         count) = map(list, zip(*_RECORD.iter_unpack(tables[:records_end]), strict=True))
        cap_end = list(map(add, cap_off, map(max, cap_len, repeat(0))))
        variant_end = list(map(add, first, count))
        if path_off[0] != 0 or path_off[1:] != cap_end[:-1] or cap_end[-1] != n_blob \
                or cap_off != list(map(add, path_off, path_len)) or min(cap_len) < -1 \
                or first[0] != 0 or first[1:] != variant_end[:-1] \
                or variant_end[-1] != n_variants or min(size) <= 0 \
                or any(map(ne, map(and_, mode, repeat(0o170000)), repeat(stat.S_IFREG))):
            raise _Rejected("a record does not follow the format")
        if blob.isascii():  # (byte offsets are character offsets)
            text = blob.decode("ascii")
            rels = list(map(text.__getitem__, map(slice, path_off, cap_off)))
        else:
            rels = [blob[a:b].decode("utf-8", "surrogateescape")
                    for a, b in zip(path_off, cap_off, strict=True)]
        caps: Iterable[bytes | None] = repeat(None) if max(cap_len) < 0 else [
            blob[a:b] if n >= 0 else None
            for a, b, n in zip(cap_off, cap_end, cap_len, strict=True)]
        rows = map(variants.__getitem__, map(slice, map(mul, first, repeat(_VARIANT)),
                                             map(mul, variant_end, repeat(_VARIANT))))
        keys = zip(size, mtime, ctime, ino, mode, dev, strict=True)
        out = dict(zip(rels, zip(keys, caps, rows, strict=False), strict=True))
        # racy when it was written: hashed again
        latest = min(stamp, self.started_ns)
        oldest_racy = latest - RACY_NS
        if max(mtime) >= oldest_racy or max(ctime) >= oldest_racy:
            for rel, m, c in zip(rels, mtime, ctime, strict=True):
                limit = latest - racy_margin(m, c)
                if m >= limit or c >= limit:
                    out.pop(rel, None)
        return out

    def save(self) -> bool:
        """Write what this scan saw (atomically) when it differs from the file; False when
        the cache cannot be written (a cache only: nothing is lost)."""
        if not self._dirty and self._seen.keys() == self._loaded.keys():
            return True
        records = sorted(self._seen.items())
        table = bytearray()
        variants = bytearray()
        blob = bytearray()
        n_variants = 0
        new = self._new
        kept: dict[str, _Record] = {}
        for rel, (key, cap, rows) in records:
            path = rel.encode("utf-8", "surrogateescape")
            path_off = len(blob)
            blob += path
            cap_off = len(blob)
            if cap is not None:
                blob += cap
            rows = _merged(rows, new.get(rel))
            kept[rel] = (key, cap, rows)
            variants += rows
            size, mtime, ctime, ino, mode, dev = key
            count = len(rows) // _VARIANT
            table += _RECORD.pack(path_off, len(path), size, mtime, ctime, ino, dev, mode,
                                  cap_off, -1 if cap is None else len(cap), n_variants, count)
            n_variants += count
        head: dict[str, object] = {
            "format": FORMAT, "machine": machine_id(), "uid": os.geteuid(),
            "context": self.root, "stamp_ns": self._stamp_ns, "records": len(records),
            "variants": n_variants, "blob": len(blob)}
        answers = self._remembered or self._recalled
        if answers is not None:
            head["answers"] = {"listing": answers[0], "hashes": answers[1]}
        body = b"".join((MAGIC, json.dumps(head).encode(), b"\n", table, variants, blob))
        try:
            _write_atomically(self.path, body + hashlib.sha256(body).digest())
        except OSError:
            return False
        self._dirty = False
        self._loaded = kept
        self._seen = dict(kept)
        self._new = {}
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
        record = self._loaded.get(rel)
        if record is None or record[0] != (st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                           st.st_ino, st.st_mode, st.st_dev):
            return None
        self._seen[rel] = record
        return (record[1],)

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
        record = self._seen.get(rel)
        if record is None or record[0] != entry.stat_key:
            return super().lookup(entry, header)  # (a racy file hashed earlier in this scan)
        vid = variant_id(header)
        new = self._new.get(rel)
        digest = new.get(vid) if new is not None else None
        if digest is None:
            digest = _digest_in(record[2], vid)
        return digest.hex() if digest is not None else None

    def store(self, entry: ContextEntry, header: bytes, digest: str) -> None:
        if entry.kind != FILE or not entry.size:
            return
        record = self._seen.get(entry.rel)
        if record is None or record[0] != entry.stat_key:
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
