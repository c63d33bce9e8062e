"""BuildKit's progress, read from the Engine API's trace messages and the CLI's plain output."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from devsync.adapters.engine import (
    BuildkitTrace,
    PlainProgress,
    find_buildkit_cli,
    parse_plain_progress,
)
from devsync.adapters.engine import socketapi as enginesocket
from devsync.adapters.engine._buildkit_progress import decode_status_response
from devsync.devtools import sandbox
from devsync.model.buildkit import StepRef, parse_step_name

# ---------------------------------------------------------------- a protobuf writer for tests


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _vertex(digest: str, name: str, *, cached: bool = False, started: int | None = None,
            error: str = "", inputs: tuple[str, ...] = ()) -> bytes:
    body = _field(1, digest) + b"".join(_field(2, i) for i in inputs) + _field(3, name)
    if cached:
        body += _field(4, 1)
    if started is not None:
        body += _field(5, _field(1, started) + _field(2, 500_000_000))
    if error:
        body += _field(7, error)
    return _field(1, body)


def _status(vertex: str, sid: str, current: int, total: int) -> bytes:
    return _field(2, _field(1, sid) + _field(2, vertex) + _field(4, current) + _field(5, total))


def _log(vertex: str, message: bytes) -> bytes:
    return _field(3, _field(1, vertex) + _field(3, 1) + _field(4, message))


def _trace(*parts: bytes) -> dict[str, object]:
    return {"id": "moby.buildkit.trace", "aux": base64.b64encode(b"".join(parts)).decode()}


# ---------------------------------------------------------------- step names


def test_step_names_as_the_frontend_writes_them() -> None:
    assert parse_step_name("[2/6] COPY composer.json ./") == StepRef("", 2, 6)
    assert parse_step_name("[vendor 3/4] RUN x") == StepRef("vendor", 3, 4)
    # the index is padded to the width of the total
    assert parse_step_name("[ 1/12] FROM x") == StepRef("", 1, 12)
    assert parse_step_name("[stage-0  9/10] RUN y") == StepRef("stage-0", 9, 10)
    assert parse_step_name("[internal] load .dockerignore") is None
    assert parse_step_name("exporting to image") is None
    assert StepRef("", 1, 12).vertex_prefix() == "[ 1/12]"
    assert StepRef("vendor", 2, 4).vertex_prefix() == "[vendor 2/4]"
    assert str(StepRef("vendor", 2, 4)) == "vendor 2/4" and str(StepRef("", 2, 4)) == "2/4"


# ---------------------------------------------------------------- the trace


def test_trace_takes_the_last_state_of_a_vertex() -> None:
    """A FROM can be reported cached while it resolves, then not cached once done."""
    trace = BuildkitTrace()
    trace.feed(_trace(_vertex("sha256:a", "[1/3] FROM base", cached=True)))
    trace.feed(_trace(_vertex("sha256:a", "[1/3] FROM base", started=1700000000)))
    trace.feed(_trace(_vertex("sha256:b", "[2/3] COPY . .", cached=True, inputs=("sha256:a",)),
                      _status("sha256:b", "pulling sha256:" + "1" * 64, 0, 0),
                      _log("sha256:b", b"hello\n")))
    trace.feed(_trace(_vertex("sha256:c", "[3/3] RUN false", error="exit code: 1")))
    trace.feed({"id": "moby.image.id", "aux": {"ID": "sha256:feed"}})
    trace.feed({"errorDetail": {"message": "boom"}, "error": "boom"})
    steps = trace.steps()
    assert [str(s) for s in steps] == ["1/3", "2/3", "3/3"]
    assert steps[StepRef("", 1, 3)].cached is False
    assert steps[StepRef("", 1, 3)].started == pytest.approx(1700000000.5)
    second = steps[StepRef("", 2, 3)]
    assert second.cached and second.inputs == ["sha256:a"] and second.logs == [b"hello\n"]
    assert second.blobs_pulled == ["sha256:" + "1" * 64]
    assert second.bytes_pulled({"sha256:" + "1" * 64: 1234}) == 1234
    assert steps[StepRef("", 3, 3)].error == "exit code: 1"
    assert trace.image_id == "sha256:feed"
    assert trace.errors == ["boom"]


def test_a_broken_trace_message_is_an_error_not_a_crash() -> None:
    trace = BuildkitTrace()
    trace.feed({"id": "moby.buildkit.trace", "aux": "!!!not base64"})
    trace.feed({"id": "moby.buildkit.trace",
                "aux": base64.b64encode(b"\x0a\xff\xff\xff").decode()})
    assert len(trace.errors) == 2 and not trace.all()
    # unknown fields and wire types 1 and 5 are skipped
    raw = _field(9, "x") + bytes([0x51]) + b"\0" * 8 + bytes([0x5d]) + b"\0" * 4
    assert decode_status_response(raw).vertexes == []


# ---------------------------------------------------------------- --progress=plain

PLAIN = """\
#1 [internal] load build definition from Dockerfile
#1 sha256:a4a27265ef26720e2124a4e035641056df88aedb7938713fbee8d1242213d685
#1 transferring dockerfile: 124B done
#1 DONE 0.0s

