"""The Engine API calls of a sync, over a local unix socket with the standard library alone.

Importing the SDK (requests, urllib3 and their kin) costs ~0.1 s of CPU, and a sync's pull
keeps a small machine's cores busy (download, checksums, unpacking): CPU spent during the pull
lengthens it. Over a unix socket a sync's calls (ping, inspect, history and the image list, the
pull and build streams, tag) go through here and the SDK is never imported; every other call
(push, removal...), and every engine reached over TCP, TLS or ssh, goes through the SDK.
devsync.adapters.engine decides which path a call takes and maps every failure to a DevsyncError
as it
does the SDK's.
"""

from __future__ import annotations

import base64
import codecs
import http.client
import json
import re
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

_SPACE = re.compile(r"\s*")


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class EngineAPIError(Exception):
    """The engine answered a request with an error status (the SDK's APIError, for this path).

    `explanation` is the engine's own message, as the SDK reports it.
    """

    def __init__(self, status_code: int, explanation: str) -> None:
        super().__init__(f"{status_code}: {explanation}")
        self.status_code = status_code
        self.explanation = explanation


class _UnixConnection(http.client.HTTPConnection):
    stream_socket: socket.socket | None = None

    def __init__(self, path: str, timeout: float | None) -> None:
        # (the Host header the CLI sends too; a build context goes up in 64 KiB blocks)
        super().__init__("localhost", timeout=timeout, blocksize=64 * 1024)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def socket_path(host: str) -> str | None:
    """The socket file of a `unix://` engine host, else None (tcp, ssh, npipe: the SDK)."""
    if not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://")
    return path if path.startswith("/") else None


def _request(path: str, method: str, url: str, *, timeout: float | None,
             headers: Mapping[str, str] | None = None,
             body: Readable | None = None) -> tuple[_UnixConnection, http.client.HTTPResponse]:
    conn = _UnixConnection(path, timeout)
    try:
        conn.request(method, url, body=body, headers=dict(headers or {}))
        sock = conn.sock  # (getresponse drops it when the answer ends the connection)
        response = conn.getresponse()
    except BaseException:
        conn.close()
        raise
    conn.stream_socket = sock
    return conn, response


def _quote(ref: str) -> str:
    # as the SDK puts a reference into a URL path
    return urllib.parse.quote_plus(ref, safe="/:")


def _call(path: str, method: str, url: str, *, timeout: float,
          missing_ok: bool = False) -> Any:
    """The decoded JSON answer (None when `missing_ok` and the engine says 404, or for an
    empty body); any other error status raises EngineAPIError."""
    conn, response = _request(path, method, url, timeout=timeout)
    try:
        if response.status == 404 and missing_ok:
            response.read()
            return None
        if response.status >= 400:
            raise _api_error(response)
        body = response.read()
    finally:
        conn.close()
    return json.loads(body) if body.strip() else None


def _api_error(response: http.client.HTTPResponse) -> EngineAPIError:
    body = response.read(64 * 1024)
    try:
        message = str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip() or (response.reason or "")
    return EngineAPIError(response.status, message)


def ping(path: str, *, timeout: float) -> None:
    """`GET /_ping`; raises OSError when nobody listens, EngineAPIError for a refusal."""
    conn, response = _request(path, "GET", "/_ping", timeout=timeout)
    try:
        if response.status != 200:
            raise _api_error(response)
        response.read()
    finally:
        conn.close()


def inspect_image(path: str, ref: str, *, timeout: float) -> dict[str, Any] | None:
    """`GET /images/{ref}/json`: the image `ref` (name:tag, name@digest or ID), else None."""
    data = _call(path, "GET", f"/images/{_quote(ref)}/json", timeout=timeout, missing_ok=True)
    return data if isinstance(data, dict) else None


def image_history(path: str, image: str, *, timeout: float) -> list[dict[str, Any]]:
    """`GET /images/{image}/history`: the config's history entries, newest first."""
    data = _call(path, "GET", f"/images/{_quote(image)}/history", timeout=timeout)
    return [row for row in data or [] if isinstance(row, dict)]


