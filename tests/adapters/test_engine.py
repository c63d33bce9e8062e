from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from devsync.adapters.engine import Engine, LocalImage
from devsync.devtools import sandbox
from devsync.errors import (
    DevsyncError,
    DockerfileError,
    EngineError,
    EngineUnavailableError,
    InterruptedError_,
    RegistryAuthError,
    RegistryError,
)
from devsync.events import (
    Event,
    ImageBuilt,
    LayerProgress,
    LogLine,
    PullFinished,
    PullProgress,
    PullStarted,
    Pushed,
    PushProgress,
    StepFinished,
    StepStarted,
    Warning_,
)

pytestmark = pytest.mark.engine

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _prefix(registry: sandbox.PrivateRegistry, name: str) -> str:
    """A repository of its own for each test: the engine and registry are shared."""
    return f"{registry.host}/engtest-{name}-{uuid.uuid4().hex[:6]}"


def _context(dockerfile: str, files: dict[str, bytes] | None = None) -> io.BytesIO:
    """A build context as the docker CLI sends it: uid/gid 0, no owner names, mode bits only."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **(files or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _registry_get(registry: sandbox.PrivateRegistry, path: str,
                  accept: str = MANIFEST_V2) -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(f"{registry.url}{path}", headers={"Accept": accept})
    with urllib.request.urlopen(req) as resp:
        return resp.read(), dict(resp.headers)


def _registry_config(registry: sandbox.PrivateRegistry, ref: str) -> tuple[str, dict]:
    """(manifest digest, config blob) straight from the registry."""
    name, tag = ref.split("/", 1)[1].rsplit(":", 1)
    body, headers = _registry_get(registry, f"/v2/{name}/manifests/{tag}")
    manifest = json.loads(body)
    blob, _ = _registry_get(registry, f"/v2/{name}/blobs/{manifest['config']['digest']}",
                            accept="*/*")
    return headers["Docker-Content-Digest"], json.loads(blob)


def _image_absent(engine: sandbox.PrivateEngine, ref: str) -> bool:
    out = sandbox.docker_cli(engine, "image", "inspect", ref, check=False)
    return out.returncode != 0


def _build_containers(engine: sandbox.PrivateEngine) -> list[str]:
    out = sandbox.docker_cli(engine, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}")
    return [line for line in out.stdout.splitlines() if "sleep 120" in line]


@pytest.fixture(scope="module")
def eng(engine: sandbox.PrivateEngine) -> Iterator[Engine]:
    with Engine.connect(engine.url) as connected:
        yield connected


# --------------------------------------------------------------------------- connect


def test_connect_pings_the_private_engine(eng: Engine, engine: sandbox.PrivateEngine) -> None:
    assert eng.ping()
    assert eng.api_version.startswith("1.")
    assert eng.host == engine.url


def test_connect_without_endpoint_follows_docker_host(engine: sandbox.PrivateEngine,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    with Engine.connect() as connected:
        assert connected.host == engine.url
        assert connected.ping()


def test_calls_over_a_local_socket_take_no_proxy_or_netrc(engine: sandbox.PrivateEngine,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    # requests would send a .netrc entry for "localhost" to the daemon as Basic auth, and
    # route "http+docker" URLs through ALL_PROXY; neither applies to a unix socket
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with Engine.connect(engine.url) as connected:
        api = connected.client.api
        response = api._get(api._url("/_ping"))
        assert response.status_code == 200
        assert "Authorization" not in response.request.headers
        assert connected.ping()


def _assert_one_clear_line(exc: EngineUnavailableError) -> None:
    assert "\n" not in exc.message
    assert "Traceback" not in exc.message and "Error(" not in exc.message
    assert exc.hint


def test_connect_to_missing_socket_is_unavailable(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nothing-here.sock"
    with pytest.raises(EngineUnavailableError) as info:
        Engine.connect(url)
    assert info.value.message == (
        f"cannot reach the Docker engine at {url}: no such socket — is Docker running?"
    )
    _assert_one_clear_line(info.value)


def test_connect_to_socket_without_listener_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: connect() is refused
        with pytest.raises(EngineUnavailableError) as info:
            Engine.connect(f"unix://{path}")
    assert "connection refused" in info.value.message
    _assert_one_clear_line(info.value)


def test_connect_to_silent_socket_gives_up_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with sandbox.silent_socket(path) as accepted, \
            pytest.raises(EngineUnavailableError) as info:
        Engine.connect(f"unix://{path}", timeout=0.5)
    assert accepted, "the client never connected"
    assert "no answer within 0.5s" in info.value.message
    _assert_one_clear_line(info.value)


def test_connect_to_something_that_is_not_docker(registry: sandbox.PrivateRegistry) -> None:
    with pytest.raises(EngineUnavailableError) as info:
        Engine.connect(f"tcp://127.0.0.1:{registry.port}")
    assert "not as a Docker engine" in info.value.message


def test_unix_socket_of_something_that_is_not_docker(tmp_path: Path) -> None:
    """A local socket whose server answers HTTP, but not as an engine (the ping over the
    socket, before any SDK)."""
    path = tmp_path / "web.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 9\r\nConnection: close\r\n\r\nnot here\n")

        answering = threading.Thread(target=answer, daemon=True)
        answering.start()
        with pytest.raises(EngineUnavailableError) as info:
            Engine.connect(f"unix://{path}", timeout=5)
        answering.join(timeout=5)
    assert "answered HTTP 404, not as a Docker engine" in info.value.message
    _assert_one_clear_line(info.value)


# --------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def deployed(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
             busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An image built and pushed by the docker CLI (as CI would), then removed locally.

    Its steps cover a RUN that writes nothing (a 0-byte layer), metadata-only steps and a COPY.
    `docker rmi` also drops its intermediate images, so no local build cache is left.
    """
    repo = _prefix(registry, "deployed")
    ref = f"{repo}:1"
    marker = uuid.uuid4().hex
    ctx = tmp_path_factory.mktemp("deployed-ctx")
    (ctx / "f.txt").write_text("hello\n")
    (ctx / "f.txt").chmod(0o644)
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        f"RUN echo {marker} > /one\n"
        "RUN mkdir /empty-dir\n"
        "ENV A=1\n"
        "WORKDIR /app\n"
        "COPY f.txt /f.txt\n"
        "RUN echo two > /two\n"
        "RUN head -c 64 /dev/urandom > /three\n"
    )
    sandbox.docker_cli(engine, "build", "-q", "-t", ref, str(ctx))
    sandbox.docker_cli(engine, "push", ref)
    sandbox.docker_cli(engine, "rmi", ref)
    return {"ref": ref, "repo": repo, "marker": marker}


