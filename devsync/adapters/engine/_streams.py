"""Engine streams that can be cancelled: pull, push and build answers, read as JSON objects.

Pull/build/push accept `cancel: threading.Event`. A small watcher thread shuts the HTTP
connection down when the event is set (or when the engine has sent nothing for the idle
timeout); the daemon sees the client go away and cancels the pull/build (the classic builder
kills and removes the RUN container). The stream then raises `InterruptedError_`. Ctrl-C
(`KeyboardInterrupt`) and closing the generator close the connection the same way.

The request itself is sent from a helper thread (`open_stream`), so that the wait for the
engine's first answer is cancellable too; the build context is read through a
`CancellableReader` that stops the upload. Over the SDK, a `ResponseTap` catches the HTTP
response its streaming calls keep to themselves; over the socket path the stream is its own
response (devsync.adapters.engine.socketapi).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from devsync.adapters.engine import socketapi as enginesocket
from devsync.adapters.engine._failures import (
    api_explanation,
    is_api_error,
    is_transport_error,
    lost_engine,
)
from devsync.errors import DevsyncError, EngineUnavailableError, InterruptedError_

_WATCH_INTERVAL = 0.1  # how often the stream watcher looks at the cancel event


def open_stream(start: Callable[[], Iterable[dict[str, Any]]], tap: ResponseTap, *, host: str,
                what: str, cancel: threading.Event | None,
                classify: Callable[..., DevsyncError], ref: str,
                abandoned: threading.Event | None, idle: float | None) -> Stream:
    """Send the request in a helper thread and wait for the engine's first answer.

    The SDK call returns only once the engine sent its response headers (after the whole
    build context went up, or once a pull has resolved its manifest). Waiting here instead
    keeps that phase cancellable and bounded by the idle timeout (`idle` seconds); an
    abandoned request is closed by the helper as soon as it returns, which makes the daemon
    cancel it.
    """
    pending = _PendingStart(start, tap, abandoned or threading.Event())
    deadline = time.monotonic() + idle if idle else None
    try:
        while not pending.ready.wait(_WATCH_INTERVAL):
            if cancel is not None and cancel.is_set():
                raise InterruptedError_(f"{what} cancelled")
            if deadline is not None and time.monotonic() > deadline:
                raise EngineUnavailableError(
                    f"the Docker engine at {host} sent nothing for {idle:g}s "
                    f"after being asked to {what}",
                    hint="the daemon may be hung: restart Docker and try again",
                )
    except BaseException:
        pending.abandon()
        raise
    exc = pending.error
    if exc is not None:
        if isinstance(exc, DevsyncError):
            raise exc
        if is_api_error(exc):
            raise classify(api_explanation(exc), ref=ref, doing=what.split()[0]) from None
        if is_transport_error(exc):
            raise lost_engine(host, what, exc) from None
        raise exc

    def api_failure(message: str) -> DevsyncError:
        return classify(message, ref=ref, doing=what.split()[0])

    assert pending.objs is not None
    return Stream(pending.objs, pending.response, cancel=cancel, idle_timeout=idle,
                  host=host, what=what, api_failure=api_failure)


class _PendingStart:
    """A streaming SDK call running in a helper thread until the engine answers."""

    def __init__(self, start: Callable[[], Iterable[dict[str, Any]]], tap: ResponseTap,
                 abandoned: threading.Event) -> None:
        self._start = start
        self._tap = tap
        self._lock = threading.Lock()
        self.abandoned = abandoned
        self.ready = threading.Event()
        self.objs: Iterable[dict[str, Any]] | None = None
        self.response: Any = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name="devsync-stream-start", daemon=True).start()

    def _run(self) -> None:
        objs: Iterable[dict[str, Any]] | None = None
        response: Any = None
        error: BaseException | None = None
        self._tap.take()
        try:
            objs = self._start()
        except BaseException as exc:
            error = exc
        response = self._tap.take()
        if response is None and isinstance(objs, enginesocket.JSONStream):
            response = objs  # (the socket path: no SDK response to tap)
        with self._lock:
            self.objs, self.response, self.error = objs, response, error
            self.ready.set()
            late = self.abandoned.is_set()
        if late:
            _close_response(response)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned.set()
            response = self.response if self.ready.is_set() else None
        _close_response(response)


def _close_response(response: Any) -> None:
    """Shut the connection down (not back to the pool): the daemon then cancels its work."""
    if response is None:
        return
    sock = _response_socket(response)
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()


def _response_socket(response: Any) -> Any:
    if isinstance(response, enginesocket.JSONStream):
        return response.sock
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None)  # urllib3 2: None once back in the pool
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    with contextlib.suppress(AttributeError):
        return raw._fp.fp.raw._sock  # type: ignore[union-attr]
    return None


class ResponseTap:
    """A requests response hook remembering, per thread, the last response this client got.

    The SDK's streaming calls hide their HTTP response inside a generator; we need it to shut
    the connection down from the watcher thread.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._local.response = response
        return response

    def take(self) -> Any:
        response = getattr(self._local, "response", None)
        self._local.response = None
        return response


