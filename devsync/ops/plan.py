"""The build plan: for each image and each Dockerfile step, will the engine reuse a cached layer
or rebuild it, and why. Computed before anything is pulled or built.

The prediction is `devsync.model.classic` run against the cache sources a sync would use (the latest
deployed image, and the local image when there is one). The build-context "flavor" (how the
client wrote file modes and owners into the context tar) is chosen to match the deployed
image, so devsync's own builds reuse every layer the engine can. When the developer's umask
gave the checkout other modes than CI's, a "git modes" flavor sends the modes CI had.
"""

from __future__ import annotations

import re
import stat
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError
from devsync.model.classic import BuildSimulator, SimResult, SimStep, StepKind
from devsync.model.context import (
    GIT_MODES_FLAVORS,
    PLAIN_FLAVORS,
    BuildContext,
    TarFlavor,
    git_mode,
)
from devsync.model.dockerfiles import Dockerfile, cache_busting_order
from devsync.model.files import read_regular
from devsync.model.images import ImageInfo
from devsync.model.project import ROLE_BASE, ImageSpec, Project
from devsync.ops.builders import choose_builder
from devsync.ops.contexts import ContextOnDemand, copies_context, save_digests, scan_with_cache
from devsync.ops.plan_buildkit import plan_buildkit
from devsync.ops.plansteps import ImagePlan, PlanStep
from devsync.ops.reasons import (
    REVISION_LABEL,
    built_on_stage,
    changed_line,
    from_changed,
)
from devsync.ops.reasons import changed_files as _changed_files
from devsync.ops.reasons import mode_only_changes as _mode_only_changes
from devsync.ops.reasons import split_args as _split_args

if TYPE_CHECKING:
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver

_COPY_ENTRY = re.compile(
    r"#\(nop\) (COPY|ADD) (--chown=\S*?)?((?:file|dir|multi):[0-9a-f]+) in (.*) $")
_BUILD_ARGS = re.compile(r"^\|(\d+) ")

FLAVOR_TEXT = {
    TarFlavor.CLI_MODERN: "docker CLI (current): permission-only modes, owner root",
    TarFlavor.CLI_LEGACY: "docker CLI 20.10 and older: file-type bits in modes, owner root",
    TarFlavor.SDK_DEFAULT: "Docker SDK default: permission-only modes, files' own owner",
    TarFlavor.CLI_MODERN_GIT_MODES: "docker CLI (current) on a checkout with git's modes "
                                    "0644/0755, owner root",
    TarFlavor.CLI_LEGACY_GIT_MODES: "docker CLI 20.10 and older on a checkout with git's modes "
                                    "0644/0755, owner root",
    TarFlavor.SDK_DEFAULT_GIT_MODES: "Docker SDK default on a checkout with git's modes "
                                     "0644/0755, files' own owner",
}
# what plan_image tries, in order of preference (an earlier flavor wins a tie)
DEFAULT_FLAVORS = PLAIN_FLAVORS + GIT_MODES_FLAVORS


