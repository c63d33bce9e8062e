"""Building with BuildKit, as the plan predicted it: which way, which cache sources, and what
the build said against the plan afterwards.

Which way (`ImagePlan.transport`): "cli" builds through the docker CLI's session
(devsync.adapters.engine `find_buildkit_cli`), whose context reaches BuildKit as a CI's
`docker build` / buildx / build-push-action's does; "api" through the Engine API with the
context as a tar in the request body. Only the same way hits a deployed `COPY .` (the
context root is hashed differently).

Lazy: nothing is pulled before the build. BuildKit fetches from the cache sources only the
layers the result reuses (and the base's), and says so as it goes: those fetches are the
sync's pull progress.

Logins: the CLI's session carries Docker's credentials, and BuildKit then pulls lazily from a
registry that wants a login too. The Engine API's BuildKit has no session and no logins: a
cache source (or base) in a registry that asks for one is pulled first by the engine, with
Docker's credentials, and BuildKit imports the local image's inline cache instead (it prefers
a local image of the same name). Credentials are never printed or stored.

Afterwards, BuildKit's CACHED vertices are compared with the plan: a difference is said,
with its likely reason (a cache source that failed to import, which BuildKit does in
silence; this engine's own build cache, which devsync cannot see).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from devsync.errors import DevsyncError
from devsync.events import Event, ImageBuilt, StepFinished, StepStarted, Warning_
from devsync.model.buildkit import StepRef
from devsync.model.project import ImageSpec, Project
from devsync.model.versions import split_reference

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine, StepMap
    from devsync.adapters.resolver import Resolver
    from devsync.model.dockerfiles import Dockerfile
    from devsync.ops.plan import ImagePlan, PlanStep

# the instructions BuildKit's Dockerfile frontend numbers (`[stage i/N]`), FROM an image too
_NUMBERED = ("ADD", "COPY", "RUN", "WORKDIR")
INLINE_CACHE_ARG = "BUILDKIT_INLINE_CACHE"


class Prepared(Protocol):
    """What a build is sent (devsync.ops.sync.BuildInput): the context tar, None when the
    docker CLI reads the context itself, and the Dockerfile's name in it."""

    tar: IO[bytes] | None
    dockerfile: str


