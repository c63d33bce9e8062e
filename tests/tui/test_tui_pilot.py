"""Every TUI action driven with Textual's Pilot against fake services (canned core data)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from textual.widgets import Button, DataTable, Input, RichLog, Static

from devsync.errors import ConfigError, EngineError
from devsync.events import Done, LogLine, PhaseStarted, Replanned
from devsync.ops.pulse import LOOK_LOCAL, LOOK_REGISTRY
from devsync.tui.app import DevsyncApp, make_app
from devsync.tui.screens.dashboard import DashboardScreen
from devsync.tui.screens.modals import ConfirmScreen, ErrorScreen, HelpScreen
from devsync.tui.screens.onboarding import OnboardingScreen
from devsync.tui.screens.operation import CANCELLED, DONE, FAILED, OperationScreen
from devsync.tui.services import Snapshot
from devsync.tui.widgets.images import ImagesTable
from devsync.tui.widgets.plan_view import PlanView
from devsync.tui.widgets.progress import LayerRow
from tests.support.tui_fakes import (
    FakeServices,
    app_status,
    base_status,
    first_run_snapshot,
    in_sync_snapshot,
    stale_snapshot,
    step,
    until,
    worker_status,
)


def app_for(services: FakeServices, **kwargs: object) -> DevsyncApp:
    return make_app(Path("."), services=services, **kwargs)  # type: ignore[arg-type]


def text_of(widget: Static) -> str:
    return str(widget.render())


def cells(table: DataTable[Any], column: str) -> list[str]:
    return [str(table.get_cell(row, column)) for row in table.rows]


async def loaded(pilot: object, app: DevsyncApp) -> None:
    await until(pilot, lambda: app.snapshot is not None and not app.busy, "first snapshot")


# -- dashboard and plan ----------------------------------------------------------------------


async def test_dashboard_shows_repo_images_and_the_stale_plan() -> None:
    app = app_for(FakeServices(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        bar = text_of(screen.query_one("#repo-bar", Static))
        assert "shop-api" in bar and "main" in bar and "3f2a1c4" in bar
        assert "bump PHP to 8.3" in bar
        table = screen.query_one(ImagesTable)
        assert cells(table, "image") == ["base", "app", "worker"]
        assert [c.strip() for c in cells(table, "state")] == ["STALE", "STALE", "IN SYNC"]
        assert cells(table, "deployed") == ["base-1.0.0", "1.0.7", "2.4.1"]
        # the stale app image is selected first, with its first rebuilt step highlighted
        assert table.selected == "app"
        plan = screen.query_one(PlanView)
        assert plan.table.cursor_row == 2
        detail = text_of(plan.query_one("#step-detail", Static))
        assert "COPY composer.json composer.lock ./" in detail
        assert "files changed: composer.json in 9b1e77d by Ben Okafor" in detail
        assert "Files: composer.json" in detail
        assert "9b1e77d  Ben Okafor  require guzzle 7.9" in detail


async def test_images_table_names_the_compose_services_an_image_serves() -> None:
    snapshot = stale_snapshot()
    snapshot = dataclasses.replace(snapshot, statuses=[
        dataclasses.replace(s, services=["web", "queue"]) if s.name == "app" else s
        for s in snapshot.statuses])
    app = app_for(FakeServices(current=snapshot), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        table = app.screen.query_one(ImagesTable)
        assert cells(table, "image") == ["base", "app (web,qu…", "worker"]
        assert table.selected == "app"


async def test_selecting_an_image_shows_its_plan_and_reasons() -> None:
    app = app_for(FakeServices(), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        await pilot.press("up")  # app -> base
        plan = app.screen.query_one(PlanView)
        assert app.screen.query_one(ImagesTable).selected == "base"
        assert cells(plan.table, "mark") == ["✓ cached", "↻ rebuild", "↻ rebuild", "↻ rebuild"]
        reasons = cells(plan.table, "reason")
        assert reasons[1].startswith("instruction changed (deployed: ARG PHP")  # cut to fit
        assert reasons[2] == "rebuilds after line 2"
        title = text_of(plan.query_one("#plan-title", Static))
        assert "Dockerfile.base" in title and "1/4 steps cached" in title
        # the first rebuilt step is highlighted; its details have the whole reason
        detail = text_of(plan.query_one("#step-detail", Static))
        assert "↻ rebuild: instruction changed (deployed: ARG PHP_VERSION=8.2)" in detail
        assert "3f2a1c4  Ana Lima  bump PHP to 8.3" in detail
        # enter moves into the steps; browsing them updates the details
        await pilot.press("enter")
        assert app.focused is plan.table
        await pilot.press("up")
        detail = text_of(plan.query_one("#step-detail", Static))
        assert "FROM debian:bookworm-slim" in detail and "✓ cached" in detail


async def test_mouse_click_selects_an_image() -> None:
    app = app_for(FakeServices(), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        table = app.screen.query_one(ImagesTable)
        # rows start below the header line; the third row is `worker`
        await pilot.click(ImagesTable, offset=(2, 3))
        await until(pilot, lambda: table.selected == "worker", "click selects worker")
        title = text_of(app.screen.query_one("#plan-title", Static))
        assert "worker/Dockerfile" in title and "all 3 steps cached" in title


# -- sync ------------------------------------------------------------------------------------


async def test_sync_shows_layer_progress_steps_and_log_then_cancels() -> None:
    services = FakeServices()
    app = app_for(services, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "sync screen")
        screen = app.screen
        assert isinstance(screen, OperationScreen)
        # `s` syncs what the verdicts say to sync: the stale base (a sync builds a changed
        # base here) and the stale app image
        assert services.calls[-1] == ("sync", ("base", "app"))
        await until(pilot, lambda: services.paused.is_set() and screen.events_seen == 21,
                    "events before the pause drawn")
        layers = list(screen.query(LayerRow))
        # what still moves first (tests/tui/test_tui_layers.py), then what is done
        assert [row.layer_id for row in layers] == ["9d0e0b1e0003", "3c0ffee10001",
                                                    "7a11ce5e0002"]
        assert layers[1].progress == layers[1].total  # Already exists: full
        assert (layers[0].progress, layers[0].total) == (12_400_000, 31_000_000)
        status = [str(row.query_one(".layer-status").render()) for row in layers]
        assert status == ["Downloading 12.4 MB/31.0 MB", "Already exists",
                          "Pull complete"]
        # the bar in percent: 12.4 of the 31 MB to fetch (the other two layers are here)
        assert screen.transfer_done == 40.0 and screen.transfer_total == 100.0
        label = text_of(screen.query_one("#transfer-label"))  # type: ignore[arg-type]
        assert "layers 2/3" in label and "12.4 MB/31.0 MB" in label
        steps = screen.query_one("#op-steps", DataTable)
        results = [c.strip() for c in cells(steps, "result")]
        assert results == ["✓ cached", "✓ cached", "↻ rebuilt", "▶ running", "·", "·"]
        log = screen.query_one("#op-log", RichLog)
        assert any("Installing guzzlehttp/guzzle" in line.text for line in log.lines)
        # cancel: the core generator sees the flag and stops
        await pilot.press("escape")
        await until(pilot, lambda: screen.state == CANCELLED, "cancelled")
        assert services.cancelled.is_set()
        assert not any(isinstance(s, ErrorScreen) for s in app.screen_stack)
        await pilot.press("escape")  # now closes
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen), "back")
        await until(pilot, lambda: services.calls[-1] == ("snapshot", True), "refreshed")


async def test_sync_runs_to_completion_and_marks_every_step() -> None:
    services = FakeServices()
    services.resume.set()
    app = app_for(services, watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "sync screen")
        screen = app.screen
        assert isinstance(screen, OperationScreen)
        await until(pilot, lambda: screen.state == DONE, "sync done")
        steps = screen.query_one("#op-steps", DataTable)
        assert [c.strip() for c in cells(steps, "result")] == [
            "✓ cached", "✓ cached", "↻ rebuilt", "↻ rebuilt", "↻ rebuilt", "↻ rebuilt"]
        assert all(row.has_class("-done") for row in screen.query(LayerRow))
        assert "2/6 steps reused" in text_of(screen.query_one("#op-title", Static))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen), "closed")


async def test_sync_failure_shows_message_and_hint_not_a_traceback() -> None:
    services = FakeServices(fail_with=EngineError("the build of app failed at line 4",
                                                  hint="see the log above for RUN's output"))
    services.resume.set()
    app = app_for(services, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ErrorScreen), "error dialog")
        body = text_of(app.screen.query_one(".dialog-body", Static))
        assert "the build of app failed at line 4" in body
        assert "hint: see the log above" in body
        assert "Traceback" not in body
        await pilot.press("enter")
        assert isinstance(app.screen, OperationScreen)
        assert app.screen.state == FAILED


async def test_a_plan_made_again_mid_sync_replaces_the_plan_column() -> None:
    # the app was planned on the old base; the sync built a changed base first and planned
    # the app again on it: the Plan column now shows what the build will do
    services = FakeServices(script=[PhaseStarted("app", "plan"),
                                    Replanned("app", (False,) * 6, "0/6 steps cached"),
                                    Done(True, "synced")])
    app = app_for(services, watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "the sync screen")
        screen = app.screen
        await until(pilot, lambda: screen.state == DONE, "the end")  # type: ignore[attr-defined]
        table = screen.query_one("#op-steps", DataTable)
        plans = [str(table.get_cell(row, "plan")) for row in table.rows]
        assert plans and all(p == "rebuild" for p in plans[-6:]), plans
        assert "planned again" in " ".join(str(line) for line in
                                           screen.query_one("#op-log", RichLog).lines)


async def test_sync_when_everything_is_in_sync_only_says_so() -> None:
    services = FakeServices(current=in_sync_snapshot())
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await pilot.pause(0.1)
        assert isinstance(app.screen, DashboardScreen)
        assert not any(c[0] == "sync" for c in services.calls)
        assert any("Every image is in sync" in n.message for n in app._notifications)


# -- onboarding ------------------------------------------------------------------------------


async def test_onboarding_opens_on_a_first_run_and_shows_exact_fixes() -> None:
    services = FakeServices(current=first_run_snapshot())
    app = app_for(services, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, OnboardingScreen), "checklist")
        screen = app.screen
        assert isinstance(screen, OnboardingScreen)
        await until(pilot, lambda: ("checklist",) in services.calls and
                    screen.items[0].state == "ok", "checked")
        registry = text_of(screen.query_one("#check-registry", Static))
        assert "✗ Registry login (registry.example.com)" in registry
        assert "fix: docker login registry.example.com" in registry
        engine = text_of(screen.query_one("#check-engine", Static))
        assert engine.startswith(" ✓ Docker engine reachable") and "fix:" not in engine
        nxt = text_of(screen.query_one("#onboarding-next", Static))
        assert nxt == "Next: docker login registry.example.com"
        # `s` syncs from the checklist, and it checks again afterwards
        services.resume.set()
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "sync")
        assert services.calls[-1] == ("sync", ("app",))
        await until(pilot, lambda: app.screen.state == DONE, "synced")  # type: ignore[attr-defined]
        await pilot.press("escape")
        await until(pilot, lambda: services.calls.count(("checklist",)) == 2, "re-checked")
        assert isinstance(app.screen, OnboardingScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_onboarding_key_opens_the_checklist_once() -> None:
    services = FakeServices()
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        assert isinstance(app.screen, DashboardScreen)  # not a first run
        await pilot.press("o")
        await pilot.press("o")
        assert isinstance(app.screen, OnboardingScreen)
        assert sum(isinstance(s, OnboardingScreen) for s in app.screen_stack) == 1
        await pilot.press("r")
        await until(pilot, lambda: services.calls.count(("checklist",)) == 2, "re-check")


# -- base workflow ---------------------------------------------------------------------------


async def test_base_build_asks_first_and_does_nothing_when_cancelled() -> None:
    services = FakeServices()
    app = app_for(services, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("b")
        assert isinstance(app.screen, ConfirmScreen)
        body = text_of(app.screen.query_one(".dialog-body", Static))
        assert "Build Dockerfile.base as the next base version" in body
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("b")
        await pilot.click("#confirm-yes")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "base build runs")
        assert ("base_build",) in services.calls
        assert app.screen.title_text == "Base build"  # type: ignore[attr-defined]


async def test_bump_from_is_confirmed_with_y() -> None:
    services = FakeServices()
    services.resume.set()
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: ("base_bump",) in services.calls, "bump runs")


async def test_publish_asks_for_the_version() -> None:
    services = FakeServices()
    services.resume.set()
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await pilot.press("p")
        assert isinstance(app.screen, ConfirmScreen)
        field = app.screen.query_one(Input)
        assert field.value == "1.0.8"  # the next patch after the deployed 1.0.7
        field.value = ""
        await pilot.press(*"2.0.0-ny")  # y and n are letters here, not answers
        assert isinstance(app.screen, ConfirmScreen)
        assert field.value == "2.0.0-ny"
        await pilot.press("backspace", "backspace", "backspace", "enter")
        await until(pilot, lambda: ("publish", "2.0.0") in services.calls, "publish runs")


async def test_base_actions_explain_when_there_is_no_base() -> None:
    services = FakeServices(current=Snapshot(repo=stale_snapshot().repo,
                                             statuses=[worker_status()]))
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await pilot.press("b")
        assert isinstance(app.screen, DashboardScreen)
        assert any("no base image" in n.message for n in app._notifications)


# -- look, help, errors ----------------------------------------------------------------------


async def test_theme_toggles_between_dark_and_light() -> None:
    app = app_for(FakeServices(), watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        assert app.theme == "textual-dark"
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("t")
        assert app.theme == "textual-dark"


async def test_help_screen_opens_and_closes() -> None:
    app = app_for(FakeServices(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("question_mark")
        await pilot.click("#help-close")
        assert isinstance(app.screen, DashboardScreen)


async def test_a_broken_project_is_a_banner_and_a_notification() -> None:
    services = FakeServices(snapshot_error=ConfigError(
        ".devsync.toml:3: images.app.dockerfile: no such file: Dockerfile.app",
        hint="fix the path in .devsync.toml"))
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.load_error is not None, "load error")
        banner = app.screen.query_one("#banner", Static)
        assert banner.display
        assert "no such file: Dockerfile.app" in text_of(banner)
        assert "hint: fix the path" in text_of(banner)
        assert any(n.title == "Could not read the project" for n in app._notifications)
        # fixed in the editor: the next refresh clears it
        services.snapshot_error = None
        await pilot.press("r")
        await until(pilot, lambda: app.load_error is None and app.snapshot is not None, "ok")
        assert not banner.display


async def test_engine_down_is_shown_in_the_banner() -> None:
    snapshot = dataclasses.replace(stale_snapshot(), engine_problem=(
        "cannot connect to the Docker engine at unix:///var/run/docker.sock"))
    app = app_for(FakeServices(current=snapshot), watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        banner = text_of(app.screen.query_one("#banner", Static))
        assert "cannot connect to the Docker engine" in banner
        assert "press o for the checklist" in banner


async def test_repository_text_is_never_markup_or_escape_sequences() -> None:
    hostile = "[bold red]pwned[/] \x1b[2J\x1b]0;title\x07 done"
    snapshot = Snapshot(repo=dataclasses.replace(stale_snapshot().repo, subject=hostile),
                        statuses=[app_status(summary=hostile)])
    app = app_for(FakeServices(current=snapshot), watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, app)
        bar = text_of(app.screen.query_one("#repo-bar", Static))
        assert "[bold red]pwned[/]" in bar
        assert "\x1b" not in bar and "\x07" not in bar
        detail = text_of(app.screen.query_one("#step-detail", Static))
        assert "[bold red]pwned[/]" in detail and "\x1b" not in detail
        svg = app.export_screenshot()
        assert "pwned" in svg and "\x1b" not in svg


# -- watching --------------------------------------------------------------------------------


async def test_a_change_seen_by_the_watcher_refreshes_and_notifies() -> None:
    services = FakeServices(current=in_sync_snapshot())
    app = app_for(services)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        assert not app._notifications
        # someone commits "bump PHP to 8.3" to Dockerfile.base in another terminal
        services.current = Snapshot(repo=stale_snapshot().repo,
                                    statuses=[base_status("stale"), app_status("in-sync")])
        services.changes.put({".git/refs/heads/main", ".git/index"})
        await until(pilot, lambda: app.snapshot is services.current, "refreshed")
        assert ("snapshot", False) in services.calls  # files changed: registry answers reused
        table = app.screen.query_one(ImagesTable)
        assert str(table.get_cell("base", "state")).strip() == "STALE"
        await until(pilot, lambda: bool(app._notifications), "notified")
        note = next(iter(app._notifications))
        assert note.message == ("Dockerfile.base changed in 3f2a1c4 by Ana Lima: bump PHP to 8.3"
                                " - run devsync sync")
        assert note.title == "base is stale"


async def test_a_sync_in_another_terminal_shows_at_the_next_pulse() -> None:
    services = FakeServices(current=stale_snapshot())
    app = app_for(services)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        # `devsync sync` in another terminal: no file changed, the engine's tags did
        services.current = in_sync_snapshot()
        services.pulse_answer = LOOK_LOCAL
        await until(pilot, lambda: app.snapshot is services.current, "refreshed by the pulse")
        assert services.calls[-1] == ("snapshot", False)  # the registry's answers kept
        table = app.screen.query_one(ImagesTable)
        assert str(table.get_cell("app", "state")).strip() == "IN SYNC"


async def test_a_registry_answering_again_is_asked_at_the_next_pulse() -> None:
    services = FakeServices(current=in_sync_snapshot())
    app = app_for(services)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        assert services.calls.count(("snapshot", True)) == 1  # the first look
        services.pulse_answer = LOOK_REGISTRY
        await until(pilot, lambda: services.calls.count(("snapshot", True)) == 2,
                    "the registry asked again")


async def test_a_toast_never_covers_the_help_screen() -> None:
    app = app_for(FakeServices(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("question_mark")
        app.notify("base is stale", title="base is stale")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen) and not app._notifications
        await pilot.press("escape")
        await until(pilot, lambda: bool(app._notifications), "the held toast")
        assert next(iter(app._notifications)).message == "base is stale"


async def test_registry_is_checked_periodically() -> None:
    snapshot = dataclasses.replace(in_sync_snapshot(), registry_check_minutes=0.002)
    services = FakeServices(current=snapshot)
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await until(pilot, lambda: services.calls.count(("snapshot", True)) >= 3,
                    "periodic registry checks")


async def test_quit_stops_a_running_sync() -> None:
    services = FakeServices()
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: services.paused.is_set(), "sync running")
        await pilot.press("q")
    assert services.cancelled.wait(5)


async def test_confirm_dialog_buttons() -> None:
    app = app_for(FakeServices(), watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.focused is app.screen.query_one("#confirm-no", Button)
        await pilot.press("enter")  # the focused button is Cancel: nothing happens
        assert isinstance(app.screen, DashboardScreen)


async def test_a_flood_of_build_output_is_drawn_in_slices() -> None:
    lines = [LogLine("app", f"compiling unit {i}") for i in range(12_000)]
    services = FakeServices(script=[*lines, Done(True, "built")])
    app = app_for(services, watch=False)
    async with app.run_test() as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "sync screen")
        screen = app.screen
        assert isinstance(screen, OperationScreen)
        await until(pilot, lambda: screen.state == DONE, "done")
        assert screen.events_seen == 12_001
        log = screen.query_one("#op-log", RichLog)
        assert len(log.lines) <= 5000  # the log keeps the newest lines only
        assert "compiling unit 11999" in log.lines[-2].text


async def test_a_refresh_keeps_the_selected_image_and_step() -> None:
    services = FakeServices()
    app = app_for(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        await pilot.press("up", "enter", "down")  # base, into its steps, line 3
        plan = app.screen.query_one(PlanView)
        assert plan.table.cursor_row == 2
        services.current = stale_snapshot()  # new objects, same content
        services.changes.put({"Dockerfile"})
        await until(pilot, lambda: app.snapshot is services.current, "refreshed")
        await pilot.pause(0.1)
        assert app.screen.query_one(ImagesTable).selected == "base"
        assert plan.table.cursor_row == 2
        assert "line 3" in text_of(plan.query_one("#step-detail", Static))


def test_step_marks_say_rebuild_only_when_certain() -> None:
    from devsync.tui.widgets.plan_view import step_mark

    assert step_mark(step(3, "RUN make", True, "cached from x"))[0] == "✓ cached"
    assert step_mark(step(3, "RUN make", False, "file changed"))[0] == "↻ rebuild"
    uncertain = dataclasses.replace(step(3, "RUN make", False, "no cache source"),
                                    certain=False)
    assert step_mark(uncertain)[0] == "? maybe"
