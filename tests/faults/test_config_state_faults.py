"""Config and state faults: a malformed `.devsync.toml`, unknown keys, a corrupt state file,
one from a future devsync, a state directory that cannot be written, two syncs at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from devsync.prompt import statestore
from tests.support.faultcases import FaultRecorder
from tests.support.faults import (
    DEVSYNC_TIMEOUT,
    BigShop,
    StateDir,
    clone,
    devsync,
    devsync_env,
    expect_error,
    expect_ok,
    stream_devsync,
    tagged_images,
)
from tests.support.teamrepo import TeamRepo

pytestmark = pytest.mark.engine


def _warnings(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("devsync: warning: ")]


# --------------------------------------------------------------------------- config


@pytest.mark.fault("config-malformed")
def test_malformed_config(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                          tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    (repo / ".devsync.toml").write_text(
        f'[devsync]\nregistry_check_minutes = 10\n\n[images.app\ndeployed = "{shop.repo}"\n')
    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.saw(out)
    expect_error(out, 3, contains=".devsync.toml:4:")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    (repo / ".devsync.toml").write_text(
        f'[devsync]\nregistry_check_minutes = 10\n\n[images.app]\ndeployed = "{shop.repo}"\n')
    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("config-unknown-keys")
def test_unknown_config_keys_warn(fault: FaultRecorder, shop: TeamRepo,
                                  engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    before_images = tagged_images(engine)
    (repo / ".devsync.toml").write_text(
        '[devsync]\ncolour = "always"\n\n'
        f'[images.app]\ndockerfle = "Dockerfile"\ndeployed = "{shop.repo}"\n'
        f'tag = "{shop.repo}:dev"\n\n[telemetry]\nenabled = true\n')

    out = devsync(repo, "plan", "--json", engine=engine, state=state.path)
    warnings = _warnings(out.stderr)
    fault.saw(out, said=warnings[0] if warnings else None)
    expect_ok(out)
    assert json.loads(out.stdout)["images"][0]["name"] == "app"  # stdout stays clean JSON
    assert warnings == [
        "devsync: warning: .devsync.toml:2: devsync.colour: unknown key, ignored",
        "devsync: warning: .devsync.toml:5: images.app.dockerfle: unknown key, ignored "
        "(did you mean 'dockerfile'?)",
        "devsync: warning: .devsync.toml:9: telemetry: unknown key, ignored",
    ], out.stderr
    assert fault.intact(tagged_images(engine) == before_images)
    fault.recovered(None, "not fatal: warned, and the run went on")


# --------------------------------------------------------------------------- state


@pytest.mark.fault("state-corrupt")
def test_corrupt_state_file(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                            tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    doc = state.repo_file(repo)
    garbage = doc.read_bytes()[: len(doc.read_bytes()) // 2] + b"\x00\xff garbage"
    doc.write_bytes(garbage)  # a crash mid-write on a filesystem without atomic rename

    out = devsync(repo, "status", engine=engine, state=state.path)
    warnings = _warnings(out.stderr)
    fault.saw(out, said=warnings[0] if warnings else None)
    expect_ok(out)
    assert len(warnings) == 1 and "moved it to" in warnings[0], out.stderr
    moved = [p for p in doc.parent.iterdir() if ".corrupt-" in p.name]
    # nothing is ever deleted: the unreadable file is kept aside, and a valid one replaces it
    assert fault.intact(len(moved) == 1 and moved[0].read_bytes() == garbage and state.valid())
    assert statestore.decode(doc.read_bytes())[1] is None

    out = devsync(repo, "status", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0 and not _warnings(out.stderr), "no warning any more")
    expect_ok(out)
    assert not _warnings(out.stderr)


@pytest.mark.fault("state-future-version")
def test_state_from_a_future_devsync(fault: FaultRecorder, shop: TeamRepo,
                                     engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    doc = state.repo_file(repo)
    future = json.dumps({"version": 99, "root": str(repo), "images": {"app": {"hologram": 1}},
                         "quantum": True}).encode()
    doc.write_bytes(future)
    before_images = tagged_images(engine)

    out = devsync(repo, "status", engine=engine, state=state.path)
    warnings = _warnings(out.stderr)
    fault.saw(out, said=warnings[0] if warnings else None)
    expect_ok(out)
    assert len(warnings) == 1 and "newer devsync" in warnings[0], out.stderr
    check = devsync(repo, "--check", engine=engine, state=state.path)
    assert check.returncode == 0 and check.stdout == "" and "Traceback" not in check.stderr
    sync = devsync(repo, "sync", "app", "--yes", engine=engine, state=state.path)
    expect_ok(sync)
    # the newer devsync's file is left exactly as it was
    assert fault.intact(doc.read_bytes() == future
                        and all(tagged_images(engine).get(k) == v
                                for k, v in before_images.items()
                                if k != f"{shop.repo}:dev"))
    fault.recovered(None, "status and sync work; the file is left to the newer devsync")


@pytest.mark.fault("state-dir-unwritable")
def test_state_directory_that_cannot_be_written(fault: FaultRecorder, shop: TeamRepo,
                                                engine: sandbox.PrivateEngine,
                                                tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("not a directory\n")
    before_images = tagged_images(engine)

    out = devsync(repo, "status", engine=engine, state=blocker)
    expect_ok(out)  # status works; it says it cannot remember
    assert any("cannot be written" in w for w in _warnings(out.stderr)), out.stderr
    out = devsync(repo, "sync", "--yes", engine=engine, state=blocker)
    fault.saw(out)
    expect_error(out, 13, contains="cannot write devsync state")
    assert fault.intact(blocker.read_text() == "not a directory\n"
                        and tagged_images(engine) == before_images)

    out = devsync(repo, "sync", "--yes", engine=engine, state=tmp_path / "state")
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("state-concurrent-sync")
def test_two_syncs_of_one_repository(fault: FaultRecorder, bigshop: BigShop,
                                     engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(bigshop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    (repo / "main.sh").write_text("echo edited\n")  # the first sync has work to do
    env = devsync_env(engine=engine, state=state.path)
    second: list[subprocess.CompletedProcess[str]] = []

    def start_the_second(event: dict[str, Any], first: subprocess.Popen[str]) -> None:
        # the first sync holds the repository's lock from its plan to its last record; it is
        # held still (SIGSTOP) while the second one runs, so nothing depends on timing
        if not second:
            os.kill(first.pid, signal.SIGSTOP)
            try:
                second.append(subprocess.run(
                    [sys.executable, "-m", "devsync", "sync", "--yes"], cwd=repo, env=env,
                    capture_output=True, text=True, timeout=DEVSYNC_TIMEOUT))
            finally:
                os.kill(first.pid, signal.SIGCONT)

    first = stream_devsync(repo, "sync", "--yes", "--json", env=env,
                           on_event=start_the_second)
    assert second, first.stdout
    out = second[0]
    fault.saw(out)
    expect_error(out, 11, contains="another devsync is already syncing this repository")
    assert "kill " in out.stderr  # the hint names the pid to stop if it is stuck
    expect_ok(first)
    assert any(e["event"] == "image_built" for e in first.events)
    doc = json.loads(state.repo_file(repo).read_bytes())
    assert fault.intact(state.valid() and doc["images"]["app"]["status"] == "in-sync")

    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)
