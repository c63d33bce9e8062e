"""Everything the TUI asks of the core, behind one small interface.

Screens never touch the project, git, the engine or a registry themselves: they call a
`Services` object from worker threads and render what comes back. `CoreServices` is the real
thing, and calls operations only (`devsync.ops`), each through one `Session`; tests pass fakes
with canned data. Every method may block (it runs in a worker) and raises `DevsyncError`
subclasses for anything a user can cause. Nothing here imports Textual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from devsync.events import Warning_
from devsync.ops.onboarding import CHECK_BLOCKED, CHECK_FAIL, CHECK_OK, CHECK_WARN, CheckItem
from devsync.ops.session import Hold
from devsync.ops.snapshot import RepoInfo, Snapshot

if TYPE_CHECKING:
    from devsync.events import Event
    from devsync.ops.session import Session

__all__ = ["CHECK_BLOCKED", "CHECK_FAIL", "CHECK_OK", "CHECK_WARN", "CheckItem", "CoreServices",
           "RepoInfo", "Services", "Snapshot"]


class Services(Protocol):
    """What the TUI needs from the core. All methods may block; call them from workers."""

    @property
    def root(self) -> Path: ...

    def snapshot(self, *, registry: bool, cancel: threading.Event) -> Snapshot:
        """Project, git and every image's status. `registry`: ask the registry afresh rather
        than reuse what an earlier snapshot learned from it."""
        ...

    def checklist(self, cancel: threading.Event) -> list[CheckItem]: ...

    def pulse(self, snapshot: Snapshot) -> str:
        """Whether `snapshot` still holds: devsync.ops.pulse's STILL, LOOK_LOCAL or
        LOOK_REGISTRY (cheap: a ping, an inspect per tag, a `/v2/` per offline registry)."""
        ...

    def sync(self, images: Sequence[str], cancel: threading.Event, *,
             ask: Callable[[str], bool] | None = None) -> Iterator[Event]:
        """Sync these images (pull, then build what changed) and record it; `ask` answers
        the operation's questions (a large pull asks first)."""
        ...

    def base_build(self, cancel: threading.Event) -> Iterator[Event]:
        """Build the base image as the next base version and push it."""
        ...

    def base_bump(self, cancel: threading.Event) -> Iterator[Event]:
        """Point the app Dockerfile's FROM at the newest base tag."""
        ...

    def publish(self, version: str, cancel: threading.Event) -> Iterator[Event]: ...

    def watch(self, stop: threading.Event) -> Iterator[set[str]]:
        """Batches of repo-relative paths (under `.git` too) whose change may alter a status;
        returns when `stop` is set."""
        ...


# -- the real thing -------------------------------------------------------------------------


@dataclass
class CoreServices:
    """`Services` backed by devsync's operations, the user's engine and registries."""

    start: Path
    _root: Path | None = None
    # the engine connection and the registry's answers, kept between snapshots
    _hold: Hold = field(default_factory=Hold)

    @property
    def root(self) -> Path:
        if self._root is None:
            from devsync.ops.session import repo_root

            self._root = repo_root(self.start)
        return self._root

    def snapshot(self, *, registry: bool, cancel: threading.Event) -> Snapshot:
        from devsync.ops.snapshot import take_snapshot

        return take_snapshot(self.root, self._hold, registry=registry, cancel=cancel)

    def pulse(self, snapshot: Snapshot) -> str:
        from devsync.ops.pulse import look_again, take_pulse

        pulse = take_pulse([s.tag for s in snapshot.statuses], snapshot.offline_registries,
                           snapshot.insecure_registries)
        return look_again(snapshot.statuses, snapshot.engine_problem, pulse)

    def checklist(self, cancel: threading.Event) -> list[CheckItem]:
        from devsync.ops.onboarding import checklist

        return checklist(self.root, cancel)

    # -- operations: each one Session, its warnings shown first ---------------------------

    def sync(self, images: Sequence[str], cancel: threading.Event, *,
             ask: Callable[[str], bool] | None = None) -> Iterator[Event]:
        from devsync.ops import operations

        with self._session(need_engine=True) as session:
            yield from _warnings(session)
            yield from operations.sync(session, images, cancel=cancel, ask=ask)

    def base_build(self, cancel: threading.Event) -> Iterator[Event]:
        from devsync.ops import operations

        with self._session(need_engine=True) as session:
            yield from _warnings(session)
            yield from operations.base_build(session, push=True, cancel=cancel)

    def base_bump(self, cancel: threading.Event) -> Iterator[Event]:
        from devsync.ops import operations

        with self._session(need_engine=False) as session:
            yield from _warnings(session)
            yield from operations.base_bump(session, cancel=cancel)

    def publish(self, version: str, cancel: threading.Event) -> Iterator[Event]:
        from devsync.ops import operations

        with self._session(need_engine=True) as session:
            yield from _warnings(session)
            yield from operations.publish(session, version, cancel=cancel)

    def _session(self, *, need_engine: bool) -> Session:
        from devsync.ops.session import Session

        return Session(self.root, need_engine=need_engine)

    # -- watching -------------------------------------------------------------------------

    def watch(self, stop: threading.Event) -> Iterator[set[str]]:
        from devsync.ops.watch import watch

        yield from watch(self.root, stop)


def _warnings(session: Session) -> Iterator[Event]:
    for text in session.warnings:
        yield Warning_("", text)
