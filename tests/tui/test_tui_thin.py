"""The TUI as a thin view: it shows the session's warnings and words an outcome the way the
operation does (its `Done` and `Next`), deciding neither."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.widgets import RichLog, Static

from devsync.events import Done, Pushed
from devsync.ops.operations import BUMP_FROM
from devsync.tui.app import DevsyncApp, make_app
from devsync.tui.screens.modals import ConfirmScreen
from devsync.tui.screens.operation import DONE, OperationScreen
from tests.support.tui_fakes import Ask, FakeServices, in_sync_snapshot, until


def app_for(services: FakeServices) -> DevsyncApp:
    return make_app(Path("."), services=services, watch=False)  # type: ignore[arg-type]


async def test_the_sessions_warnings_are_shown_once() -> None:
    warned = dataclasses.replace(in_sync_snapshot(),
                                 warnings=[".devsync.toml:2: devsync.colour: unknown key"])
    services = FakeServices(current=warned)
    app = app_for(services)
    async with app.run_test() as pilot:
        await until(pilot, lambda: bool(app._notifications), "warned")
        notes = [n for n in app._notifications if n.title == "Warning"]
        assert [n.message for n in notes] == [".devsync.toml:2: devsync.colour: unknown key"]
        await pilot.press("r")
        await until(pilot, lambda: services.snapshots_taken == 2, "refreshed")
        await pilot.pause(0.1)
        assert len([n for n in app._notifications if n.title == "Warning"]) == 1


async def test_an_operations_next_step_is_its_own() -> None:
    services = FakeServices(script=[Pushed("reg.example/shop:base-1.1.0"),
                                    Done(summary="pushed reg.example/shop:base-1.1.0",
                                         next=BUMP_FROM)])
    services.resume.set()
    app = app_for(services)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.snapshot is not None, "loaded")
        app.run_operation("Base build", services.base_build)
        await until(pilot, lambda: isinstance(app.screen, OperationScreen)
                    and app.screen.state == DONE, "done")
        log = app.screen.query_one("#op-log", RichLog)
        text = "\n".join(line.text for line in log.lines)
        assert "done: pushed reg.example/shop:base-1.1.0; next: bump FROM (u)" in text


async def test_a_large_pull_asks_first_in_the_tui_too() -> None:
    """The operation asks (ops.policy decides when); the TUI only shows the question."""
    services = FakeServices(script=[Ask("pull 900 MB for app?"), Done(summary="app synced"),
                                    Ask("pull 950 MB for worker?"),
                                    Done(summary="nothing was synced")])
    services.resume.set()
    app = app_for(services)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.snapshot is not None, "loaded")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "asked")
        body = app.screen.query_one(".dialog-body", Static)
        assert "Pull 900 MB for app?" in str(body.render())
        await pilot.press("y")
        await until(pilot, lambda: len(services.answers) == 1
                    and isinstance(app.screen, ConfirmScreen), "asked again")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen)
                    and app.screen.state == DONE, "done")
        assert services.answers == [True, False]
