"""An image's build plan: every Dockerfile step cached or rebuilt, why, and for the highlighted
step the changed files and the commits that touched them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, Vertical, VerticalScroll
from textual.events import Resize
from textual.widgets import DataTable, Static

from devsync.tui.text import cell, join, plain, short
from devsync.tui.widgets.palette import style

if TYPE_CHECKING:
    from devsync.ops.plan import PlanStep
    from devsync.ops.status import ImageStatus

_LINE_W = 4
_MARK_W = 9
_MIN_INSTR = 18
WIDE = 110  # from this width on, the step details sit beside the steps


def step_mark(step: PlanStep) -> tuple[str, str]:
    """(label, role) of a step's prediction."""
    if step.kind == "skip":
        return "· skip", "muted"
    if step.cached:
        return "✓ cached", "success"
    # reused only if the engine finds a match devsync cannot see (see PlanStep.certain)
    return ("? maybe", "warning") if not step.certain else ("↻ rebuild", "warning")


def commit_lines(commits: list[dict[str, str]], role_style: str) -> list[Text]:
    out = []
    for c in commits:
        out.append(join("  ", (c.get("short", c.get("sha", "")[:7]), role_style), "  ",
                        plain(short(c.get("author", ""), 18), "bold"), "  ",
                        plain(c.get("summary", ""))))
    return out


class PlanView(Vertical):
    """Shows the plan of one image (`show`); the step table can be focused and browsed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._status: ImageStatus | None = None
        self._steps: list[PlanStep] = []
        self._widths = (0, 0)

    def compose(self) -> ComposeResult:
        yield Static(id="plan-title")
        with Container(id="plan-body"):
            table: DataTable[Text] = DataTable(id="steps", cursor_type="row")
            yield table
            with VerticalScroll(id="step-detail-box"):
                yield Static(id="step-detail")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#steps", DataTable)

    @property
    def wide(self) -> bool:
        return (self.size.width or self.app.size.width) >= WIDE

    def _column_widths(self) -> tuple[int, int]:
        width = (self.size.width or self.app.size.width) - 2
        if self.wide:
            width = width * 3 // 5
        rest = max(_MIN_INSTR * 2, width - _LINE_W - _MARK_W - 2 * 4 - 2)
        instr = max(_MIN_INSTR, rest * 2 // 5)
        return instr, rest - instr

    def on_resize(self, _event: Resize) -> None:
        self.set_class(self.wide, "-wide")
        if self._widths != self._column_widths():
            self.show(self._status)

    def show(self, status: ImageStatus | None) -> None:
        # a refresh of the image already shown keeps the highlighted step
        same = status is not None and self._status is not None \
            and status.name == self._status.name
        self._status = status
        title = self.query_one("#plan-title", Static)
        table = self.table
        keep = table.cursor_row
        table.clear(columns=True)
        self._widths = self._column_widths()
        instr_w, reason_w = self._widths
        table.add_column("Line", key="line", width=_LINE_W)
        table.add_column("Plan", key="mark", width=_MARK_W)
        table.add_column("Instruction", key="instruction", width=instr_w)
        table.add_column("Reason", key="reason", width=reason_w)
        if status is None:
            title.update(Text("Loading the project…", style=style(self.app, "muted")))
            self._steps = []
            self._show_detail()
            return
        title.update(self._title(status))
        plan = status.plan
        self._steps = list(plan.steps) if plan is not None else []
        for i, step in enumerate(self._steps):
            label, role = step_mark(step)
            table.add_row(
                Text(str(step.line), style=style(self.app, "muted")),
                Text(label, style=style(self.app, role)),
                cell(short(" ".join(step.instruction.split()), instr_w)),
                cell(short(step.reason, reason_w)),
                key=str(i),
            )
        if self._steps:
            first = next((i for i, s in enumerate(self._steps) if not s.cached), 0)
            table.move_cursor(row=keep if same and 0 <= keep < len(self._steps) else first)
        self._show_detail()

    def _title(self, status: ImageStatus) -> Text:
        plan = status.plan
        head = join((status.name, "bold"), "  ", plain(status.dockerfile), " → ",
                    plain(status.tag))
        if plan is None:
            return join(head, "\n", plain(status.reason or "no plan", style(self.app, "error")))
        role = "warning" if plan.first_rebuild is not None else "success"
        out = join(head, "\n", plain(plan.summary, style(self.app, role)))
        for note in plan.notes:
            out.append("\n")
            out.append_text(plain(f"! {note}", style(self.app, "warning")))
        return out

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "steps":
            event.stop()
            self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#step-detail", Static)
        status = self._status
        row = self.table.cursor_row
        if status is None or not self._steps or not 0 <= row < len(self._steps):
            text = Text("")
            if status is not None and status.commits:
                text = self._image_commits(status)
            detail.update(text)
            return
        step = self._steps[row]
        label, role = step_mark(step)
        out = join((f"line {step.line}  ", style(self.app, "muted")),
                   plain(" ".join(step.instruction.split()), "bold"), "\n",
                   (label, f"bold {style(self.app, role)}"), ": ", plain(step.reason))
        if step.files:
            out.append("\nFiles: ", style=style(self.app, "muted"))
            shown = ", ".join(step.files[:8])
            more = f" (+{len(step.files) - 8} more)" if len(step.files) > 8 else ""
            out.append_text(plain(shown + more))
        if step.commits:
            out.append("\nCommits:", style=style(self.app, "muted"))
            for line in commit_lines(step.commits, style(self.app, "accent")):
                out.append("\n")
                out.append_text(line)
        elif status.commits and not step.cached:
            out.append("\n")
            out.append_text(self._image_commits(status))
        detail.update(out)

    def _image_commits(self, status: ImageStatus) -> Text:
        since = f" since {status.local_revision[:7]}" if status.local_revision else ""
        out = Text()
        out.append(f"Commits touching {status.name}'s inputs{since}:",
                   style=style(self.app, "muted"))
        for line in commit_lines(status.commits, style(self.app, "accent")):
            out.append("\n")
            out.append_text(line)
        return out
