"""Writing what status and sync learned into the state that `--check` and the TUI read."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devsync.adapters import state as state_mod
from devsync.errors import DevsyncError
from devsync.model.files import read_regular
from devsync.ops.status import context_pathspecs, image_status, sync_records, watched_inputs
from devsync.ops.verdict import IN_SYNC

if TYPE_CHECKING:
    from devsync.adapters.gitrepo import GitRepo
    from devsync.model.project import ImageSpec, Project
    from devsync.ops.plan import ImagePlan
    from devsync.ops.session import Session
    from devsync.ops.status import ImageStatus



def _digest_files(project: Project, paths: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel in paths:
        try:
            out[rel] = hashlib.sha256(read_regular(project.root / rel)).hexdigest()
        except OSError:
            out[rel] = ""
    return out


def record_statuses(project: Project, statuses: list[ImageStatus], git: GitRepo | None, *,
                    registry_checked: bool = False, complete: bool = True) -> None:
    """Store each image's state; the watched files' baseline is taken now only for images that
    are in sync (for a stale image the baseline stays where the last sync left it)."""

    specs = {spec.name: spec for spec in project.images}
    contexts = {s.name: context_pathspecs(project, specs[s.name]) for s in statuses
                if s.name in specs}

    def mutate(st: state_mod.RepoState) -> None:
        for s in statuses:
            rec = st.images.get(s.name) or state_mod.ImageRecord(name=s.name)
            rec.context_pathspecs = contexts.get(s.name, [])
            rec.tag = s.tag
            rec.dockerfile = s.dockerfile
            rec.deployed_ref = s.deployed
            rec.deployed_digest = s.deployed_digest
            rec.local_image_id = s.local_id
            rec.status = s.verdict.state
            rec.reason = s.verdict.cause
            rec.line = s.verdict.line(s.name)
            if s.verdict.state == IN_SYNC or not rec.watched:
                # (for an image never synced there is nothing to compare against yet)
                rec.watched = _digest_files(project, s.watched)
            st.images[s.name] = rec
        if complete:  # images no longer in the project are forgotten
            known = {s.name for s in statuses}
            for name in list(st.images):
                if name not in known:
                    del st.images[name]
        if registry_checked:
            st.registry_checked_at = time.time()

    _safe_update(project, mutate)


def record_the_rest(session: Session, synced: set[str], settled: list[ImageStatus]) -> None:
    """After a sync: the fresh status of every image it did not sync, for `--check` and the
    TUI; `settled`, the images it left alone, were judged under its lock, with nothing built
    since."""
    project = session.project
    left = {s.name for s in settled}
    others = [spec for spec in project.images if spec.name not in synced | left]
    statuses = list(settled)
    if others:
        session.resolver.forget_local()  # the pulls and builds changed the local images
        records = sync_records(project)
        statuses += [image_status(project, spec, session.resolver, session.git,
                                  record=records.get(spec.name)) for spec in others]
    if statuses:
        record_statuses(project, statuses, session.git, complete=False)


@dataclass(frozen=True)
class BuiltFrom:
    """What a build is made from, taken before its context is read: HEAD and the digests of
    the watched inputs.

    The state records these, not what is on disk once the engine is done: an edit or commit
    made while it builds then leaves the image stale for `--check`, never falsely in sync (an
    edit made before the context was read shows as stale too, which a rerun settles).
    """

    revision: str | None
    watched: dict[str, str]


def built_from(project: Project, spec: ImageSpec, git: GitRepo | None) -> BuiltFrom:
    return BuiltFrom(revision=git.head if git is not None else None,
                     watched=_digest_files(project, watched_inputs(project, spec)))


def record_sync(project: Project, spec: ImageSpec, plan: ImagePlan, image_id: str | None,
                built: BuiltFrom) -> None:
    context = context_pathspecs(project, spec)

    def mutate(st: state_mod.RepoState) -> None:
        rec = st.images.get(spec.name) or state_mod.ImageRecord(name=spec.name)
        rec.tag = spec.tag
        rec.dockerfile = spec.rel_dockerfile(project.root)
        rec.deployed_ref = plan.deployed
        rec.deployed_digest = plan.deployed_digest
        rec.local_image_id = image_id
        rec.synced_revision = built.revision
        rec.synced_at = time.time()
        rec.synced_deployed = plan.deployed
        rec.status = IN_SYNC
        rec.reason = "synced"
        rec.line = ""
        rec.watched = dict(built.watched)
        rec.context_pathspecs = context
        st.images[spec.name] = rec

    _safe_update(project, mutate)


def _safe_update(project: Project, mutate: object) -> None:
    # state is a cache of what devsync computed: failing to store it loses nothing
    with contextlib.suppress(DevsyncError):
        state_mod.update(project.root, mutate)  # type: ignore[arg-type]
