"""The file digest cache on disk: a warm scan hashes nothing and asks nothing of unchanged
files, git's racy rule, and a damaged, foreign, hostile or concurrently written cache never
gives a wrong digest."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devsync.adapters import hashcache
from devsync.adapters.hashcache import FINE_RACY_NS, MAGIC, RACY_NS, HashCache
from devsync.model.context import BuildContext, TarFlavor, scan_context

SECOND = 1_000_000_000


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(hashcache.CACHE_DIR_ENV, str(path))
    return path


def _repo(root: Path, files: int = 40) -> Path:
    """A tree whose files were last changed a minute ago (so not racy for a scan now)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
    for i in range(files):
        path = root / f"src{i % 4}" / f"f{i:03d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"file {i}\n" * (i + 1))
    return root


def _clock(offset_s: float = 0) -> Callable[[], int]:
    """The time of a scan made `offset_s` seconds from now (files written now are old by
    then when the offset exceeds the racy window)."""
    at = time.time_ns() + int(offset_s * SECOND)
    return lambda: at


def _plan(root: Path, *, clock: Callable[[], int] | None = None,
          flavor: TarFlavor = TarFlavor.CLI_MODERN) -> tuple[str | None, HashCache, BuildContext]:
    """What a plan does: open the cache, scan, hash `COPY .`, save."""
    cache = HashCache.open(root, clock=clock or _clock(10))
    ctx = scan_context(root, digests=cache)
    digest = ctx.source_hash(["."], flavor)
    cache.save()
    return digest, cache, ctx


def _reference(root: Path, flavor: TarFlavor = TarFlavor.CLI_MODERN) -> str | None:
    return scan_context(root).source_hash(["."], flavor)


def test_a_warm_plan_hashes_and_asks_nothing_of_unchanged_files(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path / "repo")
    cold, cache, _ctx = _plan(root)
    assert cache.hashed == 41 and cache.problem is None
    assert cold == _reference(root)
    assert Path(cache.path).parent == cache_dir / "hashes"
    asked: list[str] = []
    real_access = os.access
    monkeypatch.setattr("devsync.model.context._scan.os.access",
                        lambda p, m: asked.append(p) or real_access(p, m))
    warm, cache, _ctx = _plan(root)
    assert (warm, cache.hashed, asked) == (cold, 0, [])
    # another sender's headers: hashed once, then remembered beside the first
    legacy, cache, _ctx = _plan(root, flavor=TarFlavor.CLI_LEGACY)
    assert cache.hashed == 41 and legacy == _reference(root, TarFlavor.CLI_LEGACY)
    _again, cache, _ctx = _plan(root, flavor=TarFlavor.CLI_LEGACY)
    assert cache.hashed == 0
    _modern, cache, _ctx = _plan(root)
    assert cache.hashed == 0


