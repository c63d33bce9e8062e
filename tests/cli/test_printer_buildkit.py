"""How the CLI prints a BuildKit build's events: steps that run side by side say which one
finished, and what BuildKit fetched as it went."""

from __future__ import annotations

import io

from devsync.cli.output import EventPrinter
from devsync.events import ImageBuilt, StepFinished, StepStarted


def test_a_step_that_finishes_out_of_turn_is_named() -> None:
    out = io.StringIO()
    printer = EventPrinter(stream=out)
    for event in [StepStarted("app", 0, 3, "FROM base"), StepFinished("app", 0, False),
                  StepStarted("app", 1, 3, "WORKDIR /app"), StepStarted("app", 2, 3, "COPY . ."),
                  StepFinished("app", 1, True), StepFinished("app", 2, False),
                  ImageBuilt("app", "app:dev", "sha256:" + "a" * 64, 1, 3, fetched_layers=2,
                             fetched_bytes=9_100_000)]:
        printer.show(event)
    assert out.getvalue().splitlines() == [
        "  step 1/3: FROM base",
        "    -> rebuilt",
        "  step 2/3: WORKDIR /app",
        "  step 3/3: COPY . .",
        "    -> cached (step 2)",
        "    -> rebuilt (step 3)",
        "  built app:dev (sha256:aaaaaaaaaaaa): 1/3 steps reused; fetched 2 layers, 9.1 MB",
    ]
