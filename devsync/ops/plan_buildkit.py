"""The plan of a BuildKit build: which vertices dockerd's BuildKit will load from the deployed
image's cache metadata, and why the others run (devsync.model.buildkit does the prediction).

The same `ImagePlan` and `PlanStep`s as the classic plan, with `builder = "buildkit"`: one step
per Dockerfile instruction; the instructions that make no vertex (ENV, ARG, LABEL, CMD, ...)
keep their place and say what the vertex before them said. The cache sources are the deployed
image (its inline cache) and, when the registry has one, the repository's registry cache
(`REPO:buildcache`, `devsync publish --registry-cache`). Only their manifests and configs are
fetched: BuildKit itself fetches the layers it reuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError
from devsync.model.buildkit import (
    BKStep,
    BuildKitPredictor,
    CacheGraph,
    CacheGraphError,
    CacheSource,
    SelectionError,
)
from devsync.model.context import TarFlavor
from devsync.model.dockerfiles import Dockerfile, parse_text
from devsync.model.images import ImageInfo
from devsync.model.project import ImageSpec, Project
from devsync.model.registrycache import registry_cache_ref
from devsync.model.versions import split_reference
from devsync.ops.contexts import ContextOnDemand, copies_context, save_digests, scan_with_cache
from devsync.ops.plansteps import ImagePlan, PlanStep
from devsync.ops.reasons import (
    REVISION_LABEL,
    changed_files,
    changed_line,
    from_changed,
    mode_only_changes,
    split_args,
)

if TYPE_CHECKING:
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver

INLINE_FIX = ("build it in CI with BuildKit's inline cache: `--build-arg BUILDKIT_INLINE_CACHE=1` "
              "(docker build), `cache-to: type=inline` (docker/build-push-action), or push a "
              "`type=registry,mode=max` cache")


def choose_transport(project: Project) -> str:
    """"cli" when a docker CLI with a BuildKit client is there (its context matches a CI's
    `docker build`), else "api"; a plan's own way is devsync.ops.builders' (`transport`)."""
    from devsync.adapters.engine import find_buildkit_cli

    return "cli" if find_buildkit_cli(project.config.docker_cli).cli is not None else "api"


def plan_buildkit(project: Project, spec: ImageSpec, resolver: Resolver, git: GitRepo | None, *,
                  deployed_ref: str | None, deployed: ImageInfo | None,
                  notes: list[str], transport: str | None = None,
                  on_demand: ContextOnDemand | None = None) -> ImagePlan:
    """`on_demand`: the context as the caller already walked it, if it did."""
    df = project.dockerfile(spec)
    if on_demand is None:
        on_demand = ContextOnDemand(spec)
        if copies_context(df, spec.target):
            on_demand.scanned = scan_with_cache(spec)
    transport = transport or choose_transport(project)
    cache_from: list[str] = []
    graph: CacheGraph | None = None
    if deployed is not None and deployed_ref:
        cache_from.append(deployed_ref)
        if not deployed.last_built_with_buildkit:
            notes.append(f"{deployed_ref} was built by the classic builder: BuildKit imports no "
                         f"cache from it, so every step runs. Either {INLINE_FIX}, or set "
                         'builder = "classic" in .devsync.toml while CI builds that way.')
        elif not deployed.inline_cache:
            notes.append(f"{deployed_ref} carries no BuildKit cache metadata, so BuildKit "
                         f"reuses nothing from it: {INLINE_FIX}.")
        else:
            try:
                graph = CacheGraph.from_inline(deployed.inline_cache, len(deployed.diff_ids))
            except CacheGraphError as exc:
                notes.append(f"{deployed_ref}: its BuildKit cache metadata cannot be read ({exc});"
                             " BuildKit would skip it too")
        repo = split_reference(deployed_ref)[0]
        graph = _with_registry_cache(resolver, registry_cache_ref(repo), graph, cache_from,
                                     notes)
    source = CacheSource(cache_from[0], graph, deployed) if cache_from else None
    then = _dockerfile_at_revision(spec, project, deployed, git)
    predictor = BuildKitPredictor(df, context=on_demand.as_context(), images=resolver.base,
                                  source=source, build_args=spec.build_args,
                                  target=spec.target, transport=transport,
                                  same_stages=_same_stages(df, spec, then),
                                  revision_stage=_revision_stage(df, spec, then))
    try:
        steps = predictor.run()
    except SelectionError as exc:
        raise DevsyncError(f"{spec.rel_dockerfile(project.root)}: {exc}") from None
    if on_demand.scanned is not None:
        save_digests(on_demand.scanned)
    plan_steps = [_plan_step(s, spec, project, deployed, git, on_demand) for s in steps]
    if any(not s.certain for s in plan_steps):
        notes.append("steps marked uncertain depend on what devsync cannot see before "
                     "building (see each step)")
    # (the deployed image's layers: another stage's cached records are in another chain)
    final = df.target_stage(spec.target).index
    depth = max((s.depth for s in steps if s.cached and s.vertex and s.stage == final),
                default=0)
    pull_bytes = sum(deployed.layer_sizes[:depth]) if deployed is not None else 0
    return ImagePlan(
        name=spec.name, role=spec.role, dockerfile=spec.rel_dockerfile(project.root),
        context=spec.rel_context(project.root), tag=spec.tag, cache_from=cache_from,
        steps=plan_steps, deployed=deployed_ref,
        deployed_digest=deployed.digest if deployed else None,
        deployed_revision=deployed.labels.get(REVISION_LABEL) if deployed else None,
        base=predictor.base_ref or None, flavor=TarFlavor.CLI_MODERN, notes=notes,
        pull_bytes=pull_bytes, builder="buildkit", transport=transport,
        scanned_context=on_demand.scanned, reuse=None,
    )


def _dockerfile_at_revision(spec: ImageSpec, project: Project, deployed: ImageInfo | None,
                            git: GitRepo | None) -> Dockerfile | None:
    """The Dockerfile as it was at the deployed image's revision (None: git cannot tell)."""
    revision = deployed.labels.get(REVISION_LABEL) if deployed is not None else None
    if git is None or not revision:
        return None
    try:
        raw = git.file_at(revision, str(spec.dockerfile))
    except Exception:  # (no answer from git: vouch for nothing)
        return None
    if raw is None:
        return None
    try:
        return parse_text(raw.decode("utf-8"), Path(spec.rel_dockerfile(project.root)))
    except Exception:  # (the old Dockerfile does not parse: vouch for nothing)
        return None