@dataclass
class BuildKitSteps:
    """The plan's built steps as BuildKit numbers them.

    `refs[i]` is step i's vertex (`[stage n/N]`), None for a step that makes none (ENV,
    LABEL, CMD, ...: image config only). A step without a vertex, or whose vertex BuildKit
    never reports (a `WORKDIR /`), is shown at the moment it takes effect, with the plan's
    own word: after the vertex before it in its stage (or when its stage starts).
    """

    steps: list[PlanStep]
    refs: list[StepRef | None]
    _before: dict[int, list[int]] = field(default_factory=dict)
    _after: dict[int, list[int]] = field(default_factory=dict)
    _said: set[int] = field(default_factory=set)

    predict: bool = True
    finished: dict[int, bool] = field(default_factory=dict)  # the last word on each step

    @classmethod
    def of(cls, plan: ImagePlan, dockerfile: Dockerfile, *, target: str | None,
           predict: bool = True) -> BuildKitSteps:
        """`target`: the stage built; the steps of stages it does not need say nothing.
        `predict`: whether the plan's predictions hold for this build (not for a stage built
        on its own: the plan's are for its target)."""
        built = [s for s in plan.steps if s.kind != "skip"]
        by_line = step_refs(dockerfile)
        refs = [by_line.get(s.line) for s in built]
        out = cls(built, refs, predict=predict)
        stage_of = _stage_by_line(dockerfile)
        needed = {stage.index for stage in dockerfile.stages_needed(target)}
        out._said = {i for i, s in enumerate(built)
                     if stage_of.get(s.line, -1) not in needed and s.line in stage_of}
        last_vertex: dict[int, int] = {}  # stage -> its last numbered step so far
        waiting: dict[int, list[int]] = {}  # stage -> metadata steps before its first one
        for i, step in enumerate(built):
            stage = stage_of.get(step.line, -1)
            if refs[i] is not None:
                if stage not in last_vertex:
                    out._before[i] = waiting.pop(stage, [])
                last_vertex[stage] = i
                out._after.setdefault(i, [])
            elif stage in last_vertex:
                out._after[last_vertex[stage]].append(i)
            else:
                waiting.setdefault(stage, []).append(i)
        return out

    def step_map(self) -> StepMap:
        from devsync.adapters.engine import StepMap

        return StepMap({ref: i for i, ref in enumerate(self.refs) if ref is not None},
                       len(self.steps))

    def predicted(self, index: int) -> bool | None:
        """What the plan says BuildKit will report for step `index` (a FROM is reported done
        even when the plan shows it reused: `engine_cached`); None when it cannot say."""
        if index >= len(self.steps) or not self.predict:
            return None
        step = self.steps[index]
        if not step.certain:
            return None
        if self.is_from(index):
            return step.cached  # (see `shown`)
        reported = getattr(step, "engine_cached", None)
        return step.cached if reported is None else bool(reported)

    def is_from(self, index: int) -> bool:
        return index < len(self.steps) and \
            self.steps[index].instruction.lstrip()[:5].upper() == "FROM "

    def shown(self, event: StepFinished) -> StepFinished:
        """The event as devsync says it: BuildKit reports a FROM done, never CACHED, as it
        resolves the base even when nothing is built on it; its layers are reused either way
        (as the classic builder's FROM is), so it is said cached unless it failed."""
        cached = event.cached or self.is_from(event.index)
        self.finished[event.index] = cached
        return StepFinished(event.image, event.index, cached, self.predicted(event.index))

    def started(self, event: StepStarted) -> StepStarted:
        """The event with the Dockerfile's own text (BuildKit's names a FROM by digest)."""
        if event.index >= len(self.steps):
            return event
        step = self.steps[event.index]
        return StepStarted(event.image, event.index, len(self.steps),
                           " ".join(step.instruction.split()), step.line)

    def reused(self) -> int:
        return sum(1 for cached in self.finished.values() if cached)

    def said(self, index: int) -> None:
        self._said.add(index)

    def before(self, image: str, index: int) -> Iterator[Event]:
        """The steps without a vertex that take effect as step `index` starts."""
        for i in self._before.pop(index, []):
            yield from self._config_step(image, i, True)

    def after(self, image: str, index: int) -> Iterator[Event]:
        for i in self._after.pop(index, []):
            yield from self._config_step(image, i, self.finished.get(index))

    def rest(self, image: str) -> Iterator[Event]:
        """Whatever is still unsaid once the build is over, in order."""
        for i in range(len(self.steps)):
            if i not in self._said:
                yield from self._config_step(image, i)

    def _config_step(self, image: str, index: int, prior: bool | None = None) -> Iterator[Event]:
        """`prior`: what the vertex it follows did (True at a stage's start): the word of
        a step the plan could not say (it builds nothing, and is as fresh as what it is on)."""
        if index in self._said:
            return
        self._said.add(index)
        step = self.steps[index]
        cached = step.cached if step.certain or prior is None else prior
        self.finished[index] = cached
        yield StepStarted(image, index, len(self.steps), " ".join(step.instruction.split()),
                          step.line)
        yield StepFinished(image, index, cached, self.predicted(index))


def step_refs(dockerfile: Dockerfile) -> dict[int, StepRef]:
    """Each numbered instruction's `[stage i/N]`, by line: the stage's name (`stage-K` when
    unnamed; none when the file has a single stage), i counting FROM an image, WORKDIR,
    COPY, ADD and RUN (buildkit v0.8 dockerfile2llb)."""
    out: dict[int, StepRef] = {}
    # (a mount from an image is a stage of its own to dockerfile2llb, if never named: a cache
    # mount's is scratch; measured, tests/ops/test_plan_exact_buildkit_flags.py)
    single = len(dockerfile.stages) == 1 and not any(
        _mounts_an_image(f) for ins in dockerfile.instructions if ins.cmd == "RUN"
        for f in ins.flags)
    for stage in dockerfile.stages:
        name = "" if single else (stage.name or f"stage-{stage.index}")
        numbered = [ins for ins in stage.instructions if ins.cmd in _NUMBERED]
        from_image = dockerfile.names_image(stage.base)
        total = len(numbered) + (1 if from_image else 0)
        position = 0
        if from_image:
            position += 1
            out[stage.from_instruction.line] = StepRef(name, position, total)
        for ins in numbered:
            position += 1
            out[ins.line] = StepRef(name, position, total)
    return out


