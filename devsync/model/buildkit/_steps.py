"""How BuildKit's Dockerfile frontend names the vertices of a build's steps.

Every instruction that makes a vertex (FROM an image, WORKDIR, COPY/ADD, RUN) is numbered per
stage, and its vertex is named `[STAGE i/N] INSTRUCTION` (buildkit v0.8
`frontend/dockerfile/dockerfile2llb` `prefixCommand`): STAGE is the stage's name (`stage-K` for
an unnamed one) and is left out when the Dockerfile has a single stage; `i` is padded with
spaces to the width of `N` (`[ 1/12]`). The progress of a build says which vertex was CACHED by
that name, so the name is what ties a predicted step to the engine's decision.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_NAME = re.compile(r"^\[(?:(?P<stage>[^\]]*?)\s+)?\s*(?P<i>\d+)/(?P<n>\d+)\]\s")


class StepRef(NamedTuple):
    """One numbered step of a BuildKit build: `vendor 2/4` or, single-stage, `2/4`."""

    stage: str  # "" when the Dockerfile has a single stage
    number: int  # 1-based
    total: int

    def __str__(self) -> str:
        return f"{self.stage} {self.number}/{self.total}" if self.stage else \
            f"{self.number}/{self.total}"

    def vertex_prefix(self) -> str:
        """The `[...]` prefix the frontend gives this step's vertex name."""
        width = len(str(self.total))
        number = f"{self.number:>{width}}/{self.total}"
        return f"[{self.stage} {number}]" if self.stage else f"[{number}]"


def parse_step_name(name: str) -> StepRef | None:
    """`[vendor 2/4] RUN x` -> StepRef("vendor", 2, 4); internal vertices
    (`[internal] load .dockerignore`, `exporting to image`) -> None."""
    m = _NAME.match(name)
    if not m:
        return None
    return StepRef((m.group("stage") or "").strip(), int(m.group("i")), int(m.group("n")))
