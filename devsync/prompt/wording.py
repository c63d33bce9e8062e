"""The sentences a verdict is made of, shared by the core (`devsync.ops.verdict`) and the
prompt check, which must word its own quick recomputation exactly as the core would.

Standard library only: `--check` imports it on every prompt.
"""

from __future__ import annotations

# the one next step a verdict can name
SYNC = "run devsync sync"
GIT_PULL = "git pull"


def prompt_line(image: str, cause: str, action: str) -> str:
    """`devsync: app: views/site/index.php changed in 6d37e93 by Ben: New text - run devsync
    sync`; without an action, just the cause."""
    line = f"devsync: {image}: {cause}"
    return f"{line} - {action}" if action else line


def changed_in(path: str, short: str, author: str, subject: str, *,
               deleted: bool = False) -> str:
    """`views/site/index.php changed in 6d37e93 by Ben: New welcome text`."""
    verb = "deleted" if deleted else "changed"
    text = f"{path} {verb} in {short} by {author}"
    return f"{text}: {subject}" if subject else text


def changed_uncommitted(path: str, *, deleted: bool = False) -> str:
    return f"{path} {'deleted' if deleted else 'changed'} (uncommitted)"


def changed_since_sync(path: str, *, deleted: bool = False) -> str:
    """No commit since the last sync explains the change, and the file is as HEAD has it: an
    edit that was built, then reverted (or a checkout of another version)."""
    return f"{path} {'deleted' if deleted else 'changed'} since your last sync"


def changed_unexplained(path: str, *, deleted: bool = False) -> str:
    return f"{path} {'deleted' if deleted else 'changed'}"


def with_more(line: str, more: int) -> str:
    """`line` with `, +N more` before its action: what else needs attention."""
    if more <= 0:
        return line
    head, sep, action = line.rpartition(" - ")
    if sep and action in (SYNC, GIT_PULL):
        return f"{head}, +{more} more - {action}"
    return f"{line}, +{more} more"
