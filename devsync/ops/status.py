"""Each image's status: the facts (local and deployed image, the plan, commits since the
image's revision) and the one verdict made of them (`devsync.ops.verdict`), for `status`,
the TUI and the state that `--check` reads.

Only the stage an image is built from (the final one, or the target) is compared with an
image: earlier stages are not in it, and count through what their `COPY --from` brings in,
i.e. through their own inputs (their Dockerfile lines and the files they copy).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devsync.errors import DevsyncError
from devsync.model.classic import BuildSimulator, SimResult, SimStep, StepKind
from devsync.model.files import read_regular
from devsync.model.project import ImageSpec, Project
from devsync.ops.plan import REVISION_LABEL, ImagePlan, plan_image, planned_context
from devsync.ops.verdict import (
    GIT_PULL,
    IN_SYNC,
    MISSING,
    ROLE_BASE,
    STALE,
    SYNC,
    UNKNOWN,
    Verdict,
    culprit,
)

if TYPE_CHECKING:
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver
    from devsync.model.context import BuildContext
    from devsync.model.dockerfiles import Dockerfile
    from devsync.model.images import ImageInfo

__all__ = ["IN_SYNC", "MISSING", "STALE", "UNKNOWN", "ImageStatus", "SyncRecord",
           "collect_statuses", "context_pathspecs", "image_status", "watched_inputs"]


@dataclass
class ImageStatus:
    name: str
    role: str
    tag: str
    verdict: Verdict = field(default_factory=lambda: Verdict(UNKNOWN, ""))
    local_id: str | None = None
    local_revision: str | None = None
    deployed: str | None = None
    deployed_digest: str | None = None
    dockerfile: str = ""
    plan: ImagePlan | None = None
    commits: list[dict[str, str]] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)  # inputs whose change makes it stale
    # the image's inputs (Dockerfile and build context, .dockerignore honoured) that differ
    # from HEAD: what a build would pick up that no commit explains
    uncommitted: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    # for a base: what a sync does about it: "pull" the registry's (it is what this checkout
    # builds), "build" it here (neither the local nor the registry's is), or "" (nothing)
    next_sync: str = ""
    services: list[str] = field(default_factory=list)  # the Docker Compose services it serves
    compose_tags: list[str] = field(default_factory=list)  # the names Compose runs it by

    @property
    def state(self) -> str:
        return self.verdict.state

    @property
    def reason(self) -> str:
        return self.verdict.cause

    @property
    def action(self) -> str:
        return self.verdict.action

    @property
    def line(self) -> str:
        """The one line `--check` prints ("" when nothing needs doing)."""
        return self.verdict.line(self.name)

    @property
    def deployed_tag(self) -> str | None:
        """The deployed image in a word: its tag, else its digest's first 12 characters."""
        if not self.deployed:
            return None
        from devsync.model.versions import split_reference

        _repo, tag, digest = split_reference(self.deployed)
        return tag or (digest or self.deployed)[:12]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "state": self.state,
            "cause": self.verdict.cause, "action": self.verdict.action,
            "reason": self.verdict.cause,  # (the cause, under its older name)
            "tag": self.tag, "local_id": self.local_id, "local_revision": self.local_revision,
            "deployed": self.deployed, "deployed_digest": self.deployed_digest,
            "dockerfile": self.dockerfile, "commits": self.commits,
            "uncommitted": self.uncommitted, "untracked": self.untracked,
            "services": self.services, "compose_tags": self.compose_tags,
            # (how a sync builds it, as `plan --json` says: None when no plan was made)
            "builder": self.plan.builder if self.plan else None,
            "transport": self.plan.transport if self.plan else None,
        }


@dataclass(frozen=True)
class SyncRecord:
    """What the last sync of an image recorded: the deployed image it built on, HEAD then,
    and the digests of its watched inputs as that build read them."""

    deployed: str | None = None
    revision: str | None = None
    watched: dict[str, str] = field(default_factory=dict)


