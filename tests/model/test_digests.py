"""File digests (sha256 of a header and a file's content): parallel equals serial, each file
read once per batch, and the resolution of COPY sources from the entries equals the
extracted tree's."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from devsync.model.context import (
    FILE,
    BuildContext,
    BuildContextError,
    FileDigests,
    TarFlavor,
    hash_entry,
    hash_jobs,
    scan_context,
)


def _tree(root: Path, files: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    # sizes around hashlib's 2 KiB GIL threshold, empty files, and a few large ones
    sizes = [0, 1, 2047, 2048, 2049, 1 << 20, (1 << 20) + 1, 3 << 20]
    for i in range(files):
        size = sizes[i] if i < len(sizes) else rnd.randint(0, 9000)
        path = root / f"d{i % 7}" / f"e{i % 3}" / f"f{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rnd.randbytes(size))
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")


def test_parallel_hashing_equals_serial_hashing(tmp_path: Path) -> None:
    _tree(tmp_path, 400)
    ctx = scan_context(tmp_path)
    files = [e for e in ctx.entries if e.kind == FILE]
    jobs = [(e, [b"h1" + e.name.encode(), b"h2"]) for e in files]
    serial = hash_jobs(jobs, workers=1)
    assert hash_jobs(jobs, workers=4) == serial
    assert hash_jobs(jobs) == serial  # the default: the cores
    for (e, headers), digests in zip(jobs, serial, strict=True):
        content = Path(e.abspath).read_bytes()
        assert digests == [hashlib.sha256(h + content).hexdigest() for h in headers]
        assert digests[0] == hash_entry(e, headers[0])


@pytest.mark.parametrize("workers", [1, 3])
def test_a_cold_context_hash_is_the_same_on_any_number_of_threads(tmp_path: Path,
                                                                    workers: int) -> None:
    _tree(tmp_path, 300)
    reference = scan_context(tmp_path, digests=FileDigests(workers=1))
    ctx = scan_context(tmp_path, digests=FileDigests(workers=workers))
    for flavor in TarFlavor:
        assert ctx.source_hash(["."], flavor) == reference.source_hash(["."], flavor)
        assert ctx.source_hash(["d1", "d2/e0"], flavor) == \
            reference.source_hash(["d1", "d2/e0"], flavor)


def test_a_file_is_read_once_for_the_flavors_that_come_along(tmp_path: Path) -> None:
    _tree(tmp_path, 50)
    os.chmod(tmp_path / "d1" / "e1" / "f0001.bin", 0o664)  # git's mode differs: its own sum
    digests = FileDigests()
    ctx = scan_context(tmp_path, digests=digests)
    ctx.companion_flavors = (TarFlavor.CLI_LEGACY, TarFlavor.CLI_MODERN_GIT_MODES)
    files = sum(1 for e in ctx.entries if e.kind == FILE and e.size)
    modern = ctx.source_hash(["."], TarFlavor.CLI_MODERN)
    assert digests.hashed == files
    legacy = ctx.source_hash(["."], TarFlavor.CLI_LEGACY)
    git_modes = ctx.source_hash(["."], TarFlavor.CLI_MODERN_GIT_MODES)
    assert digests.hashed == files  # (read along with the first flavor)
    alone = scan_context(tmp_path)
    assert (modern, legacy, git_modes) == (
        alone.source_hash(["."], TarFlavor.CLI_MODERN),
        alone.source_hash(["."], TarFlavor.CLI_LEGACY),
        alone.source_hash(["."], TarFlavor.CLI_MODERN_GIT_MODES))


def test_companions_come_along_only_for_small_batches(tmp_path: Path) -> None:
    """A cold COPY of the whole tree is read for its own flavor only; a few files (what a
    warm plan finds changed) are read once for every companion flavor."""
    _tree(tmp_path, 50)
    digests = FileDigests()
    ctx = scan_context(tmp_path, digests=digests)
    ctx.companion_flavors = (TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY)
    ctx.companion_batch_max = 4
    files = [e for e in ctx.entries if e.kind == FILE and e.size]
    ctx.source_hash(["."], TarFlavor.CLI_MODERN)
    assert digests.hashed == len(files)
    ctx.source_hash(["."], TarFlavor.CLI_LEGACY)  # (not read along: read again)
    assert digests.hashed == 2 * len(files)
    few = scan_context(tmp_path, digests=FileDigests())
    few.companion_flavors = (TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY)
    few.companion_batch_max = 4
    sources = [e.rel for e in files[:3]]
    modern = few.source_hash(sources, TarFlavor.CLI_MODERN)
    legacy = few.source_hash(sources, TarFlavor.CLI_LEGACY)
    assert few.digests.hashed == 3
    alone = scan_context(tmp_path)
    assert (modern, legacy) == (alone.source_hash(sources, TarFlavor.CLI_MODERN),
                                alone.source_hash(sources, TarFlavor.CLI_LEGACY))


def test_in_memory_digests_follow_a_changed_file(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    f = tmp_path / "a.txt"
    f.write_text("one\n")
    digests = FileDigests()
    first = scan_context(tmp_path, digests=digests).source_hash(["a.txt"], TarFlavor.CLI_MODERN)
    f.write_text("two\n")  # same size, other content
    again = scan_context(tmp_path, digests=digests).source_hash(["a.txt"],
                                                                  TarFlavor.CLI_MODERN)
    assert first != again
    assert again == scan_context(tmp_path).source_hash(["a.txt"], TarFlavor.CLI_MODERN)


# ------------------------------------------------ sources resolved without the extracted tree


def _with_tree(ctx: BuildContext) -> BuildContext:
    """The same context, made to resolve every source through the extracted tree."""
    twin = BuildContext(ctx.context_dir, ctx.dockerfile, list(ctx.entries), ctx.excludes)
    twin._plain = False
    return twin


def _plain_repo(root: Path, dockerignore: str | None, dockerfile: str = "Dockerfile") -> None:
    for rel in ("src/a.txt", "src/b/c.txt", "src/b/d/e.txt", "srcx/f.txt", "g.txt",
                "docker/Dockerfile", "empty/.keep"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel + "\n")
    (root / "sub").mkdir()
    (root / dockerfile).parent.mkdir(parents=True, exist_ok=True)
    (root / dockerfile).write_text("FROM scratch\nCOPY . /app\n")
    if dockerignore is not None:
        (root / ".dockerignore").write_text(dockerignore)


@pytest.mark.parametrize("dockerignore,dockerfile", [
    (None, "Dockerfile"),
    ("*.log\n", "Dockerfile"),
    ("Dockerfile\n.dockerignore\n", "Dockerfile"),  # the daemon deletes both first
    (".dockerignore\ndocker/Dockerfile\n", "docker/Dockerfile"),
    ("src/b\n!src/b/d\n", "Dockerfile"),  # an excluded directory entered for an exception
])
def test_sources_resolve_as_the_extracted_tree_resolves_them(
        tmp_path: Path, dockerignore: str | None, dockerfile: str) -> None:
    _plain_repo(tmp_path, dockerignore, dockerfile)
    ctx = scan_context(tmp_path, dockerfile)
    tree = _with_tree(ctx)
    for sources in (["."], ["./"], ["/"], ["src"], ["src/"], ["src/b"], ["src/a.txt"],
                    ["g.txt", "src/b/d"], ["sub"], ["empty"], ["Dockerfile"],
                    ["docker/Dockerfile"], [".dockerignore"], ["src/../g.txt"],
                    ["src/*.txt"], ["missing"], ["../x"]):
        for flavor in (TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY):
            try:
                expected: object = tree.source_hash(sources, flavor)
            except Exception as exc:  # the same failure, word for word
                expected = (type(exc), str(exc))
            try:
                got: object = ctx.source_hash(sources, flavor)
            except Exception as exc:
                got = (type(exc), str(exc))
            assert got == expected, (sources, flavor)
        try:
            assert ctx.files_under(sources) == tree.files_under(sources), sources
        except Exception as exc:
            with pytest.raises(type(exc)):
                tree.files_under(sources)


def test_a_context_with_links_resolves_through_the_tree(tmp_path: Path) -> None:
    _plain_repo(tmp_path, None)
    os.symlink("src/b", tmp_path / "link")
    ctx = scan_context(tmp_path)
    assert ctx._plain_removed() is None
    tree = _with_tree(ctx)
    for sources in (["."], ["link"], ["link/c.txt"]):
        assert ctx.source_hash(sources, TarFlavor.CLI_MODERN) == \
            tree.source_hash(sources, TarFlavor.CLI_MODERN)


# ------------------------------------------------ the tar, streamed while it is made


@pytest.mark.parametrize("flavor", [TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY,
                                    TarFlavor.SDK_DEFAULT_GIT_MODES])
def test_the_streamed_tar_is_the_written_tar(tmp_path: Path, flavor: TarFlavor) -> None:
    _tree(tmp_path, 120)
    (tmp_path / ("n" * 120 + ".txt")).write_text("a long name: a PAX header\n")
    os.symlink("d1", tmp_path / "link")
    ctx = scan_context(tmp_path)
    files = {"Dockerfile": b"FROM scratch\nLABEL a=b\n", "added.txt": b"x" * 700}
    written = io.BytesIO()
    ctx.write_tar(written, flavor, files=files)
    assert len(written.getvalue()) == ctx.tar_size_estimate(flavor, files=files)
    for piece in (511, 4096, 65536, 10**9):
        stream = ctx.tar_stream(flavor, files=files)
        assert stream.size == len(written.getvalue())
        parts = []
        sent = 0
        while True:
            data = stream.read(piece)
            if not data:
                break
            parts.append(data)
            sent += len(data)
            assert stream.tell() == sent and len(data) <= piece
        assert b"".join(parts) == written.getvalue(), piece


def test_a_file_that_changes_under_the_stream_stops_it(tmp_path: Path) -> None:
    _tree(tmp_path, 20)
    ctx = scan_context(tmp_path)
    stream = ctx.tar_stream(TarFlavor.CLI_MODERN)
    victim = next(e for e in ctx.entries if e.kind == FILE and e.size > 5000)
    Path(victim.abspath).write_bytes(b"short")
    with pytest.raises(BuildContextError, match="changed while devsync was reading"):
        while stream.read(65536):
            pass


# ------------------------------------------------ the walk skips what no pattern can match


@pytest.mark.parametrize("dockerignore", [
    "*.log\n.git\nnode_modules\n",
    "src/*/x.txt\n!src/a/x.txt\n",
    "*/*/*.log\n",
    "**/skip\n",
    "[ab]*\n",
    "src\n!src/b/keep.log\n",
    "a?c/d\n",
])
def test_the_walk_skips_only_what_no_pattern_can_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dockerignore: str) -> None:
    for rel in ("src/a/x.txt", "src/b/x.txt", "src/b/keep.log", "src/b/deep/x.log",
                "src/b/deep/skip/y", "abc/d", "abc/e/f", "x.log", "node_modules/m",
                "b/c/d/e.log", "Dockerfile"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tmp_path / ".dockerignore").write_text(dockerignore)
    fast = [(e.name, e.kind) for e in scan_context(tmp_path).entries]
    from devsync.model.dockerignore import PatternMatcher

    monkeypatch.setattr(PatternMatcher, "cannot_match_at", lambda self, depth: False)
    assert [(e.name, e.kind) for e in scan_context(tmp_path).entries] == fast
