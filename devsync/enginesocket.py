"""The few Engine API calls a sync makes before the Docker SDK is loaded, over a local unix
socket with the standard library alone.

Importing the SDK (requests, urllib3 and their kin) takes ~0.07 s of a 2-core machine, and a
sync's first request, the pull of the deployed image, waited for it. The engine can be pulling
by then: these calls (ping, "is this image local?", the pull stream) go out over the socket
directly, and the SDK is imported while the pull runs. devsync.engine decides which calls take
this path (only unix:// hosts) and maps every failure to a DevsyncError as it does the SDK's.
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
from typing import Any

_SPACE = re.compile(r"\s*")


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

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)  # the Host header the CLI sends too
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


def _request(path: str, method: str, url: str, *, timeout: float,
             headers: Mapping[str, str] | None = None) -> tuple[_UnixConnection,
                                                                 http.client.HTTPResponse]:
    conn = _UnixConnection(path, timeout)
    try:
        conn.request(method, url, headers=dict(headers or {}))
        sock = conn.sock  # (getresponse drops it when the answer ends the connection)
        response = conn.getresponse()
    except BaseException:
        conn.close()
        raise
    conn.stream_socket = sock
    return conn, response


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


def image_exists(path: str, ref: str, *, timeout: float) -> bool:
    """Whether the engine has the image `ref` (name:tag, name@digest or ID)."""
    conn, response = _request(path, "GET", f"/images/{urllib.parse.quote(ref, safe='/:')}/json",
                              timeout=timeout)
    try:
        if response.status == 404:
            response.read()
            return False
        if response.status != 200:
            raise _api_error(response)
        response.read()
        return True
    finally:
        conn.close()


def registry_auth_header(auth: Mapping[str, str]) -> str:
    """The X-Registry-Auth value for `auth`, encoded as the SDK and the CLI encode it."""
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode("ascii")).decode("ascii")


class JSONStream:
    """The engine's answer to a streaming call: its JSON objects, in order.

    `sock` is the connection's socket, for devsync.engine's watcher to shut down on cancel.
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
    conn, response = _request(path, "POST", "/images/create?" + urllib.parse.urlencode(query),
                              timeout=timeout, headers=headers)
    if response.status != 200:
        try:
            raise _api_error(response)
        finally:
            conn.close()
    return JSONStream(conn, response)