def plan_image(project: Project, spec: ImageSpec, resolver: Resolver,
               git: GitRepo | None = None, *,
               flavors: Sequence[TarFlavor] = DEFAULT_FLAVORS) -> ImagePlan:
    """Predict the build of `spec`, with the first of `flavors` that reuses the most steps.

    `flavors` defaults to every flavor devsync can send; pass one flavor to predict what that
    client would do (e.g. `(TarFlavor.CLI_MODERN,)` for a plain `docker build`).
    """
    if not flavors:
        raise ValueError("plan_image needs at least one flavor to try")
    df = project.dockerfile(spec)
    on_demand = ContextOnDemand(spec)
    if copies_context(df, spec.target):
        on_demand.scanned = scan_with_cache(spec)
    context = on_demand.as_context()
    notes: list[str] = []
    sources: list[ImageInfo] = []
    cache_from: list[str] = []
    deployed_ref = None
    deployed: ImageInfo | None = None
    if spec.deployed:
        deployed_ref = resolver.latest_deployed(spec.deployed)
        if deployed_ref is None:
            notes.append(f"no deployed image found in {spec.deployed}")
        else:
            deployed = resolver.remote(deployed_ref)
            if deployed is None:
                notes.append(f"deployed image {deployed_ref} is not in its registry")
            else:
                sources.append(deployed)
                cache_from.append(deployed_ref)
    else:
        notes.append("no deployed repository known: set images."
                     f"{spec.name}.deployed in .devsync.toml")
    notes.extend(cache_busting_order(df, spec.rel_dockerfile(project.root)))
    # (which builder, and which way for BuildKit: devsync.ops.builders)
    choice = choose_builder(project, spec, resolver, deployed=deployed, deployed_ref=deployed_ref)
    if choice.buildkit:
        # (BuildKit's own cache keys, from the deployed image's cache metadata)
        return plan_buildkit(project, spec, resolver, git, deployed_ref=deployed_ref,
                             deployed=deployed, notes=notes, on_demand=on_demand,
                             transport=choice.transport)
    notes.extend(choice.notes)  # (the classic builder on a BuildKit image: how to reuse it)
    local = resolver.local(spec.tag) if spec.tag != deployed_ref else None
    if local is not None and spec.role != ROLE_BASE:
        sources.append(local)
        cache_from.append(spec.tag)
    # Compose's cache_from: the classic builder looks cache sources up locally only
    for ref in spec.cache_from:
        extra = resolver.local(ref) if ref not in cache_from else None
        if extra is not None:
            sources.append(extra)
            cache_from.append(ref)

    def lookup(ref: str) -> ImageInfo | None:
        return resolver.base(ref)

    best: SimResult | None = None
    best_order = list(zip(sources, cache_from, strict=True))
    # The builder takes the first cache source that matches and then sticks to it, so the
    # order of --cache-from matters: the deployed image first suits a fresh machine, your
    # own last build first suits a rebuild after local edits. Try both; ties keep deployed.
    orders = [best_order]
    if len(best_order) == 2:
        orders.append(best_order[::-1])
    # with git's modes already on disk a git-modes flavor sends the very same tar as its base
    modes_differ: list[bool] = []  # (asked once, of a context that was walked)

    def git_modes_matter() -> bool:
        if not modes_differ and on_demand.scanned is not None:
            modes_differ.append(on_demand.scanned.git_modes_differ())
        return bool(modes_differ and modes_differ[0])

    for order in orders:
        for flavor in flavors:
            if flavor.git_modes and flavor.base in flavors and not git_modes_matter():
                continue
            sim = BuildSimulator(df, context=context, images=lookup,
                                 sources=[info for info, _ref in order],
                                 build_args=spec.build_args, target=spec.target,
                                 flavor=flavor, hash_after_miss=False).run()
            if best is None or sim.cached_count > best.cached_count:
                best, best_order = sim, order
            if all(step.cached for step in best.steps) or on_demand.scanned is None:
                # nothing reuses more (the rest would only hash the context again), or
                # nothing was sent from the context: how it is sent changes nothing
                break
        if best is not None and all(step.cached for step in best.steps):
            break
    assert best is not None
    cache_from = [ref for _info, ref in best_order]
    if best.flavor.git_modes and git_modes_matter():
        notes.append(_git_modes_note(context))
    steps = _plan_steps(best, spec, context, deployed, git, project,
                        {ref: info for info, ref in best_order})
    if not cache_from:
        _local_cache_caveat(steps, best, df, resolver, notes)
    if on_demand.scanned is not None:
        save_digests(on_demand.scanned)
    reuse = best.whole_reuse({ref: info for info, ref in best_order})
    pull_bytes = 0
    if deployed is not None and resolver.local(deployed_ref or "") is None:
        pull_bytes = deployed.size or 0
    plan = ImagePlan(
        name=spec.name, role=spec.role, dockerfile=spec.rel_dockerfile(project.root),
        context=spec.rel_context(project.root), tag=spec.tag, cache_from=cache_from,
        steps=steps, deployed=deployed_ref,
        deployed_digest=deployed.digest if deployed else None,
        deployed_revision=deployed.labels.get(REVISION_LABEL) if deployed else None,
        base=best.stage_bases.get(best.target_stage), flavor=best.flavor, notes=notes,
        pull_bytes=pull_bytes, scanned_context=on_demand.scanned, reuse=reuse,
        builder=choice.builder, transport=choice.transport,
    )
    return plan


def planned_context(plan: ImagePlan, spec: ImageSpec) -> BuildContext:
    """The context the plan walked, else one walked when first asked for."""
    return plan.scanned_context or ContextOnDemand(spec).as_context()


def _local_cache_caveat(steps: list[PlanStep], sim: SimResult, df: Dockerfile,
                        resolver: Resolver, notes: list[str]) -> None:
    """Without a cache source the builder falls back to its local cache: any image built
    on this engine on the same base, with the same instruction, is reused. devsync cannot
    read those images' build configs, so such steps are marked uncertain, not "rebuild"."""
    bases = sorted({ref for ref in sim.stage_bases.values() if df.names_image(ref)})
    built_on = [ref for ref in bases if resolver.built_on_locally(ref)]
    if not built_on:
        return
    notes.append(f"no cache source, but this engine holds images built on {', '.join(built_on)}"
                 " (earlier local builds): the builder's local cache may reuse some steps")
    for step in steps:
        if not step.cached and step.kind not in ("meta", "skip", StepKind.FROM):
            step.certain = False
            step.reason += "; an earlier local build on the same base may be reused"