def test_has_image(eng: Engine, registry: sandbox.PrivateRegistry, busybox_image: str) -> None:
    assert eng.has_image(busybox_image)
    assert not eng.has_image(f"{_prefix(registry, 'absent')}:1")


def test_image_of_a_missing_ref_is_none(eng: Engine, registry: sandbox.PrivateRegistry) -> None:
    assert eng.image(f"{_prefix(registry, 'none')}:1") is None


def test_pull_reports_layers_bytes_and_digest(eng: Engine, engine: sandbox.PrivateEngine,
                                              registry: sandbox.PrivateRegistry,
                                              deployed: dict[str, str]) -> None:
    ref = deployed["ref"]
    assert _image_absent(engine, ref)
    events = list(eng.pull(ref))
    assert isinstance(events[0], PullStarted)
    finished = events[-1]
    assert isinstance(finished, PullFinished)
    registry_digest, _ = _registry_config(registry, ref)
    assert finished.digest == registry_digest
    assert not finished.already_present

    layers = [e for e in events if isinstance(e, LayerProgress)]
    downloading = [e for e in layers if e.status == "Downloading"]
    assert downloading and all(e.total > 0 for e in downloading)
    assert {e.status for e in layers} >= {"Pull complete"}
    progress = [e for e in events if isinstance(e, PullProgress)]
    last = progress[-1]
    assert last.layers_done == last.layers_total > 0
    assert last.bytes_total > 0 and last.bytes_done == last.bytes_total
    assert all(p.bytes_done <= p.bytes_total for p in progress)
    # the bar: 100% only once every layer is done
    assert last.share_done == 1.0
    assert all(p.share_done < 1.0 for p in progress if p.layers_done < p.layers_total)

    again = list(eng.pull(ref))
    assert isinstance(again[-1], PullFinished)
    assert again[-1].already_present and again[-1].digest == registry_digest