def test_an_unchanged_listing_answers_its_source_hashes_without_a_lookup(
        cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The COPY source hashes of the scan before are recalled when every entry and signature
    is the same (no file looked up); anything else that a header or content could show
    (a mode, a new file, a racy file) is computed again."""
    root = _repo(tmp_path / "repo")
    cold, _cache, _ctx = _plan(root)
    legacy, _cache, _ctx = _plan(root, flavor=TarFlavor.CLI_LEGACY)

    def no_lookup(*args: object) -> list[str]:
        raise AssertionError("looked the digests up")

    with monkeypatch.context() as m:
        m.setattr(BuildContext, "tarsums", no_lookup)
        assert _plan(root)[0] == cold
        assert _plan(root, flavor=TarFlavor.CLI_LEGACY)[0] == legacy
    (root / "src0" / "f000.txt").chmod(0o600)
    (root / "src1" / "new.txt").write_text("new\n")
    digest, cache, _ctx = _plan(root, clock=_clock(20))
    assert cache.hashed == 2 and digest == _reference(root) != cold
    # a racy file: nothing recalled, nothing remembered
    racy = root / "src2" / "f002.txt"
    scan_at = _clock(30)()
    os.utime(racy, ns=(scan_at, _racy_mtime(scan_at, "nanoseconds")))
    digest, cache, ctx = _plan(root, clock=lambda: scan_at)
    assert cache.racy == 1 and not cache.vouches() and ctx.listing_key() is None
    assert digest == _reference(root) and cache._remembered is None


def test_odd_names_and_capabilities_are_remembered_as_they_are(cache_dir: Path,
                                                               tmp_path: Path) -> None:
    """Names that are not UTF-8 or not ASCII, and a file's security.capability, come back
    from the cache file as the walk found them (a warm plan equals a cold one)."""
    root = _repo(tmp_path / "repo", files=8)
    (root / "caf\u00e9.txt").write_text("accent\n")
    (root / os.fsdecode(b"latin1-\xe9.txt")).write_text("not utf-8\n")
    capped = root / "src0" / "f000.txt"
    # cap_net_bind_service=ep, VFS_CAP_REVISION_2
    cap = bytes.fromhex("01000002" "00040000" "00000000" "00000000" "00000000")
    try:
        os.setxattr(capped, "security.capability", cap)
    except OSError:
        cap = b""  # (no CAP_SETFCAP here: names only)
    cold, cache, ctx = _plan(root)
    files = sum(1 for e in ctx.entries if e.kind == "file" and e.size)
    assert cache.hashed == files and cold == _reference(root)
    warm, cache, ctx = _plan(root, clock=_clock(20))
    legacy, cache2, _ctx = _plan(root, clock=_clock(30), flavor=TarFlavor.CLI_LEGACY)
    assert (warm, cache.hashed, cache2.hashed) == (cold, 0, files)
    assert legacy == _reference(root, TarFlavor.CLI_LEGACY)
    if cap:
        entry = ctx.entry("src0/f000.txt")
        assert entry is not None and entry.capability == cap


def test_the_listing_key_moves_with_names_links_and_signatures(cache_dir: Path,
                                                              tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    os.symlink("src0", root / "link")

    def key() -> str | None:
        return scan_context(root, digests=HashCache.open(root, clock=_clock(10))).listing_key()

    keys = [key()]
    assert keys[0] is not None and key() == keys[0]
    (root / "link").unlink()
    os.symlink("src1", root / "link")
    keys.append(key())
    (root / "src0" / "f000.txt").rename(root / "src0" / "g000.txt")
    keys.append(key())
    moved = root / "src1" / "f001.txt"
    os.utime(moved, ns=(moved.stat().st_atime_ns, moved.stat().st_mtime_ns - SECOND))
    keys.append(key())
    assert len(set(keys)) == 4


def test_changed_added_and_deleted_files(cache_dir: Path, tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    _plan(root)
    edited = root / "src1" / "f005.txt"
    before = edited.stat()
    edited.write_text(edited.read_text().replace("file", "FILE"))  # same size
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    (root / "src2" / "new.txt").write_text("new\n")
    (root / "src3" / "f007.txt").unlink()
    digest, cache, _ctx = _plan(root)
    assert cache.hashed == 2  # the edited file (its ctime moved) and the new one
    assert digest == _reference(root)
    chmodded = root / "src0" / "f000.txt"
    chmodded.chmod(0o600)
    digest, cache, _ctx = _plan(root)
    assert cache.hashed == 1 and digest == _reference(root)
    # the deleted file's record is gone from the file
    assert "src3/f007.txt" not in HashCache.open(root, clock=_clock(10))._loaded


def _racy_mtime(scan_at: int, granule: str) -> int:
    """An mtime within the racy window of a scan at `scan_at`: on a file system that keeps
    whole seconds, the second before last; with sub-second timestamps, 50 ms before."""
    if granule == "seconds":
        return (scan_at // SECOND - 1) * SECOND  # 1 to 2 s before
    mtime = scan_at - FINE_RACY_NS // 2
    return mtime if mtime % SECOND else mtime - 1


@pytest.mark.parametrize("granule", ["seconds", "nanoseconds"])
def test_a_file_changed_within_the_racy_window_is_hashed_again(cache_dir: Path,
                                                               tmp_path: Path,
                                                               granule: str) -> None:
    root = _repo(tmp_path / "repo")
    scan_at = _clock(60)()  # the scan runs a minute from now: every ctime is old by then
    racy = root / "src0" / "f004.txt"
    # modified within the file system's granule before the scan began: git's racily clean
    os.utime(racy, ns=(scan_at, _racy_mtime(scan_at, granule)))
    settled = root / "src1" / "f005.txt"
    os.utime(settled, ns=(scan_at, scan_at - RACY_NS - SECOND))
    digest, cache, _ctx = _plan(root, clock=lambda: scan_at)
    assert cache.racy == 1 and cache.hashed == 41
    # the next scan (same files) hashes only the racy one again...
    later = scan_at + 5 * SECOND
    _digest, cache, _ctx = _plan(root, clock=lambda: later)
    assert cache.hashed == 1
    # ...and reads its new content: changed in place with mtime and size kept (only what
    # ctime says could tell, and within the window it is not trusted either)
    racy.write_text(racy.read_text().upper())
    os.utime(racy, ns=(scan_at, _racy_mtime(scan_at, granule)))
    cache = HashCache.open(root, clock=lambda: scan_at)
    ctx = scan_context(root, digests=cache)
    assert ctx.source_hash(["."], TarFlavor.CLI_MODERN) == _reference(root) != digest
    assert cache.hashed == 1


def test_a_racy_file_hashed_after_its_window_is_remembered(cache_dir: Path,
                                                          tmp_path: Path) -> None:
    """Racy when the scan began, settled when its hashing began (the TUI's re-plan right
    after an edit): the rehash proves what it holds, and the next scan trusts it; hashed
    within its window, it is not remembered."""
    root = _repo(tmp_path / "repo")
    scan_at = _clock(60)()
    edited = root / "src0" / "f004.txt"
    os.utime(edited, ns=(scan_at, _racy_mtime(scan_at, "nanoseconds")))
    times = iter([scan_at, scan_at + FINE_RACY_NS])  # the scan's start, its hashing's

    _digest, cache, _ctx = _plan(root, clock=lambda: next(times, scan_at + FINE_RACY_NS))
    assert (cache.racy, cache.proved, cache.hashed) == (1, 1, 41)
    digest, cache, _ctx = _plan(root, clock=lambda: scan_at + SECOND)
    assert (cache.racy, cache.hashed) == (0, 0) and digest == _reference(root)
    # the same, hashed while still within its window: hashed again by the next scan
    os.utime(edited, ns=(scan_at, _racy_mtime(scan_at, "nanoseconds") + 1))
    times = iter([scan_at, scan_at + FINE_RACY_NS // 4])
    _digest, cache, _ctx = _plan(root, clock=lambda: next(times, scan_at))
    assert (cache.racy, cache.proved, cache.hashed) == (1, 0, 1)
    digest, cache, _ctx = _plan(root, clock=lambda: scan_at + SECOND)
    assert cache.hashed == 1 and digest == _reference(root)


def test_the_cache_files_stamp_decides_what_was_racy(cache_dir: Path, tmp_path: Path) -> None:
    """An entry not safely older than the moment its cache was written is not trusted, even
    when a reader's own clock says otherwise."""
    root = _repo(tmp_path / "repo")
    scan_at = _clock(60)()
    _plan(root, clock=lambda: scan_at)
    path = Path(HashCache(root).path)
    data = path.read_bytes()
    body = data[:-32]
    end = body.index(b"\n", len(MAGIC))
    head = json.loads(body[len(MAGIC):end])
    files = [p for p in root.rglob("*") if p.is_file()]
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in files)
    head["stamp_ns"] = newest + FINE_RACY_NS // 2  # as if written just after the newest change
    body = MAGIC + json.dumps(head).encode() + body[end:]
    path.write_bytes(body + hashlib.sha256(body).digest())
    cache = HashCache.open(root, clock=lambda: scan_at + 100 * SECOND)
    assert cache.problem is None
    young = sum(1 for p in files
                if max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) >= head["stamp_ns"]
                - hashcache.racy_margin(p.stat().st_mtime_ns, p.stat().st_ctime_ns))
    assert young and len(cache._loaded) == len(files) - young


