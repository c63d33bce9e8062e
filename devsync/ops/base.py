"""The base-image workflow: build and push a new base, bump the app's FROM line, publish an app
image, and advice on when a new base pays off. No UI here: generators of events and plain
results that the CLI and the TUI render."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devsync.errors import (
    ConfigError,
    DevsyncError,
    EngineUnavailableError,
    UnknownBaseError,
    UsageError,
)
from devsync.events import Event, Next, PhaseStarted, Pushed, Warning_
from devsync.model.dockerfiles import cache_busting_order
from devsync.model.files import read_regular
from devsync.model.project import ROLE_APP, ROLE_BASE, ImageSpec, Project
from devsync.model.versions import (
    BASE_PREFIX,
    base_versions,
    is_base_tag,
    latest_base_tag,
    latest_version_tag,
    next_base_tag,
    parse_base_tag,
    parse_version,
    split_reference,
)
from devsync.ops.plan import plan_image
from devsync.ops.sync import build_image, pull_missing

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver
    from devsync.model.images import ImageInfo
    from devsync.ops.plan import ImagePlan

OVERLAY2_MAX_LAYERS = 127


def base_spec(project: Project) -> ImageSpec:
    bases = project.base_images
    if not bases:
        raise ConfigError("this project has no base image (no Dockerfile.base, and no image "
                          "with role = \"base\" in .devsync.toml)")
    return bases[0]


def new_base_tag(spec: ImageSpec, resolver: Resolver,
                 version: str | None) -> tuple[str, str | None]:
    """The reference a new base is built as, and a warning when the registry could not say
    which tags exist. `version` (from `--version`) wins; else the base after the newest of
    the registry's base tags and the FROM line's, in that tag's scheme (model.versions)."""
    repo, current_tag, _digest = split_reference(spec.tag)
    if version:
        version = version.removeprefix("v")
        if parse_base_tag(BASE_PREFIX + version) is None:
            raise UsageError(f"--version {version}: not a version (e.g. 1.2, 1.2.0, 2024.05 "
                             "or 20240501)")
        return f"{repo}:{BASE_PREFIX}{version}", None
    from devsync.adapters.registry import RegistryNotFound

    warning = None
    try:
        tags = resolver.tags(repo)
    except RegistryNotFound:
        tags = []  # nothing pushed yet
    except DevsyncError as exc:
        tags = []
        warning = (f"could not list the base tags of {repo} ({exc.message}); the new base's "
                   f"tag follows {current_tag} from FROM and may already exist there")
    tag = next_base_tag([*tags, current_tag] if current_tag else tags)
    if tag is None:
        if current_tag and is_base_tag(current_tag):
            raise UsageError(f"cannot tell which version comes after {current_tag}",
                             hint="name it: devsync base build --version 1.0")
        tag = f"{BASE_PREFIX}0.1.0"
    return f"{repo}:{tag}", warning


def base_build(project: Project, *, engine: Engine, resolver: Resolver, git: GitRepo | None,
               version: str | None = None, push: bool = False, replace: bool = False,
               cancel: threading.Event | None = None) -> Iterator[Event]:
    """Build the base as the next `REPO:base-VERSION` (or `version`), and push it.

    A pushed base tag is what every app build FROM it gets: pushing over one the registry
    already has would change the team's builds in silence, so an explicit `version` whose
    tag exists there is refused before anything is built, unless `replace` says so.
    """
    from devsync.adapters.state import operation_lock

    spec = base_spec(project)
    with operation_lock(project.root, "building the base"):
        tag, warning = new_base_tag(spec, resolver, version)
        if warning:
            yield Warning_(spec.name, warning)
        if push and version and not replace and _in_registry(resolver, tag):
            raise UsageError(f"{tag} is already in the registry: pushing would replace the "
                             "base every build FROM it gets",
                             hint="pick a new version (without --version devsync takes the "
                                  "next one), or say --replace")
        plan = plan_image(project, spec, resolver, git)
        yield PhaseStarted(spec.name, "build", f"{tag}: {plan.summary}")
        if plan.deployed and plan.builder != "buildkit":  # (BuildKit fetches what it reuses)
            yield from pull_missing(engine, [plan.deployed], cancel)
        yield from build_image(project, spec, plan, engine=engine, git=git, tag=tag,
                               version=split_reference(tag)[1], resolver=resolver,
                               build_args=_inline_cache(plan), cancel=cancel)
        if push:
            yield PhaseStarted(spec.name, "push", tag)
            yield from engine.push(tag, cancel=cancel)


