"""Which file changes may alter an image's status, and a watcher that reports them.

The one list of the `.git` files that signal a change is the prompt's
(`devsync.prompt.fingerprint.signals_change`): the `--check` fingerprint reads exactly what a
watcher of the git dir reacts to. In the work tree, editor debris and dependency folders are
ignored. Nothing here imports Textual: the TUI runs `watch` in a worker.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from devsync.prompt.fingerprint import signals_change

_SKIP_DIRS = frozenset({"node_modules", "vendor", ".venv", "venv", "__pycache__", ".tox",
                        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".idea", ".cache"})
_EDITOR_DEBRIS = ("~", ".swp", ".swx", ".swo", ".tmp", ".lock")


def watch(root: Path, stop: threading.Event) -> Iterator[set[str]]:
    """Batches of repo-relative paths (under `.git` too) whose change may alter a status;
    returns when `stop` is set."""
    yield from watch_paths(root, watch_dirs(root), stop)


def watch_dirs(root: Path) -> list[Path]:
    """The work tree, plus the git dirs when they live elsewhere (linked worktrees)."""
    from devsync.adapters.gitrepo import open_repo

    with open_repo(root) as git:
        git_dirs = (git.git_dir, git.common_dir)
    dirs = [root]
    for d in git_dirs:
        d = Path(os.path.realpath(d))
        if not any(d == x or x in d.parents for x in dirs):
            dirs.append(d)
    return dirs


def wanted_change(path: str, root: Path, git_dirs: Sequence[Path]) -> bool:
    """Whether a change at `path` may alter an image's status (see the module doc)."""
    p = Path(path)
    for gd in git_dirs:
        if p == gd or gd in p.parents:
            return signals_change(p.relative_to(gd).as_posix())
    try:
        parts = p.relative_to(root).parts
    except ValueError:
        return False
    if not parts or parts[0] == ".git" or any(d in _SKIP_DIRS for d in parts[:-1]):
        return False
    name = parts[-1]
    return not (name.endswith(_EDITOR_DEBRIS) or name.startswith(".#") or name == "4913")


def watch_paths(root: Path, dirs: Sequence[Path], stop: threading.Event,
                *, debounce_ms: int = 150) -> Iterator[set[str]]:
    """Repo-relative paths that changed under `dirs`, in debounced batches, until `stop`."""
    from watchfiles import watch as watch_files

    root = Path(os.path.realpath(root))
    git_dirs = [Path(os.path.realpath(d)) for d in dirs if d != root] + [root / ".git"]

    def wanted(_change: object, path: str) -> bool:
        return wanted_change(os.path.realpath(path) if os.path.islink(path) else path, root,
                             git_dirs)

    for changes in watch_files(*dirs, watch_filter=wanted, debounce=debounce_ms, step=50,
                               stop_event=stop, raise_interrupt=False,
                               ignore_permission_denied=True, rust_timeout=1000):
        out: set[str] = set()
        for _change, path in changes:
            p = Path(path)
            try:
                out.add(p.relative_to(root).as_posix())
            except ValueError:
                out.add(p.as_posix())
        if out:
            yield out
