"""The shape of a plan, shared by both builders' planners (devsync.ops.plan for the classic
builder, devsync.ops.plan_buildkit for BuildKit): one `PlanStep` per Dockerfile instruction,
and the `ImagePlan` that `plan --json` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devsync.events import Replanned
from devsync.model.classic import WholeReuse
from devsync.model.context import BuildContext, TarFlavor


@dataclass
class PlanStep:
    line: int
    instruction: str
    cached: bool
    reason: str
    kind: str
    stage: int
    files: list[str] = field(default_factory=list)
    commits: list[dict[str, str]] = field(default_factory=list)
    created_by: str | None = None
    # False: reused only if the engine finds a match devsync cannot see (what another stage
    # builds, see buildsim; or, without a cache source, earlier local builds)
    certain: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line, "instruction": self.instruction, "cached": self.cached,
            "reason": self.reason, "kind": self.kind, "stage": self.stage,
            "certain": self.certain,
            "files": self.files, "commits": self.commits,
        }


@dataclass
class ImagePlan:
    name: str
    role: str
    dockerfile: str
    context: str
    tag: str
    cache_from: list[str]
    steps: list[PlanStep]
    deployed: str | None = None  # resolved reference of the latest deployed image
    deployed_digest: str | None = None
    deployed_revision: str | None = None
    base: str | None = None
    flavor: TarFlavor = TarFlavor.CLI_MODERN
    notes: list[str] = field(default_factory=list)
    pull_bytes: int = 0  # what a sync would download at most
    builder: str = "classic"  # "classic" or "buildkit"
    # BuildKit: how the build goes to the engine: "cli" (the docker CLI's session) or "api"
    # (the Engine API, the context as a tar in the request body)
    transport: str | None = None
    # the context as scanned for this plan (not serialised): status reuses it
    scanned_context: BuildContext | None = field(default=None, repr=False, compare=False)
    # every step cached from one image: a sync makes the result without a build (ops.reuse)
    reuse: WholeReuse | None = field(default=None, repr=False, compare=False)
    # a base in a sync: "build" (here, from its Dockerfile), "pull" (the registry's is what
    # this checkout builds) or "" (the local one is); None: not decided (a plan, an app)
    base_sync: str | None = None

    @property
    def first_rebuild(self) -> PlanStep | None:
        return next((s for s in self.steps if not s.cached), None)

    @property
    def rebuild_count(self) -> int:
        return sum(1 for s in self.steps if not s.cached)

    @property
    def summary(self) -> str:
        first = self.first_rebuild
        total = len(self.steps)
        if first is None:
            return f"all {total} steps cached"
        return (f"{total - self.rebuild_count}/{total} steps cached; rebuilds from line "
                f"{first.line}: {first.reason}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "dockerfile": self.dockerfile,
            "context": self.context, "tag": self.tag, "cache_from": self.cache_from,
            "deployed": self.deployed, "deployed_digest": self.deployed_digest,
            "deployed_revision": self.deployed_revision, "base": self.base,
            "context_flavor": self.flavor.name.lower(), "notes": self.notes,
            "pull_bytes": self.pull_bytes,
            "steps": [s.to_json() for s in self.steps],
        }




def replanned(plan: ImagePlan) -> Replanned:
    """The event that replaces `plan`'s image's plan in the views (see events.Replanned)."""
    return Replanned(plan.name, tuple(step.cached if step.certain else None
                                      for step in plan.steps if step.kind != "skip"),
                     plan.summary)
