"""`devsync sync`: pull what the build will reuse, then build with it as the cache source.

A sync is a stream of typed events (devsync.events); the CLI prints them, the TUI draws them.
Order matters for correctness: the classic builder only looks up `--cache-from` images
locally, so the deployed image is pulled before the build, never during it. The build runs
untagged and the result is tagged only once it succeeded, so an interrupted sync leaves no
half-made tag behind; rerunning continues from whatever the pull had already fetched.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from devsync.errors import DevsyncError, RegistryUnreachableError
from devsync.events import (
    Done,
    Event,
    ImageBuilt,
    PhaseStarted,
    PullStarted,
    StepFinished,
    StepStarted,
    Warning_,
)
from devsync.model.project import ROLE_BASE, ImageSpec, Project
from devsync.model.versions import split_reference

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver
    from devsync.model.context import BuildContext, TarStream
    from devsync.ops.plan import ImagePlan, PlanStep
    from devsync.ops.session import Session

def oci_labels(project: Project, spec: ImageSpec, git: GitRepo | None, *,
               version: str | None = None, revision: str | None = None) -> dict[str, str]:
    """`revision`: HEAD as this build already read it (else git is asked)."""
    # only the standard OCI ones (which sync a deployment came from lives in devsync's state)
    labels = {"org.opencontainers.image.created": datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")}
    if git is not None:
        head = revision or git.head
        if head:
            labels["org.opencontainers.image.revision"] = head
        url = git.remote_url()
        if url:
            labels["org.opencontainers.image.source"] = url
    _repo, tag, _digest = split_reference(spec.tag)
    labels["org.opencontainers.image.version"] = version or tag or "dev"
    return labels


def pull_missing(engine: Engine, refs: list[str],
                 cancel: threading.Event | None = None) -> Iterator[Event]:
    for ref in refs:
        if engine.has_image(ref):
            continue
        yield from engine.pull(ref, cancel=cancel)


class BuildInput:
    """What one build is sent and stamps, made while the pulls still run: the labels and the
    context. A classic build streams its tar (`stream`: sent while the files are read, the
    engine unpacking it as it comes). A BuildKit build takes the labels as an option and,
    through the Engine API, a tar written beforehand (`tar`); through the docker CLI no tar
    at all (`tar` is None): the CLI reads the context itself.
    """

    def __init__(self, project: Project, spec: ImageSpec, plan: ImagePlan,
                 git: GitRepo | None, *, version: str | None = None,
                 context: BuildContext | None = None, revision: str | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        """`context`: the one the plan just listed, when it is still current; else the
        directory is scanned now. `revision`: HEAD as already read for this build.
        `labels`: the ones to stamp, when already made."""
        from devsync.model.labelstep import labelled_context_files
        from devsync.ops.contexts import scan_with_cache

        self.labels = dict(labels) if labels is not None else oci_labels(
            project, spec, git, version=version, revision=revision)
        self.tar: IO[bytes] | None = None
        self._context: BuildContext | None = None
        self._files: dict[str, bytes] = {}
        self._flavor = plan.flavor
        self._project, self._spec = project, spec
        buildkit = plan.builder == "buildkit"
        self.dockerfile = _rel(spec)
        self.labels_in_dockerfile = False
        context = context or scan_with_cache(spec)
        if buildkit:  # (what status compares: BuildKit's history names no content)
            from devsync.ops.bkinputs import stamp_inputs

            stamp_inputs(self.labels, project, spec, context)
        if buildkit and plan.transport == "cli":
            return
        # the labels as the last step of a classic build when the context can carry them
        # unseen (BuildKit writes labels to the config without a step)
        labelled = None if buildkit else labelled_context_files(
            context, project.dockerfile(spec), target=spec.target, labels=self.labels)
        self.dockerfile, files = labelled or (context.dockerfile, {})
        self.labels_in_dockerfile = labelled is not None
        self._context = context
        self._files = dict(files)
        if not buildkit:
            return
        self.tar = tempfile.TemporaryFile(prefix="devsync-context-")  # noqa: SIM115 - closed by close()
        try:
            context.write_tar(self.tar, plan.flavor, files=files, plain_first=buildkit)
            self.tar.seek(0)
        except BaseException:
            self.tar.close()
            raise

    def stream(self) -> TarStream:
        """The context tar of a classic build, made as it is read (each call a new one), from
        a listing made again if it was made before a pull (see ops.contexts.relisted)."""
        from devsync.ops.contexts import relisted

        assert self._context is not None
        fresh = relisted(self._context, self._project, self._spec, self.dockerfile,
                         self.labels if self.labels_in_dockerfile else None)
        if fresh is not None:
            self._context, self._files = fresh
        return self._context.tar_stream(self._flavor, files=self._files)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def __enter__(self) -> BuildInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_image(project: Project, spec: ImageSpec, plan: ImagePlan, *, engine: Engine,
                git: GitRepo | None, tag: str, version: str | None = None,
                prepared: BuildInput | None = None, resolver: Resolver | None = None,
                target: str | None = None, build_args: Mapping[str, str] | None = None,
                cancel: threading.Event | None = None) -> Iterator[Event]:
    """Build `spec` as `plan` predicted (same builder, context flavor and cache sources),
    with the OCI labels (`version` defaults to the tag's); `prepared` when made in advance.
    `resolver` lets a BuildKit build size what it fetches and find the registries that need
    a login; `target` and `build_args` (over the spec's) are for publishing a stage or an
    inline cache (BuildKit)."""
    predicted = {i: (s.cached if s.certain else None)
                 for i, s in enumerate(_built_steps(plan))}
    with contextlib.ExitStack() as stack:
        if prepared is None:
            prepared = stack.enter_context(BuildInput(project, spec, plan, git,
                                                      version=version))
        if plan.builder == "buildkit":
            from devsync.ops.buildkit import build_with_buildkit

            yield from build_with_buildkit(project, spec, plan, engine=engine,
                                           resolver=resolver, tag=tag, labels=prepared.labels,
                                           prepared=prepared, target=target,
                                           build_args=build_args, cancel=cancel)
            return
        for event in engine.build(
            prepared.stream(), dockerfile=prepared.dockerfile, tag=tag,
            cache_from=plan.cache_from,
            build_args={**spec.build_args, **(build_args or {})},
            labels=None if prepared.labels_in_dockerfile else prepared.labels,
            target=target or spec.target,
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
               plan: ImagePlan | None = None,
               prepared: BuildInput | None = None) -> Iterator[Event]:
    """Pull the base and the latest deployed image, then rebuild only what changed."""
    if plan is None:
        from devsync.ops.plan import plan_image

        yield PhaseStarted(spec.name, "plan")
        plan = plan_image(project, spec, resolver, git)
    for note in plan.notes:
        yield Warning_(spec.name, note)
    if spec.role == ROLE_BASE:
        yield from _sync_base(project, spec, plan, engine=engine, resolver=resolver, git=git,
                              cancel=cancel)
        return
    if plan.builder != "buildkit":
        refs: list[str] = []
        if plan.deployed and plan.deployed in plan.cache_from:
            # (a deployed tag the plan could not read is no cache source: don't pull it)
            refs.append(plan.deployed)
        refs += _external_bases(project, spec, plan)  # after: the deployed pull has its layers
        missing = [ref for ref in refs if not engine.has_image(ref)]
        if missing:
            yield PhaseStarted(spec.name, "pull")
            yield from pull_missing(engine, missing, cancel)
    # (BuildKit pulls nothing first: it fetches the layers it reuses as it builds)
    yield PhaseStarted(spec.name, "build", plan.summary)
    built: ImageBuilt | None = None
    mismatches: list[int] = []
    finished: dict[int, StepFinished] = {}
    dockerfile_steps = len(_built_steps(plan))
    for event in _build_or_reuse(project, spec, plan, engine=engine, git=git,
                                 prepared=prepared, resolver=resolver, cancel=cancel):
        if isinstance(event, StepFinished) and event.index < dockerfile_steps:
            finished[event.index] = event  # (BuildKit may correct itself: the last word)
        if isinstance(event, ImageBuilt):
            built = event
        yield event
    if built is None:
        raise DevsyncError(f"the build of {spec.name} ended without an image")
    reused = sum(1 for e in finished.values() if e.cached)
    fetched = ""
    if plan.builder == "buildkit":
        from devsync.ops.buildkit import compare_with_plan, fetched_text

        yield from compare_with_plan(spec.name, plan, finished, built)
        fetched = fetched_text(built)
    else:
        mismatches = [i for i, e in sorted(finished.items())
                      if e.predicted_cached is not None and e.predicted_cached != e.cached]
        if mismatches:
            yield Warning_(spec.name, "the engine's cache decisions differed from the plan at "
                           f"step(s) {', '.join(str(i + 1) for i in mismatches)}")
    tagged = yield from _tag_for_compose(engine, spec, built.image_id)
    # (the engine's own count includes the LABEL steps it adds for the OCI labels)
    details: dict[str, object] = {"image_id": built.image_id, "tag": spec.tag,
                                  "deployed": plan.deployed,
                                  "fetched_bytes": built.fetched_bytes}
    if tagged:
        details["compose_tags"] = tagged
    yield Done(ok=True, summary=f"{spec.tag}: {reused}/{dockerfile_steps} Dockerfile steps "
               f"reused{'; ' + fetched if fetched else ''}{_compose_summary(spec, tagged)}",
               details=details)


def _build_or_reuse(project: Project, spec: ImageSpec, plan: ImagePlan, *, engine: Engine,
                    git: GitRepo | None, prepared: BuildInput | None, resolver: Resolver,
                    cancel: threading.Event | None) -> Iterator[Event]:
    """`build_image`, unless the plan proves every step cached from an image that is here:
    then that image and the labels make the result without a build (devsync.ops.reuse), and
    when anything says otherwise, the real build runs."""
    with contextlib.ExitStack() as stack:
        if plan.reuse is not None and plan.builder != "buildkit":
            from devsync.ops.reuse import reuse_whole

            if prepared is None:
                prepared = stack.enter_context(BuildInput(project, spec, plan, git))
            made = yield from reuse_whole(project, spec, plan, engine=engine, resolver=resolver,
                                          labels=prepared.labels,
                                          labels_in_dockerfile=prepared.labels_in_dockerfile,
                                          tag=spec.tag, cancel=cancel)
            if made is not None:
                return
        yield from build_image(project, spec, plan, engine=engine, git=git, tag=spec.tag,
                               prepared=prepared, resolver=resolver, cancel=cancel)


def _tag_for_compose(engine: Engine, spec: ImageSpec,
                     image_id: str | None) -> Generator[Event, None, list[str]]:
    """Tag the image with the names Docker Compose runs its services by, so that `docker
    compose up` runs it instead of building its own; those names only (moved here if Compose
    had built them), nothing else of the user's is touched. A name that cannot be tagged is a
    warning: the image itself is built and tagged."""
    tagged: list[str] = []
    if image_id is None:
        return tagged
    for ref in spec.compose_tags:
        try:
            engine.tag(image_id, ref)
        except DevsyncError as exc:
            yield Warning_(spec.name, f"cannot tag {ref} for docker compose: {exc.message}")
            continue
        tagged.append(ref)
    return tagged


def _compose_summary(spec: ImageSpec, tagged: list[str]) -> str:
    if not tagged:
        return ""
    return f"; docker compose runs it for {', '.join(spec.compose_services)} as " \
        f"{', '.join(tagged)}"


def _sync_base(project: Project, spec: ImageSpec, plan: ImagePlan, *, engine: Engine,
               resolver: Resolver, git: GitRepo | None,
               cancel: threading.Event | None) -> Iterator[Event]:
    """A developer's base: the registry's when it is what this checkout builds (pulled when
    not here), else built here from the checkout's base Dockerfile under the same tag, so
    the app builds on it. Publishing a new base is CI's or the base owner's job."""
    from devsync.ops.status import base_next_sync

    how = plan.base_sync if plan.base_sync is not None \
        else base_next_sync(project, spec, resolver, git)
    if how == "build":
        yield PhaseStarted(spec.name, "build", f"{spec.rel_dockerfile(project.root)} changed "
                           f"since {spec.tag} was built: building it here")
        missing = [ref for ref in _external_bases(project, spec, plan)
                   if plan.builder != "buildkit" and not engine.has_image(ref)]
        for ref in missing:
            yield from engine.pull(ref, cancel=cancel)
        built: ImageBuilt | None = None
        for event in build_image(project, spec, plan, engine=engine, git=git, tag=spec.tag,
                                 resolver=resolver, cancel=cancel):
            if isinstance(event, ImageBuilt):
                built = event
            yield event
        if built is None:
            raise DevsyncError(f"the build of {spec.name} ended without an image")
        resolver.forget_local()  # (the apps' plans build on this one now)
        tagged = yield from _tag_for_compose(engine, spec, built.image_id)
        details: dict[str, object] = {"image_id": built.image_id, "tag": spec.tag}
        if tagged:
            details["compose_tags"] = tagged
        yield Done(ok=True, summary=f"{spec.tag} built here from "
                   f"{spec.rel_dockerfile(project.root)}{_compose_summary(spec, tagged)}",
                   details=details)
        return
    yield PhaseStarted(spec.name, "pull", spec.tag)
    if how == "pull" and engine.has_image(spec.tag):
        yield from engine.pull(spec.tag, cancel=cancel)  # (the local one differs)
    else:
        yield from pull_missing(engine, [spec.tag], cancel)
    local = engine.image(spec.tag) if spec.compose_tags else None
    tagged = yield from _tag_for_compose(engine, spec, local.id if local else None)
    yield Done(ok=True, summary=f"{spec.tag} is local{_compose_summary(spec, tagged)}",
               details={"compose_tags": tagged} if tagged else {})


def _external_bases(project: Project, spec: ImageSpec, plan: ImagePlan) -> list[str]:
    return [plan.base] if plan.base and project.dockerfile(spec).names_image(plan.base) else []


# the longest the plan waits for the engine to take up the first pull (see wait_answered)
_PULL_HEAD_START = 0.5


class _Prefetch:
    """Pulls in a background thread while the plan is being computed.

    The plan needs only registry metadata and the pull only the deployed tag, so the two can
    overlap: the pull's events queue up and are handed over, in order, once the plan is done.
    (Pulling the base alongside the deployed image, whose layers the engine would share
    between the two, measured no faster than one after the other.)
    """

    _END = object()

    def __init__(self, engine: Engine, refs: list[str],
                 cancel: threading.Event | None) -> None:
        import queue

        self._queue: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._user_cancel = cancel
        self._answered = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(engine, refs), daemon=True,
                                        name="devsync-prefetch")
        self._thread.start()

    def wait_answered(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until the engine has answered the first pull request
        (or there was nothing to pull). The caller's CPU-bound work (imports, the plan) would
        otherwise hold the GIL while this thread builds and sends that request, delaying the
        pull by more than the wait costs: that work runs during the pull all the same."""
        self._answered.wait(timeout)

    def _cancelled(self) -> bool:
        return self._stop.is_set() or bool(self._user_cancel and self._user_cancel.is_set())

    def _run(self, engine: Engine, refs: list[str]) -> None:
        cancel = _AnyEvent(self._stop, self._user_cancel)
        try:
            for ref in refs:
                try:
                    for event in pull_missing(engine, [ref], cancel):  # type: ignore[arg-type]
                        self._queue.put(event)
                        if not isinstance(event, PullStarted):
                            self._answered.set()
                except DevsyncError as exc:
                    # whether this matters is known only once the plan is: see events()
                    self._queue.put((ref, exc))
                    if self._cancelled():
                        return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._queue.put(exc)
        finally:
            self._queue.put(self._END)
            self._answered.set()

    def events(self, needed: set[str]) -> Iterator[Event]:
        """The pull's events; a failed pull of a ref in `needed` is raised, of any other
        ref (one the plan found it cannot use) dropped."""
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, tuple):
                ref, exc = item
                if ref in needed:
                    raise exc
                continue
            yield item  # type: ignore[misc]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class _PlanAhead:
    """Plans images still to sync in a thread while the engine builds another.

    Nothing else uses git meanwhile: the build's input was made before it started, and the
    caller waits for this thread before it records the build.
    """

    def __init__(self, session: Session, specs: list[ImageSpec]) -> None:
        self._plans: dict[str, ImagePlan | BaseException] = {}
        self._thread = threading.Thread(target=self._run, args=(session, specs), daemon=True,
                                        name="devsync-plan-ahead")
        self._thread.start()

    def _run(self, session: Session, specs: list[ImageSpec]) -> None:
        from devsync.ops.plan import plan_image

        for spec in specs:
            try:
                self._plans[spec.name] = plan_image(session.project, spec, session.resolver,
                                                    session.git)
            except BaseException as exc:  # raised where the plan would have been made
                self._plans[spec.name] = exc

    def wait(self) -> None:
        self._thread.join()

    def take(self, spec: ImageSpec) -> ImagePlan | None:
        self.wait()
        plan = self._plans.pop(spec.name, None)
        if isinstance(plan, BaseException):
            raise plan
        return plan


def _behind_deployment(project: Project, spec: ImageSpec, resolver: Resolver) -> str | None:
    """Why not to sync an app yet: the deployed image was built from a commit this checkout
    does not have (asked of the registry's metadata and git, before any pull)."""
    from devsync.ops.plan import REVISION_LABEL
    from devsync.ops.status import behind_cause

    if spec.role == ROLE_BASE or not spec.deployed:
        return None
    try:
        ref = resolver.latest_deployed(spec.deployed)
        info = resolver.remote(ref) if ref else None
    except DevsyncError:
        return None
    revision = info.labels.get(REVISION_LABEL) if info is not None else None
    return behind_cause(project, ref, revision) if ref and revision else None


def _unplanned(engine: Engine, spec: ImageSpec, exc: RegistryUnreachableError,
               failures: list[DevsyncError],
               cancel: threading.Event | None) -> Iterator[Event]:
    """An image whose plan needs a registry that is down. A base stands as the team's tag
    (pulled when not here, as the apps' FROM pulls it): it could not be checked against its
    Dockerfile, which is said, and the sync goes on. An app is not synced: said now, and
    the sync fails once the other images are done."""
    if spec.role == ROLE_BASE:
        try:
            yield from pull_missing(engine, [spec.tag], cancel)
        except DevsyncError:
            pass
        else:
            yield Warning_(spec.name, f"{spec.tag} could not be checked against its "
                           f"Dockerfile: {exc.message}; using the team's {spec.tag}")
            return
    failures.append(exc)
    yield Warning_(spec.name, f"not synced: {exc.message}")


def _sync_base_first(session: Session, base: ImageSpec, *,
                     before: Callable[[ImagePlan], bool] | None,
                     cancel: threading.Event | None) -> Generator[Event, None, bool]:
    """Sync `base` (built here) ahead of the app being synced, and record it; False when
    `before` declines it."""
    from devsync.ops.plan import plan_image
    from devsync.ops.recording import built_from, record_sync

    project, engine = session.project, session.engine
    assert engine is not None
    yield PhaseStarted(base.name, "plan")
    plan = plan_image(project, base, session.resolver, session.git)
    if before is not None and not before(plan):
        yield Warning_(base.name, "skipped")
        return False
    built = built_from(project, base, session.git)
    image_id: str | None = None
    for event in sync_image(project, base, engine=engine, resolver=session.resolver,
                            git=session.git, cancel=cancel, plan=plan):
        if isinstance(event, ImageBuilt):
            image_id = event.image_id
        yield event
    record_sync(project, base, plan, image_id, built)
    return True


class _AnyEvent:
    """Looks like a threading.Event to the engine: set when either event is."""

    def __init__(self, a: threading.Event, b: threading.Event | None) -> None:
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or bool(self._b and self._b.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        return self._a.wait(timeout) or self.is_set()


def _prefetch_refs(project: Project, spec: ImageSpec, resolver: Resolver) -> list[str]:
    # the deployed image first: it holds the base's layers too, and one pull downloads its
    # layers in parallel where base-then-deployed would fetch them in two rounds
    refs: list[str] = []
    if spec.deployed:
        try:
            deployed = resolver.latest_deployed(spec.deployed)
        except RegistryUnreachableError:
            deployed = None  # (the plan meets it too, and says so)
        if deployed and _builds_with_buildkit(project, spec, resolver, deployed):
            return []  # a BuildKit sync pulls nothing first (see sync_image)
        if deployed:
            refs.append(deployed)
    if spec.base_ref and project.dockerfile(spec).names_image(spec.base_ref):
        refs.append(spec.base_ref)
    return refs


def _builds_with_buildkit(project: Project, spec: ImageSpec, resolver: Resolver, ref: str) -> bool:
    """Whether the plan will build with BuildKit (devsync.ops.builders; `ref`'s config)."""
    from devsync.ops.builders import builder_of

    try:
        info = resolver.remote(ref)
    except DevsyncError:
        info = None
    return builder_of(project, spec, info) == "buildkit"


def run_sync(session: Session, specs: list[ImageSpec], *,
             cancel: threading.Event | None = None,
             before: Callable[[ImagePlan], bool] | None = None,
             prefetch: bool = True, only_needed: bool = False) -> Iterator[Event]:
    """Sync each image and record what was done, for every view: under the repository's
    operation lock, plan, (ask `before`, which may print the plan or decline), sync, record;
    afterwards the fresh status of any image not synced here goes to the state `--check`
    and the TUI read.

    With `prefetch` (the caller will not decline a pull) the base and the deployed image are
    pulled while the plan is computed; the pulls start before the session opens its git
    repository, which costs the import of GitPython."""
    from devsync.adapters.state import operation_lock
    from devsync.ops.policy import leave_alone

    project, engine, resolver = session.project, session.engine, session.resolver
    if engine is None:
        raise DevsyncError(f"cannot sync without a Docker engine: {session.engine_problem}")
    # apps first: their pulls bring the base's layers along, in parallel with their own;
    # but a base that must be built here (a teammate changed it) is built before the app
    # that is FROM it, once that app's pulls are under way (devsync.ops.basefirst)
    specs = sorted(specs, key=lambda s: s.role == ROLE_BASE)
    done: set[str] = set()  # bases already synced, ahead of their apps
    # an image whose plan needs a registry that is down is skipped, said, and the others are
    # synced; the first such failure is raised at the end (see _unplanned)
    failures: list[DevsyncError] = []
    unsynced: set[str] = set()
    warned: set[str] = set()  # registries already said to be unchecked
    with operation_lock(project.root, "sync"):
        settled = (yield from leave_alone(session, specs)) if only_needed else []
        specs = [s for s in specs if s.name not in {st.name for st in settled}]
        ahead: _PlanAhead | None = None
        for position, spec in enumerate(specs):
            if spec.name in done:
                continue
            behind = _behind_deployment(project, spec, resolver)
            if behind:
                # its layers would not be this checkout's: pulling them helps nobody
                yield Warning_(spec.name, f"{behind}: git pull first (nothing was pulled or "
                               "built)")
                continue
            refs = _prefetch_refs(project, spec, resolver) \
                if prefetch and spec.role != ROLE_BASE else []
            # (nothing to fetch ahead, as for BuildKit's lazy syncs: no pull phase either)
            fetching = _Prefetch(engine, refs, cancel) if refs else None
            prepared: BuildInput | None = None
            try:
                if fetching is not None:
                    fetching.wait_answered(_PULL_HEAD_START)
                # (imported once the pulls are under way: the plan's modules, then GitPython)
                from devsync.ops.answers import unchecked_warnings
                from devsync.ops.basefirst import base_to_build_first
                from devsync.ops.plan import plan_image
                from devsync.ops.plansteps import replanned
                from devsync.ops.recording import built_from, record_sync

                git = session.git
                yield PhaseStarted(spec.name, "plan")
                try:
                    planned = ahead.take(spec) if ahead is not None else None
                    plan = planned or plan_image(project, spec, resolver, git)
                except RegistryUnreachableError as exc:
                    unsynced.add(spec.name)
                    yield from _unplanned(engine, spec, exc, failures, cancel)
                    continue
                for line in unchecked_warnings(resolver, already=warned):
                    yield Warning_(spec.name, line)
                if spec.role == ROLE_BASE:  # (before `before`: a base pulled is not built)
                    from devsync.ops.status import base_next_sync

                    plan.base_sync = base_next_sync(project, spec, resolver, git)
                if before is not None and not before(plan):
                    yield Warning_(spec.name, "skipped")
                    continue
                first = (base_to_build_first(session, spec, specs, done)
                         if spec.role != ROLE_BASE else None)
                built = built_from(project, spec, git)  # (before the context is read)
                if spec.role != ROLE_BASE:
                    # (while the pulls run; without them, the plan's listing may be old by now)
                    prepared = BuildInput(
                        project, spec, plan, git, revision=built.revision,
                        context=plan.scanned_context if prefetch else None)
                if fetching is not None:
                    yield PhaseStarted(spec.name, "pull")
                    yield from fetching.events(
                        {*plan.cache_from, *_external_bases(project, spec, plan)})
                if first is not None and (yield from _sync_base_first(
                        session, first, before=before, cancel=cancel)):
                    # the app builds on the base just built here: planned again on it
                    done.add(first.name)
                    resolver.forget_local()
                    yield PhaseStarted(spec.name, "plan")
                    plan = plan_image(project, spec, resolver, git)
                    yield replanned(plan)
                    if prepared is not None:
                        prepared.close()
                        prepared = BuildInput(project, spec, plan, git,
                                              revision=built.revision)
                image_id: str | None = None
                for event in sync_image(project, spec, engine=engine, resolver=resolver,
                                        git=git, cancel=cancel, plan=plan,
                                        prepared=prepared):
                    if isinstance(event, ImageBuilt):
                        image_id = event.image_id
                    elif isinstance(event, StepStarted) and ahead is None:
                        # the engine builds, this thread only waits: plan the bases still
                        # to sync (their plans cannot depend on this build, an app's could)
                        ahead = _PlanAhead(session, [s for s in specs[position + 1:]
                                                     if s.role == ROLE_BASE
                                                     and s.name not in done])
                    yield event
            finally:
                if fetching is not None:
                    fetching.stop()
                if prepared is not None:
                    prepared.close()
                if ahead is not None:
                    ahead.wait()  # (git is not shared across threads)
            record_sync(project, spec, plan, image_id, built)
        from devsync.ops.recording import record_the_rest

        record_the_rest(session, {s.name for s in specs} - unsynced, settled)
        if settled and not specs:
            yield Done(summary="every image is in sync: nothing to sync")
    if failures:
        raise failures[0]
