"""Each image's state — in-sync, stale, missing, unknown — and why, for `status`, the TUI and
the state that `--check` reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devsync.errors import DevsyncError
from devsync.model.classic import BuildSimulator
from devsync.model.context import scan_context
from devsync.model.project import ROLE_BASE, ImageSpec, Project
from devsync.ops.plan import REVISION_LABEL, ImagePlan, plan_image

if TYPE_CHECKING:
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver

IN_SYNC = "in-sync"
STALE = "stale"
MISSING = "missing"
UNKNOWN = "unknown"


@dataclass
class ImageStatus:
    name: str
    role: str
    state: str
    reason: str
    tag: str
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

    @property
    def line(self) -> str:
        """The one line `--check` prints ("" when in sync)."""
        if self.state == IN_SYNC:
            return ""
        if self.state == MISSING:
            return f"devsync: {self.name} image not built yet - run devsync sync"
        if self.state == STALE:
            return f"devsync: {self.name}: {self.reason} - run devsync sync"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "state": self.state, "reason": self.reason,
            "tag": self.tag, "local_id": self.local_id, "local_revision": self.local_revision,
            "deployed": self.deployed, "deployed_digest": self.deployed_digest,
            "dockerfile": self.dockerfile, "commits": self.commits,
            "uncommitted": self.uncommitted, "untracked": self.untracked,
        }


def collect_statuses(project: Project, resolver: Resolver,
                     git: GitRepo | None) -> list[ImageStatus]:
    """Every image's status, knowing which deployed image each one was last synced from."""
    from devsync.ops.recording import last_synced_deployed

    synced = last_synced_deployed(project)
    return [image_status(project, spec, resolver, git, synced_deployed=synced.get(spec.name))
            for spec in project.images]


def image_status(project: Project, spec: ImageSpec, resolver: Resolver,
                 git: GitRepo | None, *, synced_deployed: str | None = None) -> ImageStatus:
    rel_df = spec.rel_dockerfile(project.root)
    status = ImageStatus(name=spec.name, role=spec.role, state=UNKNOWN, reason="",
                         tag=spec.tag, dockerfile=rel_df,
                         watched=watched_inputs(project, spec))
    try:
        plan = plan_image(project, spec, resolver, git)
    except DevsyncError as exc:
        status.reason = exc.message
        return status
    status.plan = plan
    status.deployed = plan.deployed
    status.deployed_digest = plan.deployed_digest
    local = resolver.local(spec.tag)
    if spec.role == ROLE_BASE:
        return _base_status(status, plan, local, git, project, spec)
    if local is None:
        status.state = MISSING
        status.reason = f"{spec.tag} is not built here yet"
        return status
    status.local_id = local.image_id
    status.local_revision = local.labels.get(REVISION_LABEL)
    # is the local image what this checkout builds? replay the build against it alone
    df = project.dockerfile(spec)
    context = plan.scanned_context or scan_context(spec.context,
                                                   _rel(spec.dockerfile, spec.context))
    sim = BuildSimulator(df, context=context, images=resolver.base, sources=[local],
                         build_args=spec.build_args, target=spec.target,
                         flavor=plan.flavor).run()
    miss = sim.first_miss
    if git is not None and status.local_revision:
        status.commits = _commits_since(git, status.local_revision, _inputs(project, spec))
    if git is not None:
        _working_changes(status, project, spec, git, context)
    if miss is None:
        status.state = IN_SYNC
        status.reason = f"{spec.tag} matches this checkout"
        if plan.deployed and synced_deployed and synced_deployed != plan.deployed:
            status.state = STALE
            status.reason = f"{plan.deployed} is deployed since your last sync"
        return status
    status.state = STALE
    line = miss.instruction.line
    changed = next((s for s in plan.steps if s.line == line), None)
    why = changed.reason if changed is not None and not changed.cached else ""
    culprit = _culprit(git, status.local_revision, miss, context, project, spec) \
        if git is not None and status.local_revision else None
    if culprit is not None:
        status.reason = culprit
    elif why:
        status.reason = f"line {line} ({miss.instruction.cmd}) changed: {why}"
    else:
        status.reason = f"line {line} ({miss.instruction.text[:40]}) changed since your image"
    return status


def _base_status(status: ImageStatus, plan: ImagePlan, local: Any, git: GitRepo | None,
                 project: Project, spec: ImageSpec) -> ImageStatus:
    rel_df = status.dockerfile
    if plan.deployed is None:
        status.state = MISSING
        status.reason = (f"{spec.tag} is not in its registry: build and push it "
                         "(devsync base build --push)")
        return status
    if local is None:
        status.state = MISSING
        status.reason = f"{spec.tag} is not pulled yet"
        return status
    status.local_id = local.image_id
    if plan.first_rebuild is not None:
        status.state = STALE
        reason = plan.first_rebuild.reason
        revision = plan.deployed_revision
        if git is not None and revision:
            commits = _commits_since(git, revision, [rel_df])
            status.commits = commits
            if commits:
                c = commits[0]
                reason = f"{c['short']} by {c['author']}: {c['summary']}"
        status.reason = (f"{rel_df} changed since {spec.tag} was built ({reason}); "
                         "build a new base: devsync base build --push")
        return status
    remote = plan.deployed_digest
    if local.digest and remote and not local.digest.endswith(remote.split("@")[-1]):
        status.state = STALE
        status.reason = f"the registry's {spec.tag} differs from your local copy"
        return status
    status.state = IN_SYNC
    status.reason = f"{spec.tag} is up to date"
    return status


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _culprit(git: GitRepo, revision: str | None, miss: Any, context: Any, project: Project,
             spec: ImageSpec) -> str | None:
    """"src/app.php changed in 3f2a1c by Ana: fix login": the newest commit since the local
    image's revision that touched what the first rebuilt step reads."""
    from devsync.model.classic import StepKind

    prefix = spec.rel_context(project.root)
    if miss.kind == StepKind.COPY and miss.sources:
        try:
            files = context.files_under(list(miss.sources))
        except DevsyncError:
            files = []
        paths = [f if prefix in ("", ".") else f"{prefix}/{f}" for f in files]
    else:
        paths = [spec.rel_dockerfile(project.root)]
    if not paths or revision is None:
        return None
    try:
        found = git.commits_touching(paths, revision, limit=1)
    except DevsyncError:
        return None
    if not found:
        return None
    c = found[0]
    what = paths[0] if len(paths) == 1 else f"{' '.join(miss.sources)}"
    return f"{what} changed in {c.short} by {c.author}: {c.summary}"


def _inputs(project: Project, spec: ImageSpec) -> list[str]:
    """Repo-relative paths a build reads: the Dockerfile and the whole context."""
    return sorted({spec.rel_dockerfile(project.root), spec.rel_context(project.root)})


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
    for stage in df.stages:
        for ins in stage.instructions:
            if ins.cmd not in ("COPY", "ADD") or ins.flag("from"):
                continue
            for src in ins.value[:-1]:
                if any(ch in src for ch in "$*?[") or "://" in src:
                    continue
                path = (spec.context / src.lstrip("/")).resolve()
                if path.is_file():
                    rel = src.lstrip("/").removeprefix("./")
                    out.append(rel if ctx_rel in ("", ".") else f"{ctx_rel}/{rel}")
    dockerignore = spec.context / ".dockerignore"
    if dockerignore.is_file():
        out.append(".dockerignore" if ctx_rel in ("", ".") else f"{ctx_rel}/.dockerignore")
    return sorted(set(out), key=out.index)
