"""Every operation a view can start, as one stream of events that ends in exactly one `Done`
(a failure raises instead), which carries the operation's own "what next" (`Next`). The CLI
and the TUI run these and render what they yield; neither words an outcome itself."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from devsync.events import Done, Event, ImageSynced, Next, PhaseStarted, Pushed

if TYPE_CHECKING:
    from devsync.ops.base import BumpResult
    from devsync.ops.plan import ImagePlan
    from devsync.ops.session import Session

BUMP_FROM = Next("bump FROM", "u", "devsync base bump", "points the app's FROM at the new base")
COMMIT_THEN_SYNC = Next("commit it, then sync", "s", "commit the change, then devsync sync",
                        "rebuilds the app on the new base")


def sync(session: Session, names: Sequence[str] | None = None, *,
         cancel: threading.Event | None = None,
         ask: Callable[[str], bool] | None = None,
         show_plan: Callable[[ImagePlan], None] | None = None) -> Iterator[Event]:
    """Sync these images (when None, those that need it: `policy.in_sync_already` says the
    others, each in an `AlreadyInSync`): pull, then build what changed, and record it (see
    `devsync.ops.sync.run_sync`). Each image but the last ends in `ImageSynced`.

    `ask`: someone can answer a question (a terminal, the TUI), so a large pull asks first
    (`policy.asks_before_pull`) and declining skips the image; the pulls then wait for the
    plan. Without it they start while the plan is computed. `show_plan`: shown each plan
    before anything is pulled or built."""
    from devsync.ops.policy import asks_before_pull, large_pull_question
    from devsync.ops.sync import run_sync

    def before(plan: ImagePlan) -> bool:
        if show_plan is not None:
            show_plan(plan)
        if ask is not None and asks_before_pull(plan):
            return ask(large_pull_question(plan))
        return True

    specs = [session.project.image(n) for n in names] if names is not None \
        else session.images(None)
    # (no image named: what is in sync is left alone, the TUI's `s` policy)
    yield from one_done(run_sync(session, specs, cancel=cancel, before=before,
                                 prefetch=ask is None, only_needed=names is None),
                        empty="nothing was synced")


def base_build(session: Session, *, version: str | None = None, push: bool = False,
               replace: bool = False,
               cancel: threading.Event | None = None) -> Iterator[Event]:
    """Build the base image as the next base version (or `version`), and push it (over a
    tag the registry has only with `replace`: see `devsync.ops.base.base_build`)."""
    from devsync.ops import base as basework

    assert session.engine is not None, "a base build opens its session with need_engine"
    pushed = ""
    for event in basework.base_build(session.project, engine=session.engine,
                                     resolver=session.resolver, git=session.git,
                                     version=version, push=push, replace=replace,
                                     cancel=cancel):
        if isinstance(event, Pushed):
            pushed = event.reference
        yield event
    yield Done(summary=f"pushed {pushed}" if pushed else "base built", next=BUMP_FROM)


def base_bump(session: Session, to_tag: str | None = None, *, local: bool = False,
              cancel: threading.Event | None = None) -> Iterator[Event]:
    """Point the app Dockerfile's FROM at the newest base tag (or `to_tag`)."""
    from devsync.ops import base as basework

    yield PhaseStarted("base", "bump")
    if cancel is not None and cancel.is_set():
        from devsync.errors import InterruptedError_

        raise InterruptedError_("cancelled")
    result = basework.base_bump(session.project, session.resolver, to_tag, local=local)
    yield Done(summary=bump_summary(result),
               details={"changed": list(result.changed), "old": result.old, "new": result.new},
               next=COMMIT_THEN_SYNC if result.changed else None)


def bump_summary(result: BumpResult) -> str:
    if result.newer_than_registry:
        return (f"FROM already uses {result.old}, newer than any base in the registry "
                "(push it: devsync base build --push)")
    if not result.changed:
        return f"FROM already uses {result.new}"
    return f"{', '.join(result.changed)}: {result.old} -> {result.new}"


def publish(session: Session, version: str, *, image: str | None = None,
            registry_cache: bool = False,
            cancel: threading.Event | None = None) -> Iterator[Event]:
    """Build the app with OCI labels and push it as the new deployed `version` (CI's step)."""
    from devsync.ops import base as basework

    assert session.engine is not None, "a publish opens its session with need_engine"
    yield from basework.publish(session.project, version, engine=session.engine,
                                resolver=session.resolver, git=session.git, image=image,
                                registry_cache=registry_cache, cancel=cancel)
    yield Done(summary=f"published {version}")


def last(events: Iterable[Event]) -> Done:
    """Run an operation that has nothing to show on the way: its `Done`."""
    *_, done = events
    assert isinstance(done, Done)
    return done


def one_done(events: Iterable[Event], *, empty: str) -> Iterator[Event]:
    """`events` with every `Done` but the last turned into `ImageSynced`, in its place. When
    the last image ended without one (skipped, behind its deployment) a `Done` counts those
    that did end; `empty` when none did."""
    held: Done | None = None
    synced = 0
    for event in events:
        if held is not None:
            yield ImageSynced(held.summary, held.details)
            held = None
        if isinstance(event, Done):
            held = event
            synced += 1
        else:
            yield event
    if held is not None:
        yield held
    elif synced:
        yield Done(summary=f"{synced} image{'s' if synced > 1 else ''} synced; the warnings "
                   "above say why not the others")
    else:
        yield Done(summary=empty)
