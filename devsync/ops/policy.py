"""What devsync decides for the user, the same for every view: which images a plain sync
(`devsync sync`, the TUI's `s`) takes, whether a pull is large enough to ask first, and the
version a publish proposes."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING

from devsync.events import AlreadyInSync
from devsync.ops.verdict import IN_SYNC, MISSING, ROLE_BASE, STALE, UNKNOWN

if TYPE_CHECKING:
    from devsync.model.project import ImageSpec
    from devsync.ops.plan import ImagePlan
    from devsync.ops.session import Session
    from devsync.ops.status import ImageStatus

# A pull above this asks first where someone can answer (a terminal; not --yes, not --json).
LARGE_PULL_BYTES = 200 * 1024 * 1024


def needs_sync(status: ImageStatus) -> bool:
    """What a sync of "everything that needs it" takes: app images not in sync; bases that
    are stale (a sync pulls the team's base, or builds a changed one here) or not pulled yet."""
    if status.role == ROLE_BASE:
        return status.state in (STALE, MISSING) or (status.state == UNKNOWN
                                                    and not status.local_id)
    return status.state != IN_SYNC


def to_sync(statuses: Iterable[ImageStatus]) -> list[ImageStatus]:
    """The images a sync of "everything that needs it" takes, from their statuses (the
    TUI's `s`): `needs_sync`, and every app FROM a base taken (the base is built or pulled
    anew, so the app is built on it in the same sync)."""
    statuses = list(statuses)
    chosen = {s.name for s in statuses if needs_sync(s)}
    bases = {s.tag for s in statuses if s.role == ROLE_BASE and s.name in chosen}
    chosen |= {s.name for s in statuses if s.role != ROLE_BASE and s.plan is not None
               and s.plan.base in bases}
    return [s for s in statuses if s.name in chosen]


def in_sync_already(session: Session, specs: Sequence[ImageSpec]) -> list[ImageStatus]:
    """The same choice for a sync that names no image (`devsync sync`), made as it starts:
    the statuses of the images it leaves alone. An image not built here, or an app FROM a
    base the sync takes, is taken without asking its status (so a fresh machine's pulls start
    at once); an image that cannot be judged is taken."""
    from devsync.errors import DevsyncError
    from devsync.ops.status import image_status, sync_records

    resolver = session.resolver
    settled: list[ImageStatus] = []
    records = None
    taken_bases: set[str] = set()
    # (bases first: an app FROM a base taken is taken with it)
    for spec in sorted(specs, key=lambda s: s.role != ROLE_BASE):
        if spec.role != ROLE_BASE and spec.base_ref in taken_bases:
            continue
        try:
            local = resolver.local(spec.tag)
        except DevsyncError:
            local = None
        if local is not None:
            records = sync_records(session.project) if records is None else records
            status = image_status(session.project, spec, resolver, session.git,
                                  record=records.get(spec.name))
            if not needs_sync(status):
                settled.append(status)
                continue
        if spec.role == ROLE_BASE:
            taken_bases.add(spec.tag)
    return settled


def leave_alone(session: Session, specs: Sequence[ImageSpec]
                ) -> Generator[AlreadyInSync, None, list[ImageStatus]]:
    """`in_sync_already`'s images, each said in an `AlreadyInSync`; returns their statuses
    (devsync.ops.sync.run_sync asks this under the repository's operation lock)."""
    settled = in_sync_already(session, specs)
    for status in settled:
        yield AlreadyInSync(status.name, status.verdict.cause)
    return settled


def asks_before_pull(plan: ImagePlan) -> bool:
    """Whether this plan's pull is large enough to ask before it starts."""
    return plan.pull_bytes > LARGE_PULL_BYTES


def large_pull_question(plan: ImagePlan) -> str:
    return f"pull {plan.pull_bytes / 1e6:.0f} MB for {plan.name}?"


def next_publish_version(deployed: str | None) -> str:
    """The version a publish proposes: the deployed tag's next patch ("1.0.0" when nothing
    is deployed yet, "" when the deployed tag is no version)."""
    from devsync.errors import DevsyncError
    from devsync.model.versions import next_version, split_reference

    if not deployed:
        return "1.0.0"
    _repo, tag, _digest = split_reference(deployed)
    try:
        return next_version(tag or "", "patch")
    except DevsyncError:
        return ""
