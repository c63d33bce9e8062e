"""The main screen: repository, branch and HEAD; the images; the selected image's plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from devsync.tui.text import join, plain
from devsync.tui.widgets.images import ImagesTable
from devsync.tui.widgets.palette import style
from devsync.tui.widgets.plan_view import PlanView

if TYPE_CHECKING:
    from devsync.tui.host import Host
    from devsync.tui.services import Snapshot


class DashboardScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "app.sync", "Sync"),
        Binding("r", "app.refresh", "Refresh"),
        Binding("o", "app.onboarding", "Checklist"),
        Binding("b", "app.base_build", "Base"),
        Binding("u", "app.base_bump", "Bump"),
        Binding("p", "app.publish", "Publish"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="repo-bar")
        yield Static(id="banner")
        images = ImagesTable(id="images")
        images.border_title = "Images"
        yield images
        plan = PlanView(id="plan")
        plan.border_title = "Plan"
        yield plan
        yield Footer(compact=True, show_command_palette=False)

    @property
    def devsync(self) -> Host:
        return cast("Host", self.app)

    def on_mount(self) -> None:
        app = self.devsync
        self.watch(self.app, "snapshot", self._show_snapshot, init=False)
        self.watch(self.app, "busy", lambda _busy: self._render_bar(), init=False)
        self.watch(self.app, "load_error", lambda _err: self._render_banner(), init=False)
        # after the new theme's variables are in place (a watch on `theme` runs before)
        self.app.theme_changed_signal.subscribe(self,
                                                lambda _t: self._show_snapshot(app.snapshot))
        self._show_snapshot(app.snapshot)
        self.query_one(ImagesTable).focus()

    @property
    def selected(self) -> str | None:
        return self.query_one(ImagesTable).selected

    def _show_snapshot(self, snapshot: Snapshot | None) -> None:
        self._render_bar()
        self._render_banner()
        table = self.query_one(ImagesTable)
        plan = self.query_one(PlanView)
        if snapshot is None:
            plan.show(None)
            return
        table.show(snapshot.statuses, keep=table.selected)
        self._show_plan()

    def _show_plan(self) -> None:
        table = self.query_one(ImagesTable)
        status = table.status_at(table.cursor_row)
        plan = self.query_one(PlanView)
        plan.border_title = join("Plan · ", plain(status.name)) if status else "Plan"
        plan.show(status)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "images":
            self._show_plan()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "images":
            self.query_one(PlanView).table.focus()

    def _render_bar(self) -> None:
        app = self.devsync
        snapshot = app.snapshot
        muted = style(self.app, "muted")
        out = Text()
        out.append("devsync", style=f"bold {style(self.app, 'accent')}")
        if snapshot is None:
            out.append_text(join("  ", plain(_root_name(app)), ("  loading…", muted)))
        else:
            repo = snapshot.repo
            out.append("  ")
            out.append_text(plain(repo.root.name, "bold"))
            out.append("  ⎇ ", style=muted)
            out.append_text(plain(repo.branch or "detached HEAD"))
            if repo.head:
                out.append("  HEAD ", style=muted)
                out.append_text(plain(repo.head, style(self.app, "accent")))
                out.append(" ")
                out.append_text(plain(repo.subject))
                if repo.author:
                    out.append_text(join((" · ", muted), plain(repo.author, muted)))
            else:
                out.append("  no commits yet", style=muted)
        if app.busy:
            out.append("  ⟳", style=muted)
        self.query_one("#repo-bar", Static).update(out)

    def _render_banner(self) -> None:
        app = self.devsync
        banner = self.query_one("#banner", Static)
        text: Text | None = None
        if app.load_error is not None:
            message, hint = app.load_error
            text = join(("✗ ", f"bold {style(self.app, 'error')}"), plain(message))
            if hint:
                text.append_text(join(("  hint: ", style(self.app, "muted")), plain(hint)))
        elif app.snapshot is not None and app.snapshot.engine_problem:
            text = join(("✗ Docker engine: ", f"bold {style(self.app, 'error')}"),
                        plain(app.snapshot.engine_problem),
                        ("  press o for the checklist", style(self.app, "muted")))
        banner.display = text is not None
        banner.update(text or "")


def _root_name(app: Host) -> str:
    try:
        return app.services.root.name
    except Exception:  # not a repository: the load error says so
        return ""