def _rewrite(path: Path, change: Callable[[dict[str, object], bytes], tuple[dict[str, object],
                                                                              bytes]]) -> None:
    """Rewrite a cache file's header and tables, with a valid checksum (a crafted file)."""
    body = path.read_bytes()[:-32]
    end = body.index(b"\n", len(MAGIC))
    head, tables = change(json.loads(body[len(MAGIC):end]), body[end + 1:])
    body = MAGIC + json.dumps(head).encode() + b"\n" + tables
    path.write_bytes(body + hashlib.sha256(body).digest())


def _split(head: dict[str, object], tables: bytes) -> list[bytes]:
    """The tables of a cache file: signatures, counts, variants, capability table and bytes,
    paths."""
    n, v = int(head["records"]), int(head["variants"])  # type: ignore[call-overload]
    sizes = [n * hashcache._KEY.size, n * hashcache._COUNT.size, v * hashcache._VARIANT,
             int(head["caps"]) * hashcache._CAP.size, int(head["cap_bytes"]),  # type: ignore[call-overload]
             int(head["paths"])]  # type: ignore[call-overload]
    out, pos = [], 0
    for size in sizes:
        out.append(tables[pos:pos + size])
        pos += size
    return out


def _point_outside(head: dict[str, object], tables: bytes) -> tuple[dict[str, object], bytes]:
    """A capability of a record past the last one (sizes adding up)."""
    keys, counts, variants, cap_table, cap_blob, paths = _split(head, tables)
    cap_table += hashcache._CAP.pack(int(head["records"]) + 5, 4)  # type: ignore[call-overload]
    cap_blob += b"\x01\x00\x00\x02"
    head = {**head, "caps": int(head["caps"]) + 1,  # type: ignore[call-overload]
            "cap_bytes": int(head["cap_bytes"]) + 4}  # type: ignore[call-overload]
    return head, keys + counts + variants + cap_table + cap_blob + paths