def _plan_steps(sim: SimResult, spec: ImageSpec, context: BuildContext,
                deployed: ImageInfo | None, git: GitRepo | None,
                project: Project, sources: dict[str, ImageInfo] | None = None
                ) -> list[PlanStep]:
    out: list[PlanStep] = []
    df = project.dockerfile(spec)
    by_line = {s.instruction.line: s for s in sim.steps}
    first_miss_lines: dict[int, int] = {}  # per stage: a miss busts only its own stage
    chain = _image_stages(df, sim)
    for ins in df.instructions:
        step = by_line.get(ins.line)
        if step is None:
            # a meta ARG, or a stage after the target: the builder never runs it
            # an ARG before FROM (the builder numbers it as a step, but it makes no layer),
            # or a stage after the target (never run)
            kind = "meta" if ins.cmd == "ARG" and ins.line < df.stages[0].from_instruction.line \
                else "skip"
            out.append(PlanStep(ins.line, ins.text, True, _not_run_reason(ins.cmd), kind, -1))
            continue
        plan_step = PlanStep(ins.line, ins.text, step.cached, "", step.kind, step.stage,
                             created_by=step.created_by, certain=step.certain)
        if step.cached:
            plan_step.reason = _hit_reason(step)
        elif step.miss == "busted":
            first_miss_line = first_miss_lines.get(step.stage)
            plan_step.reason = (f"rebuilds after line {first_miss_line}" if first_miss_line
                                else built_on_stage(df, sim.stage_bases, step.stage,
                                                    first_miss_lines)
                                or "rebuilds after an earlier step")
        else:
            first_miss_lines.setdefault(step.stage, ins.line)
            on_stage = (built_on_stage(df, sim.stage_bases, step.stage, first_miss_lines)
                        if step.miss == "parent" else None)
            if on_stage:  # (FROM a stage that rebuilds: that stage is the reason)
                plan_step.reason = on_stage
            elif step.stage not in chain and step.miss in ("parent", "new-step", "command"):
                plan_step.reason = _earlier_stage_reason(df, step, sim)
            else:
                # (what the step is compared with: the cache source the builder is on,
                # e.g. your own labelled build when it is the first source)
                source = (sources or {}).get(step.counterpart_ref or "") or deployed
                _explain_miss(plan_step, step, sim, spec, context, source, git, project)
        out.append(plan_step)
    return out


def _image_stages(df: Dockerfile, sim: SimResult) -> set[int]:
    """The stages whose steps are in the built image: the target and those it is FROM."""
    chain = {sim.target_stage}
    index = sim.target_stage
    while True:
        found = df.stage_named(sim.stage_bases.get(index, ""))
        if found is None or found.index in chain or found.index >= index:
            return chain
        index = found.index
        chain.add(index)


def _earlier_stage_reason(df: Dockerfile, step: SimStep, sim: SimResult) -> str:
    """A step of a stage before the final one: no image keeps such a stage (only the final
    stage is in an image), so there is nothing of it to compare with; it is built here."""
    stage = df.stages[step.stage]
    name = f"stage {stage.name}" if stage.name else f"stage {step.stage}"
    return (f"{name} is built here: an image keeps only its final stage, so no cache source "
            "holds its steps")


def _not_run_reason(cmd: str) -> str:
    return "build argument for FROM" if cmd == "ARG" else "stage not built for this target"


def _hit_reason(step: SimStep) -> str:
    if step.kind == StepKind.FROM:
        return f"base {step.source_ref}" if step.source_ref else "from scratch"
    if step.assumed:
        return f"cached from {step.source_ref} (files from an unchanged stage)"
    return f"cached from {step.source_ref}"