class Stream:
    """Iterates decoded stream objects; closes the connection on cancel/idle/Ctrl-C/close."""

    def __init__(self, objs: Iterable[dict[str, Any]], response: Any, *,
                 cancel: threading.Event | None, idle_timeout: float | None, host: str,
                 what: str, api_failure: Callable[[str], DevsyncError]) -> None:
        self._objs = iter(objs)
        self._api_failure = api_failure
        self._response = response
        self._cancel = cancel
        self._idle_timeout = idle_timeout
        self._host = host
        self._what = what
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._finished = False
        self.cancelled = False
        self.timed_out = False
        sock = self._socket()
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.settimeout(None)  # the watcher enforces idleness instead
        self._watcher: threading.Thread | None = None
        if cancel is not None or idle_timeout:
            self._watcher = threading.Thread(target=self._watch, name="devsync-stream-watch",
                                             daemon=True)
            self._watcher.start()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # on success the connection went back to the pool: leave it alone
        self._finish(abort=exc_type is not None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            if self._cancel is not None and self._cancel.is_set():
                self.cancelled = True
                self._finish(abort=True)
            try:
                obj = next(self._objs)
            except StopIteration:
                break
            except DevsyncError:
                raise
            except Exception as exc:
                # the SDK's build stream raises the engine's refusal on the first read
                if is_api_error(exc) and not (self.cancelled or self.timed_out):
                    raise self._api_failure(api_explanation(exc)) from None
                raise self._broken(exc) from None
            self._last = time.monotonic()
            if isinstance(obj, dict):
                yield obj
        if self.cancelled or (self._cancel is not None and self._cancel.is_set()):
            self.cancelled = True
            raise InterruptedError_(f"{self._what} cancelled")
        if self.timed_out:
            raise self._broken(TimeoutError())

    def _broken(self, exc: BaseException) -> DevsyncError:
        if self.cancelled or (self._cancel is not None and self._cancel.is_set()):
            self.cancelled = True
            return InterruptedError_(f"{self._what} cancelled")
        if self.timed_out:
            return EngineUnavailableError(
                f"the Docker engine at {self._host} sent nothing for "
                f"{self._idle_timeout:g}s during {self._what}",
                hint="the daemon may be hung: restart Docker and try again",
            )
        return lost_engine(self._host, self._what, exc)

    def _watch(self) -> None:
        while True:
            if self._cancel is not None:
                fired = self._cancel.wait(_WATCH_INTERVAL)
            else:
                time.sleep(_WATCH_INTERVAL)
                fired = False
            with self._lock:
                if self._finished:
                    return
                if fired:
                    self.cancelled = True
                elif self._idle_timeout and time.monotonic() - self._last > self._idle_timeout:
                    self.timed_out = True
                else:
                    continue
                self._shutdown()
                return

    def _finish(self, *, abort: bool) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if abort:
                self._shutdown()
        if abort:
            _close_response(self._response)

    def _shutdown(self) -> None:
        sock = self._socket()
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.shutdown(socket.SHUT_RDWR)

    def _socket(self) -> Any:
        return _response_socket(self._response)


class CancellableReader:
    """The build context, read by the upload; stops the upload when `cancel` is set.

    A file, or a stream that knows its `size` and `tell`s how far it got (a context tar made
    as it is read, devsync.model.context.TarStream): the socket path sends either; the SDK's
    requests needs a file (`Engine.build` spools a stream into one first).
    """

    def __init__(self, fileobj: IO[bytes] | enginesocket.Readable,
                 cancel: threading.Event | None, abandoned: threading.Event) -> None:
        self._f: Any = fileobj
        self._cancel = cancel
        self._abandoned = abandoned

    def read(self, size: int = -1) -> bytes:
        if self._abandoned.is_set() or (self._cancel is not None and self._cancel.is_set()):
            raise InterruptedError_("build cancelled while sending the context; nothing was tagged")
        data: bytes = self._f.read(size)
        return data

    # requests sizes the body through these (Content-Length instead of chunked encoding)
    def tell(self) -> int:
        return int(self._f.tell())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._f.seek(offset, whence))

    def remaining(self) -> int | None:
        """How many bytes are still to be read; None for a stream that cannot tell."""
        size = getattr(self._f, "size", None)
        if isinstance(size, int):  # a stream that knows its size
            return size - int(self._f.tell())
        try:
            here = self._f.tell()
            end = self._f.seek(0, os.SEEK_END)
            self._f.seek(here)
        except (OSError, ValueError, AttributeError):
            return None
        return int(end - here)


def seekable(fileobj: Any) -> bool:
    found = getattr(fileobj, "seekable", None)
    return bool(found()) if callable(found) else hasattr(fileobj, "seek")


def spool(stream: Any) -> IO[bytes]:
    """A stream's bytes in a temporary file (for the SDK, whose requests sizes its body)."""
    import shutil
    import tempfile

    spooled = tempfile.TemporaryFile(prefix="devsync-context-")  # noqa: SIM115 - the caller closes it
    try:
        shutil.copyfileobj(stream, spooled, 1 << 20)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled
