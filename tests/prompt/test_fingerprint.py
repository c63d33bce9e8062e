"""devsync.prompt.fingerprint's one list of the git-dir files that signal a change: what the
fingerprint reads is on it, and what churns without changing any status is not."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devsync.prompt import fingerprint


def _git(repo: Path, *args: str, check: bool = True) -> None:
    subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=repo, check=check,
                   capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="Ana", GIT_AUTHOR_EMAIL="a@x",
                            GIT_COMMITTER_NAME="Ana", GIT_COMMITTER_EMAIL="a@x",
                            GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1"))


def _reads(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    read_small, stat_sig = fingerprint._read_small, fingerprint._stat_sig

    def recording_read(path: str) -> bytes:
        seen.append(path)
        return read_small(path)

    def recording_stat(path: str) -> bytes:
        seen.append(path)
        return stat_sig(path)

    monkeypatch.setattr(fingerprint, "_read_small", recording_read)
    monkeypatch.setattr(fingerprint, "_stat_sig", recording_stat)
    assert fingerprint.git_fingerprint(root) is not None
    monkeypatch.undo()
    return seen


def test_everything_the_fingerprint_reads_signals_a_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f").write_text("1\n")
    _git(repo, "add", "f")
    _git(repo, "commit", "-qm", "one")
    (repo / "f").write_text("2\n")
    _git(repo, "stash", "-q")
    _git(repo, "pack-refs", "--all")
    _git(repo, "checkout", "-qb", "side")
    (repo / "f").write_text("side\n")
    _git(repo, "commit", "-qam", "side")
    _git(repo, "checkout", "-q", "main")
    (repo / "f").write_text("main\n")
    _git(repo, "commit", "-qam", "main")
    _git(repo, "rebase", "side", check=False)  # stops on the conflict: a rebase in progress
    linked = tmp_path / "linked"
    _git(repo, "worktree", "add", "-q", str(linked), "side")
    gitdirs = [repo / ".git", repo / ".git" / "worktrees" / "linked"]

    for root in (repo, linked):
        for path in _reads(root, monkeypatch):
            if path == f"{root}/.git":
                continue  # a linked worktree's `.git` file, naming its git dir
            owner = next(d for d in gitdirs
                         if os.path.normpath(path).startswith(str(d) + os.sep)
                         or os.path.normpath(path) == str(d))
            rel = Path(os.path.normpath(path)).relative_to(owner).as_posix()
            if owner == repo / ".git" and rel.startswith("worktrees/"):
                continue  # (the linked worktree's own git dir, checked from its side)
            assert fingerprint.signals_change(rel), rel
    assert fingerprint.OPERATION_MARKERS & set(os.listdir(repo / ".git"))  # it was read


@pytest.mark.parametrize(("rel", "signals"), [
    ("HEAD", True), ("index", True), ("packed-refs", True), ("refs/heads/main", True),
    ("refs/heads/feature/x", True), ("refs/stash", True), ("logs/refs/stash", True),
    ("MERGE_HEAD", True), ("rebase-merge", True), ("rebase-merge/done", True),
    ("reftable/tables.list", True), ("index.lock", False), ("refs/heads/main.lock", False),
    ("objects/ab/cdef", False), ("logs/HEAD", False), ("FETCH_HEAD", False),
    ("refs/remotes/origin/main", False), ("refs/tags/v1", False), ("config", False),
    ("COMMIT_EDITMSG", False), ("ORIG_HEAD", False),
])
def test_what_signals_a_change(rel: str, signals: bool) -> None:
    assert fingerprint.signals_change(rel) is signals
