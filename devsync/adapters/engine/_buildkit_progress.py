"""What a BuildKit build says about each of its vertices, read from either way of building.

* `POST /build?version=2` (the Engine API): the JSON stream carries messages whose `id` is
  `moby.buildkit.trace` and whose `aux` is the base64 of a protobuf
  `moby.buildkit.v1.StatusResponse` (buildkit `api/services/control/control.proto`):

      StatusResponse { repeated Vertex vertexes = 1; repeated VertexStatus statuses = 2;
                       repeated VertexLog logs = 3; }
      Vertex         { string digest = 1; repeated string inputs = 2; string name = 3;
                       bool cached = 4; Timestamp started = 5; Timestamp completed = 6;
                       string error = 7; }
      VertexStatus   { string ID = 1; string vertex = 2; string name = 3; int64 current = 4;
                       int64 total = 5; Timestamp timestamp = 6; Timestamp started = 7;
                       Timestamp completed = 8; }
      VertexLog      { string vertex = 1; Timestamp timestamp = 2; int64 stream = 3;
                       bytes msg = 4; }

  and `{"id": "moby.image.id", "aux": {"ID": "sha256:..."}}` names the image built.
  `BuildkitTrace` reads them (a protobuf reader of a few lines: no gRPC library needed).

* `DOCKER_BUILDKIT=1 docker build --progress=plain` (the docker 20.10 CLI): `#N [2/6] COPY ...`
  names vertex N, then `#N CACHED`, `#N DONE 0.3s`, `#N ERROR: ...`, `#N pulling sha256:...`
  and log lines follow. `PlainProgress` reads them, line by line.

The same vertex is reported many times and its last state is the one that counts: BuildKit
can send a transient `cached` for a vertex that is still resolving and then `cached=false`
when it completes (buildkit `solver/progress.go`; seen on FROM), and the CLI then prints
`#N CACHED` before `#N DONE`. `cached` is BuildKit's own flag: the vertex's result was loaded
from a cache (the local one or an imported cache source) instead of being run.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from devsync.model.buildkit import StepRef, parse_step_name

__all__ = [
    "BuildkitTrace",
    "BuildkitVertex",
    "PlainProgress",
    "decode_status_response",
    "parse_plain_progress",
]

TRACE_ID = "moby.buildkit.trace"
IMAGE_ID = "moby.image.id"


@dataclass
class BuildkitVertex:
    """One vertex of a BuildKit build, in its last reported state."""

    digest: str
    name: str = ""
    cached: bool = False
    started: float | None = None  # unix seconds
    completed: float | None = None
    error: str = ""
    inputs: list[str] = field(default_factory=list)
    # status id ("pulling sha256:...", "sha256:...", "transferring context") -> (current, total)
    statuses: dict[str, tuple[int, int]] = field(default_factory=dict)
    logs: list[bytes] = field(default_factory=list)

    @property
    def step(self) -> StepRef | None:
        """The Dockerfile step this vertex is (`[stage i/N] ...`), None for internal ones."""
        return parse_step_name(self.name)

    @property
    def blobs_pulled(self) -> list[str]:
        """Registry blobs fetched for this vertex. dockerd 20.10 reports two shapes: a lazy
        pull of a result loaded from a cache (`pulling sha256:X`, no byte counts) and a base
        image's layers (`sha256:X` with current/total bytes)."""
        out: set[str] = set()
        for sid in self.statuses:
            if sid.startswith("pulling sha256:"):
                out.add(sid.split(" ", 1)[1])
            elif sid.startswith("sha256:") and " " not in sid:
                out.add(sid)
        return sorted(out)

    def bytes_pulled(self, sizes: Mapping[str, int] | None = None) -> int:
        """Bytes fetched: the byte counts reported, else (lazy pulls report none) the blob
        sizes `sizes` gives (digest -> size, from the cache source's manifest)."""
        total = 0
        for blob in self.blobs_pulled:
            current, whole = self.statuses.get(blob, self.statuses.get(f"pulling {blob}",
                                                                        (0, 0)))
            count = max(current, whole)
            if not count and sizes:
                count = sizes.get(blob, 0)
            total += count
        return total


