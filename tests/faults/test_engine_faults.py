"""Engine faults: not running, killed mid-pull and mid-build, out of disk, a silent socket.

The daemons killed or starved here are this module's own (`ShortLivedEngine`), never the
session's engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devsync.adapters.registry import RegistryClient
from devsync.devtools import sandbox
from tests.support.faultcases import FaultRecorder
from tests.support.faults import (
    BigShop,
    FlakyProxy,
    ShortLivedEngine,
    StateDir,
    clone,
    devsync,
    devsync_env,
    expect_error,
    expect_ok,
    silent_socket,
    stream_devsync,
    tagged_images,
)
from tests.support.teamrepo import TeamRepo, git

pytestmark = pytest.mark.engine

USER_IMAGE = "mine/keep:1"  # an image of the developer's own, which no fault may touch


def _env(url: str, state: StateDir) -> dict[str, str]:
    return devsync_env(state=state.path, env={"DOCKER_HOST": url, "DOCKER_BUILDKIT": "0"})


def _docker(url: str, *args: str) -> None:
    import os
    import subprocess

    env = dict(os.environ, DOCKER_HOST=url)
    env.pop("DOCKER_CONTEXT", None)
    subprocess.run(["docker", *args], env=env, check=True, capture_output=True, timeout=300)


def _unchanged(before: dict[str, str], after: dict[str, str], *, may_add: set[str]) -> bool:
    """No image of before lost or moved; nothing new but the completed pulls in `may_add`."""
    return all(after.get(ref) == image for ref, image in before.items()) and (
        set(after) - set(before) <= may_add)


# --------------------------------------------------------------------------- not running


@pytest.mark.fault("engine-not-running")
def test_engine_not_running(fault: FaultRecorder, shop: TeamRepo,
                            engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path,
                  env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"})
    fault.saw(out)
    expect_error(out, 6, contains="is Docker running?")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("engine-socket-silent")
def test_engine_socket_that_never_answers(fault: FaultRecorder, shop: TeamRepo,
                                          engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    sock = tmp_path / "hung.sock"
    with silent_socket(sock) as accepted:
        out = devsync(repo, "sync", "--yes", engine=engine, state=state.path,
                      env={"DOCKER_HOST": f"unix://{sock}"})
    fault.saw(out)
    assert accepted, "devsync never connected"
    expect_error(out, 6, contains="no answer within")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


# --------------------------------------------------------------------------- killed


@pytest.fixture(scope="module")
def crashy(busybox_image: str) -> Iterator[ShortLivedEngine]:
    try:
        eng = ShortLivedEngine().start()
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(str(exc))
    try:
        _docker(eng.url, "pull", busybox_image)
        _docker(eng.url, "tag", busybox_image, USER_IMAGE)
        yield eng
    finally:
        eng.close()


@dataclass
class CrashyRepo:
    path: Path
    state: StateDir
    repo: str  # the deployed repository, as the developer's config names it (via the proxy)
    proxy: FlakyProxy  # in front of the faults' registry: sees the engine's every request


@pytest.fixture(scope="module")
def crashy_repo(bigshop: BigShop, fault_registry: sandbox.PrivateRegistry,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashyRepo]:
    base = tmp_path_factory.mktemp("crashy")
    proxy = FlakyProxy(fault_registry.port).start()
    try:
        path = clone(bigshop.path, base / "repo")
        repo = f"{proxy.host}/bigshop"
        (path / ".devsync.toml").write_text(
            f'[images.app]\ndockerfile = "Dockerfile"\ndeployed = "{repo}"\n'
            f'tag = "{repo}:dev"\n')
        git(path, "commit", "-q", "-am", "Pull through the office mirror")
        yield CrashyRepo(path, StateDir(base / "state"), repo, proxy)
    finally:
        proxy.stop()


@pytest.mark.fault("engine-killed-mid-pull")
def test_engine_killed_mid_pull(fault: FaultRecorder, crashy: ShortLivedEngine,
                                crashy_repo: CrashyRepo, bigshop: BigShop,
                                fault_registry: sandbox.PrivateRegistry) -> None:
    repo, state = crashy_repo.path, crashy_repo.state
    env = _env(crashy.url, state)
    expect_ok(devsync(repo, "status", state=state.path, env=env))
    before_state, before_images = state.files(), tagged_images(crashy.url)
    manifest = RegistryClient(fault_registry.host).manifest("bigshop", "1.0.0")
    big_layer = max(manifest.layers, key=lambda layer: layer[1])[0]
    killed: list[str] = []
    planned = threading.Event()

    def kill_mid_download(method: str, path: str, headers: dict[str, str]) -> None:
        # the daemon asks for the 24 MB layer: it dies before it gets a byte of it (once
        # devsync is past its plan, which may run alongside the pull)
        if not killed and path.endswith(f"/blobs/{big_layer}"):
            killed.append(path)
            planned.wait(120)
            crashy.kill()

    def note_the_plan(event: dict[str, Any], proc: object) -> None:
        if event["event"] == "phase_started" and event["phase"] != "plan":
            planned.set()

    crashy_repo.proxy.before = kill_mid_download
    try:
        out = stream_devsync(repo, "sync", "--yes", "--json", env=env, on_event=note_the_plan)
    finally:
        crashy_repo.proxy.before = None
        planned.set()
    fault.saw(out)
    assert killed, out.stdout
    deployed = f"{crashy_repo.repo}:1.0.0"
    assert not any(e["event"] == "pull_finished" and e["reference"] == deployed
                   for e in out.events)
    expect_error(out, 6, contains="closed the connection during pull")

    crashy.restart()
    after = tagged_images(crashy.url)
    assert fault.intact(state.files() == before_state
                        and _unchanged(before_images, after, may_add=set()))

    out2 = devsync(repo, "sync", "--yes", state=state.path, env=env)
    fault.recovered(out2.returncode == 0)
    expect_ok(out2)
    assert f"{crashy_repo.repo}:dev" in tagged_images(crashy.url)


@pytest.mark.fault("engine-killed-mid-build")
def test_engine_killed_mid_build(fault: FaultRecorder, crashy: ShortLivedEngine,
                                 crashy_repo: CrashyRepo) -> None:
    repo, state = crashy_repo.path, crashy_repo.state
    env = _env(crashy.url, state)
    dev = f"{crashy_repo.repo}:dev"
    if dev not in tagged_images(crashy.url):  # this module's mid-pull case did not get there
        expect_ok(devsync(repo, "sync", "--yes", state=state.path, env=env))
    (repo / "main.sh").write_text("echo changed by the developer\n")  # COPY . and RUN rebuild
    before_state, before_images = state.files(), tagged_images(crashy.url)
    killed: list[dict[str, Any]] = []

    def kill_mid_build(event: dict[str, Any], proc: object) -> None:
        # the builder started the RUN step (it sleeps 2 s): the daemon dies under it
        if not killed and event["event"] == "step_started" \
                and event["instruction"].startswith("RUN sleep"):
            killed.append(event)
            crashy.kill()

    out = stream_devsync(repo, "sync", "--yes", "--json", env=env, on_event=kill_mid_build)
    fault.saw(out)
    assert killed, out.stdout
    assert not any(e["event"] == "image_built" for e in out.events)
    expect_error(out, 6, contains="closed the connection during build")

    crashy.restart()
    # the developer's previous build keeps its tag: nothing half-built was tagged
    assert fault.intact(state.files() == before_state
                        and tagged_images(crashy.url) == before_images)

    out2 = devsync(repo, "sync", "--yes", state=state.path, env=env)
    fault.recovered(out2.returncode == 0)
    expect_ok(out2)
    assert tagged_images(crashy.url)[dev] != before_images[dev]


# --------------------------------------------------------------------------- out of disk


@pytest.mark.fault("engine-out-of-disk")
def test_engine_out_of_disk(fault: FaultRecorder, bigshop: BigShop, busybox_image: str,
                            tmp_path: Path) -> None:
    try:
        small = ShortLivedEngine(data_mb=20).start()
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(str(exc))
    try:
        _docker(small.url, "pull", busybox_image)
        _docker(small.url, "tag", busybox_image, USER_IMAGE)
        repo = clone(bigshop.path, tmp_path / "repo")
        state = StateDir(tmp_path / "state")
        env = _env(small.url, state)
        expect_ok(devsync(repo, "status", state=state.path, env=env))
        before_state, before_images = state.files(), tagged_images(small.url)

        out = devsync(repo, "sync", "--yes", state=state.path, env=env)
        fault.saw(out)
        expect_error(out, 7, contains="out of disk space")
        assert "docker system prune" in out.stderr.split("hint: ", 1)[-1]
        assert fault.intact(state.files() == before_state
                            and tagged_images(small.url) == before_images)

        small.grow(300)  # the developer frees space
        out = devsync(repo, "sync", "--yes", state=state.path, env=env)
        fault.recovered(out.returncode == 0)
        expect_ok(out)
    finally:
        small.close()