def _same_stages(df: Dockerfile, spec: ImageSpec, then: Dockerfile | None) -> frozenset[int]:
    """The stages other than the target whose ops are the ones CI built: their text is the
    same in the Dockerfile at the deployed revision, and they declare no ARG (a build
    argument CI passed would be in their keys, unseen). No image history records such a
    stage, so this is what vouches for its RUN and WORKDIR keys."""
    if then is None:
        return frozenset()
    target = df.target_stage(spec.target).index
    if [i.text for i in then.meta_args] != [i.text for i in df.meta_args]:
        return frozenset()
    out = set()
    for stage in df.stages:
        if stage.index == target or stage.index >= len(then.stages):
            continue
        old = then.stages[stage.index]
        texts = [i.text for i in [stage.from_instruction, *stage.instructions]]
        if texts == [i.text for i in [old.from_instruction, *old.instructions]] and \
                not any(i.cmd == "ARG" for i in stage.instructions):
            out.add(stage.index)
    return frozenset(out)


def _revision_stage(df: Dockerfile, spec: ImageSpec,
                    then: Dockerfile | None) -> tuple[str, ...] | None:
    """The target stage's lines at the deployed revision: they vouch for the flags that the
    image's history leaves out (RUN --mount, COPY --chown)."""
    target = df.target_stage(spec.target).index
    if then is None or target >= len(then.stages):
        return None
    return tuple(i.text for i in then.stages[target].instructions)


