"""Per-image answers on partial days: one image that cannot be planned is that image's
answer (its error, no steps), never the whole command's failure; a registry that could not
be asked, while the engine's images stood in for it, is one warning line.

Exit codes of the read-only commands (the README's table):
- `status` exits 0 whenever it could show its table: an image devsync cannot judge is its
  `unknown` row, with the cause (what a prompt or CI user expects);
- `plan` exits 0 when at least one image was planned, the others shown with their errors;
  when none could be (`plan IMAGE` of one failing image, or every image failing) it exits
  with the first failure's code (8: a registry down with nothing local to use, 9: refused
  credentials, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devsync.errors import DevsyncError
from devsync.model.states import UNKNOWN

if TYPE_CHECKING:
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import ImageSpec
    from devsync.ops.plan import ImagePlan
    from devsync.ops.session import Session


@dataclass
class PlanAnswer:
    """One image's plan, or why there is none."""

    name: str
    role: str
    dockerfile: str
    tag: str
    plan: ImagePlan | None = None
    error: DevsyncError | None = None

    def to_json(self) -> dict[str, Any]:
        if self.plan is not None:
            # (which builder, and for BuildKit which way: devsync.ops.builders)
            return {**self.plan.to_json(), "builder": self.plan.builder,
                    "transport": self.plan.transport}
        assert self.error is not None
        return {"name": self.name, "role": self.role, "dockerfile": self.dockerfile,
                "tag": self.tag, "state": UNKNOWN, "error": self.error.message,
                "hint": self.error.hint, "exit_code": self.error.exit_code, "steps": []}


@dataclass
class PlanReport:
    answers: list[PlanAnswer]
    warnings: list[str] = field(default_factory=list)  # one line each

    @property
    def exit_code(self) -> int:
        failed = [a.error for a in self.answers if a.error is not None]
        if not failed or len(failed) < len(self.answers):
            return 0
        return failed[0].exit_code

    def to_json(self) -> dict[str, Any]:
        return {"images": [a.to_json() for a in self.answers], "warnings": self.warnings}


def plan_images(session: Session, specs: list[ImageSpec]) -> PlanReport:
    """Every image's plan, each failure kept as that image's answer."""
    from devsync.ops.plan import plan_image

    project = session.project
    answers: list[PlanAnswer] = []
    for spec in specs:
        answer = PlanAnswer(spec.name, spec.role, spec.rel_dockerfile(project.root), spec.tag)
        try:
            answer.plan = plan_image(project, spec, session.resolver, session.git_when_asked())
        except DevsyncError as exc:
            answer.error = exc
        answers.append(answer)
    return PlanReport(answers, unchecked_warnings(session.resolver))


def unchecked_warnings(resolver: Resolver, *, already: set[str] | None = None) -> list[str]:
    """One line per registry that could not be asked while local images stood in for it
    (skipping the hosts in `already`, which are then added to it)."""
    out: list[str] = []
    for host, why in resolver.unchecked.items():
        if already is not None:
            if host in already:
                continue
            already.add(host)
        out.append(unchecked_line(host, why))
    return out


def unchecked_line(host: str, why: str) -> str:
    """`registry localhost:5000 could not be checked (not reachable: connection refused):
    working from the images on this machine`."""
    reason = why.removeprefix(f"registry {host} ").removeprefix("is ")
    return (f"registry {host} could not be checked ({reason}): working from the images on "
            "this machine")
