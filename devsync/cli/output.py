"""Human output for the CLI: tables coloured only on a terminal, and event rendering.

Everything derived from a repository (file names, commit messages, Dockerfile text) goes
through `clean()` so a hostile clone cannot inject terminal escape sequences.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from devsync.events import (
    AlreadyInSync,
    Done,
    Event,
    ImageBuilt,
    ImageSynced,
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
from devsync.ops.verdict import IN_SYNC, MISSING, STALE, UNKNOWN
from devsync.prompt.sanitize import clean

if TYPE_CHECKING:
    from pathlib import Path

    from devsync.ops.answers import PlanAnswer
    from devsync.ops.plan import ImagePlan
    from devsync.ops.session import Session
    from devsync.ops.snapshot import RepoInfo
    from devsync.ops.status import ImageStatus

def _use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class _Style:
    def __init__(self, stream: TextIO) -> None:
        self.on = _use_colour(stream)

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text


STATE_COLOUR = {IN_SYNC: "32", STALE: "33", MISSING: "31", UNKNOWN: "2"}


def _table(rows: list[list[str]], headers: list[str]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for r in rows:
        out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return out


def print_status(repo: RepoInfo, statuses: list[ImageStatus],
                 engine_problem: str | None, stream: TextIO = sys.stdout) -> None:
    style = _Style(stream)
    head = repo.head or "(no commits)"
    branch = repo.branch or "(detached)"
    print(f"{clean(repo.root)}  {style(clean(branch), '1')} @ {head}", file=stream)
    if engine_problem:
        print(style(f"engine: {clean(engine_problem)}", "31"), file=stream)
    headers = ["IMAGE", "STATE", "LOCAL", "DEPLOYED", "WHY", "NEXT"]
    compose = any(s.services for s in statuses)
    if compose:  # which Docker Compose services each image serves
        headers.insert(1, "SERVICES")
    rows = []
    for s in statuses:
        local = s.tag if s.local_id else "-"
        verdict = s.verdict
        row = [s.name, verdict.state, clean(local), clean(s.deployed or "-"),
               clean(verdict.cause), clean(verdict.action or "-")]
        if compose:
            row.insert(1, clean(",".join(s.services)) or "-")
        rows.append(row)
    lines = _table(rows, headers)
    print(style(lines[0], "1"), file=stream)
    for s, line in zip(statuses, lines[1:], strict=True):
        colour = STATE_COLOUR.get(s.state, "0")
        print(line.replace(s.state, style(s.state, colour), 1), file=stream)


def print_plan(plan: ImagePlan, stream: TextIO = sys.stdout) -> None:
    style = _Style(stream)
    print(style(f"{plan.name}", "1") + f"  {clean(plan.dockerfile)} -> {clean(plan.tag)}",
          file=stream)
    if plan.base_sync in ("pull", ""):  # a sync that takes the registry's base builds none
        said = ("the registry's is what this checkout builds: pulled"
                if plan.base_sync == "pull" else "the local one is what this checkout builds")
        print(f"  not built here: {said}", file=stream)
        print(file=stream)
        return
    if plan.builder == "buildkit":
        way = "the docker CLI" if plan.transport == "cli" else "the Engine API"
        print(f"  builder: BuildKit, through {way}", file=stream)
    if plan.cache_from:
        print(f"  cache from: {clean(', '.join(plan.cache_from))}", file=stream)
    for note in plan.notes:
        print(style(f"  note: {clean(note)}", "33"), file=stream)
    for step in plan.steps:
        if step.kind == "skip":
            mark = style("  skip   ", "2")
        elif step.cached:
            mark = style("  cached ", "32")
        elif not step.certain:
            mark = style("  maybe  ", "33")  # reused only if the engine finds a match
        else:
            mark = style("  REBUILD", "33")
        instruction = clean(step.instruction)
        if len(instruction) > 60:
            instruction = instruction[:57] + "..."
        print(f"{mark} {step.line:>4}  {instruction}", file=stream)
        if not step.cached and step.reason and not step.reason.startswith("rebuilds after"):
            print(style(f"           why: {clean(step.reason)}", "33"), file=stream)
            shown = [c for c in step.commits if c["short"] not in step.reason]
            for c in shown[:3]:
                print(f"                {c['short']} {clean(c['author'])}: "
                      f"{clean(c['summary'])}", file=stream)
    print(f"  {clean(plan.summary)}", file=stream)
    print(file=stream)


def print_unplanned(answer: PlanAnswer, stream: TextIO = sys.stdout) -> None:
    """An image that could not be planned: its own entry, with the error, no steps."""
    style = _Style(stream)
    print(style(f"{answer.name}", "1") + f"  {clean(answer.dockerfile)} -> {clean(answer.tag)}",
          file=stream)
    error = answer.error
    print(style(f"  {UNKNOWN}: {clean(error.message if error else '')}", "31"), file=stream)
    if error is not None and error.hint:
        print(f"  hint: {clean(error.hint)}", file=stream)
    print(file=stream)


def confirm(question: str) -> bool:
    try:
        answer = input(f"devsync: {question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class EventPrinter:
    """Renders a stream of events as text (or JSON lines).

    Used as a context manager, it ends an open progress line however the operation ends, so
    what is said next (an error, "interrupted" after Ctrl-C) starts on a line of its own."""

    def __init__(self, *, as_json: bool = False, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = sys.stdout if stream is None else stream
        self.tty = _use_colour(self.stream)
        self.style = _Style(self.stream)
        self._progress_shown = False
        self._open_step: tuple[str, int] | None = None

    def plan(self, plan: ImagePlan) -> None:
        self._clear_progress()
        print_plan(plan, self.stream)

    def _clear_progress(self) -> None:
        """The progress line gives its place to the next line."""
        if self._progress_shown and self.tty:
            self.stream.write("\r\x1b[2K")
            self._progress_shown = False

    def _line(self, text: str) -> None:
        self._clear_progress()
        print(text, file=self.stream)

    def show(self, event: Event) -> None:
        if self.as_json:
            print(json.dumps(event.to_json(), default=str), file=self.stream, flush=True)
            return
        handler = _SHOW.get(type(event))
        if handler is not None:
            handler(self, event)

    def _transfer(self, event: PullProgress | PushProgress) -> None:
        verb = "pull" if isinstance(event, PullProgress) else "push"
        text = (f"  {verb} {clean(event.reference)}: {event.layers_done}/"
                f"{event.layers_total} layers, {_mb(event.bytes_done)}/"
                f"{_mb(event.bytes_total)}")
        if self.tty:
            width = 20
            bar = "#" * int(event.share_done * width)
            self.stream.write(f"\r\x1b[2K{text} [{bar:<{width}}]")
            self.stream.flush()
            self._progress_shown = True

    def _phase(self, event: PhaseStarted) -> None:
        self._line(self.style(f"==> {event.image}: {event.phase}", "1")
                   + (f"  {clean(event.detail)}" if event.detail else ""))

    def _pull_started(self, event: PullStarted) -> None:
        self._line(f"  pulling {clean(event.reference)}")

    def _pull_finished(self, event: PullFinished) -> None:
        what = "already present" if event.already_present else "pulled"
        self._line(f"  {what} {clean(event.reference)}")

    def _step_started(self, event: StepStarted) -> None:
        self._open_step = (event.image, event.index)
        self._line(f"  step {event.index + 1}/{event.total}: {clean(event.instruction)}")

    def _step_finished(self, event: StepFinished) -> None:
        mark = self.style("cached", "32") if event.cached else self.style("rebuilt", "33")
        # BuildKit runs steps side by side: say which one, when it is not the last begun
        which = "" if self._open_step == (event.image, event.index) \
            else f" (step {event.index + 1})"
        self._open_step = None
        self._line(f"    -> {mark}{which}")

    def _log_line(self, event: LogLine) -> None:
        self._line(f"    {clean(event.text)}")

    def _warning(self, event: Warning_) -> None:
        self._line(self.style(f"  warning: {clean(event.message)}", "33"))

    def _built(self, event: ImageBuilt) -> None:
        fetched = (f"; fetched {event.fetched_layers} layers, {_mb(event.fetched_bytes)}"
                   if event.fetched_layers else "")
        self._line(f"  built {clean(event.tag)} ({event.image_id[:19]}): "
                   f"{event.steps_cached}/{event.steps_total} steps reused{fetched}")

    def _already_in_sync(self, event: AlreadyInSync) -> None:
        self._line(f"{self.style(f'==> {event.image}: in sync', '1')}  "
                   f"{clean(event.cause)}: nothing to do")

    def _replanned(self, event: Replanned) -> None:
        self._line(f"  planned again on the base built here: {clean(event.summary)}")

    def _pushed(self, event: Pushed) -> None:
        self._line(f"  pushed {clean(event.reference)} {event.digest}")

    def _done(self, event: Done | ImageSynced) -> None:
        self._line(self.style(f"done: {clean(event.summary)}", "32"))
        following = event.next if isinstance(event, Done) else None
        if following is not None:
            why = f"   ({following.why})" if following.why else ""
            self._line(f"next: {following.command}{why}")

    def finish(self) -> None:
        """End the progress line, if one is open."""
        if self._progress_shown:
            print(file=self.stream, flush=True)
            self._progress_shown = False

    def __enter__(self) -> EventPrinter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.finish()


# One handler per event type; a type not here (LayerProgress) prints nothing.
_SHOW: dict[type[Event], Callable[[EventPrinter, Any], None]] = {
    PullProgress: EventPrinter._transfer,
    PushProgress: EventPrinter._transfer,
    PhaseStarted: EventPrinter._phase,
    PullStarted: EventPrinter._pull_started,
    PullFinished: EventPrinter._pull_finished,
    StepStarted: EventPrinter._step_started,
    StepFinished: EventPrinter._step_finished,
    LogLine: EventPrinter._log_line,
    Warning_: EventPrinter._warning,
    ImageBuilt: EventPrinter._built,
    Pushed: EventPrinter._pushed,
    Replanned: EventPrinter._replanned,
    AlreadyInSync: EventPrinter._already_in_sync,
    ImageSynced: EventPrinter._done,
    Done: EventPrinter._done,
}


def warn(text: str) -> None:
    """One `devsync: warning:` line on stderr (stdout stays clean for --json)."""
    print(f"devsync: warning: {clean(text)}", file=sys.stderr)


def open_session(start: Path, *, need_engine: bool) -> Session:
    """The core's Session, with its warnings said on stderr."""
    from devsync.ops.session import Session

    session = Session(start, need_engine=need_engine)
    for text in session.warnings:
        warn(text)
    return session
