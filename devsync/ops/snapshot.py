"""One consistent look at the repository and its images, as the TUI's dashboard shows it and
refreshes it on every change: the project, git, every image's status and verdict, recorded for
`--check`, with the session's warnings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devsync.errors import InterruptedError_
from devsync.model.config import DEFAULT_REGISTRY_CHECK_MINUTES
from devsync.ops.session import Hold, Session
from devsync.ops.verdict import ROLE_APP

if TYPE_CHECKING:
    from devsync.adapters.gitrepo import GitRepo
    from devsync.ops.status import ImageStatus


@dataclass(frozen=True)
class RepoInfo:
    """The repository as the header shows it."""

    root: Path
    branch: str | None  # None: detached HEAD
    head: str | None  # short sha, None before the first commit
    subject: str = ""
    author: str = ""


@dataclass
class Snapshot:
    """One consistent look at the repository and its images."""

    repo: RepoInfo
    statuses: list[ImageStatus]
    engine_problem: str | None = None  # one line when the engine cannot be reached
    first_run: bool = False  # nothing was ever built or synced here: offer the checklist
    registry_check_minutes: float = DEFAULT_REGISTRY_CHECK_MINUTES  # 0: never
    offline_registries: tuple[str, ...] = ()  # registries that could not be asked at all
    insecure_registries: tuple[str, ...] = ()
    # what the user should hear but that stops nothing (see Session.warnings)
    warnings: list[str] = field(default_factory=list)


def take_snapshot(root: Path, hold: Hold, *, registry: bool,
                  cancel: threading.Event) -> Snapshot:
    """Every image's status, recorded for `--check`. `registry`: ask the registry afresh
    rather than reuse what an earlier snapshot (of the same `hold`) learned from it."""
    from devsync.adapters import state as state_mod
    from devsync.ops.recording import record_statuses
    from devsync.ops.status import collect_statuses

    if registry:
        hold.forget_remote()
    with Session(root, need_engine=False, hold=hold) as session:
        project = session.project
        _check(cancel)
        git = session.git
        statuses = collect_statuses(project, session.resolver, git,
                                    engine_problem=session.engine_problem)
        _check(cancel)
        repo = repo_info(project.root, git)
        record_statuses(project, statuses, git, registry_checked=registry)
        warnings = list(session.warnings)
        offline = tuple(sorted(session.resolver.unreachable))
    synced_before = any(rec.synced_at for rec in state_mod.load(project.root).state.images
                        .values())
    built_here = any(s.local_id for s in statuses if s.role == ROLE_APP)
    minutes = float(project.config.registry_check_minutes or 0)
    return Snapshot(repo=repo, statuses=statuses, engine_problem=session.engine_problem,
                    first_run=not synced_before and not built_here,
                    registry_check_minutes=minutes,
                    offline_registries=offline,
                    insecure_registries=tuple(project.config.insecure_registries),
                    warnings=warnings)


def repo_info(root: Path, git: GitRepo, *, brief: bool = False) -> RepoInfo:
    """`brief`: the branch and the short head only (no `git log` for the subject)."""
    if brief:
        return RepoInfo(root=root, branch=git.branch, head=git.head_short)
    head = git.head_summary
    return RepoInfo(root=root, branch=git.branch, head=head.short if head else None,
                    subject=head.summary if head else "", author=head.author if head else "")


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise InterruptedError_("cancelled")
