"""Hostile trees: symlink loops, links to a parent, dangling links, links out of the
repository, unreadable directories and FIFOs, in the three walks devsync makes over a
checkout: the Dockerfile discovery (`status`, `plan`), the build context scan (`plan`,
`sync`), and the `--check` stat walk over the watched inputs. The real `docker build` of the
same tree is the reference: where it builds, devsync plans and syncs; where it refuses, devsync
says why in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.faultcases import FaultRecorder
from tests.support.faults import (
    DEVSYNC_TIMEOUT,
    UNPRIVILEGED,
    StateDir,
    clone,
    devsync,
    devsync_unprivileged,
    expect_error,
    expect_ok,
    git,
    tagged_images,
)
from tests.support.teamrepo import TeamRepo

pytestmark = pytest.mark.engine

# a check that blocks on a FIFO or loops would hit this deadline and say nothing
CHECK_ENV = {"DEVSYNC_CHECK_DEADLINE": "20"}


def _docker_build(engine: sandbox.PrivateEngine, repo: Path, tag: str, *,
                  unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    """The real docker CLI builds the same tree (the reference for what devsync must do)."""
    docker = shutil.which("docker") or "docker"
    return subprocess.run([*(UNPRIVILEGED if unprivileged else []), docker, "build", "-q",
                           "-t", tag, "."], cwd=repo, env=engine.env(), capture_output=True,
                          text=True, timeout=DEVSYNC_TIMEOUT)


def _others(engine: sandbox.PrivateEngine, shop: TeamRepo) -> dict[str, str]:
    """The engine's tagged images but the ones a case makes on purpose (its sync's `:dev`,
    the reference build's `hostile-*`)."""
    return {ref: image for ref, image in tagged_images(engine).items()
            if ref != f"{shop.repo}:dev" and not ref.startswith("hostile-")}


def _case(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
          tmp_path: Path, name: str, *, plant: Callable[[Path], None],
          plant_watched: Callable[[Path], None]) -> None:
    """A tree docker builds: status, plan and sync work on it (and the engine reuses exactly
    the steps the plan said), and `--check` survives a watched input turned into the same
    kind of thing."""
    repo = clone(shop.path, tmp_path / "repo")
    plant(repo)
    state = StateDir(tmp_path / "state")
    before = _others(engine, shop)

    out = devsync(repo, "status", engine=engine, state=state.path)
    expect_ok(out)
    assert "app" in out.stdout and "base" in out.stdout
    expect_ok(devsync(repo, "plan", "--json", engine=engine, state=state.path))

    built = _docker_build(engine, repo, f"hostile-{name}:docker")
    assert built.returncode == 0, built.stderr  # docker build handles it ...
    out = devsync(repo, "sync", "app", "--yes", engine=engine, state=state.path)
    expect_ok(out)  # ... and so does devsync
    # the engine's cache decisions, step by step, are the ones the plan predicted
    assert "differed from the plan" not in out.stdout + out.stderr, out.stdout

    # the prompt: a watched input (COPY composer.json composer.lock ./) turned hostile
    plant_watched(repo)
    check = devsync(repo, "--check", engine=engine, state=state.path, env=CHECK_ENV)
    fault.saw(check)
    assert check.returncode == 0 and "Traceback" not in check.stderr, check.stderr
    assert check.stdout.startswith("devsync: ") and "composer." in check.stdout, check.stdout
    assert check.stdout.count("\n") == 1, check.stdout
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))  # and the walks again
    assert fault.intact(state.valid() and _others(engine, shop) == before)

    for rel in ("composer.json", "composer.lock"):
        (repo / rel).unlink()
    git(repo, "checkout", "--", "composer.json", "composer.lock")
    git(repo, "clean", "-fdq")
    out = devsync(repo, "sync", "app", "--yes", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0 and devsync(
        repo, "--check", engine=engine, state=state.path, env=CHECK_ENV).stdout == "")
    expect_ok(out)


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    path.unlink()
    make(path)


@pytest.mark.fault("tree-symlink-loop")
def test_symlink_loops(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                       tmp_path: Path) -> None:
    def plant(repo: Path) -> None:
        (repo / "src" / "loop").symlink_to("loop")  # the self-loop of issue 14
        (repo / "src" / "ping").symlink_to("pong")
        (repo / "src" / "pong").symlink_to("ping")
        (repo / "Dockerfile.loop").symlink_to("Dockerfile.loop")  # named like a Dockerfile

    def watched(repo: Path) -> None:
        _replace(repo / "composer.lock", lambda p: p.symlink_to(p.name))

    _case(fault, shop, engine, tmp_path, "loop", plant=plant, plant_watched=watched)