def _explain_miss(out: PlanStep, step: SimStep, sim: SimResult, spec: ImageSpec,
                  context: BuildContext, deployed: ImageInfo | None, git: GitRepo | None,
                  project: Project) -> None:
    miss = step.miss
    if miss == "no-source":
        out.reason = "no cache source: no deployed image to reuse"
    elif miss == "parent":
        if deployed is not None and deployed.last_built_with_buildkit:
            out.reason = ("the deployed image was built with BuildKit; the classic builder "
                          "cannot reuse its layers")
        else:
            # the FROM line itself, when it changed since the image compared with was built
            base = sim.stage_bases.get(step.stage, "")
            out.reason = (from_changed(project.dockerfile(spec), step.stage, deployed, git,
                                       spec.rel_dockerfile(project.root))
                          or f"base image changed: {base} is not the base the deployed image "
                          "was built on")
    elif miss == "new-step":
        out.reason = "new step: the deployed image has nothing here"
    elif miss == "unknown":
        if step.kind == StepKind.ADD_URL:
            out.reason = "ADD from a URL: fetched again on every build"
        elif step.kind == StepKind.COPY_STAGE:
            out.reason = (f"copies files that stage {step.copy_from} builds, and that stage "
                          "rebuilds: the engine reuses this layer only if the stage produces "
                          "byte-identical files, which cannot be known before building")
        else:
            out.reason = "cannot be predicted"
    else:
        _explain_changed(out, step, sim, context, deployed, git, spec, project)


def _explain_changed(out: PlanStep, step: SimStep, sim: SimResult, context: BuildContext,
                     deployed: ImageInfo | None, git: GitRepo | None, spec: ImageSpec,
                     project: Project) -> None:
    if step.counterpart is not None and step.counterpart.is_buildkit:
        out.reason = ("the deployed image's steps from here were built with BuildKit; the "
                      "Engine API's classic builder never matches them (build it in CI with "
                      "DOCKER_BUILDKIT=0)")
        return
    theirs = step.counterpart.created_by if step.counterpart else ""
    ours = step.created_by or ""
    ours_copy = _COPY_ENTRY.search(ours)
    theirs_copy = _COPY_ENTRY.search(theirs)
    if ours_copy and theirs_copy and ours_copy.group(1) == theirs_copy.group(1) \
            and ours_copy.group(4) == theirs_copy.group(4) \
            and ours_copy.group(2) == theirs_copy.group(2):
        _explain_files(out, step, sim, context, deployed, git, spec, project,
                       theirs_copy.group(3))
        return
    if _BUILD_ARGS.match(ours) or _BUILD_ARGS.match(theirs):
        ours_args, ours_cmd = _split_args(ours)
        theirs_args, theirs_cmd = _split_args(theirs)
        if ours_cmd == theirs_cmd and ours_args != theirs_args:
            changed = sorted(set(ours_args) ^ set(theirs_args))
            names = sorted({c.split("=", 1)[0] for c in changed})
            detail = ", ".join(
                f"{n}: {theirs_args.get(n, '(unset)')} -> {ours_args.get(n, '(unset)')}"
                for n in names)
            out.reason = f"build argument changed ({detail})"
            return
    before, after = _readable(theirs), _readable(ours)
    out.reason = changed_line(before, after, deployed) if before and after \
        else "instruction changed"



def _readable(created_by: str) -> str:
    """A history entry as a person reads it: `RUN apk add nginx`, `COPY (files) /etc/php7`
    (the builder's content hash says nothing to a reader)."""
    text = created_by
    if "#(nop) " in text:
        text = text.split("#(nop) ", 1)[1].strip()
        copy = re.match(r"^(COPY|ADD) (--chown=\S+ )?(?:file|dir|multi):[0-9a-f]+ in (.*)$",
                        text)
        if copy:
            text = f"{copy.group(1)} {copy.group(2) or ''}(files) {copy.group(3)}".strip()
    else:
        _args, cmd = _split_args(text)
        text = cmd
        for prefix in ("/bin/sh -c ",):
            if text.startswith(prefix):
                text = "RUN " + text[len(prefix):]
    return text


def _git_modes_note(context: BuildContext) -> str:
    return (f"files here have modes {_local_modes(context)}; devsync sends git's modes "
            "0644/0755 as CI's checkout had, so the deployed layers are reused")


def _local_modes(context: BuildContext, rels: Sequence[str] | None = None) -> str:
    """`0664/0775 (umask 002?)`: the commonest modes that differ from git's, and the umask
    that would explain them."""
    files: Counter[int] = Counter()
    dirs: Counter[int] = Counter()
    entries = context.entries if rels is None else [e for r in rels
                                                    if (e := context.entry(r)) is not None]
    for e in entries:
        perm = stat.S_IMODE(e.mode)
        if perm == git_mode(e.mode):
            continue
        if stat.S_ISREG(e.mode):
            files[perm] += 1
        elif stat.S_ISDIR(e.mode):
            dirs[perm] += 1
    shown = [f"{c.most_common(1)[0][0]:04o}" for c in (files, dirs) if c]
    umasks = {0o777 & ~m for m in dirs} | {0o666 & ~m for m in files if not m & 0o111}
    guess = f" (umask {umasks.pop():03o}?)" if len(umasks) == 1 else ""
    return "/".join(shown) + guess