def _in_registry(resolver: Resolver, ref: str) -> bool:
    """Whether the registry has `ref` (False when it cannot be asked: the push will say)."""
    from devsync.adapters.resolver import repository_path

    repo, tag, _digest = split_reference(ref)
    try:
        found = resolver.client(repo).head_digest(repository_path(repo), tag or "latest")
    except DevsyncError:
        return False
    return found is not None


@dataclass
class BumpResult:
    changed: list[str] = field(default_factory=list)  # repo-relative files rewritten
    old: str = ""
    new: str = ""
    newer_than_registry: bool = False  # FROM already names a base newer than the registry's


def base_bump(project: Project, resolver: Resolver, to_tag: str | None = None, *,
              local: bool = False) -> BumpResult:
    """Point every app Dockerfile's FROM (or the ARG default that feeds it) at a base tag,
    changing nothing but that tag's bytes.

    Without `to_tag`: the registry's newest base tag (never an older one than FROM names).
    `to_tag` must be in the registry, or, with `local`, an image on this engine: a FROM that
    names a base nobody else can pull would break every teammate's build.
    """
    spec = base_spec(project)
    repo, old_tag, _digest = split_reference(spec.tag)
    old_tag = old_tag or ""
    if to_tag is None:
        if local:
            raise UsageError("--local needs --to TAG (the base image built on this machine)")
        to_tag = _newest_registry_base(resolver, repo)
        current = parse_base_tag(old_tag)
        newest = parse_base_tag(to_tag)
        if current is not None and newest is not None and current.key > newest.key:
            return BumpResult(old=old_tag, new=old_tag, newer_than_registry=True)
    else:
        to_tag = _bump_target(repo, to_tag)
        _check_base_exists(resolver, repo, to_tag, local=local)
    result = BumpResult(old=old_tag, new=to_tag)
    if to_tag == old_tag:
        return result
    for app in project.images:
        if app.role != ROLE_APP:
            continue
        raw = read_regular(app.dockerfile)
        df = project.dockerfile(app)
        lines = raw.split(b"\n")
        # the lines that can hold the tag: FROM lines, and ARGs before the first FROM
        candidates = [s.from_instruction for s in df.stages] + list(df.meta_args)
        touched = False
        for ins in candidates:
            for n in range(ins.line - 1, ins.end_line):
                line = lines[n]
                old_bytes = old_tag.encode()
                if old_bytes and old_bytes in line:
                    lines[n] = line.replace(old_bytes, to_tag.encode())
                    touched = True
        if touched:
            app.dockerfile.write_bytes(b"\n".join(lines))
            result.changed.append(app.rel_dockerfile(project.root))
    return result


def _newest_registry_base(resolver: Resolver, repo: str) -> str:
    from devsync.adapters.registry import RegistryNotFound

    try:
        tags = resolver.tags(repo)
    except RegistryNotFound:
        tags = []
    newest = latest_base_tag(tags)
    if newest is None:
        raise UnknownBaseError(f"{repo} has no {BASE_PREFIX}<version> tag to bump to",
                               hint="build and push one first: devsync base build --push")
    return newest


def _bump_target(repo: str, to_tag: str) -> str:
    """The tag `--to` names: `base-1.2`, or `REPO:base-1.2` of the base's own repository."""
    ref = to_tag if ":" in to_tag else f"{repo}:{to_tag}"
    try:
        to_repo, tag, digest = split_reference(ref)
    except DevsyncError as exc:
        raise UsageError(f"--to {to_tag}: {exc.message}") from None
    if to_repo != repo or not tag or digest:
        raise UsageError(f"--to {to_tag}: expected a tag of {repo}, e.g. {BASE_PREFIX}1.2")
    return tag


def _check_base_exists(resolver: Resolver, repo: str, tag: str, *, local: bool) -> None:
    ref = f"{repo}:{tag}"
    if local:
        if resolver.engine is None:
            raise EngineUnavailableError(f"--local: cannot look for {ref} without the engine")
        if resolver.local(ref) is None:
            raise UnknownBaseError(f"{ref} is not an image on this machine",
                                   hint="build it first (devsync base build), or drop --local "
                                   "to use a tag from the registry")
        return
    from devsync.adapters.registry import RegistryNotFound

    try:
        tags = resolver.tags(repo)
    except RegistryNotFound:
        tags = []
    except DevsyncError as exc:
        offline = f"to use {ref} built on this machine: devsync base bump --to {tag} --local"
        exc.hint = f"{exc.hint}; or {offline}" if exc.hint else offline
        raise
    if tag not in tags:
        newest = [v.tag for v in base_versions(tags)][-3:]
        has = f"its newest: {', '.join(newest)}" if newest else "it has no base tags"
        raise UnknownBaseError(
            f"{ref} is not in the registry ({has})",
            hint=f"push it first (devsync base build --push), or bump to the one built on "
            f"this machine: devsync base bump --to {tag} --local")