def sync_records(project: Project) -> dict[str, SyncRecord]:
    from devsync.adapters import state as state_mod

    loaded = state_mod.load(project.root)
    return {name: SyncRecord(rec.synced_deployed, rec.synced_revision, dict(rec.watched))
            for name, rec in loaded.state.images.items() if rec.synced_at}


def collect_statuses(project: Project, resolver: Resolver, git: GitRepo | None, *,
                     engine_problem: str | None = None) -> list[ImageStatus]:
    """Every image's status; one image that cannot be judged is that image's `unknown`
    (`engine_problem`: why there is no engine, when there is none)."""
    records = sync_records(project)
    return [image_status(project, spec, resolver, git, record=records.get(spec.name),
                         engine_problem=engine_problem)
            for spec in project.images]


def image_status(project: Project, spec: ImageSpec, resolver: Resolver,
                 git: GitRepo | None, *, record: SyncRecord | None = None,
                 engine_problem: str | None = None) -> ImageStatus:
    status = ImageStatus(name=spec.name, role=spec.role, tag=spec.tag,
                         dockerfile=spec.rel_dockerfile(project.root),
                         services=list(spec.compose_services),
                         compose_tags=list(spec.compose_tags))
    if resolver.engine is None:
        # without the engine nothing says what is here: never "missing"
        status.watched = watched_inputs(project, spec)
        status.verdict = Verdict(UNKNOWN, "the Docker engine cannot be reached"
                                 + (f": {engine_problem}" if engine_problem else ""))
        with contextlib.suppress(DevsyncError):
            status.plan = plan_image(project, spec, resolver, git)
            status.deployed = status.plan.deployed
            status.deployed_digest = status.plan.deployed_digest
        return status
    try:
        status.watched = watched_inputs(project, spec)
        judge = _Judge(project, spec, resolver, git, record or SyncRecord(), status)
        status.verdict = judge.base() if spec.role == ROLE_BASE else judge.app()
    except DevsyncError as exc:
        status.verdict = Verdict(UNKNOWN, exc.message)
    return status


def behind_cause(project: Project, deployed: str, revision: str) -> str | None:
    """"1.0.2 was built from 1a2b3c4, which this checkout does not have" when HEAD's history
    lacks the commit the deployed image was built from (None when it has it, or when git
    cannot tell, e.g. in a shallow clone)."""
    from devsync.adapters.gitquick import head_contains
    from devsync.model.versions import split_reference

    if head_contains(project.root, revision) is not False:
        return None
    _repo, tag, _digest = split_reference(deployed)
    return (f"{tag or deployed} was built from {revision[:7]}, which this checkout does not "
            "have")


def base_next_sync(project: Project, spec: ImageSpec, resolver: Resolver,
                   git: GitRepo | None) -> str:
    """What a sync does about a base: "pull", "build" (here) or "" (nothing)."""
    status = image_status(project, spec, resolver, git,
                          record=sync_records(project).get(spec.name))
    return status.next_sync


