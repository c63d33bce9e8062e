"""A BuildKit build's vertices as devsync events, whichever way the build was made.

Both ways of building report vertices (`_buildkit_progress` decodes the Engine API's trace
and the CLI's plain text; `RawJSONProgress` here reads buildx's `--progress=rawjson`).
`VertexEvents` turns their changes into the events a classic build makes: `StepStarted` /
`StepFinished` for the Dockerfile's steps (numbered as the caller's plan numbers them,
`StepMap`), `LogLine` for what a RUN prints, and `LayerProgress` / `PullProgress` for the
blobs BuildKit fetches as it goes (a reused layer is pulled only when the result needs it).
It also keeps what the build says only in passing: a cache source it could not import
(BuildKit goes on without it, silently: the vertex `importing cache manifest from REF` fails)
and the step a failure happened at.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devsync.adapters.engine._buildkit_progress import BuildkitVertex, _Vertices
from devsync.adapters.engine._failures import disk_full, looks_auth, out_of_disk, shorten
from devsync.errors import DevsyncError, EngineError, RegistryAuthError, UnknownBaseError
from devsync.events import Event, LayerProgress, LogLine, PullProgress, StepFinished, StepStarted
from devsync.model.buildkit import StepRef

_IMPORT_PREFIX = "importing cache manifest from "
_PROGRESS_INTERVAL = 0.2  # seconds between aggregated PullProgress events
_NAME_PREFIX = re.compile(r"^\[[^\]]*\]\s*")


@dataclass(frozen=True)
class StepMap:
    """The caller's numbers for a build's steps: `index[step]` out of `total`. A step the
    map does not know gets the next number after `total` (a row of its own)."""

    index: Mapping[StepRef, int] = field(default_factory=dict)
    total: int = 0


@dataclass
class _StepState:
    index: int
    started: bool = False
    finished: bool | None = None  # the `cached` last reported finished, None before
    logs: int = 0
    partial: bytes = b""


class VertexEvents:
    """Feed it every vertex that changed; it yields the events (see the module doc).

    `blob_sizes` (digest -> bytes) are the registry's sizes of the layers the build may
    fetch (its cache sources' and base's manifests): BuildKit reports a lazy pull without a
    byte count. `fetch_label` names those fetches in the progress events.
    """

    def __init__(self, image: str, steps: StepMap, *, blob_sizes: Mapping[str, int],
                 fetch_label: str) -> None:
        self.image = image
        self._steps = steps
        self._sizes = blob_sizes
        self._label = fetch_label
        self._state: dict[StepRef, _StepState] = {}
        self._extra = 0
        self.cached: dict[int, bool] = {}  # step number -> BuildKit's last word on it
        self.import_errors: dict[str, str] = {}  # cache source -> why it was not imported
        self.fetched: dict[str, int] = {}  # blob digest -> bytes
        self.failed: BuildkitVertex | None = None
        self._last_progress = 0.0
        self._reported = (-1, -1)

    @property
    def total(self) -> int:
        return self._steps.total + self._extra

    def vertex(self, vertex: BuildkitVertex) -> Iterator[Event]:
        """The events one vertex's new state makes."""
        if vertex.error and self.failed is None and not vertex.name.startswith(_IMPORT_PREFIX):
            self.failed = vertex
        if vertex.name.startswith(_IMPORT_PREFIX) and vertex.error:
            self.import_errors[vertex.name[len(_IMPORT_PREFIX):].strip()] = vertex.error
        yield from self._fetches(vertex)
        step = vertex.step
        if step is not None:
            yield from self._step(step, vertex)

    def _step(self, step: StepRef, vertex: BuildkitVertex) -> Iterator[Event]:
        state = self._state.get(step)
        if state is None:
            index = self._steps.index.get(step)
            if index is None:
                index = self._steps.total + self._extra
                self._extra += 1
            state = self._state[step] = _StepState(index)
        if not state.started and (vertex.started is not None or vertex.completed is not None
                                  or vertex.cached):
            state.started = True
            yield StepStarted(self.image, state.index, self.total,
                              _NAME_PREFIX.sub("", vertex.name, count=1))
        yield from self._logs(state, vertex)
        if vertex.completed is not None or vertex.cached:
            cached = bool(vertex.cached) and not vertex.error
            self.cached[state.index] = cached
            # a vertex can be reported done twice, cached then not (see _buildkit_progress):
            # the later word is said again
            if state.finished is None or state.finished != cached:
                state.finished = cached
                yield StepFinished(self.image, state.index, cached)

    def _logs(self, state: _StepState, vertex: BuildkitVertex) -> Iterator[Event]:
        for chunk in vertex.logs[state.logs:]:
            data = state.partial + chunk
            *lines, state.partial = data.split(b"\n")
            for line in lines:
                yield LogLine(self.image, line.decode("utf-8", "replace").rstrip("\r"))
        state.logs = len(vertex.logs)

    def _fetches(self, vertex: BuildkitVertex) -> Iterator[Event]:
        changed = False
        for blob in vertex.blobs_pulled:
            current, whole = vertex.statuses.get(blob, vertex.statuses.get(f"pulling {blob}",
                                                                            (0, 0)))
            size = max(current, whole) or self._sizes.get(blob, 0)
            if self.fetched.get(blob) != size:
                self.fetched[blob] = size
                changed = True
                yield LayerProgress(self._label, blob.removeprefix("sha256:")[:12],
                                    "Downloading" if current < whole else "Pull complete",
                                    current or size, whole or size)
        if changed:
            now = time.monotonic()
            snapshot = (len(self.fetched), self.fetched_bytes)
            if snapshot != self._reported and now - self._last_progress >= _PROGRESS_INTERVAL:
                self._last_progress, self._reported = now, snapshot
                yield self._progress()

    @property
    def fetched_bytes(self) -> int:
        return sum(self.fetched.values())

    def _progress(self) -> PullProgress:
        n = len(self.fetched)
        return PullProgress(self._label, n, n, self.fetched_bytes, self.fetched_bytes)

    def finish(self) -> Iterator[Event]:
        """What is left to say once the build has ended: the last of any partial log lines,
        and the fetch totals."""
        for state in self._state.values():
            if state.partial:
                yield LogLine(self.image, state.partial.decode("utf-8", "replace"))
                state.partial = b""
        if self.fetched and (len(self.fetched), self.fetched_bytes) != self._reported:
            self._reported = (len(self.fetched), self.fetched_bytes)
            yield self._progress()

    def failure(self, message: str) -> DevsyncError:
        """The build's error, said with the step it happened at."""
        vertex = self.failed
        step = vertex.step if vertex is not None else None
        where = ""
        state = self._state.get(step) if step is not None else None
        if vertex is not None and state is not None:
            index = state.index
            where = (f" at step {index + 1}/{self.total} "
                     f"({shorten(_NAME_PREFIX.sub('', vertex.name, count=1))})")
        elif vertex is not None:
            where = f" ({shorten(vertex.name)})"
        message = " ".join(message.split())
        low = message.lower()
        if disk_full(low):
            return out_of_disk(f"build failed{where}", message)
        is_from = vertex is not None and (
            " FROM " in f" {_NAME_PREFIX.sub('', vertex.name, count=1)}"
            or vertex.name.startswith("[internal] load metadata for "))
        if is_from or "failed to resolve source metadata" in low:
            if looks_auth(low) or "no active sessions" in low:
                return RegistryAuthError(
                    f"cannot pull the base image{where}: {message}",
                    hint="log in with `docker login REGISTRY`; with a login, devsync builds "
                         "through the docker CLI, or pulls the base first")
            if "not found" in low or "manifest unknown" in low:
                return UnknownBaseError(f"base image not found{where}: {message}")
        if "dockerfile parse error" in low or "failed to create llb definition" in low:
            from devsync.errors import DockerfileError

            return DockerfileError(f"the engine rejected the Dockerfile: {message}")
        return EngineError(f"build failed{where}: {message}")