@dataclass
class AdviceVerdict:
    """The answer to "is a new base worth it?", with its reason in words a user reads."""

    worth_it: bool | None  # None: cannot tell (see `reason`)
    reason: str
    saving_bytes: int = 0  # what a new base would save each deploy, when worth it

    @property
    def next(self) -> Next | None:
        return NEW_BASE if self.worth_it else None

    def to_json(self) -> dict[str, object]:
        following = self.next
        return {"worth_it": self.worth_it, "reason": self.reason,
                "saving_bytes": self.saving_bytes,
                "next": following.command if following is not None else None}


NEW_BASE = Next("build and push a new base", "b", "devsync base build --push",
                "then devsync base bump points FROM at it")


@dataclass
class Advice:
    base_bytes: int
    app_bytes: int  # layers of the deployed app image above its base
    layers: int
    warnings: list[str]
    # the dependency installs among `app_bytes`: the layers before the app's `COPY .`, which
    # a new base would carry (the code layers from `COPY .` on ship with every deploy anyway)
    deps_bytes: int = 0
    verdict: AdviceVerdict = field(
        default_factory=lambda: AdviceVerdict(None, "can't tell: no app image to compare"))

    @property
    def drift(self) -> float:
        return self.app_bytes / self.base_bytes if self.base_bytes else 0.0

    def to_json(self) -> dict[str, object]:
        return {"base_bytes": self.base_bytes, "app_bytes": self.app_bytes,
                "deps_bytes": self.deps_bytes, "drift": self.drift, "layers": self.layers,
                "verdict": self.verdict.to_json(), "warnings": self.warnings}


@dataclass
class _AppDrift:
    """One app's deployed image measured against the base: the inputs of the verdict."""

    name: str
    deployed: str
    deps_bytes: int
    layers: int
    reshipped: int | None  # dependency bytes the last deploy did not share with the one before


def advice(project: Project, resolver: Resolver) -> Advice:
    """The base's size, the app layers grown above it, and the verdict: a new base is worth
    it when the dependency layers above the base reach `base_drift_threshold` of the base (a
    new base would then save their size on each deploy that ships them again), or when an
    image nears overlay2's depth limit (`layer_warning`)."""
    spec = base_spec(project)
    cfg = project.config
    base = resolver.remote(spec.tag)
    warnings: list[str] = []
    app_bytes = layers = 0
    base_bytes = base.size or 0 if base is not None else 0
    drifts: list[_AppDrift] = []
    unknown: list[str] = []
    for app in project.app_images:
        deployed_ref = resolver.latest_deployed(app.deployed) if app.deployed else None
        deployed = resolver.remote(deployed_ref) if deployed_ref else None
        if deployed is None or base is None or deployed_ref is None:
            unknown.append(f"{app.name} has no deployed image to measure" if base is not None
                           else f"the base {spec.tag} is not in the registry")
            continue
        n_base = len(base.diff_ids)
        app_bytes = sum(deployed.layer_sizes[n_base:])
        layers = len(deployed.diff_ids)
        if tuple(deployed.diff_ids[:n_base]) != tuple(base.diff_ids):
            unknown.append(f"{app.name}'s deployed {deployed_ref} is not built on {spec.tag}")
            continue
        drift = _app_drift(project, app, resolver, deployed_ref, deployed, base)
        drifts.append(drift)
        if layers >= cfg.layer_warning:
            warnings.append(
                f"{app.name}: {layers} layers; overlay2 refuses images deeper than "
                f"{OVERLAY2_MAX_LAYERS + 1}: squash steps or rebuild the base")
        warnings.extend(order_warnings(project, app))
    verdict = _verdict(drifts, unknown, base_tag=split_reference(spec.tag)[1] or spec.tag,
                       base_bytes=base_bytes, threshold=cfg.base_drift_threshold,
                       layer_warning=cfg.layer_warning)
    return Advice(base_bytes=base_bytes, app_bytes=app_bytes, layers=layers,
                  warnings=warnings, deps_bytes=sum(d.deps_bytes for d in drifts),
                  verdict=verdict)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _app_drift(project: Project, app: ImageSpec, resolver: Resolver, deployed_ref: str,
               deployed: ImageInfo, base: ImageInfo) -> _AppDrift:
    """The dependency layers of `deployed` above its base: those of the final stage's steps
    before its `COPY .` (all of them when it copies no `.`). Both builders write one history
    entry per instruction after FROM (a WORKDIR, a COPY or a RUN may make a layer)."""
    stage = project.dockerfile(app).target_stage(app.target)
    n_base = len(base.diff_ids)
    sizes = deployed.layer_sizes[n_base:]
    digests = deployed.layer_digests[n_base:] if deployed.layer_digests else ("",) * len(sizes)
    above = list(zip(digests, sizes, strict=True))
    deps = len(above)
    n_base_history = len(base.history)
    for i, ins in enumerate(stage.instructions):
        if ins.cmd in ("COPY", "ADD") and not ins.flag("from") \
                and any(v in (".", "./") for v in ins.value[:-1]):
            if len(deployed.history) >= n_base_history + len(stage.instructions):
                deps = deployed.layers_in(n_base_history + i) - n_base
            break
    dep_layers = above[:deps]
    reshipped = None
    previous_ref = _previous_deploy(resolver, deployed_ref)
    previous = resolver.remote(previous_ref) if previous_ref else None
    if previous is not None and previous.layer_digests and deployed.layer_digests:
        had = set(previous.layer_digests)
        reshipped = sum(size for digest, size in dep_layers if digest not in had)
    return _AppDrift(app.name, deployed_ref, sum(size for _d, size in dep_layers),
                     len(deployed.diff_ids), reshipped)