def _share_variants(head: dict[str, object], tables: bytes) -> tuple[dict[str, object], bytes]:
    """Every record claiming the whole variant table: work quadratic in the file's size."""
    keys, counts, variants, cap_table, cap_blob, paths = _split(head, tables)
    n = int(head["records"])  # type: ignore[call-overload]
    counts = hashcache._COUNT.pack(int(head["variants"])) * n  # type: ignore[call-overload]
    return head, keys + counts + variants + cap_table + cap_blob + paths


HOSTILE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "one byte flipped": lambda p: p.write_bytes(
        (lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:])(p.read_bytes())),
    "empty": lambda p: p.write_bytes(b""),
    "not ours": lambda p: p.write_bytes(b"\x89PNG\r\n" + os.urandom(500)),
    "another format": lambda p: _rewrite(p, lambda h, t: ({**h, "format": 99}, t)),
    "another machine": lambda p: _rewrite(p, lambda h, t: ({**h, "machine": "elsewhere"}, t)),
    "another user": lambda p: _rewrite(p, lambda h, t: ({**h, "uid": os.geteuid() + 1}, t)),
    "another context": lambda p: _rewrite(p, lambda h, t: ({**h, "context": "/elsewhere"}, t)),
    "sizes that do not add up": lambda p: _rewrite(p, lambda h, t: ({**h, "records": 10**12},
                                                                     t)),
    "a header that is not an object": lambda p: _rewrite(p, lambda h, t: ([h], t)),  # type: ignore[return-value,arg-type]
    "negative sizes": lambda p: _rewrite(p, lambda h, t: ({**h, "paths": -1}, t)),
    "a record pointing outside": lambda p: _rewrite(p, _point_outside),
    "answers that are not answers": lambda p: _rewrite(
        p, lambda h, t: ({**h, "answers": {"listing": "0" * 64, "hashes": {"COPY": 1}}}, t)),
    "records sharing their variants": lambda p: _rewrite(p, _share_variants),
    "a deeply nested header": lambda p: p.write_bytes(
        (lambda b: b + hashlib.sha256(b).digest())(MAGIC + b"[" * 50_000 + b"\n")),
    "a symbolic link": lambda p: (p.unlink(), p.symlink_to(p.parent / "decoy")),  # type: ignore[func-returns-value]
    "a directory": lambda p: (p.unlink(), p.mkdir()),  # type: ignore[func-returns-value]
    "a fifo": lambda p: (p.unlink(), os.mkfifo(p)),  # type: ignore[func-returns-value]
}


