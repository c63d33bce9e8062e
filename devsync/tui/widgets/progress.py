"""Per-layer pull/push progress: one row per layer with a bar bound to reactive state."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, ProgressBar, Static

from devsync.events import LayerProgress
from devsync.tui.text import plain

# statuses after which a layer needs no more bytes
_DONE = ("Pull complete", "Already exists", "Layer already exists", "Pushed", "Mounted from",
         "Download complete", "Verifying Checksum", "Extracting")
_FINISHED = ("Pull complete", "Already exists", "Layer already exists", "Pushed",
             "Mounted from")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class LayerStatus(Static):
    """What the engine says about a layer, as plain text."""

    text: reactive[str] = reactive("")

    def render(self) -> Text:
        return plain(self.text)


class LayerRow(Horizontal):
    """One layer: its id, a bar, and what the engine says it is doing."""

    progress: reactive[float] = reactive(0.0)
    total: reactive[float | None] = reactive[float | None](1.0)
    status: reactive[str] = reactive("")

    def __init__(self, layer: str) -> None:
        super().__init__(classes="layer")
        self.layer_id = layer

    def compose(self) -> ComposeResult:
        yield Label(plain(self.layer_id[:12]), classes="layer-id")
        yield ProgressBar(show_eta=False, classes="layer-bar").data_bind(
            progress=LayerRow.progress, total=LayerRow.total)
        yield LayerStatus(classes="layer-status").data_bind(text=LayerRow.status)

    layer_bytes = 0  # its size, once the engine says

    @property
    def finished(self) -> bool:
        return self.status.startswith(_FINISHED)

    def apply(self, event: LayerProgress) -> None:
        status = event.status
        if event.total:
            self.layer_bytes = event.total
            self.total = float(event.total)
            self.progress = float(min(event.current, event.total))
            status = f"{status} {human_bytes(event.current)}/{human_bytes(event.total)}"
        elif status.startswith(_DONE):
            # no byte counts: a finished step fills the bar
            self.total = self.total or 1.0
            if status.startswith(_FINISHED):
                self.progress = self.total or 1.0
        self.status = status
        self.set_class(self.finished, "-done")
