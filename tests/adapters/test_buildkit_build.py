"""BuildKit builds through the engine adapter, against the real engine's BuildKit (dockerd 20.10
on its own bridge) and the real registry: the Engine API (`/build?version=2`, the context in
the body) and the docker 20.10 CLI's built-in client, with a deployed image built by the CLI
with inline cache as CI does."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsync.adapters.engine import CLIBuildRequest, Engine, StepMap, find_buildkit_cli
from devsync.devtools import sandbox
from devsync.errors import EngineError, InterruptedError_
from devsync.events import Event, ImageBuilt, LogLine, PullProgress, StepFinished, StepStarted
from devsync.model.context import TarFlavor, scan_context
from devsync.model.dockerfiles import parse_file
from devsync.ops.buildkit import step_refs

LEGACY_CLI = "/usr/bin/docker"
DOCKERFILE = """\
FROM {busybox}
ENV APP_HOME=/app
WORKDIR /app
COPY composer.json ./
RUN head -c 2000000 /dev/urandom > /vendor.bin && cat composer.json > /vendor.txt
COPY . .
RUN echo built-{marker} && ls /app > /files.txt
CMD ["cat", "/vendor.txt"]
"""


def ci_docker(engine: sandbox.PrivateEngine, *args: str, cwd: Path | None = None,
              config: Path | None = None) -> str:
    """The docker 20.10 CLI with its built-in BuildKit, as CI runs it."""
    env = dict(engine.env(), DOCKER_BUILDKIT="1")
    if config is not None:
        env["DOCKER_CONFIG"] = str(config)
    proc = subprocess.run([LEGACY_CLI, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def fresh_machine(engine: sandbox.PrivateEngine, *prefixes: str) -> None:
    """No image of this module's repositories and no build cache: a developer's machine that
    never built them (the suite's shared images stay)."""
    ci_docker(engine, "builder", "prune", "-af")
    out = ci_docker(engine, "images", "--format", "{{.Repository}}:{{.Tag}}")
    refs = [ref for ref in out.split() if ref.rsplit(":", 1)[0].endswith(prefixes)]
    if refs:
        ci_docker(engine, "rmi", "-f", *refs)
    ci_docker(engine, "image", "prune", "-f")


def write_app(path: Path, busybox: str, marker: str = "1") -> Path:
    (path / "src").mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(DOCKERFILE.format(busybox=busybox, marker=marker))
    (path / "composer.json").write_text('{"require": {"php": "^8.2"}}\n')
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / ".dockerignore").write_text(".git\n")
    return path


def steps_of(path: Path) -> StepMap:
    refs = step_refs(parse_file(path / "Dockerfile"))
    return StepMap({ref: i for i, ref in enumerate(refs.values())}, len(refs))


def context_tar(path: Path) -> io.BytesIO:
    buf = io.BytesIO()
    scan_context(path).write_tar(buf, TarFlavor.CLI_MODERN, plain_first=True)
    buf.seek(0)
    return buf


def finished(events: list[Event]) -> dict[int, bool]:
    return {e.index: e.cached for e in events if isinstance(e, StepFinished)}


