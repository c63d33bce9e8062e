"""Quick questions to git that must not wait for GitPython's import (~0.1 s): a sync asks
them before its first pull goes out. One `git` process each, with every repository setting
that could make git run a program neutralised (`devsync.prompt.gitsafe`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from devsync.prompt.gitsafe import SAFE_GIT_CONFIG


def head_contains(root: Path, revision: str) -> bool | None:
    """Whether HEAD's history contains commit `revision`: True, False (HEAD does not have
    it, or this clone does not know the commit at all), or None when git cannot tell (no
    git, no HEAD yet, or a shallow clone that may simply lack the old history)."""
    git = shutil.which("git")
    if git is None or not revision or revision.startswith("-"):
        return None
    cmd = [git, "--no-pager"]
    for setting in SAFE_GIT_CONFIG:
        cmd += ["-c", setting]
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_NO_LAZY_FETCH="1", LC_ALL="C")
    try:
        proc = subprocess.run([*cmd, "-C", str(root), "merge-base", "--is-ancestor",
                               f"{revision}^{{commit}}", "HEAD"], stdin=subprocess.DEVNULL,
                              capture_output=True, env=env, timeout=10, check=False)
        if proc.returncode in (0, 1):
            return proc.returncode == 0
        shallow = subprocess.run([*cmd, "-C", str(root), "rev-parse",
                                  "--is-shallow-repository"], stdin=subprocess.DEVNULL,
                                 capture_output=True, env=env, timeout=10, check=False)
        head = subprocess.run([*cmd, "-C", str(root), "rev-parse", "-q", "--verify",
                               "HEAD^{commit}"], stdin=subprocess.DEVNULL,
                              capture_output=True, env=env, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if shallow.stdout.strip() != b"false" or head.returncode != 0:
        return None
    return False  # (an unknown commit in a full clone: HEAD does not have it)
