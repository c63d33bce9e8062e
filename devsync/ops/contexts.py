"""The build context a plan or a build reads: walked as `docker build` walks it, with the
file digests remembered across runs (devsync.adapters.hashcache), and only when needed.

On a large repository the walk is most of a warm plan: a Dockerfile that copies nothing from
its context (a base image's, usually, whose context is the same repository) gets a context
that is walked when first asked for (`ContextOnDemand`), which a plan never does unless an
ONBUILD trigger of its base copies something after all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from devsync.model.context import BuildContext
    from devsync.model.dockerfiles import Dockerfile
    from devsync.model.project import ImageSpec, Project

# how old a context listing may be when its tar is sent (see `relisted`)
LISTING_FRESH_S = 2.0
# files hashed with every flavor's header in one read (see `scan_with_cache`)
COMPANION_BATCH_MAX = 64


def scan_with_cache(spec: ImageSpec) -> BuildContext:
    """The build context of `spec` as `docker build` would send it, its file digests
    remembered across runs: a warm walk is a stat walk, and hashes only what changed."""
    from devsync.adapters.hashcache import HashCache
    from devsync.model.context import GIT_MODES_FLAVORS, PLAIN_FLAVORS, scan_context

    try:
        dockerfile = spec.dockerfile.relative_to(spec.context).as_posix()
    except ValueError:
        dockerfile = str(spec.dockerfile)
    context = scan_context(spec.context, dockerfile, digests=HashCache.open(spec.context))
    # A plan tries each way of sending the context until one reuses every step: a step that
    # misses (an edited file) sends it on to the other flavors, which need the other sums
    # of the files of every COPY up to that step. Read once for all of them when few.
    context.companion_flavors = (*PLAIN_FLAVORS, *GIT_MODES_FLAVORS)
    context.companion_batch_max = COMPANION_BATCH_MAX
    return context


def save_digests(context: BuildContext) -> None:
    """Keep what was hashed for the next run (a cache: a failed write loses nothing)."""
    save = getattr(context.digests, "save", None)
    if save is not None:
        save()


class ContextOnDemand:
    """The build context of `spec`, walked when first asked for (`scanned` until then None);
    stands in for a BuildContext."""

    def __init__(self, spec: ImageSpec) -> None:
        self._spec = spec
        self.scanned: BuildContext | None = None

    def __getattr__(self, name: str) -> Any:
        if self.scanned is None:
            self.scanned = scan_with_cache(self._spec)
        return getattr(self.scanned, name)

    def as_context(self) -> BuildContext:
        return cast("BuildContext", self)


def copies_context(df: Dockerfile, target: str | None) -> bool:
    """Whether a stage the build runs has a COPY or ADD from the build context."""
    last = df.stage_named(target) if target else None
    stages = df.stages[: last.index + 1] if last is not None else df.stages
    return any(ins.cmd in ("COPY", "ADD") and not ins.flag("from")
               for stage in stages for ins in stage.instructions)


def relisted(context: BuildContext, project: Project, spec: ImageSpec, dockerfile: str,
             labels: Mapping[str, str] | None) -> tuple[BuildContext, dict[str, bytes]] | None:
    """A new listing of the context and the files sent with it (the labelled Dockerfile
    under the name `dockerfile`, when `labels` go in it), when `context` was listed more than
    a moment ago (before a pull): a streamed tar announces its size before it reads a file,
    so a file edited since the listing would stop the build. None: keep the listing (fresh,
    or the labels would not go where they were to go with the new one)."""
    from devsync.model.labelstep import labelled_context_files

    if time.monotonic() - context.scanned_at <= LISTING_FRESH_S:
        return None
    fresh = scan_with_cache(spec)
    if labels is None:
        return (fresh, {}) if fresh.dockerfile == dockerfile else None
    labelled = labelled_context_files(fresh, project.dockerfile(spec), target=spec.target,
                                      labels=labels)
    if labelled is None or labelled[0] != dockerfile:
        return None
    return fresh, dict(labelled[1])
