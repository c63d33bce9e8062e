"""One verdict, the same words everywhere: `status --json`, the status table, `--check`,
and the TUI's row and toast over the real core (CoreServices), on the yii2-shaped project
with the real engine and registry, after a teammate's view edit arrives by `git pull`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from devsync.tui.app import make_app
from devsync.tui.widgets.images import ImagesTable
from tests.support.cli import devsync
from tests.support.teamrepo import git
from tests.support.tui_fakes import until
from tests.support.yii2 import make_yii2_repo


async def test_status_table_json_check_and_tui_say_the_same_words(
        tmp_path: Path, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    yii = make_yii2_repo(tmp_path, engine, registry, busybox_image, name="yii2-words")
    yii.forget_local_images()
    clone = yii.clone(tmp_path / "clone")
    state = tmp_path / "state"
    for key, value in {**engine.env(), "DEVSYNC_STATE_DIR": str(state),
                       "DEVSYNC_NO_REFRESH": "1"}.items():
        monkeypatch.setenv(key, value)
    synced = devsync(clone, "sync", "--yes", engine=engine, state=state)
    assert synced.returncode == 0, synced.stdout + synced.stderr

    app = make_app(clone, watch=False, onboarding=False)
    async with app.run_test(size=(200, 40)) as pilot:
        await until(pilot, lambda: app.snapshot is not None and not app.busy, "first snapshot",
                    attempts=3000)
        assert {s.name: s.state for s in app.snapshot.statuses} == {  # type: ignore[union-attr]
            "base": "in-sync", "app": "in-sync"}

        yii.write("views/site/index.php", "<h1>Hello, team</h1>\n")
        short = yii.commit("New welcome text", author="Ben")[:7]
        git(clone, "pull", "-q", "--ff-only")
        # the very next prompt, before the TUI or status looked again
        first_prompt = devsync(clone, "--check", engine=engine, state=state,
                               env={"DEVSYNC_CHECK_DEADLINE": "10"}).stdout.strip()
        app.refresh_status()
        await until(pilot, lambda: bool(app._notifications), "the stale toast", attempts=3000)

        cause = f"views/site/index.php changed in {short} by Ben: New welcome text"
        action = "run devsync sync"
        toast = next(iter(app._notifications))
        table = app.screen.query_one(ImagesTable)
        row = str(table.get_cell("app", "why")).strip()

    images = {i["name"]: i for i in json.loads(
        devsync(clone, "status", "--json", engine=engine, state=state).stdout)["images"]}
    table_text = devsync(clone, "status", engine=engine, state=state).stdout
    prompt = devsync(clone, "--check", engine=engine, state=state,
                     env={"DEVSYNC_CHECK_DEADLINE": "10"}).stdout.strip()

    assert (images["app"]["cause"], images["app"]["action"]) == (cause, action)
    app_row = next(line for line in table_text.splitlines() if line.startswith("app "))
    assert cause in app_row and action in app_row
    assert prompt == first_prompt == f"devsync: app: {cause} - {action}"
    assert row == cause
    assert (toast.title, toast.message) == ("app is stale", f"{cause} - {action}")
