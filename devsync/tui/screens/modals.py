"""Modal dialogs: confirm an action, show an error with its hint, and the help screen."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from devsync.ops.verdict import IN_SYNC, MISSING, STALE, UNKNOWN
from devsync.tui.text import join, lines, plain
from devsync.tui.widgets.palette import style


class ConfirmScreen(ModalScreen[str | None]):
    """Asks before an action that changes something shared (a registry, a Dockerfile).

    Dismisses with None when cancelled, else with the input's value ("" without an input).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("n", "cancel", "No", show=False),
        Binding("y", "confirm", "Yes", show=False),
    ]

    def __init__(self, title: str, body: Text | str, *, confirm: str = "Confirm",
                 value: str | None = None, value_label: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._body = body
        self._confirm = confirm
        self._value = value
        self._value_label = value_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-dialog") as box:
            box.border_title = self._title
            body = self._body if isinstance(self._body, Text) else Text(self._body)
            yield Static(body, classes="dialog-body")
            if self._value is not None:
                yield Label(self._value_label)
                yield Input(self._value, id="confirm-value")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._confirm, variant="warning", id="confirm-yes")
                yield Button("Cancel", id="confirm-no")

    def on_mount(self) -> None:
        if self._value is not None:
            self.query_one(Input).focus()
        else:
            self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm-yes":
            self.action_confirm()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    def action_confirm(self) -> None:
        if self._value is None:
            self.dismiss("")
            return
        value = self.query_one(Input).value.strip()
        if value:
            self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorScreen(ModalScreen[None]):
    """A failure the user can act on: the message and the hint, never a traceback."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
    ]

    def __init__(self, message: str, hint: str = "", *, title: str = "Error") -> None:
        super().__init__(classes="dialog-screen")
        self._message = message
        self._hint = hint
        self._title = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error-dialog", id="error-dialog") as box:
            box.border_title = self._title
            text = lines(self._message, "bold")
            if self._hint:
                text.append("\n\n")
                text.append_text(join(("hint: ", style(self.app, "muted")), lines(self._hint)))
            yield Static(text, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="error-ok")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


HELP_KEYS = [
    ("↑ ↓, click", "choose an image; its plan shows below"),
    ("enter, tab", "move into the plan's steps (changed files and commits below)"),
    ("s", "sync: pull the deployed image and rebuild only what changed"),
    ("r", "refresh now, asking the registry for a newer deployed image"),
    ("o", "the onboarding checklist for this machine"),
    ("b", "build the next base image and push it"),
    ("u", "bump FROM in the app Dockerfile to the newest base"),
    ("p", "publish: build the app with labels and push REPO:VERSION"),
    ("t", "switch between the dark and the light theme"),
    ("escape, c", "cancel a running sync; escape closes dialogs"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit"),
]

HELP_STATES = [
    (IN_SYNC, "your local image is what this checkout builds, from the deployed image"),
    (STALE, "the Dockerfile, its inputs or the deployed image changed since your build"),
    (MISSING, "not built (or pulled) here yet"),
    (UNKNOWN, "devsync could not tell (engine or registry unreachable); see the reason"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-dialog") as box:
            box.border_title = "devsync help"
            with VerticalScroll():
                yield Static(self._text(), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="help-close")

    def _text(self) -> Group:
        accent = f"bold {style(self.app, 'accent')}"

        def table(rows: list[tuple[str, str]]) -> Table:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style=accent, no_wrap=True, width=11)
            grid.add_column(ratio=1)
            for key, what in rows:
                grid.add_row(key, what)
            return grid

        return Group(
            Text("devsync keeps your local Docker images in sync with what your team "
                 "deployed, and explains every rebuild before it happens.\n"),
            Text("Keys", style="bold underline"), table(HELP_KEYS),
            Text("\nStates", style="bold underline"), table(HELP_STATES),
            Text("\nThe view follows git and your files: commit, checkout, pull, rebase or "
                 "edit a Dockerfile and it updates within a second."),
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


def plain_body(*parts: str) -> Text:
    """A dialog body from repository-derived strings, never interpreted as markup."""
    out = Text()
    for i, part in enumerate(parts):
        if i:
            out.append("\n")
        out.append_text(plain(part))
    return out
