"""The first-run checklist: engine, registry login, base pulled, deployed image pulled, local
image built. Each item shows its state and, when it fails, the exact fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from devsync.tui.errors import WorkerCancel, describe
from devsync.tui.messages import ChecklistReady
from devsync.tui.services import (
    CHECK_BLOCKED,
    CHECK_FAIL,
    CHECK_OK,
    CHECK_WARN,
    CheckItem,
    Services,
)
from devsync.tui.text import join, plain
from devsync.tui.widgets.palette import style

PLACEHOLDER = [
    ("engine", "Docker engine reachable"),
    ("registry", "Registry login"),
    ("base", "Base image pulled"),
    ("deployed", "Deployed image pulled"),
    ("local", "Local image built"),
]

_ICONS = {CHECK_OK: ("✓", "success"), CHECK_FAIL: ("✗", "error"), CHECK_WARN: ("!", "warning"),
          CHECK_BLOCKED: ("·", "muted"), "checking": ("…", "muted")}


class OnboardingScreen(Screen[None]):
    """Shown on a machine that never built an image here, and on `o`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sync", "Sync now"),
        Binding("r", "recheck", "Re-check"),
        Binding("escape", "close", "Back"),
    ]

    def __init__(self, services: Services, repo_name: str = "") -> None:
        super().__init__()
        self._services = services
        self._repo_name = repo_name
        self.items: list[CheckItem] = []
        self._rows: dict[str, Static] = {}
        self._worker: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="onboarding"):
            yield Static(self._intro(), id="onboarding-intro")
            yield VerticalScroll(id="checks")
            yield Static(id="onboarding-next")
        yield Footer(compact=True, show_command_palette=False)

    def _intro(self) -> Text:
        where = f" for {self._repo_name}" if self._repo_name else ""
        out = Text()
        out.append(f"Getting started{where}", style="bold")
        out.append("\nFive things make a working local image. Each one that fails says exactly "
                   "how to fix it; press s to sync when the first two are green.",
                   style=style(self.app, "muted"))
        return out

    async def on_mount(self) -> None:
        self.query_one("#checks").border_title = "Checklist"
        self.app.theme_changed_signal.subscribe(self, lambda _t: self._restyle())
        await self.show([CheckItem(key, title, "checking", "checking…")
                         for key, title in PLACEHOLDER])
        self.action_recheck()

    def action_recheck(self) -> None:
        self._worker = self._check()

    @work(thread=True, exclusive=True, group="checklist", exit_on_error=False)
    def _check(self) -> None:
        worker = get_current_worker()
        items = self._services.checklist(WorkerCancel(worker))
        if not worker.is_cancelled:
            self.post_message(ChecklistReady(items))

    async def on_checklist_ready(self, message: ChecklistReady) -> None:
        await self.show(message.items)

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self._worker and event.state == WorkerState.ERROR:
            text, hint = describe(event.worker.error)
            await self.show([CheckItem("error", "Could not run the checklist", CHECK_FAIL, text,
                                 hint)])

    async def show(self, items: Sequence[CheckItem]) -> None:
        self.items = list(items)
        box = self.query_one("#checks", VerticalScroll)
        keys = [item.key for item in self.items]
        if keys != list(self._rows):
            # a different list (more images, an error): replace the rows once the old ones,
            # whose ids the new ones reuse, are gone
            await box.remove_children()
            self._rows = {key: Static(classes="check", id=f"check-{_css_id(key)}")
                          for key in keys}
            await box.mount_all(self._rows.values())
        for item in self.items:
            row = self._rows[item.key]
            row.update(self._item_text(item))
            row.set_classes(f"check -{item.state}")
        self.query_one("#onboarding-next", Static).update(self._next_text())

    def _restyle(self) -> None:
        self.query_one("#onboarding-intro", Static).update(self._intro())
        for item in self.items:
            if item.key in self._rows:
                self._rows[item.key].update(self._item_text(item))
        self.query_one("#onboarding-next", Static).update(self._next_text())

    def _item_text(self, item: CheckItem) -> Text:
        icon, role = _ICONS.get(item.state, ("?", "muted"))
        out = join((f" {icon} ", f"bold {style(self.app, role)}"), plain(item.title, "bold"))
        if item.detail:
            out.append("\n   ")
            out.append_text(plain(item.detail, style(self.app, "muted")))
        if item.fix and item.state in (CHECK_FAIL, CHECK_WARN):
            out.append("\n   fix: ", style=f"bold {style(self.app, role)}")
            out.append_text(plain(item.fix, "bold"))
        return out

    def _next_text(self) -> Text:
        if not self.items or any(i.state == "checking" for i in self.items):
            return Text("")
        failing = [i for i in self.items if i.state == CHECK_FAIL]
        if not failing:
            return Text("All set: this machine has a working local image.",
                        style=f"bold {style(self.app, 'success')}")
        first = failing[0]
        out = Text("Next: ", style="bold")
        out.append_text(plain(first.fix or first.title))
        return out

    def action_sync(self) -> None:
        start_sync = getattr(self.app, "start_sync", None)  # (a DevsyncApp: see tui.host)
        if start_sync is not None:
            start_sync(after=self.action_recheck)

    def action_close(self) -> None:
        self.dismiss(None)


def _css_id(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in key)
