"""A context tar streamed while it is made builds what the same tar written first builds,
over the socket and through the SDK; a file that changes under the stream stops the build
with a clear error and no image. Against the real engine."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import docker
import pytest

from devsync.adapters.engine import Engine
from devsync.devtools import sandbox
from devsync.errors import DevsyncError
from devsync.events import ImageBuilt, StepFinished
from devsync.model.context import TarFlavor, scan_context


def _context(root: Path) -> Path:
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / ("long-" * 30 + ".txt")).write_text("a name that needs a PAX header\n")
    (root / "ünïcode.txt").write_text("so does this one\n")
    sub = root / "src" / "deep"
    sub.mkdir(parents=True)
    for i in range(300):
        (sub / f"f{i:03d}.php").write_text(f"<?php // {i}\n" * (i % 17 + 1))
    os.symlink("deep/f001.php", root / "src" / "link.php")
    return root


def _build(engine: Engine, body: object, tag: str) -> tuple[str, list[bool]]:
    events = list(engine.build(body, tag=tag, image_name="ctx"))  # type: ignore[arg-type]
    built = [e for e in events if isinstance(e, ImageBuilt)]
    assert built, events
    return built[-1].image_id, [e.cached for e in events if isinstance(e, StepFinished)]


def test_a_streamed_context_builds_the_written_tars_image(engine: sandbox.PrivateEngine,
                                                          tmp_path: Path) -> None:
    ctx = scan_context(_context(tmp_path / "ctx"))
    over_socket = Engine.connect(engine.url)
    sdk = Engine(docker.DockerClient(base_url=engine.url, version="1.41"), host=engine.url)
    try:
        with tempfile.TemporaryFile() as written:
            ctx.write_tar(written, TarFlavor.CLI_MODERN)
            written.seek(0)
            first, _hits = _build(over_socket, written, "ctx:written")
        # the same tar, made while the request sends it: the engine hashes the same COPY
        # (its own cache finds the step) and ends on the very same image
        streamed, hits = _build(over_socket, ctx.tar_stream(TarFlavor.CLI_MODERN),
                                "ctx:streamed")
        assert (streamed, hits) == (first, [True, True])
        assert over_socket._sdk_client is None
        # through the SDK (engines over tcp or ssh) the stream is spooled to a file first
        spooled, hits = _build(sdk, ctx.tar_stream(TarFlavor.CLI_MODERN), "ctx:sdk")
        assert (spooled, hits) == (first, [True, True])
    finally:
        for tag in ("ctx:written", "ctx:streamed", "ctx:sdk"):
            sandbox.docker_cli(engine, "rmi", tag, check=False)
        over_socket.close()
        sdk.close()


def test_a_file_that_changes_under_the_stream_stops_the_build(engine: sandbox.PrivateEngine,
                                                              tmp_path: Path) -> None:
    root = _context(tmp_path / "ctx")
    ctx = scan_context(root)
    (root / "big.bin").write_bytes(b"cut short")
    eng = Engine.connect(engine.url)
    try:
        with pytest.raises(DevsyncError, match="changed while devsync was reading"):
            _build(eng, ctx.tar_stream(TarFlavor.CLI_MODERN), "ctx:broken")
        assert not eng.has_image("ctx:broken")
    finally:
        eng.close()
