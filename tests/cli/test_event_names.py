"""The `--json` event names and the printer's one table of handlers."""

from __future__ import annotations

import io
import re

from devsync import events
from devsync.cli import output
from devsync.cli.output import EventPrinter
from devsync.events import Done, Event, Next, Warning_

KINDS = [c for c in vars(events).values()
         if isinstance(c, type) and issubclass(c, Event) and c is not Event]


def test_json_event_names_are_plain_words() -> None:
    names = {c.__name__: events._kind(c) for c in KINDS}
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", n) for n in names.values()), names
    assert names["Warning_"] == "warning"
    assert Warning_("app", "x").to_json() == {"event": "warning", "image": "app",
                                              "message": "x"}


def test_the_printer_has_a_handler_for_every_event_but_layer_progress() -> None:
    assert set(KINDS) - set(output._SHOW) == {events.LayerProgress}


def test_done_says_what_next() -> None:
    out = io.StringIO()
    printer = EventPrinter(stream=out)
    printer.show(Done(summary="pushed reg/shop:base-1.1.0",
                      next=Next("bump FROM", "u", "devsync base bump", "points FROM at it")))
    assert out.getvalue() == ("done: pushed reg/shop:base-1.1.0\n"
                              "next: devsync base bump   (points FROM at it)\n")
