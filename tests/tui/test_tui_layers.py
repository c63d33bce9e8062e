"""The operation screen's Layers panel (Pilot, fakes): what is still moving on top, biggest
first, then what is done; the panel shows six rows, so the big layer being fetched is never
the one scrolled out of sight behind small layers that were already here."""

from __future__ import annotations

from pathlib import Path

from devsync.events import LayerProgress, PhaseStarted, PullProgress, PullStarted
from devsync.tui.app import make_app
from devsync.tui.screens.operation import OperationScreen
from devsync.tui.widgets.progress import LayerRow
from tests.support.tui_fakes import PAUSE, REG, FakeServices, until

REF = f"{REG}:1.0.7"
MB = 1_000_000


def pull_caught_halfway() -> list[object]:
    small = [f"a1{i:010}" for i in range(6)]
    return [
        PhaseStarted("app", "pull"),
        PullStarted(REF),
        # the engine lists the layers in the image's order: the big one comes last
        *[LayerProgress(REF, layer, "Pulling fs layer") for layer in [*small, "b16000000001",
                                                                      "c0ffee000002"]],
        *[LayerProgress(REF, layer, "Already exists") for layer in small[:4]],
        LayerProgress(REF, small[4], "Downloading", 2 * MB, 2 * MB),
        LayerProgress(REF, small[4], "Pull complete", 2 * MB, 2 * MB),
        LayerProgress(REF, small[5], "Downloading", 1 * MB, 3 * MB),
        LayerProgress(REF, "b16000000001", "Downloading", 40 * MB, 150 * MB),
        LayerProgress(REF, "c0ffee000002", "Waiting"),
        PullProgress(REF, 5, 8, 43 * MB, 155 * MB),
        PAUSE,
    ]


async def test_the_layers_still_moving_come_first_biggest_on_top() -> None:
    script = pull_caught_halfway()
    services = FakeServices(script=script)
    app = make_app(Path("."), services=services, watch=False)  # type: ignore[arg-type]
    async with app.run_test(size=(100, 36)) as pilot:
        await until(pilot, lambda: app.snapshot is not None and not app.busy, "snapshot")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OperationScreen), "sync screen")
        screen = app.screen
        assert isinstance(screen, OperationScreen)
        events = len(script) - 1  # (all but the PAUSE)
        await until(pilot, lambda: services.paused.is_set() and screen.events_seen == events,
                    "the pull drawn")
        await pilot.pause()
        panel = screen.query_one("#layers")
        rows = [row for row in panel.children if isinstance(row, LayerRow)]
        assert [row.layer_id for row in rows] == [
            "b16000000001",  # 40 of 150 MB
            "a10000000005",  # 1 of 3 MB
            "c0ffee000002",  # waiting, size not said yet
            "a10000000004",  # done: 2 MB
            "a10000000000", "a10000000001", "a10000000002", "a10000000003",  # already here
        ]
        # on screen: the panel shows the big layer without scrolling
        assert panel.scroll_y == 0
        big = rows[0]
        assert panel.region.contains_region(big.region), (panel.region, big.region)
        assert not panel.region.contains_region(rows[-1].region)  # a small one is out of sight
        await pilot.press("escape")