class _Judge:
    """The facts of one image, gathered once, and the verdict made of them."""

    def __init__(self, project: Project, spec: ImageSpec, resolver: Resolver,
                 git: GitRepo | None, record: SyncRecord, status: ImageStatus) -> None:
        self.project, self.spec, self.resolver, self.git = project, spec, resolver, git
        self.record, self.status = record, status
        self.df: Dockerfile = project.dockerfile(spec)
        self.prefix = spec.rel_context(project.root)

    # -- app images -----------------------------------------------------------------------

    def app(self) -> Verdict:
        status, spec, git = self.status, self.spec, self.git
        plan = self._plan()
        local = self.resolver.local(spec.tag)
        behind = self._behind(plan)
        if local is None:
            if behind:
                return behind
            return Verdict(MISSING, f"{spec.tag} is not built here yet", SYNC)
        status.local_id = local.image_id
        status.local_revision = local.labels.get(REVISION_LABEL)
        context = self._context(plan)
        if git is not None and status.local_revision:
            status.commits = _commits_since(git, status.local_revision, self._inputs())
        if git is not None:
            _working_changes(status, self.project, spec, git, context)
        if behind:
            return behind
        if plan.builder == "buildkit" and local.last_built_with_buildkit:
            return self._buildkit_app(plan, local, context)
        sim = self._simulate([local], context, plan)
        miss = sim.first_miss
        if miss is None:
            if plan.deployed and self.record.deployed and self.record.deployed != plan.deployed:
                return Verdict(STALE, f"{plan.deployed} is deployed since your last sync", SYNC)
            return Verdict(IN_SYNC, f"{spec.tag} matches this checkout")
        revision = status.local_revision or self.record.revision
        return Verdict(STALE, self._cause(miss, sim, context, revision, spec.tag), SYNC)

    def _buildkit_app(self, plan: ImagePlan, local: ImageInfo, context: BuildContext) -> Verdict:
        """A BuildKit image: its history names no content, so the digest of the inputs it
        was built from (a label devsync stamps, devsync.ops.bkinputs) is compared."""
        from devsync.ops.bkinputs import INPUTS_LABEL, copied_files, inputs_digest

        spec = self.spec
        stamped = local.labels.get(INPUTS_LABEL)
        base = self.resolver.base(plan.base) if plan.base and self.df.names_image(plan.base) \
            else None
        if base is not None and tuple(local.diff_ids[:len(base.diff_ids)]) != base.diff_ids:
            return Verdict(STALE, f"its base {plan.base} is not the one {spec.tag} was built "
                           "on", SYNC)
        if stamped and stamped == inputs_digest(spec, self.df, context):
            if plan.deployed and self.record.deployed and self.record.deployed != plan.deployed:
                return Verdict(STALE, f"{plan.deployed} is deployed since your last sync", SYNC)
            return Verdict(IN_SYNC, f"{spec.tag} matches this checkout")
        if not stamped:
            return Verdict(STALE, f"{spec.tag} was not built by devsync here: what it was "
                           "built from is unknown", SYNC)
        revision = self.status.local_revision or self.record.revision
        paths = [self.status.dockerfile,
                 *(self._repo_path(f) for f in copied_files(self.df, context))]
        found = None
        if self.git is not None:
            baselines = self.record.watched if self.record.revision == revision else None
            found = culprit(self.git, revision, paths, baselines=baselines,
                            digest=self._digest)
        return Verdict(STALE, found or f"the files {spec.tag} was built from differ from this "
                       "checkout", SYNC)

    def _behind(self, plan: ImagePlan) -> Verdict | None:
        """The deployed image was built from a commit this checkout does not have."""
        if not plan.deployed or not plan.deployed_revision or self.git is None:
            return None
        cause = behind_cause(self.project, plan.deployed, plan.deployed_revision)
        return Verdict(STALE, cause, GIT_PULL) if cause else None

    # -- base images ----------------------------------------------------------------------

    def base(self) -> Verdict:
        """A base is in sync when the local image is what this checkout's base Dockerfile
        builds. A sync pulls the registry's when that one is (else it builds it here, and
        only CI or the base's owner publishes a new one)."""
        status, spec = self.status, self.spec
        plan = self._plan()
        local = self.resolver.local(spec.tag)
        context = self._context(plan)
        deployed = self.resolver.remote(plan.deployed) if plan.deployed else None
        if plan.builder == "buildkit":
            return self._buildkit_base(local, deployed, context)
        if local is not None:
            status.local_id = local.image_id
            status.local_revision = local.labels.get(REVISION_LABEL)
            sim = self._simulate([local], context, plan,
                                 self._revision(local))
            if sim.first_miss is None:
                if deployed is not None and local.digest and plan.deployed_digest \
                        and not local.digest.endswith(plan.deployed_digest.split("@")[-1]) \
                        and local.image_id != deployed.image_id:
                    return Verdict(IN_SYNC, f"{spec.tag} is built here from "
                                   f"{status.dockerfile}, as this checkout has it")
                return Verdict(IN_SYNC, f"{spec.tag} is up to date")
        if deployed is not None:
            sim_deployed = self._simulate([deployed], context, plan, self._revision(deployed))
            if sim_deployed.first_miss is None:
                status.next_sync = "pull"
                if local is None:
                    return Verdict(MISSING, f"{spec.tag} is not pulled yet", SYNC)
                return Verdict(STALE, f"the registry's {spec.tag} differs from your local "
                               "copy", SYNC)
        status.next_sync = "build"
        if local is None and deployed is None:
            return Verdict(MISSING, f"{spec.tag} is not in its registry and not built here",
                           SYNC)
        against = local if local is not None else deployed
        assert against is not None
        revision = self._revision(against)
        sim = self._simulate([against], context, plan, revision)
        miss = sim.first_miss
        if self.git is not None and revision:
            status.commits = _commits_since(self.git, revision, self._inputs())
        if miss is None:  # (only when the sources' stages disagree; say the plain thing)
            return Verdict(STALE, f"{status.dockerfile} changed since {spec.tag} was built",
                           SYNC)
        return Verdict(STALE, self._cause(miss, sim, context, revision, spec.tag), SYNC)

    def _buildkit_base(self, local: ImageInfo | None, deployed: ImageInfo | None,
                       context: BuildContext) -> Verdict:
        """A BuildKit base (see `_buildkit_app`): an image is what this checkout builds when
        its stamped inputs are this checkout's; one without the stamp (CI's) when nothing it
        reads changed since its revision, and the team's tag is trusted without one."""
        from devsync.ops.bkinputs import INPUTS_LABEL, copied_files, inputs_digest

        status, spec = self.status, self.spec
        digest = inputs_digest(spec, self.df, context)
        paths = [status.dockerfile,
                 *(self._repo_path(f) for f in copied_files(self.df, context))]

        def cause(image: ImageInfo) -> str | None:
            stamped = image.labels.get(INPUTS_LABEL)
            if stamped:
                return None if stamped == digest else (
                    (culprit(self.git, self._revision(image), paths) if self.git else None)
                    or f"{status.dockerfile} or its files changed since {spec.tag} was built")
            revision = image.labels.get(REVISION_LABEL)
            if revision is None or self.git is None:
                return None if image is deployed else \
                    f"{spec.tag} was not built by devsync here: what it was built from is unknown"
            return culprit(self.git, revision, paths)

        if local is not None:
            status.local_id = local.image_id
            status.local_revision = local.labels.get(REVISION_LABEL)
            if cause(local) is None:
                return Verdict(IN_SYNC, f"{spec.tag} is up to date")
        if deployed is not None and cause(deployed) is None:
            status.next_sync = "pull"
            if local is None:
                return Verdict(MISSING, f"{spec.tag} is not pulled yet", SYNC)
            return Verdict(STALE, f"the registry's {spec.tag} differs from your local copy", SYNC)
        status.next_sync = "build"
        against = local if local is not None else deployed
        if against is None:
            return Verdict(MISSING, f"{spec.tag} is not in its registry and not built here",
                           SYNC)
        return Verdict(STALE, cause(against) or f"{status.dockerfile} changed since {spec.tag} "
                       "was built", SYNC)

    def _revision(self, image: ImageInfo | None) -> str | None:
        """The commit an image was built from: its revision label, else (for the image the
        last sync left here) HEAD at that sync."""
        if image is not None and image.labels.get(REVISION_LABEL):
            return image.labels[REVISION_LABEL]
        return self.record.revision

    # -- shared ---------------------------------------------------------------------------

    def _plan(self) -> ImagePlan:
        plan = plan_image(self.project, self.spec, self.resolver, self.git)
        self.status.plan = plan
        self.status.deployed = plan.deployed
        self.status.deployed_digest = plan.deployed_digest
        return plan

    def _context(self, plan: ImagePlan) -> BuildContext:
        return planned_context(plan, self.spec)

    def _simulate(self, sources: list[ImageInfo], context: BuildContext, plan: ImagePlan,
                  revision: str | None = None) -> SimResult:
        """Replay the build against `sources` alone; earlier stages whose inputs are the same
        as at `revision` count as that source's (see the module doc)."""
        unchanged = self._unchanged_stages(revision, context)
        return BuildSimulator(self.df, context=context, images=self.resolver.base,
                              sources=sources, build_args=self.spec.build_args,
                              target=self.spec.target, flavor=plan.flavor,
                              unchanged_stages=unchanged).run()

    def _unchanged_stages(self, revision: str | None, context: BuildContext) -> list[str]:
        stages = self.df.stages
        if len(stages) < 2:
            return []
        target = len(stages) - 1
        if self.spec.target:
            found = self.df.stage_named(self.spec.target)
            target = found.index if found is not None else target
        old = self._dockerfile_at(revision) if revision else None
        out: list[str] = []
        for stage in stages[:target]:
            if not self._stage_same(stage.index, old, revision, context):
                continue
            out.append(str(stage.index))
            if stage.name:
                out.append(stage.name)
        return out

    def _dockerfile_at(self, revision: str) -> Dockerfile | None:
        if self.git is None:
            return None
        from devsync.model.dockerfiles import parse_text

        try:
            raw = self.git.file_at(revision, self.status.dockerfile)
            return parse_text(raw.decode(), self.spec.dockerfile) if raw is not None else None
        except (DevsyncError, UnicodeDecodeError):
            return None

    def _stage_same(self, index: int, old: Dockerfile | None, revision: str | None,
                    context: BuildContext) -> bool:
        """Whether stage `index` has the same lines and copies the same files as at
        `revision` (no revision known: taken as the same, as the image was pulled)."""
        if revision is None or self.git is None:
            return True
        if old is None or len(old.stages) <= index:
            return False
        stage, before = self.df.stages[index], old.stages[index]
        lines = [i.text for i in (stage.from_instruction, *stage.instructions)]
        if lines != [i.text for i in (before.from_instruction, *before.instructions)]:
            return False
        if [i.text for i in self.df.meta_args] != [i.text for i in old.meta_args]:
            return False
        files = self._stage_files(stage.index, context)
        return not (files and culprit(self.git, revision, files) is not None)

    def _stage_files(self, index: int, context: BuildContext) -> list[str]:
        out: list[str] = []
        for ins in self.df.stages[index].instructions:
            if ins.cmd in ("COPY", "ADD") and not ins.flag("from"):
                try:
                    out += context.files_under(list(ins.value[:-1]))
                except DevsyncError:
                    continue
        return [self._repo_path(f) for f in out]

    def _repo_path(self, rel: str) -> str:
        return rel if self.prefix in ("", ".") else f"{self.prefix}/{rel}"

    def _inputs(self) -> list[str]:
        """Repo-relative paths a build reads: the Dockerfile and the whole context."""
        return sorted({self.status.dockerfile, self.prefix})

    def _cause(self, miss: SimStep, sim: SimResult, context: BuildContext,
               revision: str | None, image: str) -> str:
        """The first cause of the first step that does not match `image`, in words."""
        dockerfile = self.status.dockerfile
        line = miss.instruction.line
        paths: list[str]
        if miss.kind == StepKind.COPY and miss.sources:
            try:
                paths = [self._repo_path(f) for f in context.files_under(list(miss.sources))]
            except DevsyncError:
                paths = []
            paths.append(dockerfile)  # (an edited COPY line changes the step too)
        elif miss.kind == StepKind.COPY_STAGE:
            stage = self.df.stage_named(miss.copy_from or "")
            paths = [dockerfile] + (self._stage_files(stage.index, context)
                                    if stage is not None else [])
        else:
            paths = [dockerfile]
        if self.git is not None:
            baselines = self.record.watched if self.record.revision == revision else None
            found = culprit(self.git, revision, paths, baselines=baselines,
                            digest=self._digest)
            if found:
                return found
        if miss.miss == "parent":
            base = sim.stage_bases.get(miss.stage, "")
            return f"its base {base} is not the one {image} was built on"
        if miss.kind == StepKind.COPY_STAGE:
            return (f"line {line} copies what stage {miss.copy_from} builds, and that stage "
                    f"changed since {image} was built")
        if miss.kind == StepKind.COPY:
            return f"files that line {line} copies differ from {image}"
        return f"{dockerfile} line {line} ({miss.instruction.cmd}) differs from {image}"

    def _digest(self, path: str) -> str:
        try:
            return hashlib.sha256(read_regular(self.project.root / path)).hexdigest()
        except OSError:
            return ""


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _working_changes(status: ImageStatus, project: Project, spec: ImageSpec, git: GitRepo,
                     context: Any) -> None:
    try:
        changes = git.changes([spec.rel_context(project.root)])
    except DevsyncError:
        return
    prefix = spec.rel_context(project.root)

    def sent(path: str) -> bool:
        rel = path if prefix in ("", ".") else path[len(prefix) + 1:]
        return context.entry(rel) is not None or path == status.dockerfile

    status.uncommitted = [p for p in changes.modified + changes.deleted
                          if sent(p) or p in changes.deleted][:200]
    status.untracked = [p for p in changes.untracked if sent(p)][:200]


