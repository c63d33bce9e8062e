"""Messages that worker threads post back to the UI thread."""

from __future__ import annotations

from textual.message import Message

from devsync.tui.services import CheckItem, Snapshot


class SnapshotReady(Message):
    """A status worker finished."""

    def __init__(self, snapshot: Snapshot, *, registry: bool) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.registry = registry


class FilesChanged(Message):
    """The watcher saw changes that may alter a status."""

    def __init__(self, paths: set[str]) -> None:
        super().__init__()
        self.paths = paths


class LookAgain(Message):
    """The pulse saw the engine or a registry change under the snapshot (`registry`: a
    registry that could not be asked answers again)."""

    def __init__(self, *, registry: bool) -> None:
        super().__init__()
        self.registry = registry


class ChecklistReady(Message):
    def __init__(self, items: list[CheckItem]) -> None:
        super().__init__()
        self.items = items