def _mounts_an_image(flag: str) -> bool:
    """`RUN --mount=...` that dockerfile2llb (v0.8) resolves as a stage: one with from=, or a
    cache mount (from scratch when it names none); never tmpfs."""
    from devsync.model.dockerfiles import mount_options

    options = mount_options(flag)
    if options is None:
        return False
    kind = options["type"]
    return kind != "tmpfs" and (kind == "cache" or bool(options.get("from")))


def _stage_by_line(dockerfile: Dockerfile) -> dict[int, int]:
    out: dict[int, int] = {}
    for stage in dockerfile.stages:
        out[stage.from_instruction.line] = stage.index
        for ins in stage.instructions:
            out[ins.line] = stage.index
    return out


def build_with_buildkit(project: Project, spec: ImageSpec, plan: ImagePlan, *, engine: Engine,
                        resolver: Resolver | None, tag: str, labels: Mapping[str, str],
                        prepared: Prepared, target: str | None = None,
                        build_args: Mapping[str, str] | None = None,
                        cancel: threading.Event | None = None) -> Iterator[Event]:
    """Build `spec` with BuildKit the way `plan` says, tagged `tag` once it succeeded.

    `target` and `build_args` (on top of the spec's) are for publishing a stage or an inline
    cache. The steps' events carry the plan's prediction (not for a stage built on its own);
    the caller compares the outcome with it (`compare_with_plan`).
    """
    from devsync.adapters.engine import CLIBuildRequest, find_buildkit_cli

    steps = BuildKitSteps.of(plan, project.dockerfile(spec), target=target or spec.target,
                             predict=target is None or target == spec.target)
    args = {**spec.build_args, **(build_args or {})}
    target = target or spec.target
    label = f"{plan.deployed or spec.name}: layers BuildKit fetched"
    sizes = _LayerSizes(resolver, [*plan.cache_from, *([plan.base] if plan.base else [])])
    cli = None
    if plan.transport == "cli":
        choice = find_buildkit_cli(project.config.docker_cli)
        cli = choice.cli
        if cli is None:
            # (the plan's predictions were for the CLI's way: they say nothing of this one)
            steps.predict = False
            yield Warning_(spec.name, f"the plan builds through the docker CLI, and {choice.reason}"
                           ": building through the Engine API instead, whose `COPY .` does not"
                           " match a CLI-built cache")
    if cli is not None:
        events = engine.build_with_cli(
            cli, CLIBuildRequest(spec.context, spec.dockerfile, cache_from=plan.cache_from,
                                 build_args=args, labels=labels, target=target),
            tag=tag, steps=steps.step_map(), blob_sizes=sizes, fetch_label=label,
            image_name=spec.name, cancel=cancel)
    else:
        yield from _pull_what_needs_a_login(engine, resolver, plan, spec, cancel)
        from devsync.ops.builders import API, TRANSPORT_LABEL

        labels = {**labels, TRANSPORT_LABEL: API}  # (a build from it goes this way too)
        if prepared.tar is None:
            raise DevsyncError(f"no build context was made for {spec.name}")
        events = engine.build_buildkit(
            prepared.tar, dockerfile=prepared.dockerfile, tag=tag,
            cache_from=plan.cache_from, build_args=args, labels=labels, target=target,
            steps=steps.step_map(), blob_sizes=sizes, fetch_label=label,
            image_name=spec.name, cancel=cancel)
    built: ImageBuilt | None = None
    for event in events:
        if isinstance(event, StepStarted):
            yield from steps.before(spec.name, event.index)
            steps.said(event.index)
            yield steps.started(event)
        elif isinstance(event, StepFinished):
            steps.said(event.index)
            yield steps.shown(event)
            yield from steps.after(spec.name, event.index)
        elif isinstance(event, ImageBuilt):
            built = event
        else:
            yield event
    yield from steps.rest(spec.name)
    if built is None:
        raise DevsyncError(f"the build of {spec.name} ended without an image")
    # (counted over the Dockerfile's steps, as a classic build's are)
    yield dataclasses.replace(built, steps_cached=steps.reused(), steps_total=len(steps.steps))