def _with_registry_cache(resolver: Resolver, ref: str, graph: CacheGraph | None,
                         cache_from: list[str], notes: list[str]) -> CacheGraph | None:
    try:
        config = resolver.registry_cache(ref)
    except DevsyncError:
        return graph
    if config is None:
        return graph
    try:
        extra = CacheGraph.from_cache_config(config)
    except CacheGraphError as exc:
        notes.append(f"{ref}: this registry cache cannot be read ({exc}); BuildKit would "
                     "skip it too")
        return graph
    cache_from.append(ref)
    return extra if graph is None else graph.merged(extra)


def _plan_step(step: BKStep, spec: ImageSpec, project: Project, deployed: ImageInfo | None,
               git: GitRepo | None, on_demand: ContextOnDemand) -> PlanStep:
    ins = step.instruction
    out = PlanStep(ins.line, ins.text, step.cached, "", step.kind, step.stage,
                   created_by=step.ours or None, certain=step.certain)
    if step.kind == "meta":
        out.reason = "build argument for FROM"
    elif step.kind == "skip":
        out.reason = "stage not built for this target"
    elif step.kind == "from":
        out.reason = f"base {step.source_ref}" if step.source_ref else "from scratch"
    elif not step.vertex:
        out.reason = (f"rebuilds after line {step.detail}" if not step.cached
                      else "image config only: no build step")
    elif step.cached:
        out.reason = f"cached from {step.source_ref}"
    else:
        out.reason = _miss_reason(step, spec, project, deployed, git, on_demand, out)
    if not step.certain and step.vertex:
        out.reason += _uncertain(step)
    return out


def _uncertain(step: BKStep) -> str:
    unvouched = ("the deployed image's history leaves flags out, and the Dockerfile at its "
                 "revision cannot vouch for them: no revision label, other lines above, or a "
                 "flag whose key is more than its text, like a bind mount or a variable")
    if step.detail.startswith("RUN --"):
        return f" (uncertain: {step.detail} is part of the cache key; {unvouched})"
    if step.detail == "--chown/--chmod":
        return f" (uncertain: --chown/--chmod is part of the cache key; {unvouched})"
    if step.detail == "after uncertain":
        return " (uncertain: its key hangs on an uncertain step before it)"
    if step.miss in ("stage", "unknown", "busted", "stage-files"):
        return ""
    return " (uncertain: the cache source has several records here)"


def _miss_reason(step: BKStep, spec: ImageSpec, project: Project, deployed: ImageInfo | None,
                 git: GitRepo | None, on_demand: ContextOnDemand, out: PlanStep) -> str:
    miss = step.miss
    if miss == "busted":
        return f"rebuilds after line {step.detail}"
    if miss == "no-metadata":
        if deployed is None:
            return "no cache source: no deployed image to reuse"
        if not deployed.last_built_with_buildkit:
            return ("the deployed image was built by the classic builder: BuildKit imports "
                    "no cache from it")
        return f"the deployed image carries no BuildKit cache metadata: {INLINE_FIX}"
    if miss == "base":
        df = project.dockerfile(spec)
        return (from_changed(df, step.stage, deployed, git, spec.rel_dockerfile(project.root))
                or "base image changed: the deployed image was built on other base layers")
    if miss == "base-env":
        return (f"the base's environment is not the one the deployed image was built on "
                f"({step.detail} differ): its layers are the same, but a RUN's key takes the "
                "environment it runs with")
    if miss == "flags":
        return (changed_line(step.theirs_line, step.instruction.text, deployed)
                + " (its flags are part of BuildKit's key for it)")
    if miss == "new-step":
        return "new step: the deployed image has nothing here"
    if miss == "transport":
        return ("built through the Engine API (no docker CLI with BuildKit here), BuildKit "
                "hashes the context root as it unpacks it, never as CI's client sent it: a "
                "`COPY` of the whole context does not match. Install the docker CLI or set "
                "docker_cli in .devsync.toml to reuse it")
    if miss == "no-layers":
        return ("the deployed image's cache record for this step has no layers (it was built "
                "from an imported cache, whose records BuildKit re-exports without them; "
                "moby/buildkit#1981): it runs again. In CI, push a `type=registry,mode=max` "
                "cache rather than chaining inline caches")
    if miss == "stage":
        return (f"{step.detail} is built here: an inline cache holds only the final stage's "
                "results, and whether BuildKit needs this stage depends on files it produces")
    if miss == "stage-files":
        return (f"copies what stage {step.instruction.flag('from')} builds, and that stage's "
                "cache key differs from CI's (or its records are not in the cache): BuildKit "
                "builds it and reuses this step only if the files copied come out "
                "byte-identical, which is known only then")
    if miss == "unknown":
        if step.kind == "add-url":
            return "ADD from a URL: its content is known only once fetched"
        if step.kind == "copy-stage":
            return ("copies files another stage or image builds: reused only if they are "
                    "byte-identical, which cannot be known before building")
        return step.detail or "cannot be predicted"
    if miss == "files":
        return _files_reason(step, spec, project, deployed, git, on_demand, out)
    return _changed_reason(step, deployed)


