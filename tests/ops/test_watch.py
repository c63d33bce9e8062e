"""Which file changes the TUI's watcher reports: the `.git` files are the prompt's one list
(`devsync.prompt.fingerprint.signals_change`), the work tree without editor debris."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devsync.ops import watch
from devsync.prompt import fingerprint

ROOT = Path("/repo")
GIT = ROOT / ".git"


@pytest.mark.parametrize("rel", ["HEAD", "index", "packed-refs", "refs/heads/main",
                                 "refs/stash", "MERGE_HEAD", "rebase-merge/done",
                                 "objects/ab/cdef", "logs/HEAD", "index.lock",
                                 "refs/heads/main.lock", "FETCH_HEAD", "refs/tags/v1"])
def test_git_dir_changes_are_the_fingerprints_own(rel: str) -> None:
    assert watch.wanted_change(str(GIT / rel), ROOT, [GIT]) is fingerprint.signals_change(rel)


def test_a_linked_worktrees_git_dirs_count_too() -> None:
    common = Path("/elsewhere/repo.git")
    assert watch.wanted_change(str(common / "refs/heads/topic"), ROOT, [GIT, common])
    assert not watch.wanted_change(str(common / "objects/pack/x.pack"), ROOT, [GIT, common])
    assert not watch.wanted_change("/unrelated/file", ROOT, [GIT, common])


@pytest.mark.parametrize(("rel", "wanted"), [
    ("src/index.php", True), ("Dockerfile", True), (".dockerignore", True),
    ("src/index.php~", False), ("src/.index.php.swp", False), ("src/.#index.php", False),
    ("4913", False), ("node_modules/x/index.js", False), ("a/__pycache__/m.pyc", False),
    (".git", False),
])
def test_work_tree_changes(rel: str, wanted: bool) -> None:
    assert watch.wanted_change(str(ROOT / rel), ROOT, [GIT]) is wanted


def test_there_is_one_list_of_git_files() -> None:
    """ops.watch names no `.git` file itself: the list is the prompt's."""
    source = Path(watch.__file__).read_text()
    names = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)}
    assert not names & (fingerprint.GIT_SIGNAL_FILES | set(fingerprint.GIT_SIGNAL_PREFIXES))