def _previous_deploy(resolver: Resolver, deployed_ref: str) -> str | None:
    """The deployed version before `deployed_ref` (`1.0.1` -> `1.0.0`), if any."""
    repo, tag, _digest = split_reference(deployed_ref)
    key = parse_version(tag or "")
    if key is None:
        return None
    try:
        tags = resolver.tags(repo)
    except DevsyncError:
        return None
    older = [t for t in tags if not is_base_tag(t)
             and (k := parse_version(t)) is not None and k < key]
    found = latest_version_tag(older)
    return f"{repo}:{found}" if found else None


def _verdict(drifts: list[_AppDrift], unknown: list[str], *, base_tag: str, base_bytes: int,
             threshold: float, layer_warning: int) -> AdviceVerdict:
    deep = [d for d in drifts if d.layers >= layer_warning]
    grown = [d for d in drifts
             if base_bytes and d.deps_bytes / base_bytes >= threshold and d.deps_bytes]
    if grown:
        saving = sum(d.deps_bytes for d in grown)
        parts = []
        for d in grown:
            part = (f"{d.name}'s dependency layers above {base_tag} have grown to "
                    f"{_mb(d.deps_bytes)} ({d.deps_bytes / base_bytes:.0%} of the base)")
            if d.reshipped:
                part += f", and its last deploy shipped {_mb(d.reshipped)} of them again"
            parts.append(part)
        every = "per deploy" if all(d.reshipped for d in grown) \
            else "per deploy that changes the dependencies"
        return AdviceVerdict(True, f"a new base would save {_mb(saving)} {every}: "
                             + "; ".join(parts), saving)
    if deep:
        d = deep[0]
        return AdviceVerdict(True, f"a new base would fold layers: {d.name} has {d.layers} "
                             f"layers, and overlay2 refuses images deeper than "
                             f"{OVERLAY2_MAX_LAYERS + 1}")
    if not drifts:
        return AdviceVerdict(None, "can't tell: " + ("; ".join(unknown) or "no app image"))
    d = max(drifts, key=lambda x: x.deps_bytes)
    share = f"{d.deps_bytes / base_bytes:.0%}" if base_bytes else "?"
    return AdviceVerdict(False, f"not worth it yet: {d.name}'s dependency layers above "
                         f"{base_tag} are {_mb(d.deps_bytes)}, {share} of the base "
                         f"({_mb(base_bytes)}); a new base pays off from {threshold:.0%} "
                         "(base_drift_threshold)")


def order_warnings(project: Project, spec: ImageSpec) -> list[str]:
    return cache_busting_order(project.dockerfile(spec), spec.rel_dockerfile(project.root))