def list_images(path: str, *, timeout: float, all_layers: bool = False) -> list[dict[str, Any]]:
    """`GET /images/json`: the image summaries (intermediate images too with `all_layers`)."""
    data = _call(path, "GET", "/images/json" + ("?all=1" if all_layers else ""), timeout=timeout)
    return [row for row in data or [] if isinstance(row, dict)]


def tag_image(path: str, image: str, repository: str, tag: str, *, timeout: float) -> None:
    """`POST /images/{image}/tag`: point `repository:tag` at `image`."""
    query = urllib.parse.urlencode({"repo": repository, "tag": tag, "force": "1"})
    _call(path, "POST", f"/images/{_quote(image)}/tag?{query}", timeout=timeout)


def registry_auth_header(auth: Mapping[str, Any]) -> str:
    """The X-Registry-Auth value for `auth` (X-Registry-Config for a map of them), encoded
    as the SDK and the CLI encode it."""
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode("ascii")).decode("ascii")


class JSONStream:
    """The engine's answer to a streaming call: its JSON objects, in order.

    `sock` is the connection's socket, for devsync.adapters.engine's watcher to shut down on cancel.
    """

    def __init__(self, conn: _UnixConnection, response: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._response = response
        self.sock: socket.socket | None = conn.stream_socket

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # read1, not readline: for a chunked body (every stream) it raises IncompleteRead when
        # the engine goes away mid-stream, where readline would end as if all had been said
        text = codecs.getincrementaldecoder("utf-8")("replace")
        decoder = json.JSONDecoder()
        buffered = ""
        while True:
            chunk = self._response.read1(64 * 1024)
            if not chunk:
                break
            buffered += text.decode(chunk)
            pos = 0
            while True:
                pos = _SPACE.match(buffered, pos).end()  # type: ignore[union-attr]
                try:
                    obj, pos = decoder.raw_decode(buffered, pos)
                except ValueError:
                    break  # the rest of this object is still to come
                if isinstance(obj, dict):
                    yield obj
            buffered = buffered[pos:]
        self.close()
        if buffered.strip():
            raise http.client.IncompleteRead(buffered.encode())

    def close(self) -> None:
        self._conn.close()


def pull(path: str, repository: str, tag: str, *, timeout: float,
         auth: Mapping[str, str] | None = None, platform: str | None = None) -> JSONStream:
    """`POST /images/create`: returns once the engine answered (it has resolved the
    manifest); the progress objects follow in the stream."""
    query = {"fromImage": repository, "tag": tag}
    if platform:
        query["platform"] = platform
    headers = {"X-Registry-Auth": registry_auth_header(auth)} if auth else {}
    return _stream(path, "/images/create?" + urllib.parse.urlencode(query), timeout=timeout,
                   headers=headers)


def build(path: str, context: Readable, size: int | None, query: Mapping[str, str], *,
          registry_config: str | None = None) -> JSONStream:
    """`POST /build` with `size` bytes of tar from `context` (chunked when the size is not
    known): returns once the engine took the whole context and answered; the build's output
    objects follow in the stream.

    No timeout: the caller bounds the wait (and stops the upload through `context.read`).
    """
    headers = {"Content-Type": "application/tar"}  # (as the SDK sends it)
    if size is not None:
        headers["Content-Length"] = str(size)
    if registry_config:
        headers["X-Registry-Config"] = registry_config
    return _stream(path, "/build?" + urllib.parse.urlencode(query), timeout=None,
                   headers=headers, body=context)


def _stream(path: str, url: str, *, timeout: float | None, headers: Mapping[str, str],
            body: Readable | None = None) -> JSONStream:
    """POST `url`; once the engine answered OK, its stream of JSON objects."""
    conn, response = _request(path, "POST", url, timeout=timeout, headers=headers, body=body)
    if response.status != 200:
        try:
            raise _api_error(response)
        finally:
            conn.close()
    return JSONStream(conn, response)
