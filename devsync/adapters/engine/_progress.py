"""What the engine's pull, push and build streams say, turned into devsync events.

Pulls and pushes report per-layer status lines; `TransferProgress` passes each on as a
`LayerProgress` and sums them as `docker pull` shows them (`PullProgress`/`PushProgress`, at
most every 0.2 s and at each completed layer). Builds report the classic builder's text, which
`BuildParser` turns into step events.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from devsync.adapters.engine._failures import disk_full, looks_auth, out_of_disk, shorten
from devsync.errors import DevsyncError, EngineError, RegistryAuthError, UnknownBaseError
from devsync.events import (
    Event,
    LayerProgress,
    LogLine,
    PullProgress,
    PushProgress,
    StepFinished,
    StepStarted,
    Warning_,
)

_PROGRESS_INTERVAL = 0.2  # seconds between aggregated PullProgress/PushProgress events


class TransferProgress:
    """A pull's or push's per-layer status lines as events (see the module doc)."""

    def __init__(self, ref: str, event: type[PullProgress] | type[PushProgress],
                 tally: _LayerTally) -> None:
        self._ref = ref
        self._event = event
        self._tally = tally
        self._last_emit = 0.0
        self._last_done = -1

    @classmethod
    def pull(cls, ref: str) -> TransferProgress:
        return cls(ref, PullProgress, _LayerTally(
            done=("Pull complete", "Already exists"),
            bytes_final=("Verifying Checksum", "Download complete", "Extracting",
                         "Pull complete"),
            bytes_status="Downloading", present=("Already exists",),
            unpack_status="Extracting"))

    @classmethod
    def push(cls, ref: str) -> TransferProgress:
        return cls(ref, PushProgress, _LayerTally(
            done=("Pushed", "Layer already exists", "Mounted from"),
            bytes_final=("Pushed",), bytes_status="Pushing",
            present=("Layer already exists", "Mounted from")))

    def feed(self, layer: str, status: str, detail: Mapping[str, Any]) -> Iterator[Event]:
        """The events one layer's status line makes."""
        self._tally.update(layer, status, detail)
        yield LayerProgress(self._ref, layer, status, int(detail.get("current") or 0),
                            int(detail.get("total") or 0))
        snap = self._tally.snapshot()
        now = time.monotonic()
        if snap[0] != self._last_done or now - self._last_emit >= _PROGRESS_INTERVAL:
            self._last_emit, self._last_done = now, snap[0]
            yield self._event(self._ref, *snap)

    def final(self) -> Event:
        """The aggregate once the stream has ended."""
        return self._event(self._ref, *self._tally.snapshot())


@dataclass
class _LayerState:
    current: int = 0
    total: int = 0
    done: bool = False
    present: bool = False  # already there: nothing to transfer
    unpacked: float = 0.0  # a pull's extraction, 0..1

    def share(self, unpacking: bool) -> float:
        if self.done:
            return 1.0
        sent = min(self.current / self.total, 1.0) if self.total else 0.0
        return (sent + self.unpacked) / 2 if unpacking else sent


class _LayerTally:
    """Per-layer state from pull/push status lines, summed as `docker pull` shows them."""

    def __init__(self, *, done: tuple[str, ...], bytes_final: tuple[str, ...],
                 bytes_status: str, present: tuple[str, ...] = (),
                 unpack_status: str | None = None) -> None:
        self._done = done
        self._bytes_final = bytes_final
        self._bytes_status = bytes_status
        self._present = present
        self._unpack_status = unpack_status
        self._layers: dict[str, _LayerState] = {}

    def update(self, layer: str, status: str, detail: Mapping[str, Any]) -> None:
        st = self._layers.setdefault(layer, _LayerState())
        if self._present and status.startswith(self._present) and not st.current:
            st.present = True
        if self._unpack_status and status == self._unpack_status:
            total = int(detail.get("total") or 0)
            if total > 0:
                st.unpacked = min(int(detail.get("current") or 0) / total, 1.0)
        if status == self._bytes_status:
            total = int(detail.get("total") or 0)
            if total > 0:
                st.total = total
            # a push reports the tar stream, a little more than the layer size
            st.current = min(int(detail.get("current") or 0), st.total or 1 << 62)
        elif status.startswith(self._bytes_final):
            st.current = st.total
        if status.startswith(self._done):
            st.done = True
            st.current = st.total

    def snapshot(self) -> tuple[int, int, int, int, float]:
        layers = self._layers.values()
        done = sum(1 for s in layers if s.done)
        return (
            done,
            len(self._layers),
            sum(s.current for s in layers),
            sum(s.total for s in layers),
            self._fraction(all_done=done == len(self._layers)),
        )

    def _fraction(self, *, all_done: bool) -> float:
        """How much is really done: the layers to transfer weighed by their size (a layer
        the engine has not sized yet, one waiting its turn, at the others' mean size), a
        pull's unpacking as half of each layer's work; 1.0 only when every layer is done."""
        if all_done:
            return 1.0
        moving = [s for s in self._layers.values() if not s.present]
        sized = [s.total for s in moving if s.total]
        mean = sum(sized) / len(sized) if sized else 1.0
        weight = sum(s.total or mean for s in moving)
        unpacking = self._unpack_status is not None
        got = sum(s.share(unpacking) * (s.total or mean) for s in moving)
        return min(got / weight, 0.99) if weight else 0.0


# --------------------------------------------------------------------------- build stream

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_IMAGE_ID_RE = re.compile(r"^[0-9a-f]{12,64}$")
_SUCCESS_RE = re.compile(r"^Successfully built ([0-9a-f]{12,64})$")
_QUIET_PREFIXES = ("Removing intermediate container ", "Successfully built ",
                   "Successfully tagged ")


@dataclass
class _OpenStep:
    index: int
    total: int
    instruction: str
    using_cache: bool = False
    ran: bool = False

    @property
    def is_from(self) -> bool:
        return self.instruction.split(None, 1)[0].upper() == "FROM" if self.instruction else False


class BuildParser:
    """Turns the classic builder's JSON stream into step events.

    The builder prints "Step N/M : INSTRUCTION", then for a cache hit " ---> Using cache"; for
    a step it runs (RUN, and also ENV/LABEL/... which commit through a container)
    " ---> Running in <container>"; COPY/ADD and FROM print neither. Every step ends with
    " ---> <12-hex image id>", which is when StepFinished is emitted (or at the next Step /
    the end, if that line never came). Multi-stage builds print an `aux` ID after each stage:
    the last one is the result.
    """

    def __init__(self, image: str) -> None:
        self.image = image
        self.image_id = ""
        self.steps_total = 0
        self.steps_cached = 0
        self._seen_from = False
        self._step: _OpenStep | None = None
        self._buf = ""
        self._pull_status: dict[str, str] = {}
        # the daemon repeats a host-level warning ("IPv4 forwarding is disabled...") for every
        # container a build runs: say each one once
        self._warned: set[str] = set()

    def feed(self, obj: Mapping[str, Any]) -> Iterator[Event]:
        aux = obj.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])
        text = obj.get("stream")
        if isinstance(text, str):
            self._buf += text
            while "\n" in self._buf:
                line, self._buf = self._buf.split("\n", 1)
                yield from self._line(line.rstrip("\r"))
        status = obj.get("status")
        if isinstance(status, str) and status:
            # the builder pulls a missing FROM image itself: one line per layer state change
            layer = str(obj.get("id") or "")
            if self._pull_status.get(layer) != status:
                self._pull_status[layer] = status
                yield LogLine(self.image, f"{layer}: {status}" if layer else status)

    def close(self) -> Iterator[Event]:
        if self._buf.strip():
            yield from self._line(self._buf.rstrip("\r"))
        self._buf = ""
        yield from self._finish_step()

    def failure(self, message: str) -> DevsyncError:
        step = self._step
        where = ""
        if step is not None:
            where = f" at step {step.index + 1}/{step.total} ({shorten(step.instruction)})"
        if disk_full(message.lower()):
            return out_of_disk(f"build failed{where}", message)
        if step is not None and step.is_from and not step.ran:
            low = message.lower()
            if looks_auth(low):
                return RegistryAuthError(f"cannot pull the base image{where}: {message}",
                                         hint="log in with `docker login REGISTRY`")
            if "not found" in low or "manifest unknown" in low or "no such image" in low:
                return UnknownBaseError(f"base image not found{where}: {message}")
        return EngineError(f"build failed{where}: {message}")

    def _line(self, line: str) -> Iterator[Event]:
        m = _STEP_RE.match(line)
        if m:
            yield from self._finish_step()
            self._step = _OpenStep(int(m.group(1)) - 1, int(m.group(2)),
                                   m.group(3).strip())
            self.steps_total = max(self.steps_total, self._step.total)
            yield StepStarted(self.image, self._step.index, self._step.total,
                              self._step.instruction)
            return
        if line.startswith(" ---> "):
            rest = line[6:].strip()
            if rest == "Using cache":
                if self._step is not None:
                    self._step.using_cache = True
                return
            if rest.startswith("Running in "):
                if self._step is not None:
                    self._step.ran = True
                return
            if _IMAGE_ID_RE.match(rest):
                yield from self._finish_step()
                return
            if rest.startswith("[Warning]"):
                yield from self._warning(rest)
                return
            yield LogLine(self.image, line)
            return
        if line.startswith("[Warning]"):
            yield from self._warning(line)
            return
        success = _SUCCESS_RE.match(line)
        if success and not self.image_id:
            self.image_id = success.group(1)  # daemons older than API 1.30 send no aux ID
        if line.startswith(_QUIET_PREFIXES):
            return
        yield LogLine(self.image, line)

    def _warning(self, line: str) -> Iterator[Event]:
        text = line.removeprefix("[Warning]").strip()
        if text not in self._warned:
            self._warned.add(text)
            yield Warning_(self.image, text)

    def _finish_step(self) -> Iterator[Event]:
        step, self._step = self._step, None
        if step is None:
            return
        # FROM, and the ARGs before the first FROM, make no layer: nothing to rebuild
        meta_arg = not self._seen_from and step.instruction.upper().startswith("ARG ")
        self._seen_from = self._seen_from or step.is_from
        cached = step.using_cache or ((step.is_from or meta_arg) and not step.ran)
        if cached:
            self.steps_cached += 1
        yield StepFinished(self.image, step.index, cached)