@pytest.mark.fault("tree-symlink-parent")
def test_links_to_a_parent_directory(fault: FaultRecorder, shop: TeamRepo,
                                     engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    def plant(repo: Path) -> None:
        (repo / "src" / "up").symlink_to("..")
        deep = repo / "src" / "a" / "b"
        deep.mkdir(parents=True)
        (deep / "top").symlink_to("../../..")
        (repo / "src" / "here").symlink_to(".")

    def watched(repo: Path) -> None:
        _replace(repo / "composer.lock", lambda p: p.symlink_to(".."))  # a directory

    _case(fault, shop, engine, tmp_path, "parent", plant=plant, plant_watched=watched)


@pytest.mark.fault("tree-symlink-dangling")
def test_dangling_links(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                        tmp_path: Path) -> None:
    def plant(repo: Path) -> None:
        (repo / "src" / "gone").symlink_to("nowhere")
        (repo / "docker").mkdir()
        (repo / "docker" / "Dockerfile").symlink_to("../Dockerfile.removed")

    def watched(repo: Path) -> None:
        _replace(repo / "composer.lock", lambda p: p.symlink_to("composer.lock.gone"))

    _case(fault, shop, engine, tmp_path, "dangling", plant=plant, plant_watched=watched)


@pytest.mark.fault("tree-symlink-out")
def test_links_out_of_the_repository(fault: FaultRecorder, shop: TeamRepo,
                                     engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "images").mkdir(parents=True)
    (outside / "images" / "Dockerfile").write_text("FROM scratch\nCOPY secret /\n")
    (outside / "secret.txt").write_text("outside-secret-do-not-read\n")

    def plant(repo: Path) -> None:
        (repo / "src" / "etc").symlink_to("/etc")
        (repo / "images").symlink_to(outside / "images")  # a directory of Dockerfiles
        (repo / "Dockerfile.host").symlink_to("/etc/hostname")  # named like a Dockerfile

    def watched(repo: Path) -> None:
        _replace(repo / "composer.lock", lambda p: p.symlink_to(outside / "secret.txt"))

    _case(fault, shop, engine, tmp_path, "out", plant=plant, plant_watched=watched)


@pytest.mark.fault("tree-fifo")
def test_fifos(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
               tmp_path: Path) -> None:
    def plant(repo: Path) -> None:
        os.mkfifo(repo / "src" / "pipe")  # reading it blocks until a writer comes
        (repo / "docker").mkdir()
        os.mkfifo(repo / "docker" / "Dockerfile")  # named like a Dockerfile

    def watched(repo: Path) -> None:
        _replace(repo / "composer.json", os.mkfifo)

    _case(fault, shop, engine, tmp_path, "fifo", plant=plant, plant_watched=watched)


def _unprivileged(repo: Path, *args: str, engine: sandbox.PrivateEngine, state: StateDir,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return devsync_unprivileged(repo, *args, engine=engine, state=state.path, env=env)


@pytest.mark.fault("tree-unreadable-dir")
def test_unreadable_directories(fault: FaultRecorder, shop: TeamRepo,
                                engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run devsync without CAP_DAC_OVERRIDE")
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(_unprivileged(repo, "sync", "app", "--yes", engine=engine, state=state))
    before = _others(engine, shop)
    private = repo / "src" / "private"
    private.mkdir()
    (private / "Dockerfile").write_text("FROM scratch\n")  # discovery cannot see it
    (private / "notes.txt").write_text("mine\n")
    private.chmod(0)
    try:
        # the discovery walk skips what it cannot read; the images are still known
        out = _unprivileged(repo, "status", engine=engine, state=state)
        expect_ok(out)
        assert "app" in out.stdout and "base" in out.stdout
        # the context: docker refuses it, and devsync says so in one line
        built = _docker_build(engine, repo, "hostile-unreadable:docker", unprivileged=True)
        assert built.returncode != 0 and "private" in built.stderr, built.stderr
        out = _unprivileged(repo, "plan", "app", engine=engine, state=state)
        fault.saw(out)
        expect_error(out, 5, contains="cannot read directory 'src/private' of the build "
                                      "context")
        (repo / "composer.lock").chmod(0)  # a watched input the prompt cannot read
        check = _unprivileged(repo, "--check", engine=engine, state=state, env=CHECK_ENV)
        assert check.returncode == 0 and "Traceback" not in check.stderr, check.stderr
        assert check.stdout.startswith("devsync: ") and "composer.lock" in check.stdout, \
            check.stdout
        assert fault.intact(state.valid() and _others(engine, shop) == before)
        # left out of the context: the docker CLI still refuses it (its context check reads
        # every directory before it looks at .dockerignore); devsync sends its own context,
        # which needs nothing from there, and builds
        (repo / ".dockerignore").write_text((repo / ".dockerignore").read_text()
                                            + "src/private\n")
        (repo / "composer.lock").chmod(0o644)
        built = _docker_build(engine, repo, "hostile-unreadable:docker", unprivileged=True)
        assert built.returncode != 0 and "can't stat" in built.stderr, built.stderr
        out = _unprivileged(repo, "sync", "app", "--yes", engine=engine, state=state)
        fault.recovered(out.returncode == 0, "with src/private in .dockerignore")
        expect_ok(out)
    finally:
        private.chmod(0o755)
        (repo / "composer.lock").chmod(0o644)
