"""How the TUI words failures: a `DevsyncError` keeps its message and hint; anything else is a
bug, reported in one line (never a traceback on screen)."""

from __future__ import annotations

import threading
from typing import Any

from textual.worker import Worker

from devsync.errors import DevsyncError, InterruptedError_


class WorkerCancel(threading.Event):
    """A cancel flag that is also set when its Textual worker is cancelled, so core code that
    polls `is_set()` stops when the UI abandons the work (exclusive workers, app exit)."""

    def __init__(self, worker: Worker[Any] | None = None) -> None:
        super().__init__()
        self._worker = worker

    def bind(self, worker: Worker[Any]) -> None:
        self._worker = worker

    def is_set(self) -> bool:
        return super().is_set() or bool(self._worker is not None and self._worker.is_cancelled)


def describe(error: BaseException | None) -> tuple[str, str]:
    """(message, hint) for the user."""
    if isinstance(error, DevsyncError):
        return error.message, error.hint or ""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", ""
    name = type(error).__name__ if error is not None else "error"
    return (f"devsync hit an unexpected error: {name}: {error}",
            "this is a bug in devsync; please report it with the steps that led here")


def is_cancellation(error: BaseException | None) -> bool:
    return isinstance(error, InterruptedError_ | KeyboardInterrupt)