# --------------------------------------------------------------------- the protobuf stream


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message; a value is an int or the bytes of a field."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: int | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _number(value: int | bytes) -> int:
    return _signed(value) if isinstance(value, int) else 0


def _timestamp(value: int | bytes) -> float | None:
    if not isinstance(value, bytes):
        return None
    seconds = nanos = 0
    for number, item in _fields(value):
        if number == 1:
            seconds = _number(item)
        elif number == 2:
            nanos = _number(item)
    return seconds + nanos / 1e9


@dataclass
class VertexStatus:
    id: str
    vertex: str
    current: int = 0
    total: int = 0


@dataclass
class VertexLog:
    vertex: str
    stream: int
    message: bytes


@dataclass
class StatusResponse:
    vertexes: list[BuildkitVertex] = field(default_factory=list)
    statuses: list[VertexStatus] = field(default_factory=list)
    logs: list[VertexLog] = field(default_factory=list)


def decode_status_response(data: bytes) -> StatusResponse:
    """One `StatusResponse` (the fields devsync reads; unknown fields are skipped)."""
    out = StatusResponse()
    for number, value in _fields(data):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            vertex = BuildkitVertex("")
            for n, item in _fields(value):
                if n == 1:
                    vertex.digest = _text(item)
                elif n == 2:
                    vertex.inputs.append(_text(item))
                elif n == 3:
                    vertex.name = _text(item)
                elif n == 4:
                    vertex.cached = bool(item)
                elif n == 5:
                    vertex.started = _timestamp(item)
                elif n == 6:
                    vertex.completed = _timestamp(item)
                elif n == 7:
                    vertex.error = _text(item)
            out.vertexes.append(vertex)
        elif number == 2:
            status = VertexStatus("", "")
            for n, item in _fields(value):
                if n == 1:
                    status.id = _text(item)
                elif n == 2:
                    status.vertex = _text(item)
                elif n == 4:
                    status.current = _number(item)
                elif n == 5:
                    status.total = _number(item)
            out.statuses.append(status)
        elif number == 3:
            log = VertexLog("", 0, b"")
            for n, item in _fields(value):
                if n == 1:
                    log.vertex = _text(item)
                elif n == 3:
                    log.stream = _number(item)
                elif n == 4 and isinstance(item, bytes):
                    log.message = item
            out.logs.append(log)
    return out


class _Vertices:
    """Vertices by id in the order first seen; the last report of each is its state."""

    def __init__(self) -> None:
        self._by_id: dict[str, BuildkitVertex] = {}

    def get(self, key: str) -> BuildkitVertex:
        vertex = self._by_id.get(key)
        if vertex is None:
            vertex = self._by_id[key] = BuildkitVertex(key)
        return vertex

    def all(self) -> list[BuildkitVertex]:
        return list(self._by_id.values())

    def steps(self) -> dict[StepRef, BuildkitVertex]:
        """The Dockerfile steps' vertices by step (internal vertices left out)."""
        out: dict[StepRef, BuildkitVertex] = {}
        for vertex in self._by_id.values():
            step = vertex.step
            if step is not None:
                out[step] = vertex
        return out


