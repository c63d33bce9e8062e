"""One verdict per image, computed once in the core: its state, the first cause in words a
person reads, and the one next step. `status`, `--json`, the TUI's rows and toasts and the
prompt line all render these same words (the prompt's own quick recomputation words its
answer with the same templates, `devsync.prompt.wording`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devsync.errors import DevsyncError
from devsync.model.states import (
    IN_SYNC,
    MISSING,
    ROLE_APP,
    ROLE_BASE,
    STALE,
    STATES,
    UNKNOWN,
    normalise,
)
from devsync.prompt import wording
from devsync.prompt.wording import GIT_PULL, SYNC

if TYPE_CHECKING:
    from collections.abc import Mapping

    from devsync.adapters.gitrepo import GitRepo

__all__ = ["GIT_PULL", "IN_SYNC", "MISSING", "ROLE_APP", "ROLE_BASE", "STALE", "STATES",
           "SYNC", "UNKNOWN", "Verdict", "culprit", "normalise"]


@dataclass(frozen=True)
class Verdict:
    """What devsync says of one image: `state` (one of STATES), `cause` (the first reason,
    e.g. "views/site/index.php changed in 6d37e93 by Ben: New welcome text") and `action`
    (exactly one next step, "" when there is nothing to do)."""

    state: str
    cause: str
    action: str = ""

    def line(self, image: str) -> str:
        """The prompt line: "" when nothing needs doing, or when devsync cannot tell (an
        unreachable engine or registry must not nag at every prompt)."""
        if self.state not in (STALE, MISSING) or not self.action:
            return ""
        return wording.prompt_line(image, self.cause, self.action)

    @property
    def text(self) -> str:
        """The cause and the next step as one sentence, for a toast or a table cell."""
        return f"{self.cause} - {self.action}" if self.action else self.cause

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "cause": self.cause, "action": self.action}


def unknown(exc: DevsyncError) -> Verdict:
    """An image devsync could not judge; the cause is the failure's own line."""
    return Verdict(UNKNOWN, exc.message)


def culprit(git: GitRepo, revision: str | None, paths: list[str], *,
            baselines: Mapping[str, str] | None = None,
            digest: Any = None) -> str | None:
    """The first cause among `paths` (repo-relative files an image was built from at
    `revision`): a commit since `revision` that changed one of them ("PATH changed in SHORT
    by AUTHOR: SUBJECT"), else an uncommitted change ("PATH changed (uncommitted)"), else a
    file that differs from the baseline the last sync recorded ("PATH changed since your last
    sync": an edit that was built, then reverted). None when git cannot tell."""
    if not paths:
        return None
    wanted = set(paths)
    try:
        changes = git.changes(paths)
    except DevsyncError:
        return None
    dirty = (set(changes.modified) | set(changes.untracked) | set(changes.deleted)) & wanted
    if revision and git.resolve(revision):
        try:
            committed = [p for p in git.changed_since(revision, paths)
                         if p in wanted and p not in dirty]
            found = git.commits_touching(committed, revision, limit=1) if committed else []
        except DevsyncError:
            committed, found = [], []
        if found:
            newest = found[0]
            try:
                last = git.last_commits_for(committed)
            except DevsyncError:
                last = {}
            named = [p for p in committed if p in last and last[p].sha == newest.sha]
            path = (named or committed)[0]
            gone = not (git.root / path).exists()
            return wording.changed_in(path, newest.short, newest.author, newest.summary,
                                      deleted=gone)
    if dirty:
        path = sorted(dirty)[0]
        return wording.changed_uncommitted(path, deleted=path in changes.deleted)
    if baselines and digest is not None:
        for path in sorted(p for p in paths if p in baselines):
            if digest(path) != baselines[path]:
                return wording.changed_since_sync(path)
    return None
