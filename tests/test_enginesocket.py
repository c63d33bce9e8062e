"""The stdlib path for a sync's first engine calls (devsync.enginesocket) and the names it
shares with the SDK's path. Against the real engine: tests/test_engine.py, whose pulls over
the private engine's unix socket all take this path."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import docker.auth
import docker.utils
import pytest

from devsync import engine as engine_mod
from devsync import enginesocket
from devsync.dockerconfig import Credentials


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

    monkeypatch.setattr("devsync.dockerconfig.get_credentials", get_credentials)
    assert engine_mod._auth_config(ref) is None
    repo, _ = docker.utils.parse_repository_tag(ref)
    assert asked == [docker.auth.resolve_repository_name(repo)[0]]