def _explain_files(out: PlanStep, step: SimStep, sim: SimResult, context: BuildContext,
                   deployed: ImageInfo | None, git: GitRepo | None, spec: ImageSpec,
                   project: Project, their_hash: str) -> None:
    try:
        files = context.files_under(list(step.sources))
    except DevsyncError:
        files = []
    prefix = spec.rel_context(project.root)
    repo_files = [f if prefix in ("", ".") else f"{prefix}/{f}" for f in files]
    changed: list[str] = []
    commits: list[dict[str, str]] = []
    uncommitted: list[str] = []
    revision = deployed.labels.get(REVISION_LABEL) if deployed else None
    if git is not None and repo_files:
        changed, commits, uncommitted = _changed_files(git, repo_files, revision)
    # same files, other metadata? (the context flavor that would have matched; the plain
    # flavors first, so git's modes are only blamed when nothing else explains the miss).
    # Not when a file differs from the deployed revision's, edits aside: then no flavor
    # can match, and hashing the context once per flavor is the plan's largest cost.
    differs_from_revision = any(path not in uncommitted for path in changed)
    if not differs_from_revision and git is not None and revision:
        # nor when an edit changed what a file holds (or added one): a sender's headers
        # change no content (only a chmod or a touch can leave a flavor to match)
        differs_from_revision = _content_edited(git, project, revision, uncommitted)
    for flavor in () if differs_from_revision else DEFAULT_FLAVORS:
        if flavor is sim.flavor:
            continue
        try:
            alt = context.source_hash(list(step.sources), flavor)
        except DevsyncError:
            alt = None
        if alt != their_hash:
            continue
        if flavor.git_modes and not sim.flavor.git_modes:
            client = ("" if flavor.base is sim.flavor.base
                      else f", written by the {FLAVOR_TEXT[flavor.base]}")
            out.reason = (f"same files, different modes: {_local_modes(context, files)} here, "
                          f"the deployed image's context had git's 0644/0755 (CI's checkout"
                          f"{client}); devsync sync sends git's modes and reuses the deployed "
                          "layers")
        else:
            out.reason = (f"same files, different file metadata: the deployed image's context "
                          f"was written by the {FLAVOR_TEXT[flavor]}")
        return
    out.files = changed[:50]
    out.commits = commits[:20]
    what = " ".join(step.sources)
    if changed:
        shown = ", ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3
                                          else "")
        if commits:
            c = commits[0]
            out.reason = f"files changed: {shown} in {c['short']} by {c['author']}: {c['summary']}"
        elif uncommitted:
            mode_only = _mode_only_changes(git, context, uncommitted, prefix) if git else []
            if mode_only and len(mode_only) == len(changed):
                out.reason = ("file modes changed (content identical): " + ", ".join(mode_only)
                              + "; chmod them back or commit the change")
            else:
                out.reason = f"files changed: {shown} (uncommitted)"
        else:
            out.reason = f"files changed: {shown}"
        return
    # with git's modes sent, the local modes cannot be what differs
    modes = "" if sim.flavor.git_modes else _mode_oddities(context, files)
    if modes:
        out.reason = (f"files under {what} differ from the deployed build; modes here: {modes} "
                      "(CI usually checks out 0644/0755: check your umask, or chmod)")
        return
    image = ("the deployed image" if deployed is None or deployed.origin == "registry"
             else deployed.reference)
    if revision is None:
        out.reason = (f"files under {what} differ from {image} (it carries no "
                      f"{REVISION_LABEL} label, so devsync cannot say which)")
    else:
        out.reason = f"files under {what} differ from {image} (revision {revision[:8]})"


def _content_edited(git: GitRepo, project: Project, revision: str, paths: list[str],
                    at_most: int = 20) -> bool:
    """Whether one of the first `at_most` edited files holds other bytes than at `revision`
    (or is not there at all)."""
    for path in paths[:at_most]:
        try:
            now = read_regular(project.root / path)
        except OSError:
            continue
        try:
            then = git.file_at(revision, path)
        except DevsyncError:
            return False
        if then != now:
            return True
    return False




def _mode_oddities(context: BuildContext, files: list[str]) -> str:
    odd = []
    for rel in files[:2000]:
        entry = context.entry(rel) if hasattr(context, "entry") else None
        if entry is None:
            continue
        perm = entry.mode & 0o7777
        if entry.kind == "file" and perm not in (0o644, 0o755):
            odd.append(f"{rel} {perm:04o}")
        if len(odd) >= 3:
            break
    return ", ".join(odd)
