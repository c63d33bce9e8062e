"""The git fingerprint for the shell-prompt fast path: standard library only, no git process.

Split from `devsync.adapters.gitrepo` because importing that module (dataclasses, datetime, regexes)
costs more than everything else the prompt check does.
"""

from __future__ import annotations

import os
import stat
import zlib

# The one list of what, inside a git dir, signals a change that can alter an image's status:
# a commit, checkout, branch switch, pull, merge, rebase, cherry-pick, revert, bisect, stash
# or `git add`. The fingerprint reads these (of the branches, only HEAD's); a watcher of the
# git dir (the TUI's) reacts to changes of exactly these (`signals_change`), while objects/
# and the other logs churn without changing any status. Paths relative to the git dir.
OPERATION_MARKERS = frozenset({
    "MERGE_HEAD", "REBASE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG",
    "rebase-merge", "rebase-apply", "sequencer",
})
GIT_SIGNAL_FILES = frozenset({"HEAD", "index", "packed-refs", "commondir", *OPERATION_MARKERS})
GIT_SIGNAL_PREFIXES = (
    "refs/heads/", "refs/stash", "logs/refs/stash", "refs/bisect/", "refs/worktree/",
    "refs/rewritten/", "reftable/", "rebase-merge/", "rebase-apply/", "sequencer/",
)
# Refs that live in a worktree's own git dir rather than the shared one.
_PER_WORKTREE_REFS = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")


def signals_change(rel: str) -> bool:
    """Whether a change at `rel` ('/'-separated, relative to a git dir) can alter an image's
    status. A lock file never does: git renames X.lock over X, and the rename is what counts.
    """
    return not rel.endswith(".lock") and (rel in GIT_SIGNAL_FILES
                                          or rel.startswith(GIT_SIGNAL_PREFIXES))


def git_fingerprint(root: str | os.PathLike[str]) -> str | None:
    """A short string that changes after any commit, checkout, branch switch, pull, merge,
    rebase, stash or `git add` in the work tree at `root` (its top level).

    Reads `.git` directly (HEAD, the branch ref loose or packed, the index's identity,
    operation markers, the stash) without starting git. It does not see edits to working
    files that are not staged, nor fetches or new tags. `git status` may rewrite the index
    once to refresh stat data after files changed, which changes the fingerprint once;
    devsync's own `GitRepo.changes` never does. Never raises: None when `root` is not a
    work tree's top level or anything looks odd.
    """
    try:
        return _fingerprint(os.fspath(root))
    except Exception:  # the prompt must never break, whatever is on disk
        return None


def _fingerprint(root: str) -> str | None:
    dotgit = f"{root}/.git" if root else ".git"
    st = os.stat(dotgit)
    if stat.S_ISDIR(st.st_mode):
        gitdir = dotgit
    else:
        # A linked worktree (or submodule): `.git` is a file naming the real git dir.
        line = _read_small(dotgit).strip()
        if not line.startswith(b"gitdir:"):
            return None
        gitdir = os.path.join(root, os.fsdecode(line[7:].strip()))
    relative_common = _read_small(f"{gitdir}/commondir")
    common = gitdir if relative_common == b"-" else os.path.join(
        gitdir, os.fsdecode(relative_common.strip()))

    parts: list[bytes] = []
    head = _read_small(f"{gitdir}/HEAD")
    if head == b"-":
        return None
    parts.append(head)
    target = head
    for _ in range(5):  # a ref that is itself symbolic: follow a short chain
        if not target.startswith(b"ref:"):
            break
        ref = os.fsdecode(target[4:].strip())
        if ref.startswith("refs/heads/.invalid"):
            # reftable backend: every ref update rewrites tables.list
            parts.append(_stat_sig(f"{common}/reftable/tables.list"))
            break
        base = gitdir if ref.startswith(_PER_WORKTREE_REFS) else common
        target = _read_small(f"{base}/{ref}")
        parts.append(target)
    # Covers a branch or the stash that only exist packed, and `git pack-refs` itself.
    parts.append(_stat_sig(f"{common}/packed-refs"))
    # git replaces the index by renaming a new file over it: a new inode on every write.
    parts.append(_stat_sig(f"{gitdir}/index"))
    parts.append(_read_small(f"{common}/refs/stash"))
    # Dropping an older stash entry only touches the stash reflog.
    parts.append(_stat_sig(f"{common}/logs/refs/stash"))
    markers = sorted(OPERATION_MARKERS.intersection(os.listdir(gitdir)))
    parts.append(",".join(markers).encode())
    data = b"\0".join(parts)
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _stat_sig(path: str) -> bytes:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return b"-"
    return b"%d:%d:%d" % (st.st_ino, st.st_mtime_ns, st.st_size)


def _read_small(path: str) -> bytes:
    # os.open/os.read: a Python file object costs more than the syscalls themselves here.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return b"-"
    try:
        return os.read(fd, 4096)
    except IsADirectoryError:
        return b"-"
    finally:
        os.close(fd)