@pytest.fixture(scope="module")
def deployed(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
             busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The app, deployed by CI with the CLI's BuildKit and inline cache."""
    path = write_app(tmp_path_factory.mktemp("bkapp") / "app", busybox_image)
    ref = f"{registry.host}/bkapp:1.0.0"
    ci_docker(engine, "build", "-q", "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", ref, ".",
              cwd=path)
    ci_docker(engine, "push", ref)
    return path, ref


@pytest.fixture
def eng(engine: sandbox.PrivateEngine) -> Iterator[Engine]:
    fresh_machine(engine, "/bkapp", "bkapp")
    with Engine.connect(engine.url) as connected:
        yield connected


def test_api_build_reuses_up_to_copy_dot_labels_without_a_step_and_tags_at_the_end(
        eng: Engine, deployed: tuple[Path, str], tmp_path: Path) -> None:
    path, ref = deployed
    (path / "src" / "index.php").write_text("<?php echo 'changed';\n")
    tag = "bkapp:dev"
    events: list[Event] = []
    tagged_early = []
    for event in eng.build_buildkit(context_tar(path), tag=tag, cache_from=[ref],
                                    labels={"org.opencontainers.image.version": "dev"},
                                    steps=steps_of(path), image_name="bkapp"):
        events.append(event)
        if isinstance(event, StepFinished):
            tagged_early.append(eng.has_image(tag))
    assert not any(tagged_early)
    # FROM resolves, WORKDIR, COPY composer.json and the install are reused; `COPY .` was
    # built by the CLI, whose context root BuildKit hashes differently: rebuilt
    assert finished(events) == {0: False, 1: True, 2: True, 3: True, 4: False, 5: False}
    started = [e for e in events if isinstance(e, StepStarted)]
    assert [e.instruction for e in started][1:3] == ["WORKDIR /app", "COPY composer.json ./"]
    assert all(e.total == 6 for e in started)
    assert any(isinstance(e, LogLine) and e.text == "built-1" for e in events)
    built = events[-1]
    assert isinstance(built, ImageBuilt) and built.steps_cached == 3 and built.steps_total == 6
    # lazily fetched: the base's and the reused layers, as it went
    assert built.fetched_layers >= 3 and built.cache_import_errors == ()
    assert any(isinstance(e, PullProgress) for e in events)
    image = eng.image(tag)
    assert image is not None and image.id == built.image_id
    assert image.labels["org.opencontainers.image.version"] == "dev"
    # no LABEL step in the history: BuildKit writes labels to the config
    assert not any("LABEL" in h.created_by for h in image.history)


def test_cli_build_reuses_copy_dot_too(eng: Engine, deployed: tuple[Path, str]) -> None:
    path, ref = deployed
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")  # as deployed
    cli = find_buildkit_cli(LEGACY_CLI).cli
    assert cli is not None
    events = list(eng.build_with_cli(
        cli, CLIBuildRequest(path, path / "Dockerfile", cache_from=[ref],
                             labels={"org.opencontainers.image.version": "dev"}),
        tag="bkapp:cli", steps=steps_of(path), image_name="bkapp"))
    assert finished(events) == {0: False, 1: True, 2: True, 3: True, 4: True, 5: True}
    built = events[-1]
    assert isinstance(built, ImageBuilt) and built.steps_cached == 5
    assert eng.image("bkapp:cli") is not None


def test_a_long_first_name_does_not_make_the_tar_a_dockerfile(
        eng: Engine, deployed: tuple[Path, str], busybox_image: str, tmp_path: Path) -> None:
    path = write_app(tmp_path / "app", busybox_image)
    (path / ("0" + "y" * 120)).write_text("first in the walk, and needs a PAX header\n")
    events = list(eng.build_buildkit(context_tar(path), tag="bkapp:long",
                                     steps=steps_of(path)))
    assert isinstance(events[-1], ImageBuilt)


def test_a_failing_step_is_named(eng: Engine, busybox_image: str, tmp_path: Path) -> None:
    path = tmp_path / "app"
    path.mkdir()
    (path / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN echo about to fail && false\n")
    with pytest.raises(EngineError, match=r"build failed at step 2/2 \(RUN echo about to"):
        list(eng.build_buildkit(context_tar(path), tag="bkapp:fails", steps=steps_of(path)))
    assert not eng.has_image("bkapp:fails")


SLOW = "FROM {busybox}\nRUN echo started && sleep 60\n"


@pytest.mark.parametrize("way", ["api", "cli"])
def test_cancel_mid_build_leaves_no_tag(eng: Engine, busybox_image: str, tmp_path: Path,
                                        way: str) -> None:
    path = tmp_path / "app"
    path.mkdir()
    (path / "Dockerfile").write_text(SLOW.format(busybox=busybox_image))
    cancel = threading.Event()
    if way == "api":
        events = eng.build_buildkit(context_tar(path), tag="bkapp:cancelled",
                                    steps=steps_of(path), cancel=cancel)
    else:
        cli = find_buildkit_cli(LEGACY_CLI).cli
        assert cli is not None
        events = eng.build_with_cli(cli, CLIBuildRequest(path, path / "Dockerfile"),
                                    tag="bkapp:cancelled", steps=steps_of(path),
                                    cancel=cancel)
    t0 = time.monotonic()
    with pytest.raises(InterruptedError_):
        for event in events:
            if isinstance(event, StepStarted) and event.instruction.startswith("RUN"):
                cancel.set()
    assert time.monotonic() - t0 < 45
    assert not eng.has_image("bkapp:cancelled")
