"""The CLI's progress line on a terminal: whatever is said next starts on a line of its own."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devsync.cli import commands
from devsync.cli.output import EventPrinter
from devsync.events import Event, PullProgress, PullStarted


class _Terminal(io.StringIO):
    """stdout and stderr both, as they share one terminal."""

    def isatty(self) -> bool:
        return True


def _terminal(monkeypatch: pytest.MonkeyPatch) -> _Terminal:
    """(called in the test itself: pytest puts its own capture in place after fixtures)"""
    monkeypatch.delenv("NO_COLOR", raising=False)
    screen = _Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr("sys.stderr", screen)
    return screen


def _lines(screen: _Terminal) -> list[str]:
    """What the terminal shows: each \\r or erase-line starts its line afresh."""
    shown: list[str] = []
    for raw in screen.getvalue().split("\n"):
        shown.append(raw.split("\r")[-1].replace("\x1b[2K", ""))
    return shown


def test_the_printer_ends_an_open_progress_line_however_the_operation_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _terminal(monkeypatch)
    with pytest.raises(KeyboardInterrupt), EventPrinter() as printer:
        printer.show(PullProgress("shop:1.0.1", 3, 14, 40_000_000, 150_000_000))
        raise KeyboardInterrupt
    assert terminal.getvalue().endswith("]\n")  # the bar's line, ended


def test_ctrl_c_during_a_pull_says_interrupted_on_a_line_of_its_own(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`devsync sync` as `main` runs it, the engine and the repository faked: Ctrl-C lands
    while the pull's progress line is open."""
    terminal = _terminal(monkeypatch)

    class _Session:
        def __enter__(self) -> _Session:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

        def images(self, _name: str | None) -> list[Any]:
            return []

    def sync(*_args: object, **_kw: object) -> Iterator[Event]:
        yield PullStarted("shop:1.0.1")
        yield PullProgress("shop:1.0.1", 3, 14, 40_000_000, 150_000_000)
        raise KeyboardInterrupt

    monkeypatch.setattr("devsync.cli.output.open_session", lambda *_a, **_k: _Session())
    monkeypatch.setattr("devsync.ops.operations.sync", sync)
    assert commands.run(["-C", str(tmp_path), "sync", "--yes"], own_process=False) == 130
    shown = _lines(terminal)
    assert shown[0] == "  pulling shop:1.0.1"
    assert shown[1].startswith("  pull shop:1.0.1: 3/14 layers")
    assert shown[2] == ("devsync: interrupted; nothing was left half-done (rerun to "
                        "continue)"), shown


def test_the_bar_shows_what_is_really_done_not_the_bytes_sized_so_far(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """"layers 8/14" with every sized byte downloaded drew a full bar; the bar follows the
    event's share done (the engine adapter's weighing, tests/adapters/test_transfer_progress)."""
    terminal = _terminal(monkeypatch)
    with EventPrinter() as printer:
        printer.show(PullProgress("shop:1.0.7", 8, 14, 166_000_000, 166_000_000,
                                  fraction=0.357))
    shown = _lines(terminal)
    assert shown[0] == ("  pull shop:1.0.7: 8/14 layers, 166.0 MB/166.0 MB "
                        "[#######             ]"), shown