def _pull_what_needs_a_login(engine: Engine, resolver: Resolver | None, plan: ImagePlan,
                             spec: ImageSpec, cancel: threading.Event | None) -> Iterator[Event]:
    """The Engine API's BuildKit cannot log in: pull (with Docker's credentials) the cache
    sources and base whose registry asks for a login, so that it uses the local images."""
    if resolver is None:
        return
    refs = [*plan.cache_from, *([plan.base] if plan.base else [])]
    for ref in dict.fromkeys(refs):
        if engine.has_image(ref):
            continue
        repository = split_reference(ref)[0]
        try:
            needs_login = resolver.client(repository).asks_for_login
        except DevsyncError:
            continue  # unreachable: the build will say so itself
        if needs_login:
            yield Warning_(spec.name, f"{ref} is in a registry that asks for a login, which "
                           "BuildKit cannot do through the Engine API: pulling it first")
            yield from engine.pull(ref, cancel=cancel)


class _LayerSizes(Mapping[str, int]):
    """The registry's size of each layer blob the build may fetch: from the manifests the
    plan read (no request), else asked of the registry (HEAD) when first needed."""

    def __init__(self, resolver: Resolver | None, refs: Sequence[str]) -> None:
        self._resolver = resolver
        self._refs = list(dict.fromkeys(refs))
        self._known: dict[str, int] | None = None
        self._asked: dict[str, int] = {}

    def _sizes(self) -> dict[str, int]:
        if self._known is None:
            self._known = {}
            for ref in self._refs:
                info = None
                if self._resolver is not None:
                    with contextlib.suppress(DevsyncError):
                        info = self._resolver.remote(ref)
                if info is not None:
                    self._known.update(zip(info.layer_digests, info.layer_sizes, strict=False))
        return self._known

    def __getitem__(self, digest: str) -> int:
        known = self._sizes()
        if digest in known:
            return known[digest]
        if digest not in self._asked:
            self._asked[digest] = self._ask(digest)
        if not self._asked[digest]:
            raise KeyError(digest)
        return self._asked[digest]

    def _ask(self, digest: str) -> int:
        if self._resolver is None:
            return 0
        for repository in dict.fromkeys(split_reference(r)[0] for r in self._refs):
            with contextlib.suppress(DevsyncError):
                from devsync.adapters.resolver import repository_path

                size = self._resolver.client(repository).blob_size(
                    repository_path(repository), digest)
                if size:
                    return size
        return 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._sizes())

    def __len__(self) -> int:
        return len(self._sizes())


# --------------------------------------------------------------------- after the build


