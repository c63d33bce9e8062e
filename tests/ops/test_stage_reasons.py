"""A final stage built FROM an earlier stage, against the real engine and registry: when the
earlier stage's line changes, the final stage's steps say so, in their own stage's words,
and the engine rebuilds what the plan said."""

from __future__ import annotations

import json
from pathlib import Path

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import git

DOCKERFILE = """\
FROM {busybox} AS build
RUN echo one > /one
FROM build
RUN echo two > /two
RUN cat /one /two > /both
"""


def test_a_stage_on_a_stage_that_rebuilds_names_that_stage(
        tmp_path: Path, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str) -> None:
    repo = f"{registry.host}/stage-on-stage"
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile").write_text(DOCKERFILE.format(busybox=busybox_image))
    (path / ".devsync.toml").write_text(f'[images.app]\ndockerfile = "Dockerfile"\n'
                                        f'deployed = "{repo}"\ntag = "{repo}:dev"\n')
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Two stages")
    head = git(path, "rev-parse", "HEAD").strip()
    sandbox.docker_cli(engine, "build", "-q", "--label",
                       f"org.opencontainers.image.revision={head}", "-t", f"{repo}:1.0.0",
                       str(path))
    sandbox.docker_cli(engine, "push", f"{repo}:1.0.0")
    (path / "Dockerfile").write_text(DOCKERFILE.format(busybox=busybox_image).replace(
        "echo one", "echo uno"))
    git(path, "commit", "-q", "-am", "Uno")

    out = devsync(path, "plan", "--json", engine=engine, state=tmp_path / "state")
    assert out.returncode == 0, out.stdout + out.stderr
    steps = {s["line"]: s for s in json.loads(out.stdout)["images"][0]["steps"]}
    assert steps[2]["reason"] == ("instruction changed: was `RUN echo one > /one` in the "
                                  "deployed image, now `RUN echo uno > /one`")
    assert steps[4]["reason"] == ("rebuilds with stage build (from line 2), which this stage "
                                  "is built on")
    assert steps[5]["reason"] == "rebuilds after line 4"
    assert [s["cached"] for s in steps.values()] == [True, False, True, False, False]

    built = sandbox.docker_cli(engine, "build", "--cache-from", f"{repo}:1.0.0", str(path))
    assert built.stdout.count("Using cache") == 0  # (the engine agrees: nothing reused)
