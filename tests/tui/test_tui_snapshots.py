"""SVG snapshots of the main screens (pytest-textual-snapshot), from fixed fake data.

Update the baselines after an intended change with
`python -m pytest tests/tui/test_tui_snapshots.py --snapshot-update`, then look at them.
Nothing on these screens reads a clock, and every operation is paused at a fixed point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import ProgressBar, RichLog

from devsync.tui.app import DevsyncApp, make_app
from devsync.tui.screens.onboarding import OnboardingScreen
from devsync.tui.screens.operation import OperationScreen
from devsync.tui.services import Snapshot
from devsync.tui.widgets.images import ImagesTable
from devsync.tui.widgets.progress import LayerRow, LayerStatus
from tests.support.tui_fakes import (
    FakeServices,
    app_status,
    base_status,
    first_run_snapshot,
    repo_info,
    until,
    worker_status,
)

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36")]


def app_for(services: FakeServices) -> DevsyncApp:
    return make_app(Path("."), services=services, watch=False)


async def _loaded(pilot: Any) -> None:
    app = pilot.app
    await until(pilot, lambda: app.snapshot is not None and not app.busy, "snapshot")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_dashboard(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(FakeServices()), terminal_size=size, run_before=_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_plan_with_a_rebuild_reason(snap_compare: Any, size: tuple[int, int]) -> None:
    async def select_base(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("up", "enter")
        table = pilot.app.screen.query_one(ImagesTable)
        await until(pilot, lambda: table.selected == "base", "base selected")
        await pilot.pause()

    assert snap_compare(app_for(FakeServices()), terminal_size=size, run_before=select_base)


@pytest.mark.parametrize("size", SIZES)
def test_sync_in_progress(snap_compare: Any, size: tuple[int, int]) -> None:
    # base in sync: no "base needs a new build" toast over the log
    services = FakeServices(current=Snapshot(repo=repo_info(), statuses=[
        base_status("in-sync"), app_status("stale"), worker_status()]))

    async def sync_halfway(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(pilot.app.screen, OperationScreen), "sync")
        screen = pilot.app.screen
        await until(pilot, lambda: services.paused.is_set() and screen.events_seen == 21,
                    "halfway")
        assert pilot.app.focused is screen.query_one("#op-steps")
        # the layer rows mount and bind their bars asynchronously
        await until(pilot, lambda: _layers_drawn(screen, 3), "the layer rows")
        log = screen.query_one(RichLog)
        # the log follows its end after a refresh; a busy machine may need a few
        await until(pilot, lambda: bool(log.lines) and "guzzlehttp" in log.lines[-1].text
                    and log.scroll_y == log.max_scroll_y, "the log scrolled to its end")
        await pilot.pause()

    app = app_for(services)
    try:
        assert snap_compare(app, terminal_size=size, run_before=sync_halfway)
    finally:
        services.cancelled.set()
        services.resume.set()


def _layers_drawn(screen: OperationScreen, count: int) -> bool:
    rows = list(screen.query(LayerRow))
    return len(rows) == count and all(
        row.is_mounted and row.query_one(ProgressBar).progress == row.progress
        and str(row.query_one(LayerStatus).render()) == row.status for row in rows)


@pytest.mark.parametrize("size", SIZES)
def test_onboarding(snap_compare: Any, size: tuple[int, int]) -> None:
    services = FakeServices(current=first_run_snapshot())

    async def checked(pilot: Any) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, OnboardingScreen), "shown")
        screen = pilot.app.screen
        await until(pilot, lambda: bool(screen.items) and screen.items[0].state == "ok",
                    "checked")
        await pilot.pause()

    assert snap_compare(app_for(services), terminal_size=size, run_before=checked)