@pytest.mark.parametrize("damage", list(HOSTILE))
def test_a_damaged_or_foreign_cache_is_rebuilt_never_trusted(
        cache_dir: Path, tmp_path: Path, damage: str) -> None:
    root = _repo(tmp_path / "repo")
    _plan(root, flavor=TarFlavor.CLI_LEGACY)
    # what a wrong trust would show: every file changed in place, sizes and times kept
    for path in root.rglob("*.txt"):
        st = path.stat()
        path.write_text(path.read_text().swapcase())
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    cache_file = Path(HashCache(root).path)
    decoy = cache_file.parent / "decoy"
    good = cache_file.read_bytes()
    decoy.write_bytes(good)  # a good cache (of the files before they changed), through a link
    HOSTILE[damage](cache_file)
    digest, cache, _ctx = _plan(root, clock=_clock(20), flavor=TarFlavor.CLI_LEGACY)
    assert digest == _reference(root, TarFlavor.CLI_LEGACY)
    assert cache.hashed == 41
    if damage not in ("a directory",):
        assert cache.problem, damage
        # rebuilt: the next plan finds a good cache
        _digest, cache, _ctx = _plan(root, clock=_clock(30), flavor=TarFlavor.CLI_LEGACY)
        assert (cache.problem, cache.hashed) == (None, 0)
    if damage == "a symbolic link":
        # not followed, neither to read nor to write: the link itself was replaced
        assert not cache_file.is_symlink()
        assert decoy.read_bytes() == good


def test_concurrent_writers_and_readers_never_see_a_damaged_cache(cache_dir: Path,
                                                                  tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo", files=300)
    worker = textwrap.dedent(f"""
        import os, sys, time
        from devsync.adapters.hashcache import HashCache
        from devsync.model.context import TarFlavor, scan_context
        flavors = list(TarFlavor)
        seen = set()
        for i in range(25):
            cache = HashCache.open({str(root)!r}, clock=lambda: time.time_ns() + 10**10)
            if cache.problem:
                print("PROBLEM", cache.problem); sys.exit(1)
            ctx = scan_context({str(root)!r}, digests=cache)
            seen.add(ctx.source_hash(["."], flavors[(i + int(sys.argv[1])) % len(flavors)]))
            cache.save()
        print(len(seen))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", worker, str(n)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    leftovers = [p.name for p in (cache_dir / "hashes").iterdir() if p.suffix != ".bin"]
    assert leftovers == []
    final = HashCache.open(root, clock=_clock(10))
    assert final.problem is None
    ctx = scan_context(root, digests=final)
    for flavor in TarFlavor:
        assert ctx.source_hash(["."], flavor) == _reference(root, flavor)


def test_an_unwritable_cache_costs_nothing_but_time(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv(hashcache.CACHE_DIR_ENV, str(blocker))
    root = _repo(tmp_path / "repo")
    cache = HashCache.open(root, clock=_clock(10))
    ctx = scan_context(root, digests=cache)
    assert ctx.source_hash(["."], TarFlavor.CLI_MODERN) == _reference(root)
    assert cache.save() is False


def test_the_cache_dir_is_platformdirs_user_cache_dir(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.delenv(hashcache.CACHE_DIR_ENV, raising=False)
    for xdg in (None, str(tmp_path / "xdg")):
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert hashcache.cache_dir() == platformdirs.user_cache_dir("devsync")
    monkeypatch.setenv(hashcache.CACHE_DIR_ENV, "rel/dir")
    assert hashcache.cache_dir() == os.path.abspath("rel/dir")
