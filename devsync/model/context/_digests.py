"""Per-file digests: sha256 of a header followed by a file's content, computed once.

Both builders name a context file by such a digest: the classic builder's tarsum (the tar
header fields the client wrote, then the content) and BuildKit's contenthash (its own tarsum
header, name emptied, then the content). The header depends on who sends the context (modes,
owner), the content does not; and sha256 cannot resume after a different prefix, so a digest
is remembered per (file, header). Reading and hashing is most of a cold plan on a large
repository, and files rarely change between two plans: every digest goes through one
`FileDigests` object, which a caller may replace with a persistent cache keyed by what `stat`
says (devsync.adapters.hashcache).

`hash_variants` reads a file once for several headers (the plan tries several senders), and
`FileDigests.compute` hashes a batch of misses on the CPU's cores: in threads, because
`hashlib` releases the GIL while it hashes a buffer of 2 KiB or more and the reads release it
too (measured on 2 cores against two processes, which pay their start and imports: see
tests/benchmarks/bench_large.py and docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

from devsync.model.context._entries import FILE, ContextEntry
from devsync.model.context._tar import read_exactly

# (entry, header) -> hex sha256 of the header followed by the entry's content
FileDigest = Callable[[ContextEntry, bytes], str]
# one entry and the headers wanted for it
DigestJob = tuple[ContextEntry, Sequence[bytes]]

# below this many files (or bytes) a pool costs more than it saves
_PARALLEL_MIN_FILES = 64
_BATCH = 256


def hash_entry(entry: ContextEntry, header: bytes) -> str:
    """sha256 (hex) of `header` followed by the entry's content, read exactly as large as the
    walk saw it (BuildContextError when it is not: the file changed under the scan)."""
    return hash_variants(entry, (header,))[0]


def hash_variants(entry: ContextEntry, headers: Sequence[bytes]) -> list[str]:
    """`hash_entry` for each of `headers`, reading the content once."""
    hashes = [hashlib.sha256(header) for header in headers]
    if entry.kind == FILE and entry.size:
        for chunk in read_exactly(entry):
            for h in hashes:
                h.update(chunk)
    return [h.hexdigest() for h in hashes]


def default_workers() -> int:
    """Threads for a cold hashing: the cores this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def hash_jobs(jobs: Sequence[DigestJob], *, workers: int | None = None) -> list[list[str]]:
    """`hash_variants` of every job, in order, on `workers` threads (default: the cores)."""
    workers = default_workers() if workers is None else max(1, workers)
    if workers == 1 or len(jobs) < _PARALLEL_MIN_FILES:
        return [hash_variants(e, headers) for e, headers in jobs]
    batches = [jobs[i:i + _BATCH] for i in range(0, len(jobs), _BATCH)]

    def run(batch: Sequence[DigestJob]) -> list[list[str]]:
        return [hash_variants(e, headers) for e, headers in batch]

    from concurrent.futures import ThreadPoolExecutor  # (a warm plan never needs it)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="devsync-hash") as pool:
        return [digests for part in pool.map(run, batches) for digests in part]


class FileDigests:
    """The digests of a scan's files, each computed once per (file, header).

    This one remembers them in memory, per file signature (`ContextEntry.stat_key`), so it
    may serve several scans of a tree that changes. A persistent cache overrides `lookup` and
    `store` (and `known_facts`/`note_facts`, which let a scan skip the readability check and
    the capability lookup of a file it has seen unchanged); the model asks only through
    `known`, `compute` (or `__call__`, both at once) and the scan's two calls.
    """

    def __init__(self, *, workers: int | None = None) -> None:
        self.workers = workers
        self._memo: dict[tuple[str, bytes], tuple[tuple[int, ...], str]] = {}
        self.hashed = 0  # files read and hashed by this object (for tests and benchmarks)

    # -- what a persistent cache overrides

    def lookup(self, entry: ContextEntry, header: bytes) -> str | None:
        """A digest remembered for this very file (same signature) and header, if any."""
        found = self._memo.get((entry.rel, header))
        if found is not None and found[0] == entry.stat_key:
            return found[1]
        return None

    def store(self, entry: ContextEntry, header: bytes, digest: str) -> None:
        """Remember a digest just computed from the file with the entry's signature."""
        self._memo[(entry.rel, header)] = (entry.stat_key, digest)

    def known_facts(self, rel: str, st: os.stat_result) -> tuple[bytes | None] | None:
        """(capability,) of a regular file seen readable with exactly this stat, else None."""
        return None

    def note_facts(self, rel: str, st: os.stat_result, capability: bytes | None) -> None:
        """A regular file the scan found readable, with its security.capability xattr."""

    def vouches(self) -> bool:
        """Whether every regular file of the scan has a signature that moves with its content
        (seen through this object, none racy): then the same listing, signatures included
        (`BuildContext.listing_key`), is the same content, and results derived from it alone
        may be remembered (`recall`, `remember`). An in-memory memo vouches for nothing."""
        return False

    def recall(self, listing: str, what: str) -> str | None:
        """A result remembered for this listing key and question (see `vouches`)."""
        return None

    def remember(self, listing: str, what: str, value: str) -> None:
        """Remember a result derived from the listing alone (when `vouches`)."""

    # -- what the model calls

    def known(self, entry: ContextEntry, header: bytes) -> str | None:
        """The digest of `header` + the entry's content, if known without reading it."""
        if entry.kind != FILE or not entry.size:
            return None
        return self.lookup(entry, header)

    def compute(self, jobs: Sequence[DigestJob]) -> list[list[str]]:
        """The digests of each job's entry for each of its headers (`hash_variants`), the
        files read once each, spread over the cores; each one remembered (`store`)."""
        results = hash_jobs(jobs, workers=self.workers)
        for (entry, headers), digests in zip(jobs, results, strict=True):
            self.hashed += 1
            for header, digest in zip(headers, digests, strict=True):
                self.store(entry, header, digest)
        return results

    def __call__(self, entry: ContextEntry, header: bytes) -> str:
        """The digest of `header` + the entry's content (a `FileDigest`)."""
        digest = self.known(entry, header)
        if digest is None:
            digest = self.compute([(entry, (header,))])[0][0]
        return digest
