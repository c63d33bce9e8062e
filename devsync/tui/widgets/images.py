"""The dashboard's table of images: state badge, local vs deployed, and why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.events import Resize
from textual.widgets import DataTable

from devsync.ops.verdict import IN_SYNC, MISSING, ROLE_APP, ROLE_BASE, STALE, UNKNOWN
from devsync.tui.text import cell, short
from devsync.tui.widgets.palette import badge_label, badge_style, style

if TYPE_CHECKING:
    from devsync.ops.status import ImageStatus

_FIXED = {"image": 12, "state": 9, "local": 10, "deployed": 12}
_MIN_WHY = 20


def local_text(status: ImageStatus) -> str:
    if not status.local_id:
        return "—"
    if status.role == ROLE_BASE:
        return "pulled"
    if status.local_revision:
        return f"@{status.local_revision[:7]}"
    return "built"


def image_text(status: ImageStatus) -> str:
    """The image's name, and the Docker Compose services it serves: `app (web)`."""
    return f"{status.name} ({','.join(status.services)})" if status.services else status.name


def deployed_text(status: ImageStatus) -> str:
    return status.deployed_tag or "—"


class ImagesTable(DataTable[Text]):
    """One row per image; the highlighted row is the image whose plan is shown."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._statuses: list[ImageStatus] = []
        self._why = 0

    def on_mount(self) -> None:
        self._add_columns(self._why_width())

    def _add_columns(self, why_width: int) -> None:
        self._why = why_width
        self.add_column("Image", key="image", width=_FIXED["image"])
        self.add_column("State", key="state", width=_FIXED["state"])
        self.add_column("Local", key="local", width=_FIXED["local"])
        self.add_column("Deployed", key="deployed", width=_FIXED["deployed"])
        self.add_column("Why", key="why", width=why_width)

    def _why_width(self) -> int:
        width = self.size.width or self.app.size.width
        used = sum(_FIXED.values()) + 2 * (len(_FIXED) + 1) + 2
        return max(_MIN_WHY, width - used)

    def on_resize(self, _event: Resize) -> None:
        if self._why != self._why_width():
            self.show(self._statuses, keep=self.selected)

    @property
    def selected(self) -> str | None:
        if not self._statuses or self.cursor_row < 0 or self.cursor_row >= len(self._statuses):
            return None
        return self._statuses[self.cursor_row].name

    def status_at(self, row: int) -> ImageStatus | None:
        return self._statuses[row] if 0 <= row < len(self._statuses) else None

    def show(self, statuses: Sequence[ImageStatus], *, keep: str | None) -> None:
        self._statuses = list(statuses)
        why_width = self._why_width()
        self.clear(columns=True)
        self._add_columns(why_width)
        for s in self._statuses:
            self.add_row(
                cell(short(image_text(s), _FIXED["image"])),
                Text(badge_label(s.state), style=badge_style(self.app, s.state)),
                Text(local_text(s), style=style(self.app, "muted") if not s.local_id else ""),
                cell(short(deployed_text(s), _FIXED["deployed"])),
                cell(short(s.verdict.cause, why_width)),
                key=s.name,
            )
        names = [s.name for s in self._statuses]
        if keep in names:
            self.move_cursor(row=names.index(keep))
        elif names:
            # first the image that needs attention
            order = {STALE: 0, MISSING: 1, UNKNOWN: 2, IN_SYNC: 3}
            first = min(range(len(names)), key=lambda i: (order.get(self._statuses[i].state, 4),
                                                          self._statuses[i].role != ROLE_APP, i))
            self.move_cursor(row=first)