def _changed_reason(step: BKStep, deployed: ImageInfo | None) -> str:
    theirs, ours = step.theirs, step.ours
    if not theirs:
        return "new step: the deployed image has nothing here"
    if theirs == ours:
        return ("same instruction, but what it runs with changed before it (ENV, USER or "
                "WORKDIR): BuildKit's key for it differs")
    if ours.startswith("RUN ") and theirs.startswith("RUN "):
        ours_args, ours_cmd = split_args(ours[4:])
        theirs_args, theirs_cmd = split_args(theirs[4:])
        if ours_cmd == theirs_cmd and ours_args != theirs_args:
            names = sorted({n for n in set(ours_args) | set(theirs_args)
                            if ours_args.get(n) != theirs_args.get(n)})
            detail = ", ".join(f"{n}: {theirs_args.get(n, '(unset)')} -> "
                               f"{ours_args.get(n, '(unset)')}" for n in names)
            return f"build argument changed ({detail})"
        theirs, ours = "RUN " + theirs_cmd, "RUN " + ours_cmd
    return changed_line(theirs, ours, deployed)


def _files_reason(step: BKStep, spec: ImageSpec, project: Project, deployed: ImageInfo | None,
                  git: GitRepo | None, on_demand: ContextOnDemand, out: PlanStep) -> str:
    context = on_demand.as_context()
    try:
        files = context.files_under(list(step.sources))
    except DevsyncError:
        files = []
    prefix = spec.rel_context(project.root)
    repo_files = [f if prefix in ("", ".") else f"{prefix}/{f}" for f in files]
    revision = deployed.labels.get(REVISION_LABEL) if deployed else None
    changed: list[str] = []
    commits: list[dict[str, str]] = []
    uncommitted: list[str] = []
    if git is not None and repo_files:
        changed, commits, uncommitted = changed_files(git, repo_files, revision)
    out.files, out.commits = changed[:50], commits[:20]
    what = " ".join(step.sources)
    if changed:
        shown = ", ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3
                                          else "")
        if commits:
            c = commits[0]
            return f"files changed: {shown} in {c['short']} by {c['author']}: {c['summary']}"
        if uncommitted and git is not None:
            mode_only = mode_only_changes(git, context, uncommitted, prefix)
            if mode_only and len(mode_only) == len(changed):
                return ("file modes changed (content identical): " + ", ".join(mode_only)
                        + "; BuildKit's content key includes the mode: chmod them back or "
                        "commit the change")
            return f"files changed: {shown} (uncommitted)"
        return f"files changed: {shown}"
    if revision is None:
        return (f"files under {what} differ from the deployed build (its content key; it "
                f"carries no {REVISION_LABEL} label, so devsync cannot say which)")
    return (f"files under {what} differ from the deployed build (revision {revision[:8]}): "
            "content or modes (BuildKit's content key counts both, never the owner)")
