"""The stdlib path for a sync's engine calls (devsync.adapters.engine.socketapi): what it
shares with the
SDK's path, and that a build asks the same as the SDK would. Against the real engine:
tests/test_engine.py, whose calls over the private engine's unix socket take this path (and
tests/test_remote_engine.py the SDK's, over TLS and ssh)."""

from __future__ import annotations

import base64
import http.client
import http.server
import io
import json
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.auth
import docker.utils
import pytest

from devsync.adapters import engine as engine_mod
from devsync.adapters.dockerconfig import Credentials
from devsync.adapters.engine import _connect
from devsync.adapters.engine import socketapi as enginesocket
from devsync.errors import EngineError


class _Response:
    """Hands out the given byte chunks through read1, as a chunked HTTP body would."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    def read1(self, n: int) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


class _Conn:
    stream_socket = None
    closed = False

    def close(self) -> None:
        self.closed = True


def _objects(chunks: list[bytes]) -> Iterator[dict[str, object]]:
    conn = _Conn()
    yield from enginesocket.JSONStream(conn, _Response(chunks))  # type: ignore[arg-type]
    assert conn.closed


def test_stream_objects_split_and_packed_any_way() -> None:
    chunks = [b'{"status":"Pulling from app","id":"1"}\r\n{"stat', b'us":"Downloading",',
              b'"progressDetail":{"current":5,"total":9},"id":"ab"}\r\n\r\n[1]\n',
              b'{"status":"caf\xc3', b'\xa9"}\n{"status":"Digest: sha256:0"}']
    assert list(_objects(chunks)) == [
        {"status": "Pulling from app", "id": "1"},
        {"status": "Downloading", "progressDetail": {"current": 5, "total": 9}, "id": "ab"},
        {"status": "café"},  # a character split across reads stays whole
        {"status": "Digest: sha256:0"},
    ]


def test_stream_cut_mid_object_is_an_incomplete_read() -> None:
    with pytest.raises(http.client.IncompleteRead):
        list(_objects([b'{"status":"Downloading"}\n{"status":"Downl']))


@pytest.mark.parametrize(("host", "path"), [
    ("unix:///var/run/docker.sock", "/var/run/docker.sock"),
    ("unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock"),
    ("unix://docker.sock", None),
    ("tcp://127.0.0.1:2376", None),
    ("ssh://dev@build-host", None),
    ("npipe:////./pipe/docker_engine", None),
])
def test_only_unix_socket_hosts_take_the_stdlib_path(host: str, path: str | None) -> None:
    assert enginesocket.socket_path(host) == path


def test_registry_auth_header_is_encoded_as_the_sdk_encodes_it() -> None:
    auth = {"username": "dev", "password": "s3cr/t+?", "serveraddress": "localhost:5000"}
    assert enginesocket.registry_auth_header(auth) == docker.auth.encode_header(auth).decode()


REFS = ["localhost:5000/team/app:1.0.7", "localhost:5000/app", "app:latest", "team/app",
        "registry.example.com/app@sha256:" + "a" * 64,
        "registry.example.com:443/app:1@sha256:" + "b" * 64,
        "index.docker.io/library/busybox:1", "docker.io/library/busybox"]


@pytest.mark.parametrize("ref", REFS)
def test_credentials_are_asked_for_the_registry_the_sdk_names(
        ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def get_credentials(registry: str) -> Credentials | None:
        asked.append(registry)
        return None

    monkeypatch.setattr("devsync.adapters.dockerconfig.get_credentials", get_credentials)
    assert _connect.auth_config(ref) is None
    repo, _ = docker.utils.parse_repository_tag(ref)
    assert asked == [docker.auth.resolve_repository_name(repo)[0]]


# --------------------------------------------------------------------------- same requests


class _RecordingEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers a ping, the version and any image inspect; refuses every build with the
    engine's JSON error after reading its whole context, and records each build request."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        super().__init__(path, _Recorder)


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RecordingEngine

    def log_message(self, *args: object) -> None:
        pass

    def address_string(self) -> str:  # (a unix socket's peer has no host)
        return "local"

    def _body(self) -> bytes:
        # (both paths size a seekable context: Content-Length, never chunked)
        return self.rfile.read(int(self.headers["Content-Length"]))

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.endswith("/version"):
            self._answer(200, json.dumps({"ApiVersion": "1.41", "Version": "20.10"}).encode())
        elif self.path.startswith(("/images/", "/v1.41/images/")):
            self._answer(200, json.dumps({"Id": "sha256:" + "0" * 64}).encode())
        else:
            self._answer(200, b"OK")

    def do_POST(self) -> None:
        body = self._body()
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        self._answer(500, b'{"message":"refused: recorded"}')


def _build_query(path: str) -> dict[str, object]:
    """The query as the engine reads it: booleans as it parses them, JSON values decoded."""
    query: dict[str, object] = {}
    for key, value in urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query):
        if value in ("False", "0", ""):
            continue
        if value in ("True", "1"):
            query[key] = True
        elif key in ("buildargs", "labels", "cachefrom"):
            query[key] = json.loads(value)
        else:
            query[key] = value
    return query


def test_a_build_over_the_socket_asks_what_the_sdk_asks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same query, same context bytes, the same logins and proxy build args from Docker's
    config, and the engine's refusal reported in the same words, by either path."""
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({
        "auths": {"localhost:5000": {"auth": base64.b64encode(b"dev:s3cret").decode()},
                  "registry.example.com": {"auth": base64.b64encode(b"ci:t0ken").decode()}},
        "proxies": {"default": {"httpProxy": "http://proxy.invalid:3128",
                                "noProxy": "localhost"}},
    }))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    sock = str(tmp_path / "engine.sock")
    server = _RecordingEngine(sock)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    context = b"not really a tar, the engine here only records it" * 999
    options: dict[str, Any] = {
        "dockerfile": "docker/Dockerfile.app", "cache_from": ["localhost:5000/app:1.0.7"],
        "build_args": {"COMPOSER_FLAGS": "--no-dev", "HTTP_PROXY": "http://mine.invalid:1"},
        "labels": {"org.opencontainers.image.version": "dev"}, "target": "app",
    }
    try:
        errors = []
        sdk = docker.DockerClient(base_url=f"unix://{sock}", version="1.41")
        over_socket = engine_mod.Engine.connect(f"unix://{sock}")
        for eng in (engine_mod.Engine(sdk, host=f"unix://{sock}"), over_socket):
            with pytest.raises(EngineError) as info:
                list(eng.build(io.BytesIO(context), **options))
            errors.append(info.value.message)
        assert over_socket._sdk_client is None
    finally:
        server.shutdown()
        server.server_close()
    (_, sdk_path, sdk_headers, sdk_body), (_, our_path, our_headers, our_body) = server.requests
    assert our_body == sdk_body == context
    # (the SDK names the API version it asked the engine for; unversioned is that version)
    assert urllib.parse.urlsplit(sdk_path).path == "/v1.41" + urllib.parse.urlsplit(our_path).path
    assert _build_query(our_path) == _build_query(sdk_path)
    assert _build_query(our_path)["buildargs"] == {
        "COMPOSER_FLAGS": "--no-dev", "HTTP_PROXY": "http://mine.invalid:1",
        "http_proxy": "http://proxy.invalid:3128", "NO_PROXY": "localhost",
        "no_proxy": "localhost"}
    assert our_headers["Content-Type"] == sdk_headers["Content-Type"]

    def logins(headers: dict[str, str]) -> dict[str, tuple[str, str]]:
        sent = json.loads(base64.urlsafe_b64decode(headers["X-Registry-Config"]))
        return {key: (value["username"], value["password"]) for key, value in sent.items()}

    assert logins(our_headers) == logins(sdk_headers) == {
        "localhost:5000": ("dev", "s3cret"), "registry.example.com": ("ci", "t0ken")}
    assert errors[0] == errors[1] and "refused: recorded" in errors[0]
