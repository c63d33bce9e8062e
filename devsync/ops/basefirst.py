"""Which base a sync builds here before an app: one whose Dockerfile (or what it copies) a
teammate changed, that the registry's base does not have yet. The app is then built on it,
so one sync ends with both in sync, on a fresh machine as on one that has the old base.

Asked once the app's pulls are under way (it needs git and the registry's metadata, whose
cost would otherwise delay the pulls), in two steps: a cheap one (git: did anything the base
is built from change since the revision the base image here, or else the registry's, was
built from?), and, only then, the exact one (the base's verdict: would a sync build it?).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError
from devsync.model.project import ROLE_BASE
from devsync.ops.reasons import REVISION_LABEL

if TYPE_CHECKING:
    from devsync.model.project import ImageSpec
    from devsync.ops.session import Session


def base_to_build_first(session: Session, app: ImageSpec, specs: list[ImageSpec],
                        done: set[str]) -> ImageSpec | None:
    """The base among `specs` (not in `done`) that `app` is built FROM, when a sync must
    build it here before `app`; None otherwise (or when that cannot be told)."""
    from devsync.ops.status import base_next_sync

    for base in specs:
        if base.role != ROLE_BASE or base.name in done or base.tag != app.base_ref:
            continue
        try:
            if not _may_have_changed(session, base):
                return None
            return base if base_next_sync(session.project, base, session.resolver,
                                          session.git) == "build" else None
        except DevsyncError:
            return None  # (the base's own turn says what is wrong)
    return None


def _may_have_changed(session: Session, base: ImageSpec) -> bool:
    """False when git shows nothing the base is built from changed since the revision of
    the base image a build would use (the local one, else the registry's); True when
    something did, or git or the labels cannot tell."""
    resolver, git = session.resolver, session.git
    image = resolver.local(base.tag)
    if image is None:
        image = resolver.remote(base.tag)
    revision = image.labels.get(REVISION_LABEL) if image is not None else None
    if not revision or git.resolve(revision) is None:
        return True
    paths = _inputs(session, base)
    changes = git.changes(paths)
    if changes.modified or changes.deleted or changes.untracked:
        return True
    return bool(git.changed_since(revision, paths))


def _inputs(session: Session, base: ImageSpec) -> list[str]:
    """What the base is built from, as git pathspecs: its Dockerfile, its `.dockerignore`
    and what its COPY/ADD steps name (the whole context when a step copies it all or names
    files by a pattern)."""
    root = session.project.root
    context = base.rel_context(root)
    whole = sorted({base.rel_dockerfile(root), context})
    out = {base.rel_dockerfile(root), posixpath.normpath(posixpath.join(context,
                                                                        ".dockerignore"))}
    for stage in session.project.dockerfile(base).stages:
        for ins in stage.instructions:
            if ins.cmd not in ("COPY", "ADD") or ins.flag("from"):
                continue
            for source in ins.value[:-1]:
                if "://" in source:
                    continue  # (fetched, not copied from the checkout)
                rel = posixpath.normpath(source.lstrip("/"))
                if rel in (".", "") or rel.startswith("..") or any(c in rel for c in "$*?["):
                    return whole
                out.add(posixpath.normpath(posixpath.join(context, rel)))
    return sorted(out)
