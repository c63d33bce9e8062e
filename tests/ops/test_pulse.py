"""The pulse: what a running TUI's snapshot rests on outside the repository (the engine, the
tags' images, registries that could not be asked), seen on a real engine and registry going
away and coming back, and a tag moved as a sync in another terminal moves it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsync.adapters.resolver import Resolver
from devsync.devtools import sandbox
from devsync.errors import RegistryUnreachableError
from devsync.ops.pulse import LOOK_LOCAL, LOOK_REGISTRY, STILL, look_again, take_pulse
from devsync.ops.status import ImageStatus

pytestmark = pytest.mark.engine


@pytest.fixture
def own_engine(engine: sandbox.PrivateEngine) -> Iterator[sandbox.PrivateEngine]:
    """An engine of this test's own, to stop and start (the suite's is shared)."""
    root = Path(tempfile.mkdtemp(prefix="dsp-", dir="/tmp"))  # short: a socket path
    eng = sandbox.PrivateEngine(root / "e").start()
    yield eng
    eng.stop()
    subprocess.run(["umount", "-R", str(root / "e")], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_a_tag_moved_elsewhere_and_the_engine_going_and_coming_back(
        own_engine: sandbox.PrivateEngine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", own_engine.url)
    ctx = sandbox.busybox_context(tmp_path / "bb")
    sandbox.docker_cli(own_engine, "build", "-q", "-t", "pulse/app:dev", str(ctx))
    first = take_pulse(["pulse/app:dev", "pulse/app:none"])
    assert first.engine_up and first.local_ids["pulse/app:none"] is None
    image = first.local_ids["pulse/app:dev"]
    assert image and image.startswith("sha256:")
    seen = [ImageStatus(name="app", role="app", tag="pulse/app:dev", local_id=image),
            ImageStatus(name="other", role="app", tag="pulse/app:none")]
    assert look_again(seen, None, first) == STILL

    # another terminal's sync builds the tag anew: the snapshot no longer holds
    (ctx / "more").write_text("a new layer\n")
    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text() + "COPY more /more\n")
    sandbox.docker_cli(own_engine, "build", "-q", "-t", "pulse/app:dev", str(ctx))
    moved = take_pulse(["pulse/app:dev", "pulse/app:none"])
    assert moved.local_ids["pulse/app:dev"] not in (None, image)
    assert look_again(seen, None, moved) == LOOK_LOCAL

    own_engine.stop()
    down = take_pulse(["pulse/app:dev"])
    assert not down.engine_up
    assert look_again(seen, None, down) == LOOK_LOCAL  # went away under a snapshot
    assert look_again(seen, "cannot reach the Docker engine", down) == STILL

    own_engine.start()
    back = take_pulse(["pulse/app:dev"])
    assert back.engine_up
    assert look_again(seen, "cannot reach the Docker engine", back) == LOOK_LOCAL


def test_a_registry_that_could_not_be_asked_is_noticed_when_it_answers_again(
        registry: sandbox.PrivateRegistry, tmp_path: Path) -> None:
    # (the suite's registry only says docker-registry is here; this one is stopped, started)
    own = sandbox.PrivateRegistry(tmp_path / "registry").start()
    try:
        own.stop()
        resolver = Resolver(None)
        with pytest.raises(RegistryUnreachableError):
            resolver.latest_deployed(f"{own.host}/team/app")
        assert resolver.unreachable == {own.host}
        offline = sorted(resolver.unreachable)
        assert take_pulse([], offline).registries_back == ()

        own.start()
        pulse = take_pulse([], offline)
        assert pulse.registries_back == (own.host,)
        assert look_again([], "no engine", pulse) == LOOK_REGISTRY
    finally:
        own.stop()
