"""A long operation (sync, base build, bump, publish) as it happens: per-layer pull bars, the
build steps lighting up cached or rebuilt, and the build log. `escape` or `c` cancels.

The operation is a generator of core events run in a thread worker. The worker only appends
events to a buffer; the UI drains it 20 times a second, so a chatty pull or build log never
floods the message queue and a generator that blocks never holds events back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, ProgressBar, RichLog, Static
from textual.worker import Worker, WorkerState

from devsync.events import (
    AlreadyInSync,
    Done,
    Event,
    ImageBuilt,
    ImageSynced,
    LayerProgress,
    LogLine,
    PhaseStarted,
    PullFinished,
    PullProgress,
    PullStarted,
    Pushed,
    PushProgress,
    Replanned,
    StepFinished,
    StepStarted,
    Warning_,
)
from devsync.tui.errors import WorkerCancel, describe, is_cancellation
from devsync.tui.text import cell, join, plain, short
from devsync.tui.widgets.palette import style
from devsync.tui.widgets.progress import LayerRow, human_bytes

if TYPE_CHECKING:
    from devsync.ops.plan import ImagePlan

Runner = Callable[[threading.Event], Iterator[Event]]

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"

_MAX_LAYERS = 40
_DRAIN_SECONDS = 0.05
_MAX_PER_TICK = 500


class OperationScreen(Screen[bool]):
    """Runs `runner` and shows its events; dismisses with True when it succeeded."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("c", "cancel", "Cancel", show=False),
        Binding("escape", "close", "Close"),
        # priority: the focused step table would take enter for itself
        Binding("enter", "close", "Close", show=False, priority=True),
    ]

    transfer_done: reactive[float] = reactive(0.0)
    transfer_total: reactive[float | None] = reactive[float | None](None)
    state: reactive[str] = reactive(RUNNING)

    def __init__(self, title: str, runner: Runner, plans: Sequence[ImagePlan] = ()) -> None:
        super().__init__()
        self.title_text = title
        self._runner = runner
        self._plans = list(plans)
        self.cancel_event = WorkerCancel()
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._layers: dict[str, LayerRow] = {}
        self._layers_moved = False  # a layer row changed since the panel was last sorted
        self._rows: dict[tuple[str, int], str] = {}
        self._phase = ""
        self._summary = ""
        self._error: tuple[str, str] | None = None
        self.events_seen = 0
        self._worker: Worker[None] | None = None

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="op"):
            yield Static(id="op-title")
            with Horizontal(id="transfer"):
                yield Label(id="transfer-label")
                yield ProgressBar(id="transfer-bar", show_eta=False).data_bind(
                    progress=OperationScreen.transfer_done, total=OperationScreen.transfer_total)
            # not focusable: the step table keeps the focus whichever rows come and go
            yield VerticalScroll(id="layers", can_focus=False)
            steps: DataTable[Text] = DataTable(id="op-steps", cursor_type="row")
            yield steps
            yield RichLog(id="op-log", markup=False, highlight=False, wrap=True,
                          max_lines=5000, auto_scroll=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        steps = self.query_one("#op-steps", DataTable)
        several = len(self._plans) > 1
        number = max([len(p.name) for p in self._plans] + [0]) + 4 if several else 4
        steps.add_column("#", key="n", width=number)
        steps.add_column("Plan", key="plan", width=7)
        steps.add_column("Result", key="result", width=10)
        # the step text gets what is left, so no sideways scrolling at 80 columns
        steps.add_column("Step", key="step", width=max(20, self.app.size.width - number - 7
                                                        - 10 - 2 * 4 - 4))
        steps.border_title = "Build steps"
        self.query_one("#op-log", RichLog).border_title = "Log"
        self.query_one("#layers").border_title = "Layers"
        for plan in self._plans:
            built = [s for s in plan.steps if s.kind != "skip"]
            for i, step in enumerate(built):
                self._add_step_row(plan.name, i, " ".join(step.instruction.split()),
                                   predicted=step.cached if step.certain else None,
                                   prefix=several)
        self.query_one("#transfer").display = False
        self.query_one("#layers").display = False
        self._render_title()
        self.set_interval(_DRAIN_SECONDS, self._drain)
        steps.focus()
        self._worker = self._run()
        self.cancel_event.bind(self._worker)

    def _plan_cell(self, predicted: bool | None) -> Text:
        if predicted is None:
            return Text("")
        return Text("cached" if predicted else "rebuild",
                    style=style(self.app, "success" if predicted else "warning"))

    def _add_step_row(self, image: str, index: int, instruction: str, *,
                      predicted: bool | None, prefix: bool) -> str:
        key = f"{image}:{index}"
        steps = self.query_one("#op-steps", DataTable)
        plan_cell = self._plan_cell(predicted)
        label = f"{image} {index + 1}" if prefix else str(index + 1)
        steps.add_row(Text(label, style=style(self.app, "muted")), plan_cell,
                      Text("·", style=style(self.app, "muted")), cell(instruction), key=key)
        self._rows[(image, index)] = key
        return key

    # -- the worker -----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="operation", exit_on_error=False)
    def _run(self) -> None:
        events = self._runner(self.cancel_event)
        try:
            for event in events:
                with self._lock:
                    self._pending.append(event)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker:
            return
        if event.state == WorkerState.SUCCESS:
            self._drain(everything=True)
            if self.state == RUNNING:
                self.state = CANCELLED if self.cancel_event.is_set() else DONE
        elif event.state == WorkerState.ERROR:
            self._drain(everything=True)
            error = event.worker.error
            if is_cancellation(error) or self.cancel_event.is_set():
                self.state = CANCELLED
            else:
                message, hint = describe(error)
                self._fail(message, hint)
        elif event.state == WorkerState.CANCELLED:
            self.state = CANCELLED

    def _fail(self, message: str, hint: str) -> None:
        self._error = (message, hint)
        self.state = FAILED
        log = self.query_one("#op-log", RichLog)
        log.write(join(("error: ", f"bold {style(self.app, 'error')}"), plain(message)))
        if hint:
            log.write(join(("hint: ", style(self.app, "muted")), plain(hint)))
        from devsync.tui.screens.modals import ErrorScreen

        self.app.push_screen(ErrorScreen(message, hint, title=f"{self.title_text} failed"))

    # -- events ---------------------------------------------------------------------------

    def _drain(self, *, everything: bool = False) -> None:
        with self._lock:
            # a burst (a chatty build log) is spread over several ticks, so keys and
            # redraws still get their turn
            cut = len(self._pending) if everything else _MAX_PER_TICK
            batch, self._pending = self._pending[:cut], self._pending[cut:]
        for event in batch:
            self.events_seen += 1
            self.apply(event)
        if self._layers_moved:
            self._sort_layers()
        if batch:
            # lines written before the log had its size are laid out later, without
            # following the end; follow it once the new lines are in place
            log = self.query_one("#op-log", RichLog)
            self.call_after_refresh(log.scroll_end, animate=False)

    def apply(self, event: Event) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)
        self._render_title()

    def _log(self) -> RichLog:
        return self.query_one("#op-log", RichLog)

    def _on_phase(self, event: PhaseStarted) -> None:
        self._phase = f"{event.image}: {event.phase}"
        text = join((f"── {event.image}: {event.phase} ", f"bold {style(self.app, 'accent')}"))
        if event.detail:
            text.append_text(plain(event.detail, style(self.app, "muted")))
        self._log().write(text)

    def _on_pull_started(self, event: PullStarted) -> None:
        self._start_transfer(f"Pulling {_short_ref(event.reference)}")
        self._log().write(join(("pull ", style(self.app, "muted")), plain(event.reference)))

    def _on_transfer(self, event: PullProgress | PushProgress) -> None:
        verb = "Pulling" if isinstance(event, PullProgress) else "Pushing"
        self.query_one("#transfer").display = True
        # (what is really done, not the bytes of the layers sized so far: see the event)
        self.transfer_total = 100.0
        self.transfer_done = 100.0 * event.share_done
        size = (f" · {human_bytes(event.bytes_done)}/{human_bytes(event.bytes_total)}"
                if event.bytes_total else "")
        self._transfer_label(f"{verb} {_short_ref(event.reference)} · layers "
                             f"{event.layers_done}/{event.layers_total}{size}")

    def _on_pull_finished(self, event: PullFinished) -> None:
        self.transfer_total = self.transfer_total or 1.0
        self.transfer_done = self.transfer_total or 1.0
        what = "already here" if event.already_present else "pulled"
        self._transfer_label(f"{_short_ref(event.reference)} {what}")
        self._log().write(join(plain(event.reference), (f" {what}", style(self.app, "muted"))))

    def _on_pushed(self, event: Pushed) -> None:
        self.transfer_total = self.transfer_total or 1.0
        self.transfer_done = self.transfer_total or 1.0
        self._transfer_label(f"{_short_ref(event.reference)} pushed")
        self._log().write(join(("pushed ", style(self.app, "success")),
                               plain(event.reference)))

    def _on_log_line(self, event: LogLine) -> None:
        self._log().write(plain(event.text.rstrip("\n")))

    def _on_warning(self, event: Warning_) -> None:
        self._log().write(join(("warning: ", f"bold {style(self.app, 'warning')}"),
                               plain(event.message)))

    def _on_built(self, event: ImageBuilt) -> None:
        self._log().write(join(("built ", style(self.app, "success")), plain(event.tag),
                               (f" · {event.steps_cached}/{event.steps_total} steps reused",
                                style(self.app, "muted"))))

    def _on_replanned(self, event: Replanned) -> None:
        """The image was planned again on the base this sync built: its Plan column now
        shows the plan the build follows."""
        steps = self.query_one("#op-steps", DataTable)
        for index, predicted in enumerate(event.predicted):
            key = self._rows.get((event.image, index))
            if key is not None:
                steps.update_cell(key, "plan", self._plan_cell(predicted))
        self._log().write(join(("planned again ", style(self.app, "muted")),
                               plain(f"on the base built here: {event.summary}")))

    def _on_already_in_sync(self, event: AlreadyInSync) -> None:
        self._log().write(join((f"{event.image} in sync ", style(self.app, "success")),
                               plain(f"{event.cause}: nothing to do")))

    def _on_done(self, event: Done | ImageSynced) -> None:
        summary = event.summary
        if isinstance(event, Done) and event.next is not None:
            summary = f"{summary}; next: {event.next.what} ({event.next.key})"
        self._summary = summary
        if summary:
            role = "success" if not isinstance(event, Done) or event.ok else "error"
            self._log().write(join(("done: ", f"bold {style(self.app, role)}"),
                                   plain(summary)))

    def _start_transfer(self, label: str) -> None:
        self.query_one("#transfer").display = True
        layers = self.query_one("#layers", VerticalScroll)
        layers.remove_children()
        self._layers.clear()
        self.transfer_total = None
        self.transfer_done = 0.0
        self._transfer_label(label)

    def _transfer_label(self, text: str) -> None:
        self.query_one("#transfer-label", Label).update(plain(text))

    def _layer(self, event: LayerProgress) -> None:
        row = self._layers.get(event.layer)
        if row is None:
            if not event.layer or len(self._layers) >= _MAX_LAYERS:
                return
            row = LayerRow(event.layer)
            self._layers[event.layer] = row
            layers = self.query_one("#layers", VerticalScroll)
            layers.display = True
            layers.mount(row)
        row.apply(event)
        self._layers_moved = True

    def _sort_layers(self) -> None:
        """What is still moving on top, biggest first, then what is done: the panel shows a
        few rows, and the 150 MB layer being fetched matters more than the small ones that
        were already here."""
        self._layers_moved = False
        layers = self.query_one("#layers", VerticalScroll)
        shown = [child for child in layers.children if isinstance(child, LayerRow)]
        wanted = sorted(shown, key=lambda row: (row.finished, -row.layer_bytes))
        if wanted == shown:
            return
        for row in reversed(wanted):  # each to the top, the last one wanted first
            if layers.children and layers.children[0] is not row:
                layers.move_child(row, before=0)

    def _step_started(self, event: StepStarted) -> None:
        steps = self.query_one("#op-steps", DataTable)
        key = self._rows.get((event.image, event.index))
        if key is None and self._planned(event.image) and event.instruction.startswith("LABEL "):
            # the labels devsync stamps on its builds come after the Dockerfile's own steps
            self._phase = f"{event.image}: labels"
            return
        if key is None:
            key = self._add_step_row(event.image, event.index,
                                     " ".join(event.instruction.split()), predicted=None,
                                     prefix=len(self._plans) > 1)
        else:
            steps.update_cell(key, "step", cell(" ".join(event.instruction.split())))
        running = Text("▶ running", style=f"bold {style(self.app, 'accent')}")
        steps.update_cell(key, "result", running)
        steps.move_cursor(row=steps.get_row_index(key))
        self._phase = f"{event.image}: step {event.index + 1}/{event.total}"

    def _planned(self, image: str) -> bool:
        return any(p.name == image for p in self._plans)

    def _step_finished(self, event: StepFinished) -> None:
        steps = self.query_one("#op-steps", DataTable)
        key = self._rows.get((event.image, event.index))
        if key is None:
            return
        if event.cached:
            cell = Text("✓ cached", style=style(self.app, "success"))
        else:
            cell = Text("↻ rebuilt", style=style(self.app, "warning"))
        if event.predicted_cached is not None and event.predicted_cached != event.cached:
            cell.append(" !", style=f"bold {style(self.app, 'error')}")
        steps.update_cell(key, "result", cell)

    # -- title and actions ----------------------------------------------------------------

    def watch_state(self, _state: str) -> None:
        if self.is_mounted:
            self._render_title()
            self.refresh_bindings()

    def _render_title(self) -> None:
        title = self.query_one("#op-title", Static)
        roles = {RUNNING: "accent", DONE: "success", FAILED: "error", CANCELLED: "warning"}
        words = {RUNNING: "running", DONE: "done", FAILED: "failed", CANCELLED: "cancelled"}
        badge = f"bold reverse {style(self.app, roles[self.state])}"
        head = join((self.title_text, "bold"), "  ", (f" {words[self.state]} ", badge))
        if self.state == RUNNING and self._phase:
            head.append_text(join("  ", plain(short(self._phase, 60), style(self.app, "muted"))))
        elif self.state == DONE and self._summary:
            head.append_text(join("  ", plain(self._summary)))
        elif self.state == FAILED and self._error:
            head.append_text(join("  ", plain(self._error[0], style(self.app, "error"))))
        elif self.state == CANCELLED:
            head.append_text(Text("  nothing half-done was kept; rerun to continue",
                                  style=style(self.app, "muted")))
        title.update(head)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.running
        if action == "close":
            return not self.running
        return True

    def action_cancel(self) -> None:
        if not self.running:
            return
        if self.cancel_event.is_set():
            # asked twice: stop waiting for the core to wind down and let the user go
            if self._worker is not None:
                self._worker.cancel()
            self.state = CANCELLED
            return
        # The core sees the flag, aborts the engine's stream and raises InterruptedError_;
        # only then is the operation over (and its lock released).
        self.cancel_event.set()
        self._phase = "cancelling…"
        self._render_title()
        self.refresh_bindings()

    def action_close(self) -> None:
        if not self.running:
            self.dismiss(self.state == DONE)


def _short_ref(ref: str) -> str:
    """`registry.example.com/team/app:1.0.7` -> `app:1.0.7` (the log has the full name)."""
    return ref.rsplit("/", 1)[-1]


# One handler per event type; an event of a type not here changes nothing but the title.
_HANDLERS: dict[type[Event], Callable[[OperationScreen, Any], None]] = {
    PhaseStarted: OperationScreen._on_phase,
    PullStarted: OperationScreen._on_pull_started,
    LayerProgress: OperationScreen._layer,
    PullProgress: OperationScreen._on_transfer,
    PushProgress: OperationScreen._on_transfer,
    PullFinished: OperationScreen._on_pull_finished,
    Pushed: OperationScreen._on_pushed,
    StepStarted: OperationScreen._step_started,
    StepFinished: OperationScreen._step_finished,
    LogLine: OperationScreen._on_log_line,
    Warning_: OperationScreen._on_warning,
    ImageBuilt: OperationScreen._on_built,
    ImageSynced: OperationScreen._on_done,
    Replanned: OperationScreen._on_replanned,
    AlreadyInSync: OperationScreen._on_already_in_sync,
    Done: OperationScreen._on_done,
}