def _commits_since(git: GitRepo, revision: str, paths: list[str]) -> list[dict[str, str]]:
    try:
        found = git.commits_touching(paths, revision, limit=20)
    except DevsyncError:
        return []
    return [{"sha": c.sha, "short": c.short, "author": c.author, "summary": c.summary}
            for c in found]


def watched_inputs(project: Project, spec: ImageSpec) -> list[str]:
    """The files whose change makes this image stale for `--check`: the Dockerfile and the
    files its COPY/ADD steps name one by one. Whole-directory copies (`COPY . /app`) are the
    code under development; watching them would flag every edit."""
    out = [spec.rel_dockerfile(project.root)]
    try:
        df = project.dockerfile(spec)
    except DevsyncError:
        return out
    ctx_rel = spec.rel_context(project.root)
    real_context = os.path.realpath(spec.context)
    for stage in df.stages:
        for ins in stage.instructions:
            if ins.cmd not in ("COPY", "ADD") or ins.flag("from"):
                continue
            for src in ins.value[:-1]:
                if any(ch in src for ch in "$*?[") or "://" in src:
                    continue
                path = spec.context / src.lstrip("/")
                # a regular file (not a loop, a FIFO, a directory) inside the context: the
                # builder resolves a source there, so a link out of it is not what it copies
                if path.is_file() and os.path.realpath(path).startswith(real_context + os.sep):
                    rel = src.lstrip("/").removeprefix("./")
                    out.append(rel if ctx_rel in ("", ".") else f"{ctx_rel}/{rel}")
    dockerignore = spec.context / ".dockerignore"
    if dockerignore.is_file():
        out.append(".dockerignore" if ctx_rel in ("", ".") else f"{ctx_rel}/.dockerignore")
    return sorted(set(out), key=out.index)


def context_pathspecs(project: Project, spec: ImageSpec) -> list[str]:
    """The build context as git pathspecs, less what its `.dockerignore` excludes: what
    `--check` asks `git log` about when HEAD moved, for a teammate's commit under a COPY of
    a whole directory (see devsync.model.dockerignore.context_pathspecs); [] when the
    `.dockerignore` cannot be read."""
    from devsync.model.dockerignore import context_pathspecs as as_pathspecs
    from devsync.model.dockerignore import read_dockerignore

    try:
        patterns = read_dockerignore(spec.context)
    except DevsyncError:
        return []
    return as_pathspecs(spec.rel_context(project.root), patterns)