def compare_with_plan(image: str, plan: ImagePlan, finished: Mapping[int, StepFinished],
                      built: ImageBuilt) -> list[Warning_]:
    """What the build said that the plan did not: cache sources BuildKit could not import
    (it builds on without them, and says nothing), and the steps whose CACHED differed from
    the prediction, with the likely reason."""
    out: list[Warning_] = []
    for failure in built.cache_import_errors:
        out.append(Warning_(image, f"BuildKit could not import the cache source {failure}; "
                                   "it built without it"))
    built_steps = [s for s in plan.steps if s.kind != "skip"]
    reused: list[int] = []  # the plan said rebuild
    rebuilt: list[int] = []  # the plan said reuse
    for index, event in sorted(finished.items()):
        if event.predicted_cached is None or event.predicted_cached == event.cached:
            continue
        (reused if event.cached else rebuilt).append(index)
    if not reused and not rebuilt:
        return out

    def named(indexes: list[int]) -> str:
        parts = []
        for i in indexes[:4]:
            text = built_steps[i].instruction if i < len(built_steps) else ""
            text = " ".join(text.split())
            parts.append(f"{i + 1} ({text[:40] + '…' if len(text) > 41 else text})")
        more = f" and {len(indexes) - 4} more" if len(indexes) > 4 else ""
        return ", ".join(parts) + more

    if rebuilt:
        if built.cache_import_errors:
            why = "the cache source was not imported (above)"
        else:
            why = ("the cache records were there but BuildKit did not load them: a layer it "
                   "could not fetch, or records that lost their layers (an image built from "
                   "an imported cache re-exports them without; moby/buildkit#1981)")
        out.append(Warning_(image, f"the engine rebuilt step(s) {named(rebuilt)}, which the "
                                   f"plan expected to reuse: {why}"))
    if reused:
        out.append(Warning_(image, f"the engine reused step(s) {named(reused)}, which the plan "
                                   "expected to rebuild: this engine's own BuildKit cache had "
                                   "them (devsync predicts from the cache sources alone)"))
    return out


def fetched_text(built: ImageBuilt) -> str:
    """`fetched 5 layers, 9.1 MB` (what the lazy build pulled), "" when nothing."""
    if not built.fetched_layers:
        return ""
    return f"fetched {built.fetched_layers} layer{'s' if built.fetched_layers != 1 else ''}, " \
           f"{built.fetched_bytes / 1e6:.1f} MB"


def inline_cache_args() -> dict[str, str]:
    """The build argument that makes dockerd's BuildKit write the inline cache metadata."""
    return {INLINE_CACHE_ARG: "1"}


def cache_stages(dockerfile: Dockerfile, target: str | None) -> tuple[list[str], list[int]]:
    """The intermediate stages a registry cache is made of, by name (a build of `target`
    needs them); and the unnamed ones, which `--target` cannot build on their own."""
    final = dockerfile.target_stage(target)
    named: list[str] = []
    unnamed: list[int] = []
    for stage in dockerfile.stages_needed(target):
        if stage.index == final.index:
            continue
        if stage.name:
            named.append(stage.name)
        else:
            unnamed.append(stage.index)
    return named, unnamed


def write_registry_cache(resolver: Resolver, repository: str, images: Sequence[str]) -> str:
    """Compose the inline caches of `images` (pushed, in `repository`'s registry) into one
    registry cache, written as `registry_cache_ref(repository)`; returns its digest. The
    layers stay where they are (the images are in the same repository); the cache config
    blob and the index go up with Docker's credentials."""
    from devsync.adapters.resolver import repository_path
    from devsync.model.registrycache import (
        INDEX_MEDIA_TYPE,
        REGISTRY_CACHE_TAG,
        CacheMetadataError,
        InlineCache,
        compose,
    )

    client = resolver.client(repository)
    path = repository_path(repository)
    caches = []
    for ref in images:
        ref_repository, tag, digest = split_reference(ref)
        if ref_repository != repository:
            raise DevsyncError(f"{ref} is not in {repository}: a registry cache refers to "
                               "layers of its own repository")
        info = client.image_config(path, digest or tag or "latest")
        try:
            caches.append(InlineCache.from_image(ref, info.manifest.raw, info.config))
        except CacheMetadataError as exc:
            raise DevsyncError(f"cannot make the registry cache: {exc}") from None
    composed = compose(caches)
    config_digest = client.put_blob(path, composed.config)
    return client.put_manifest(path, REGISTRY_CACHE_TAG, composed.index(config_digest),
                               INDEX_MEDIA_TYPE)


__all__ = ["BuildKitSteps", "build_with_buildkit", "cache_stages", "compare_with_plan",
           "fetched_text", "inline_cache_args", "step_refs", "write_registry_cache"]