def test_pull_by_digest_the_digest_wins_over_a_tag(eng: Engine,
                                                   registry: sandbox.PrivateRegistry,
                                                   deployed: dict[str, str]) -> None:
    digest, _ = _registry_config(registry, deployed["ref"])
    events = list(eng.pull(f"{deployed['repo']}:no-such-tag@{digest}"))
    assert isinstance(events[-1], PullFinished) and events[-1].digest == digest
    assert eng.has_image(f"{deployed['repo']}@{digest}")


_A_SYNCS_CALLS_WITHOUT_THE_SDK = """
import io, sys, tarfile
from devsync.adapters.engine import Engine
from devsync.events import ImageBuilt, PullFinished
eng = Engine.connect(sys.argv[1])
ref, tag = sys.argv[2], sys.argv[3]
assert not eng.has_image(ref)
events = list(eng.pull(ref))
assert isinstance(events[-1], PullFinished) and events[-1].digest, events[-1]
pulled = eng.image(ref)
assert pulled is not None and pulled.history and pulled.diff_ids
context = io.BytesIO()
with tarfile.open(fileobj=context, mode="w") as tar:
    text = f"FROM {ref}\\nRUN echo built > /built\\n".encode()
    info = tarfile.TarInfo("Dockerfile")
    info.size = len(text)
    tar.addfile(info, io.BytesIO(text))
context.seek(0)
built = list(eng.build(context, tag=tag, cache_from=[ref], labels={"a": "b"}))[-1]
assert isinstance(built, ImageBuilt) and built.image_id.startswith("sha256:"), built
image = eng.image(tag)
assert image is not None and image.id == built.image_id and image.labels == {"a": "b"}
assert eng.has_children(pulled.id) and not eng.has_children(built.image_id)
loaded = sorted(m for m in ("docker", "requests", "urllib3") if m in sys.modules)
assert not loaded, f"a sync's calls imported {loaded}"
eng.local_images(ref.rsplit(":", 1)[0])  # not a sync's call: made with the SDK, on first use
assert "docker" in sys.modules
# (whichever call loads the SDK, it leaves out the ssh transport a unix socket never uses)
assert "paramiko" not in sys.modules
print(events[-1].digest, built.image_id)
"""