_PLAIN_STATE = re.compile(r"^#\d+ (CACHED|DONE\b|ERROR\b)")


def plain_times(vertex: BuildkitVertex, line: str) -> None:
    """`--progress=plain` carries no times: a vertex has started once it is named, and is
    over once the CLI says CACHED, DONE or ERROR."""
    now = time.time()
    if vertex.started is None:
        vertex.started = now
    if _PLAIN_STATE.match(line):
        vertex.completed = now


# --------------------------------------------------------------------- buildx --progress=rawjson


class RawJSONProgress(_Vertices):
    """buildx's `--progress=rawjson`: one `SolveStatus` per line, as JSON (buildkit
    `client/graph.go`: `vertexes`, `statuses`, `logs`, each field lowercase, log data base64;
    capitalised names are read too). Lines that are not JSON are the CLI's own words."""

    def feed_line(self, line: str) -> list[BuildkitVertex] | None:
        """The vertices one line changed; None when the line is not a status."""
        text = line.strip()
        if not text.startswith("{"):
            return None
        try:
            status = json.loads(text)
        except ValueError:
            return None
        if not isinstance(status, dict):
            return None
        changed: list[BuildkitVertex] = []
        for reported in _items(status, "vertexes"):
            vertex = self.get(str(_field(reported, "digest") or ""))
            vertex.name = str(_field(reported, "name") or vertex.name)
            vertex.inputs = [str(d) for d in _field(reported, "inputs") or []] or vertex.inputs
            vertex.cached = bool(_field(reported, "cached"))
            vertex.started = _when(_field(reported, "started")) or vertex.started
            vertex.completed = _when(_field(reported, "completed")) or vertex.completed
            vertex.error = str(_field(reported, "error") or vertex.error)
            changed.append(vertex)
        for reported in _items(status, "statuses"):
            vertex = self.get(str(_field(reported, "vertex") or ""))
            vertex.statuses[str(_field(reported, "id") or "")] = (
                _int(_field(reported, "current")), _int(_field(reported, "total")))
            changed.append(vertex)
        for reported in _items(status, "logs"):
            vertex = self.get(str(_field(reported, "vertex") or ""))
            try:
                vertex.logs.append(base64.b64decode(str(_field(reported, "data") or "")))
            except (binascii.Error, ValueError):
                continue
            changed.append(vertex)
        return changed


def _items(status: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = _field(status, key)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _field(obj: Mapping[str, Any], key: str) -> Any:
    return obj.get(key, obj.get(key[:1].upper() + key[1:]))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _when(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Go writes nanoseconds; Python reads microseconds
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
