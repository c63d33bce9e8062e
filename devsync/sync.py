"""`devsync sync`: pull what the build will reuse, then build with it as the cache source.

A sync is a stream of typed events (devsync.events); the CLI prints them, the TUI draws them.
Order matters for correctness: the classic builder only looks up `--cache-from` images
locally, so the deployed image is pulled before the build, never during it. The build runs
untagged and the result is tagged only once it succeeded, so an interrupted sync leaves no
half-made tag behind; rerunning continues from whatever the pull had already fetched.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from devsync.buildcontext import scan_context
from devsync.errors import DevsyncError
from devsync.events import (
    Done,
    Event,
    ImageBuilt,
    PhaseStarted,
    StepFinished,
    Warning_,
)
from devsync.plan import ImagePlan, PlanStep, plan_image
from devsync.project import ROLE_BASE, ImageSpec, Project
from devsync.versions import split_reference

if TYPE_CHECKING:
    from devsync.engine import Engine
    from devsync.gitinfo import GitRepo
    from devsync.resolver import Resolver

def oci_labels(project: Project, spec: ImageSpec, git: GitRepo | None, *,
               version: str | None = None) -> dict[str, str]:
    # the classic builder adds one LABEL step per label, each a container commit: only
    # the standard OCI ones (what sync a deployment came from lives in devsync's state)
    labels = {"org.opencontainers.image.created": datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")}
    if git is not None:
        if git.head:
            labels["org.opencontainers.image.revision"] = git.head
        url = git.remote_url()
        if url:
            labels["org.opencontainers.image.source"] = url
    _repo, tag, _digest = split_reference(spec.tag)
    labels["org.opencontainers.image.version"] = version or tag or "dev"
    return labels


def pull_missing(engine: Engine, refs: list[str],
                 cancel: threading.Event | None = None) -> Iterator[Event]:
    for ref in refs:
        if engine.image(ref) is not None:
            continue
        yield from engine.pull(ref, cancel=cancel)


def build_image(project: Project, spec: ImageSpec, plan: ImagePlan, *, engine: Engine,
                git: GitRepo | None, tag: str, labels: dict[str, str],
                cancel: threading.Event | None = None) -> Iterator[Event]:
    """Build `spec` as `plan` predicted (same context flavor, same cache sources)."""
    context = scan_context(spec.context, _rel(spec))
    predicted = {i: (s.cached if s.certain else None)
                 for i, s in enumerate(_built_steps(plan))}
    with tempfile.TemporaryFile(prefix="devsync-context-") as tar:
        context.write_tar(tar, plan.flavor)
        tar.seek(0)
        for event in engine.build(
            tar, dockerfile=_rel(spec), tag=tag, cache_from=plan.cache_from,
            build_args=spec.build_args, labels=labels, target=spec.target,
            image_name=spec.name, cancel=cancel,
        ):
            if isinstance(event, StepFinished):
                event = StepFinished(event.image, event.index, event.cached,
                                     predicted.get(event.index))
            yield event


def _built_steps(plan: ImagePlan) -> list[PlanStep]:
    # the builder numbers the ARGs before FROM and every instruction of the stages it builds
    return [s for s in plan.steps if s.kind != "skip"]


def _rel(spec: ImageSpec) -> str:
    try:
        return spec.dockerfile.relative_to(spec.context).as_posix()
    except ValueError:
        return str(spec.dockerfile)


def sync_image(project: Project, spec: ImageSpec, *, engine: Engine, resolver: Resolver,
               git: GitRepo | None, cancel: threading.Event | None = None,
               plan: ImagePlan | None = None) -> Iterator[Event]:
    """Pull the base and the latest deployed image, then rebuild only what changed."""
    if plan is None:
        yield PhaseStarted(spec.name, "plan")
        plan = plan_image(project, spec, resolver, git)
    for note in plan.notes:
        yield Warning_(spec.name, note)
    if spec.role == ROLE_BASE:
        # developers pull the team's base; building a new one is `devsync base build`
        yield PhaseStarted(spec.name, "pull", spec.tag)
        yield from pull_missing(engine, [spec.tag], cancel)
        yield Done(ok=True, summary=f"{spec.tag} is local")
        return
    yield PhaseStarted(spec.name, "pull")
    bases = [b for b in _external_bases(project, spec, plan)]
    yield from pull_missing(engine, bases, cancel)
    if plan.deployed:
        yield from pull_missing(engine, [plan.deployed], cancel)
    yield PhaseStarted(spec.name, "build", plan.summary)
    labels = oci_labels(project, spec, git)
    built: ImageBuilt | None = None
    mismatches: list[int] = []
    for event in build_image(project, spec, plan, engine=engine, git=git, tag=spec.tag,
                             labels=labels, cancel=cancel):
        if isinstance(event, StepFinished) and event.predicted_cached is not None \
                and event.predicted_cached != event.cached:
            mismatches.append(event.index)
        if isinstance(event, ImageBuilt):
            built = event
        yield event
    if built is None:
        raise DevsyncError(f"the build of {spec.name} ended without an image")
    if mismatches:
        yield Warning_(spec.name, "the engine's cache decisions differed from the plan at "
                       f"step(s) {', '.join(str(i + 1) for i in mismatches)}")
    yield Done(ok=True, summary=f"{spec.tag}: {built.steps_cached}/{built.steps_total} steps "
               "reused", details={"image_id": built.image_id, "tag": spec.tag,
                                  "deployed": plan.deployed})


def _external_bases(project: Project, spec: ImageSpec, plan: ImagePlan) -> list[str]:
    df = project.dockerfile(spec)
    names = {s.name for s in df.stages if s.name}
    out = []
    if plan.base and plan.base != "scratch" and plan.base.lower() not in names:
        out.append(plan.base)
    return out


def run_sync(project: Project, specs: list[ImageSpec], *, engine: Engine, resolver: Resolver,
             git: GitRepo | None, cancel: threading.Event | None = None,
             before: Callable[[ImagePlan], bool] | None = None) -> Iterator[Event]:
    """Sync each image and record what was done, for every view: under the repository's
    operation lock, plan, (ask `before`, which may print the plan or decline), sync, record;
    afterwards every image's fresh status goes to the state `--check` and the TUI read."""
    from devsync.recording import record_statuses, record_sync
    from devsync.state import operation_lock
    from devsync.status import collect_statuses

    with operation_lock(project.root, "sync"):
        for spec in specs:
            plan = plan_image(project, spec, resolver, git)
            if before is not None and not before(plan):
                yield Warning_(spec.name, "skipped")
                continue
            image_id: str | None = None
            for event in sync_image(project, spec, engine=engine, resolver=resolver, git=git,
                                    cancel=cancel, plan=plan):
                if isinstance(event, ImageBuilt):
                    image_id = event.image_id
                yield event
            record_sync(project, spec, plan, image_id, git)
        resolver.forget_local()  # the pulls and builds above changed the local images
        record_statuses(project, collect_statuses(project, resolver, git), git)