def test_a_syncs_calls_never_import_the_sdk(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str, tmp_path: Path) -> None:
    """Ping, inspect, history, the pull and build streams and the tag go over the unix
    socket directly: a sync never spends ~0.1 s of CPU importing the SDK (and requests) while
    its pull needs both cores."""
    ref = f"{_prefix(registry, 'sdkless')}:1"
    tag = f"{_prefix(registry, 'sdkless')}:dev"
    sandbox.docker_cli(engine, "tag", busybox_image, ref)
    sandbox.docker_cli(engine, "push", ref)
    sandbox.docker_cli(engine, "rmi", ref)
    proc = subprocess.run([sys.executable, "-c", _A_SYNCS_CALLS_WITHOUT_THE_SDK, engine.url,
                           ref, tag], env={**os.environ, "DOCKER_CONFIG": str(tmp_path)},
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    registry_digest, _ = _registry_config(registry, ref)
    digest, image_id = proc.stdout.split()
    assert digest == registry_digest
    assert sandbox.docker_cli(engine, "image", "inspect", "--format", "{{.Id}}",
                              tag).stdout.strip() == image_id


def test_local_image_history_matches_the_registry_config(
        eng: Engine, registry: sandbox.PrivateRegistry, deployed: dict[str, str]) -> None:
    ref = deployed["ref"]
    if eng.image(ref) is None:
        list(eng.pull(ref))
    img = eng.image(ref)
    assert isinstance(img, LocalImage)
    digest, config = _registry_config(registry, ref)
    assert img.digest_for(deployed["repo"]) == digest
    assert list(img.diff_ids) == config["rootfs"]["diff_ids"]
    # the engine's /history API has no empty_layer flag: ours is derived, the registry's exact
    assert [(h.created_by, h.empty_layer) for h in img.history] == [
        (h.get("created_by", ""), bool(h.get("empty_layer"))) for h in config["history"]
    ]
    assert img.history_exact
    zero_byte_run = next(h for h in img.history if "mkdir /empty-dir" in h.created_by)
    assert zero_byte_run.size == 0 and not zero_byte_run.empty_layer
    assert [h.diff_id for h in img.history if not h.empty_layer] == list(img.diff_ids)
    assert eng.history(ref) == list(img.history)

    listed = eng.local_images(deployed["repo"])
    assert [i.id for i in listed] == [img.id]
    assert listed[0].history == img.history

    info = img.to_image_info(ref)
    assert info.origin == "local" and info.digest == digest
    assert info.diff_ids == img.diff_ids


def test_remote_digest(eng: Engine, registry: sandbox.PrivateRegistry,
                       deployed: dict[str, str]) -> None:
    digest, _ = _registry_config(registry, deployed["ref"])
    assert eng.remote_digest(deployed["ref"]) == digest
    assert eng.remote_digest(f"{deployed['repo']}:no-such-tag") is None


def test_pull_of_a_missing_tag_is_a_registry_error(eng: Engine,
                                                   deployed: dict[str, str]) -> None:
    ref = f"{deployed['repo']}:no-such-tag"
    with pytest.raises(RegistryError) as info:
        list(eng.pull(ref))
    assert not isinstance(info.value, RegistryAuthError)
    assert ref in info.value.message and "manifest unknown" in info.value.message


def test_pull_from_a_registry_that_is_down(eng: Engine) -> None:
    port = sandbox.free_port()
    with pytest.raises(RegistryError) as info:
        list(eng.pull(f"localhost:{port}/nothing:1"))
    assert "connection refused" in info.value.message


# --------------------------------------------------------------------------- build


def _steps(events: list[Event]) -> list[tuple[str, bool]]:
    started = {e.index: e.instruction for e in events if isinstance(e, StepStarted)}
    return [(started[e.index], e.cached) for e in events if isinstance(e, StepFinished)]


def _history_rows(engine: sandbox.PrivateEngine, ref: str) -> list[tuple[str, str]]:
    """(created, created_by) oldest first, as `docker history` shows them."""
    out = sandbox.docker_cli(engine, "history", "--no-trunc", "--human=false", "--format",
                             "{{.CreatedAt}}\t{{.CreatedBy}}", ref)
    return [tuple(line.split("\t", 1)) for line in reversed(out.stdout.splitlines())]  # type: ignore[misc]


def _layers(engine: sandbox.PrivateEngine, ref: str) -> list[str]:
    out = sandbox.docker_cli(engine, "image", "inspect", "--format",
                             "{{json .RootFS.Layers}}", ref)
    return list(json.loads(out.stdout))


def test_build_with_cache_from_reports_what_the_builder_reused(
        eng: Engine, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str, deployed: dict[str, str]) -> None:
    source = deployed["ref"]
    if eng.image(source) is None:
        list(eng.pull(source))
    tag = f"{_prefix(registry, 'cache')}:dev"
    dockerfile = (
        f"FROM {busybox_image}\n"
        f"RUN echo {deployed['marker']} > /one\n"
        "RUN mkdir /empty-dir\n"
        "ENV A=1\n"
        "WORKDIR /app\n"
        "COPY f.txt /f.txt\n"
        "RUN echo changed > /two\n"  # differs from the deployed image: rebuilt from here on
        "RUN head -c 64 /dev/urandom > /three\n"
    )
    events = list(eng.build(_context(dockerfile, {"f.txt": b"hello\n"}), tag=tag,
                            cache_from=[source], image_name="app"))
    built = events[-1]
    assert isinstance(built, ImageBuilt)
    assert built.tag == tag and built.image == "app"
    assert built.steps_total == 8 and built.steps_cached == 6
    # (a host without IPv4 forwarding makes the daemon warn once about every RUN's network:
    # that is about the machine, not about the cache)
    assert not [e for e in events if isinstance(e, Warning_)
                and not e.message.startswith("IPv4 forwarding is disabled")]
    assert len([e for e in events if isinstance(e, Warning_)]) <= 1  # said once, not per RUN
    assert _steps(events) == [
        (f"FROM {busybox_image}", True),
        (f"RUN echo {deployed['marker']} > /one", True),
        ("RUN mkdir /empty-dir", True),
        ("ENV A=1", True),
        ("WORKDIR /app", True),
        ("COPY f.txt /f.txt", True),
        ("RUN echo changed > /two", False),
        ("RUN head -c 64 /dev/urandom > /three", False),
    ]
    assert eng.image(tag) is not None and eng.image(tag).id == built.image_id  # type: ignore[union-attr]

    # what docker itself says: reused entries are the deployed image's own (same layer,
    # same creation time), rebuilt ones are new
    ours, theirs = _history_rows(engine, tag), _history_rows(engine, source)
    base = len(_history_rows(engine, busybox_image))
    assert ours[: base + 5] == theirs[: base + 5]
    our_layers, their_layers = _layers(engine, tag), _layers(engine, source)
    # busybox's 2 layers, RUN one, RUN mkdir, WORKDIR (it creates /app) and COPY are reused;
    # RUN two and RUN three are new layers
    assert len(our_layers) == len(their_layers) == 8
    assert our_layers[:6] == their_layers[:6]
    assert our_layers[6] != their_layers[6] and our_layers[7] != their_layers[7]
    run_lines = [e.text for e in events if isinstance(e, LogLine)]
    assert not any("Using cache" in t or t.startswith("Step ") for t in run_lines)


def test_build_warns_about_a_cache_source_that_is_not_local(
        eng: Engine, registry: sandbox.PrivateRegistry, busybox_image: str) -> None:
    missing = f"{_prefix(registry, 'nocache')}:1"
    events = list(eng.build(_context(f"FROM {busybox_image}\n"), cache_from=[missing]))
    warnings_ = [e for e in events if isinstance(e, Warning_)]
    assert len(warnings_) == 1 and missing in warnings_[0].message
    built = events[-1]
    assert isinstance(built, ImageBuilt) and built.tag == "" and built.steps_total == 1


def test_build_labels_step_is_reported_last(eng: Engine, registry: sandbox.PrivateRegistry,
                                            busybox_image: str) -> None:
    tag = f"{_prefix(registry, 'labels')}:1"
    events = list(eng.build(_context(f"FROM {busybox_image}\nENV X=1\n"), tag=tag,
                            labels={"devsync.test": "yes"}))
    starts = [e for e in events if isinstance(e, StepStarted)]
    assert [s.instruction for s in starts][-1] == "LABEL devsync.test=yes"
    assert all(s.total == 3 for s in starts)
    img = eng.image(tag)
    assert img is not None and img.labels["devsync.test"] == "yes"


OCI = {
    "org.opencontainers.image.created": "2026-11-29T13:00:00Z",
    "org.opencontainers.image.revision": "4279746d0c6f8b5c2a1e9f7d3b6a8c0e2f4a6b8d",
    "org.opencontainers.image.source": "https://git.example.com/team/shop.git",
    "org.opencontainers.image.version": "dev",
}


def _image_json(engine: sandbox.PrivateEngine, ref: str) -> dict:
    out = sandbox.docker_cli(engine, "image", "inspect", ref)
    return dict(json.loads(out.stdout)[0])


def test_label_value_with_a_newline_uses_the_builders_option(
        eng: Engine, registry: sandbox.PrivateRegistry, busybox_image: str) -> None:
    labels = {"org.example.multi": "line one\nline two", "org.example.plain": "x"}
    tag = f"{_prefix(registry, 'newline')}:1"
    events = list(eng.build(_context(f"FROM {busybox_image}\n"), tag=tag, labels=labels))
    starts = [e for e in events if isinstance(e, StepStarted)]
    assert [s.instruction.split()[0] for s in starts] == ["FROM", "LABEL", "LABEL"]
    assert {s.total for s in starts} == {3}
    img = eng.image(tag)
    assert img is not None and img.labels == labels


def test_labels_on_an_image_with_onbuild_triggers_do_not_run_them(
        eng: Engine, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str) -> None:
    """The builder's own option appends its LABEL steps to the same build: the image's
    ONBUILD triggers are kept and never run."""
    dockerfile = (f"FROM {busybox_image}\nRUN echo base > /base\n"
                  "ONBUILD RUN touch /triggered\n")
    tag = f"{_prefix(registry, 'onbuild')}:1"
    events = list(eng.build(_context(dockerfile), tag=tag, labels=OCI, image_name="app"))
    starts = [e for e in events if isinstance(e, StepStarted)]
    # the Dockerfile's three steps once, then the builder's four LABEL steps
    assert [s.instruction.split()[0] for s in starts] == ["FROM", "RUN", "ONBUILD"] + \
        ["LABEL"] * 4
    assert [s.index for s in starts] == list(range(7))
    assert [s.total for s in starts][3:] == [7] * 4
    built = events[-1]
    assert isinstance(built, ImageBuilt) and built.steps_total == 7
    assert sum(isinstance(e, LogLine) and "Step " in e.text for e in events) == 0
    info = _image_json(engine, tag)
    assert info["Config"]["Labels"] == OCI
    assert info["Config"]["OnBuild"] == ["RUN touch /triggered"]  # kept, never run
    ran = [created_by for _created, created_by in _history_rows(engine, tag)
           if "touch /triggered" in created_by and "ONBUILD" not in created_by]
    assert not ran


def test_failed_build_raises_and_tags_nothing(eng: Engine, engine: sandbox.PrivateEngine,
                                              registry: sandbox.PrivateRegistry,
                                              busybox_image: str) -> None:
    tag = f"{_prefix(registry, 'fail')}:1"
    seen: list[Event] = []
    with pytest.raises(EngineError) as info:
        for event in eng.build(_context(f"FROM {busybox_image}\nRUN echo about-to-fail; false\n"),
                               tag=tag):
            seen.append(event)
    assert "non-zero code: 1" in info.value.message
    assert "step 2/2" in info.value.message
    assert LogLine(tag, "about-to-fail") in seen
    assert _image_absent(engine, tag)


def test_dockerfile_the_engine_rejects(eng: Engine, busybox_image: str) -> None:
    with pytest.raises(DockerfileError) as info:
        list(eng.build(_context(f"FROM {busybox_image}\nNOT-AN-INSTRUCTION x\n")))
    assert "unknown instruction" in info.value.message


def _wait_until(predicate: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what}")
        time.sleep(0.1)


def test_cancel_event_stops_a_running_build(eng: Engine, engine: sandbox.PrivateEngine,
                                            registry: sandbox.PrivateRegistry,
                                            busybox_image: str) -> None:
    tag = f"{_prefix(registry, 'cancel')}:1"
    cancel = threading.Event()
    lines: list[str] = []
    gen = eng.build(_context(f"FROM {busybox_image}\nRUN echo started; sleep 120; echo ended\n"),
                    tag=tag, cancel=cancel)
    with pytest.raises(InterruptedError_):
        for event in gen:
            if isinstance(event, LogLine):
                lines.append(event.text)
                if event.text == "started":
                    cancel.set()  # as the TUI does, from another thread or this one
    # had the cancel not reached the daemon, the RUN would have printed this after 120 s
    assert lines == ["started"]
    assert _image_absent(engine, tag)
    _wait_until(lambda: not _build_containers(engine), "the daemon to remove the RUN container")


def test_ctrl_c_during_a_build_closes_the_stream_and_tags_nothing(
        eng: Engine, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is delivered to the main thread only")
    tag = f"{_prefix(registry, 'ctrlc')}:1"
    started = threading.Event()

    def press_ctrl_c() -> None:
        if started.wait(60):
            time.sleep(0.3)  # let the main thread block on the silent stream again
            os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    gen = eng.build(_context(f"FROM {busybox_image}\nRUN echo started; sleep 120; echo ended\n"),
                    tag=tag)
    assert isinstance(gen, Generator)
    with pytest.raises(KeyboardInterrupt), contextlib.closing(gen):
        for event in gen:
            if isinstance(event, LogLine) and event.text == "started":
                started.set()
            assert not (isinstance(event, LogLine) and event.text == "ended")
    presser.join()
    assert _image_absent(engine, tag)
    _wait_until(lambda: not _build_containers(engine), "the daemon to remove the RUN container")
    assert eng.ping()  # the client is still usable


# --------------------------------------------------------------------------- push


def test_push_reports_progress_and_the_registry_digest(
        eng: Engine, registry: sandbox.PrivateRegistry, busybox_image: str) -> None:
    repo = _prefix(registry, "push")
    dockerfile = f"FROM {busybox_image}\nRUN head -c 300000 /dev/urandom > /r\n"
    built = list(eng.build(_context(dockerfile)))[-1]
    assert isinstance(built, ImageBuilt)
    eng.tag(built.image_id, f"{repo}:1")
    events = list(eng.push(f"{repo}:1"))
    pushed = events[-1]
    assert isinstance(pushed, Pushed)
    _, headers = _registry_get(registry, f"/v2/{repo.split('/', 1)[1]}/manifests/1")
    assert pushed.digest == headers["Docker-Content-Digest"]
    assert eng.remote_digest(f"{repo}:1") == pushed.digest
    layers = [e for e in events if isinstance(e, LayerProgress)]
    assert any(e.status == "Pushing" and e.total > 0 for e in layers)
    assert any(e.status == "Pushed" for e in layers)
    progress = [e for e in events if isinstance(e, PushProgress)]
    assert progress[-1].layers_done == progress[-1].layers_total == 3
    assert progress[-1].bytes_total >= 300000


def test_push_of_an_image_that_is_not_local(eng: Engine,
                                            registry: sandbox.PrivateRegistry) -> None:
    with pytest.raises(EngineError) as info:
        list(eng.push(f"{_prefix(registry, 'nolocal')}:1"))
    assert "does not exist locally" in info.value.message


# --------------------------------------------------------------------------- auth


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt = pytest.importorskip("crypt")
    # the lowest bcrypt cost: the registry checks the hash on every request
    return str(crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory,
                  registry: sandbox.PrivateRegistry) -> Iterator[sandbox.PrivateRegistry]:
    root = tmp_path_factory.mktemp("authreg")
    (root / "htpasswd").write_text(f"dev:{_bcrypt('s3cret')}\n")
    reg = sandbox.PrivateRegistry(root / "reg", htpasswd=root / "htpasswd").start()
    yield reg
    reg.stop()


def test_registry_with_auth(eng: Engine, auth_registry: sandbox.PrivateRegistry,
                            busybox_image: str, monkeypatch: pytest.MonkeyPatch,
                            tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no logins at all
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    ref = f"{auth_registry.host}/engtest-auth:1"
    bb = eng.image(busybox_image)
    assert bb is not None
    eng.tag(bb.id, ref)
    with pytest.raises(RegistryAuthError):
        list(eng.push(ref))

    # credentials reach the engine through devsync.adapters.dockerconfig.get_credentials
    token = base64.b64encode(b"dev:s3cret").decode()
    monkeypatch.setenv("DOCKER_AUTH_CONFIG",
                       json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    pushed = list(eng.push(ref))[-1]
    assert isinstance(pushed, Pushed) and pushed.digest
    assert eng.remote_digest(ref) == pushed.digest
    assert eng.remove_image(ref)
    assert isinstance(list(eng.pull(ref))[-1], PullFinished)

    wrong = base64.b64encode(b"dev:wrong").decode()
    monkeypatch.setenv("DOCKER_AUTH_CONFIG",
                       json.dumps({"auths": {auth_registry.host: {"auth": wrong}}}))
    assert eng.remove_image(ref)
    with pytest.raises(RegistryAuthError) as info:
        list(eng.pull(ref))
    assert "wrong" not in info.value.message and "s3cret" not in info.value.message
    assert eng.remote_digest(ref) is None


def test_build_from_a_context_that_cannot_tell_its_size(eng: Engine, busybox_image: str) -> None:
    """A context read from a pipe goes up chunked."""
    data = _context(f"FROM {busybox_image}\nRUN echo piped > /piped\n").getvalue()
    read_end, write_end = os.pipe()

    def feed() -> None:
        with open(write_end, "wb") as sink:
            sink.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with open(read_end, "rb") as pipe:
        events = list(eng.build(pipe))
    writer.join()
    assert isinstance(events[-1], ImageBuilt) and eng.has_image(events[-1].image_id)


def test_build_pulls_a_private_base_with_dockers_logins(
        eng: Engine, auth_registry: sandbox.PrivateRegistry, busybox_image: str,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The builder pulls a FROM image that is not local itself, with the logins the build
    request carries (all of Docker's, as the CLI sends them); a wrong one is refused."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    good = base64.b64encode(b"dev:s3cret").decode()
    monkeypatch.setenv("DOCKER_AUTH_CONFIG",
                       json.dumps({"auths": {auth_registry.host: {"auth": good}}}))
    base = f"{auth_registry.host}/engtest-buildbase:1"
    bb = eng.image(busybox_image)
    assert bb is not None
    eng.tag(bb.id, base)
    assert isinstance(list(eng.push(base))[-1], Pushed)
    assert eng.remove_image(base)
    dockerfile = f"FROM {base}\nRUN echo built > /built\n"

    wrong = base64.b64encode(b"dev:wrong").decode()
    monkeypatch.setenv("DOCKER_AUTH_CONFIG",
                       json.dumps({"auths": {auth_registry.host: {"auth": wrong}}}))
    with pytest.raises(DevsyncError) as info:
        list(eng.build(_context(dockerfile)))
    assert "wrong" not in info.value.message and not eng.has_image(base)

    monkeypatch.setenv("DOCKER_AUTH_CONFIG",
                       json.dumps({"auths": {auth_registry.host: {"auth": good}}}))
    built = list(eng.build(_context(dockerfile)))[-1]
    assert isinstance(built, ImageBuilt) and eng.has_image(base)


def test_build_gets_the_proxy_args_of_dockers_config(
        eng: Engine, busybox_image: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """As with `docker build`: config.json's proxies become build args, under the given ones."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    (tmp_path / "config.json").write_text(json.dumps({"proxies": {"default": {
        "httpProxy": "http://proxy.invalid:3128", "noProxy": "localhost"}}}))
    checks = ('RUN test "$HTTP_PROXY" = "$WANT" && test "$http_proxy" = "$WANT" '
              '&& test "$no_proxy" = localhost\n')
    for given, want in (({}, "http://proxy.invalid:3128"),
                        ({"HTTP_PROXY": "http://mine.invalid:1",
                          "http_proxy": "http://mine.invalid:1"}, "http://mine.invalid:1")):
        dockerfile = f"FROM {busybox_image}\nARG WANT\n{checks}"
        events = list(eng.build(_context(dockerfile), build_args={**given, "WANT": want}))
        assert isinstance(events[-1], ImageBuilt), events


# --------------------------------------------------------------------------- daemon trouble


@pytest.fixture()
def doomed_engine() -> Iterator[sandbox.PrivateEngine]:
    """An engine of this test's own, to freeze and kill (never the shared one)."""
    root = Path(tempfile.mkdtemp(prefix="dsd-", dir="/tmp"))
    try:
        eng = sandbox.PrivateEngine(root / "e").start()
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(str(exc))
    children = Path(f"/proc/{eng.pid}/task/{eng.pid}/children").read_text().split()
    yield eng
    for pid in [eng.pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    eng.stop()
    for pid in map(int, children):  # containerd outlives a dockerd that was killed
        sandbox._stop_pid(pid)
    # dockerd bind-mounts its data root onto itself; a killed one leaves that mount behind
    subprocess.run(["umount", "-R", str(eng.root / "data")], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def big_image(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
              busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A pushed image with a 24 MB layer: a pull of it takes long enough to be interrupted."""
    ref = f"{_prefix(registry, 'big')}:1"
    ctx = tmp_path_factory.mktemp("big-ctx")
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN head -c 24000000 /dev/urandom > /big\n")
    sandbox.docker_cli(engine, "build", "-q", "-t", ref, str(ctx))
    sandbox.docker_cli(engine, "push", ref)
    return ref


def test_daemon_hanging_mid_pull(doomed_engine: sandbox.PrivateEngine, big_image: str) -> None:
    eng = Engine.connect(doomed_engine.url, stream_idle_timeout=1.0)
    seen: list[Event] = []
    with pytest.raises(EngineUnavailableError) as info:
        for event in eng.pull(big_image):
            seen.append(event)
            if isinstance(event, LayerProgress):
                os.kill(doomed_engine.pid, signal.SIGSTOP)
    assert not any(isinstance(e, PullFinished) for e in seen)
    assert "sent nothing for 1s" in info.value.message


def test_daemon_dying_mid_pull(doomed_engine: sandbox.PrivateEngine, big_image: str) -> None:
    eng = Engine.connect(doomed_engine.url)
    seen: list[Event] = []
    with pytest.raises(EngineUnavailableError) as info:
        for event in eng.pull(big_image):
            seen.append(event)
            if isinstance(event, LayerProgress) and doomed_engine.pid:
                os.kill(doomed_engine.pid, signal.SIGSTOP)  # nothing more gets written
                os.kill(doomed_engine.pid, signal.SIGKILL)
    assert not any(isinstance(e, PullFinished) for e in seen)
    assert "closed the connection during pull" in info.value.message
