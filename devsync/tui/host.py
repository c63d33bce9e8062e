"""What the screens need of the app, named without importing it: `devsync.tui.app` imports
every screen, so a screen that imported the app back would close an import circle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from devsync.tui.services import Services, Snapshot


class Host(Protocol):
    """The parts of `DevsyncApp` a screen reads or calls (`self.app`, cast to this)."""

    services: Services
    snapshot: Snapshot | None
    busy: bool
    load_error: tuple[str, str] | None

    def start_sync(self, names: Sequence[str] | None = None, *,
                   after: Callable[[], None] | None = None) -> None: ...