class BuildkitTrace(_Vertices):
    """Feed it the decoded JSON messages of a `/build?version=2` stream."""

    def __init__(self) -> None:
        super().__init__()
        self.image_id: str | None = None
        self.errors: list[str] = []

    def feed(self, message: Mapping[str, Any]) -> list[BuildkitVertex]:
        """Take one message; returns the vertices it changed (for live progress)."""
        aux = message.get("aux")
        changed: list[BuildkitVertex] = []
        if message.get("id") == TRACE_ID and isinstance(aux, str):
            try:
                raw = base64.b64decode(aux, validate=True)
                changed = self.feed_status(raw)
            except ValueError as exc:  # binascii.Error is a ValueError
                self.errors.append(f"unreadable BuildKit progress message: {exc}")
        elif isinstance(aux, dict) and aux.get("ID") and (
                message.get("id") == IMAGE_ID or self.image_id is None):
            self.image_id = str(aux["ID"])
        error = message.get("error") or (message.get("errorDetail") or {}).get("message")
        if error:
            self.errors.append(str(error))
        return changed

    def feed_status(self, raw: bytes) -> list[BuildkitVertex]:
        update = decode_status_response(raw)
        changed: list[BuildkitVertex] = []
        for reported in update.vertexes:
            vertex = self.get(reported.digest)
            vertex.name = reported.name or vertex.name
            vertex.inputs = reported.inputs or vertex.inputs
            vertex.cached = reported.cached  # the last report wins (see the module doc)
            vertex.started = reported.started if reported.started is not None \
                else vertex.started
            vertex.completed = reported.completed if reported.completed is not None \
                else vertex.completed
            vertex.error = reported.error or vertex.error
            changed.append(vertex)
        for status in update.statuses:
            vertex = self.get(status.vertex)
            vertex.statuses[status.id] = (status.current, status.total)
            changed.append(vertex)
        for log in update.logs:
            vertex = self.get(log.vertex)
            vertex.logs.append(log.message)
            changed.append(vertex)
        return changed


# --------------------------------------------------------------------- --progress=plain

_PLAIN = re.compile(r"^#(\d+) (.*)$")
_SIZES = re.compile(r"([\d.]+)([kMG]?B) / ([\d.]+)([kMG]?B)")
_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}
_BLOB_STATUS = re.compile(r"^(?:pulling )?sha256:[0-9a-f]{64}\b")
_LOG_LINE = re.compile(r"^\d+\.\d+ ")


class PlainProgress(_Vertices):
    """`--progress=plain` output of the docker 20.10 CLI, fed line by line; a vertex is
    keyed by its `#N`."""

    def feed_line(self, line: str) -> BuildkitVertex | None:
        """Take one line; returns the vertex it was about, if any."""
        m = _PLAIN.match(line.rstrip("\r\n"))
        if not m:
            return None
        number, rest = m.groups()
        fresh = number not in self._by_id
        vertex = self.get(number)
        if fresh:
            vertex.name = rest
            return vertex
        if rest == "CACHED":
            vertex.cached = True
        elif rest.startswith("DONE"):
            vertex.cached = False
        elif rest.startswith("ERROR"):
            vertex.error = rest[len("ERROR"):].lstrip(": ").strip() or "error"
            vertex.cached = False
        elif rest.startswith("sha256:") and " " not in rest:
            vertex.digest = rest
        elif _BLOB_STATUS.match(rest):
            self._blob_status(vertex, rest)
        elif _LOG_LINE.match(rest):
            vertex.logs.append(rest.split(" ", 1)[1].encode())
        return vertex

    def feed(self, text: str) -> None:
        for line in text.splitlines():
            self.feed_line(line)

    @staticmethod
    def _blob_status(vertex: BuildkitVertex, rest: str) -> None:
        words = rest.split()
        sid = f"pulling {words[1]}" if words[0] == "pulling" else words[0]
        current, total = vertex.statuses.get(sid, (0, 0))
        sizes = _SIZES.search(rest)
        if sizes:
            current = int(float(sizes.group(1)) * _UNITS[sizes.group(2)])
            total = int(float(sizes.group(3)) * _UNITS[sizes.group(4)])
        vertex.statuses[sid] = (current, total)


def parse_plain_progress(text: str) -> PlainProgress:
    """All of a `--progress=plain` output at once."""
    progress = PlainProgress()
    progress.feed(text)
    return progress
