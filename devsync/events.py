"""Typed progress events for long operations (pull, build, push, sync).

Operations in the core are generators of these events; the CLI prints them and the TUI turns
them into widgets. Neither view knows how a pull or build works, only how to show an event.
Events are plain frozen dataclasses so they can be posted across threads and serialised as
JSON lines (`to_json`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["event"] = _kind(type(self))
        return data


def _kind(cls: type) -> str:
    # PullProgress -> pull_progress; Warning_ -> warning (the underscore only keeps Python's
    # own Warning unshadowed)
    name = cls.__name__.rstrip("_")
    out = [name[0].lower()]
    for ch in name[1:]:
        if ch.isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@dataclass(frozen=True)
class PhaseStarted(Event):
    """A named phase of an operation begins (e.g. "pull", "build", "push")."""

    image: str
    phase: str
    detail: str = ""


@dataclass(frozen=True)
class PullStarted(Event):
    reference: str


@dataclass(frozen=True)
class LayerProgress(Event):
    """Progress of one layer of a pull or push, as the engine reports it."""

    reference: str
    layer: str
    status: str
    current: int = 0
    total: int = 0


class _Share:
    """What a progress bar shows of a pull or a push (a mixin of both, not an event)."""

    layers_done: int
    layers_total: int
    bytes_done: int
    bytes_total: int
    fraction: float | None

    @property
    def share_done(self) -> float:
        """0..1: the adapter's `fraction`, else bytes_done / bytes_total, else layers."""
        if self.fraction is not None:
            return self.fraction
        if self.bytes_total:
            return self.bytes_done / self.bytes_total
        return self.layers_done / self.layers_total if self.layers_total else 0.0


@dataclass(frozen=True)
class PullProgress(Event, _Share):
    """Aggregate pull progress over all layers seen so far."""

    reference: str
    layers_done: int
    layers_total: int
    bytes_done: int  # bytes transferred (a pull: downloaded; unpacking is not counted)
    bytes_total: int  # of the layers whose size the engine has said so far
    # how much of the transfer is really done, 0..1, as the engine adapter weighs it (a
    # pull's unpacking counted, layers not yet sized counted at the others' mean size, 1.0
    # only once every layer is done); None: bytes_done / bytes_total
    fraction: float | None = None


@dataclass(frozen=True)
class PullFinished(Event):
    reference: str
    digest: str = ""
    already_present: bool = False


@dataclass(frozen=True)
class StepStarted(Event):
    """The builder started Dockerfile step `index` (0-based, FROM included) of `total`."""

    image: str
    index: int
    total: int
    instruction: str
    line: int = 0


@dataclass(frozen=True)
class StepFinished(Event):
    image: str
    index: int
    cached: bool
    predicted_cached: bool | None = None


@dataclass(frozen=True)
class LogLine(Event):
    image: str
    text: str


@dataclass(frozen=True)
class PushProgress(Event, _Share):
    """Aggregate push progress over all layers seen so far (fields as PullProgress's)."""

    reference: str
    layers_done: int
    layers_total: int
    bytes_done: int
    bytes_total: int
    fraction: float | None = None


@dataclass(frozen=True)
class Warning_(Event):
    image: str
    message: str


@dataclass(frozen=True)
class ImageBuilt(Event):
    """A build's result. BuildKit builds also say what they fetched from registries as they
    went (`fetched_layers`, `fetched_bytes`: the lazy pulls of the layers they reused, and
    base layers) and which cache sources they could not import (`cache_import_errors`,
    "REF: error"; BuildKit builds on without them, reusing nothing they had)."""

    image: str
    tag: str
    image_id: str
    steps_cached: int
    steps_total: int
    fetched_layers: int = 0
    fetched_bytes: int = 0
    cache_import_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pushed(Event):
    reference: str
    digest: str = ""


@dataclass(frozen=True)
class Replanned(Event):
    """An image planned again in the middle of its sync, on the base the same sync has just
    built here: what each step it builds is now predicted to do (True reused, False rebuilt,
    None uncertain), in the plan's order, and the plan's summary. Views replace the plan they
    showed with this one, so the plan beside each step's result is the one the build follows."""

    image: str
    predicted: tuple[bool | None, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class AlreadyInSync(Event):
    """A plain sync (no image named) leaves this image alone: its status is in sync
    (`devsync.ops.policy.needs_sync`); `cause` is that verdict's words."""

    image: str
    cause: str = ""


@dataclass(frozen=True)
class ImageSynced(Event):
    """One image of a sync of several is done (the last one's is the operation's `Done`)."""

    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Next:
    """What to do after an operation, in each view's terms: a key in the TUI, a command on
    the command line."""

    what: str  # "bump FROM"
    key: str  # "u"
    command: str  # "devsync base bump"
    why: str = ""  # "points the app's FROM at the new base"


@dataclass(frozen=True)
class Done(Event):
    """The last event of every operation, exactly once. `ok` is always true: a failure
    raises instead (the field stays for --json readers and for positional callers)."""

    ok: bool = True
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    next: Next | None = None