def publish(project: Project, version: str, *, engine: Engine, resolver: Resolver,
            git: GitRepo | None, image: str | None = None, registry_cache: bool = False,
            cancel: threading.Event | None = None) -> Iterator[Event]:
    """The CI deploy step: build the app with the OCI labels and push REPO:VERSION.

    With BuildKit the image carries the inline cache metadata (`BUILDKIT_INLINE_CACHE=1`),
    so that developers reuse its layers. `registry_cache` adds a registry cache (BuildKit
    only), `REPO:buildcache`, equivalent to `type=registry,mode=max`: every intermediate
    stage is built on its own with inline cache and pushed as `REPO:buildcache-STAGE`, and
    devsync composes their records with the image's (dockerd 20.10 cannot export one).
    """
    from devsync.adapters.state import operation_lock

    if parse_version(version) is None and version != "latest":
        raise UsageError(f"{version}: not a semantic version (X.Y.Z)",
                         hint="e.g. devsync publish 1.4.2")
    specs = [project.image(image)] if image else project.app_images
    with operation_lock(project.root, "publishing"):
        for spec in specs:
            if spec.role == ROLE_BASE or not spec.deployed_repository:
                continue
            ref = f"{spec.deployed_repository}:{version}"
            plan = plan_image(project, spec, resolver, git)
            if registry_cache and plan.builder != "buildkit":
                raise UsageError(f"--registry-cache: {spec.name} builds with the classic "
                                 "builder, which has no BuildKit cache to write")
            if plan.builder == "buildkit":
                yield from _publish_buildkit(project, spec, plan, ref, version, engine=engine,
                                             resolver=resolver, git=git,
                                             registry_cache=registry_cache, cancel=cancel)
                continue
            yield PhaseStarted(spec.name, "pull")
            if plan.deployed:
                yield from pull_missing(engine, [plan.deployed], cancel)
            yield PhaseStarted(spec.name, "build", ref)
            yield from build_image(project, spec, plan, engine=engine, git=git, tag=ref,
                                   version=version, cancel=cancel)
            yield PhaseStarted(spec.name, "push", ref)
            yield from engine.push(ref, cancel=cancel)


def _publish_buildkit(project: Project, spec: ImageSpec, plan: ImagePlan, ref: str,
                      version: str, *, engine: Engine, resolver: Resolver,
                      git: GitRepo | None, registry_cache: bool,
                      cancel: threading.Event | None) -> Iterator[Event]:
    from devsync.model.registrycache import registry_cache_ref, stage_cache_ref
    from devsync.ops.buildkit import cache_stages, inline_cache_args, write_registry_cache

    repository = spec.deployed_repository or ""
    images: list[str] = []
    if registry_cache:
        stages, unnamed = cache_stages(project.dockerfile(spec), spec.target)
        if unnamed:
            yield Warning_(spec.name, "the registry cache leaves out the unnamed stage(s) "
                           f"{', '.join(str(i) for i in unnamed)}: name them (FROM ... AS "
                           "NAME) to cache them too")
        for stage in stages:
            stage_ref = stage_cache_ref(repository, stage)
            yield PhaseStarted(spec.name, "build", f"stage {stage} for the registry cache: "
                                                  f"{stage_ref}")
            yield from build_image(project, spec, plan, engine=engine, git=git, tag=stage_ref,
                                   version=version, resolver=resolver, target=stage,
                                   build_args=inline_cache_args(), cancel=cancel)
            yield PhaseStarted(spec.name, "push", stage_ref)
            yield from engine.push(stage_ref, cancel=cancel)
            images.append(stage_ref)
    yield PhaseStarted(spec.name, "build", ref)
    yield from build_image(project, spec, plan, engine=engine, git=git, tag=ref,
                           version=version, resolver=resolver, build_args=inline_cache_args(),
                           cancel=cancel)
    yield PhaseStarted(spec.name, "push", ref)
    yield from engine.push(ref, cancel=cancel)
    if registry_cache:
        cache_ref = registry_cache_ref(repository)
        yield PhaseStarted(spec.name, "push", f"registry cache {cache_ref}")
        digest = write_registry_cache(resolver, repository, [*images, ref])
        yield Pushed(cache_ref, digest=digest)


def _inline_cache(plan: ImagePlan) -> dict[str, str] | None:
    """A BuildKit image devsync pushes carries the inline cache metadata, for the next build."""
    if plan.builder != "buildkit":
        return None
    from devsync.ops.buildkit import inline_cache_args

    return inline_cache_args()