#5 [1/3] FROM localhost:5000/app:base
#5 sha256:1111111111111111111111111111111111111111111111111111111111111111
#5 CACHED

#6 [2/3] COPY . .
#6 CACHED

#7 [3/3] RUN echo hi
#7 pulling sha256:2222222222222222222222222222222222222222222222222222222222222222
#7 0.215 hi
#7 ERROR: executor failed running [/bin/sh -c echo hi]: exit code: 1

#5 sha256:3333333333333333333333333333333333333333333333333333333333333333 1.2MB / 3.4MB 0.1s
#5 DONE 0.4s
"""


def test_plain_progress_last_state_wins() -> None:
    steps = parse_plain_progress(PLAIN).steps()
    assert [str(s) for s in steps] == ["1/3", "2/3", "3/3"]
    first = steps[StepRef("", 1, 3)]
    assert first.cached is False  # CACHED, then DONE
    assert first.statuses["sha256:" + "3" * 64] == (1_200_000, 3_400_000)
    assert first.bytes_pulled() == 3_400_000
    assert steps[StepRef("", 2, 3)].cached is True
    third = steps[StepRef("", 3, 3)]
    assert not third.cached and third.error.startswith("executor failed")
    assert third.logs == [b"hi"] and third.blobs_pulled == ["sha256:" + "2" * 64]


# ---------------------------------------------------------------- the real engine


def _context(dockerfile: str) -> bytes:
    buf = io.BytesIO()
    # a PAX header would reach the frontend as a file named ./@PaxHeader
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), ("hello.txt", b"hello\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _api_build(engine: sandbox.PrivateEngine, dockerfile: str) -> BuildkitTrace:
    body = _context(dockerfile)
    trace = BuildkitTrace()
    stream = enginesocket.build(str(engine.socket_path), io.BytesIO(body), len(body),
                                {"version": "2", "dockerfile": "Dockerfile", "rm": "1"})
    try:
        for message in stream:
            trace.feed(message)
    finally:
        stream.close()
    return trace


def test_both_views_of_a_real_buildkit_build(engine: sandbox.PrivateEngine, busybox_image: str,
                                             tmp_path: Path) -> None:
    # a directory of this run's own, so no earlier build on the shared engine made these
    # steps; FROM may well be CACHED already (another test resolved the same base), so the
    # first build says nothing about it
    workdir = f"/srv/progress-{tmp_path.name}-{uuid.uuid4().hex[:8]}"
    dockerfile = (f"FROM {busybox_image}\nWORKDIR {workdir}\nCOPY hello.txt ./\n"
                  "RUN cat hello.txt > copy.txt\n")
    first = _api_build(engine, dockerfile)
    assert not first.errors and first.image_id and first.image_id.startswith("sha256:")
    # vertices arrive in the solver's order (a FROM already resolved can come last)
    steps = first.steps()
    assert sorted(str(s) for s in steps) == ["1/4", "2/4", "3/4", "4/4"]
    assert [steps[StepRef("", i, 4)].cached for i in (2, 3, 4)] == [False, False, False]
    again = _api_build(engine, dockerfile)
    assert again.image_id == first.image_id
    # the steps after FROM come from the engine's own cache
    assert [again.steps()[StepRef("", i, 4)].cached for i in (2, 3, 4)] == [True, True, True]

    cli = find_buildkit_cli().cli
    if cli is None or cli.kind != "builtin":
        pytest.skip("no docker CLI with BuildKit built in")
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "hello.txt").write_text("hello\n")
    proc = subprocess.run([cli.path, "build", "--progress=plain", str(tmp_path)],
                          env=dict(engine.env(), DOCKER_BUILDKIT="1"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    progress = PlainProgress()
    for line in proc.stderr.splitlines():
        progress.feed_line(line)
    steps = progress.steps()
    assert sorted(str(s) for s in steps) == ["1/4", "2/4", "3/4", "4/4"]
    # the engine's own cache (the file's content key is the same through either way of
    # sending the context); FROM is resolved again, and says so
    assert [steps[StepRef("", i, 4)].cached for i in (1, 2, 3, 4)] == [False, True, True, True]
    assert all(v.digest.startswith("sha256:") for v in steps.values())
    assert json.dumps([v.name for v in steps.values()])
