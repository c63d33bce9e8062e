"""The operation screen fed by a BuildKit sync's events (fakes): steps that finish out of order
and correct themselves, steps without a vertex, the layers BuildKit fetches as it goes, and
the warning when its cache decisions differ from the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import DataTable, RichLog, Static

from devsync.events import (
    Done,
    ImageBuilt,
    LayerProgress,
    LogLine,
    PhaseStarted,
    PullProgress,
    StepFinished,
    StepStarted,
    Warning_,
)
from devsync.tui.app import make_app
from devsync.tui.screens.operation import DONE, OperationScreen
from devsync.tui.widgets.progress import LayerRow
from tests.support.tui_fakes import REG, FakeServices, until

FETCH = f"{REG}:1.0.7: layers BuildKit fetched"


def buildkit_sync() -> list[object]:
    return [
        PhaseStarted("app", "build", "2/6 steps cached; rebuilds from line 3"),
        StepStarted("app", 0, 6, f"FROM {REG}:base-1.0.0"),
        StepStarted("app", 1, 6, "WORKDIR /var/www/html"),
        # BuildKit's transient word on a FROM, corrected below
        StepFinished("app", 0, True, None),
        StepFinished("app", 1, True, True),
        LayerProgress(FETCH, "3c0ffee10001", "Pull complete", 4_000_000, 4_000_000),
        LayerProgress(FETCH, "7a11ce5e0002", "Pull complete", 5_100_000, 5_100_000),
        PullProgress(FETCH, 2, 2, 9_100_000, 9_100_000),
        StepStarted("app", 2, 6, "COPY composer.json composer.lock ./"),
        StepStarted("app", 3, 6, "RUN composer install --no-dev --prefer-dist"),
        StepFinished("app", 0, False, None),
        StepFinished("app", 2, False, False),
        LogLine("app", "Installing dependencies from lock file"),
        StepFinished("app", 3, False, False),
        StepStarted("app", 4, 6, "COPY . ."),
        # the plan said rebuild; this engine's own build cache had it
        StepFinished("app", 4, True, False),
        # a step without a vertex, said with the plan's own word
        StepStarted("app", 5, 6, 'CMD ["php", "-S", "0.0.0.0:8080", "-t", "public"]'),
        StepFinished("app", 5, False, False),
        Warning_("app", "the engine reused step(s) 5 (COPY . .), which the plan expected to "
                        "rebuild: this engine's own BuildKit cache had them"),
        ImageBuilt("app", f"{REG}:dev", "sha256:" + "f" * 64, 3, 6, fetched_layers=2,
                   fetched_bytes=9_100_000),
        Done(True, f"{REG}:dev: 3/6 Dockerfile steps reused; fetched 2 layers, 9.1 MB"),
    ]


def cells(table: DataTable[Any], column: str) -> list[str]:
    return [str(table.get_cell(row, column)).strip() for row in table.rows]


async def test_a_buildkit_sync_on_the_operation_screen() -> None:
    services = FakeServices(script=buildkit_sync())
    services.resume.set()
    app = make_app(Path("."), services=services, watch=False)  # type: ignore[arg-type]
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.snapshot is not None and not app.busy, "snapshot")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "sync screen")
        screen = app.screen
        assert isinstance(screen, OperationScreen)
        await until(pilot, lambda: screen.state == DONE, "sync done")
        steps = screen.query_one("#op-steps", DataTable)
        # every step has BuildKit's last word; the one that went against the plan is marked
        assert cells(steps, "result") == ["↻ rebuilt", "✓ cached", "↻ rebuilt", "↻ rebuilt",
                                          "✓ cached !", "↻ rebuilt"]
        rows = list(screen.query(LayerRow))
        # both fetched: the bigger (5.1 MB) first
        assert [row.layer_id for row in rows] == ["7a11ce5e0002", "3c0ffee10001"]
        label = str(screen.query_one("#transfer-label", Static).render())
        assert "layers 2/2" in label and "9.1 MB/9.1 MB" in label
        log = screen.query_one("#op-log", RichLog)
        lines = [line.text for line in log.lines]
        assert any("Installing dependencies from lock file" in line for line in lines)
        assert any("own BuildKit cache had them" in line for line in lines)
        title = str(screen.query_one("#op-title", Static).render())
        assert "3/6 Dockerfile steps reused; fetched 2 layers, 9.1 MB" in title
