"""`devsync sync` end to end against the real engine and registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import TeamRepo, git, make_team_repo


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    return make_team_repo(tmp_path_factory.mktemp("sync"), engine, registry, busybox_image,
                          "syncshop")


def _history(team: TeamRepo, ref: str) -> list[str]:
    # (--human=false: "2 minutes ago" would make a rebuilt layer look like a reused one)
    out = team.docker("history", "--no-trunc", "--human=false", "--format",
                      "{{.CreatedAt}} {{.CreatedBy}}", ref).stdout
    return out.splitlines()


def _events(stdout: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_fresh_machine_sync_reuses_deployed_layers(team: TeamRepo, tmp_path: Path) -> None:
    team.forget_local_images()
    # the developer's checkout belongs to uid 1000: the CLI-built cache must still be reused
    for p in team.path.rglob("*"):
        if ".git" not in p.parts:
            os.chown(p, 1000, 1000)
    (team.path / "src" / "lib.php").write_text("<?php function f() { return 2; }\n")
    state = tmp_path / "state"
    # (-X importtime: every module the sync imported, on stderr)
    out = devsync(team.path, "sync", "app", "--yes", "--json", engine=team.engine, state=state,
                  env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert out.returncode == 0, out.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")}
    assert "devsync.ops.sync" in imported
    # over the engine's unix socket a sync needs no Docker SDK
    # (see devsync.adapters.engine.socketapi)
    assert not imported & {"docker", "requests", "urllib3"}
    events = _events(out.stdout)
    kinds = [e["event"] for e in events]
    assert "pull_progress" in kinds or "pull_finished" in kinds
    # (the engine's final LABEL step for devsync's labels has no prediction)
    finished = [e for e in events
                if e["event"] == "step_finished" and e["predicted_cached"] is not None]
    assert finished, kinds
    # every step went the way the plan predicted
    assert all(e["cached"] == e["predicted_cached"] for e in finished), \
        [(e["index"], e["cached"], e["predicted_cached"]) for e in finished]
    built = next(e for e in events if e["event"] == "image_built")
    assert built["tag"] == f"{team.repo}:dev"
    # the layers below `COPY . /var/www/html` are the deployed image's own
    deployed = _history(team, f"{team.repo}:1.0.1")
    local = _history(team, f"{team.repo}:dev")
    # (a reused layer keeps the deployed build's creation time; a rebuilt one does not)
    shared = [line for line in local if line in deployed]
    assert any("install $COMPOSER_FLAGS" in line for line in shared), (local, deployed)
    assert not any("ls -la /var/www/html" in line for line in shared)
    labels = json.loads(team.docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                                    f"{team.repo}:dev").stdout)
    assert labels["org.opencontainers.image.revision"] == git(team.path, "rev-parse",
                                                              "HEAD").strip()
    assert "org.opencontainers.image.created" in labels
    # status now says in sync
    out = devsync(team.path, "status", "--json", engine=team.engine, state=state)
    states = {i["name"]: i["state"] for i in json.loads(out.stdout)["images"]}
    assert states["app"] == "in-sync", out.stdout


def test_sync_after_dependency_change_rebuilds_from_there(team: TeamRepo,
                                                          tmp_path: Path) -> None:
    (team.path / "composer.lock").write_text('{"packages": ["guzzle"]}\n')
    team.commit("Add guzzle", author="Ben")
    state = tmp_path / "state"
    out = devsync(team.path, "status", "--json", engine=team.engine, state=state)
    app = next(i for i in json.loads(out.stdout)["images"] if i["name"] == "app")
    assert app["state"] == "stale"
    out = devsync(team.path, "sync", "app", "--yes", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    finished = [e for e in _events(out.stdout)
                if e["event"] == "step_finished" and e["predicted_cached"] is not None]
    assert all(e["cached"] == e["predicted_cached"] for e in finished), \
        [(e["index"], e["cached"], e["predicted_cached"]) for e in finished]
    assert not all(e["cached"] for e in finished)


def test_two_syncs_at_once_one_says_so(team: TeamRepo, tmp_path: Path) -> None:
    from devsync.adapters.state import operation_lock

    state = tmp_path / "state"
    os.environ["DEVSYNC_STATE_DIR"] = str(state)
    try:
        with operation_lock(team.path.resolve(), "sync"):
            out = devsync(team.path, "sync", "app", "--yes", engine=team.engine, state=state)
    finally:
        del os.environ["DEVSYNC_STATE_DIR"]
    assert out.returncode == 11, out.stderr
    assert "another devsync" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("images", [["app"], []], ids=["app", "all-images"])
def test_ctrl_c_mid_build_leaves_no_tag_and_a_rerun_finishes(team: TeamRepo, tmp_path: Path,
                                                            images: list[str]) -> None:
    # (all images: the base's plan is being made in a thread while the app builds)
    import signal
    import subprocess
    import sys

    state = tmp_path / "state"
    tag = f"{team.repo}:dev"
    team.docker("rmi", "-f", tag, check=False)
    df = team.path / "Dockerfile"
    original = df.read_text()
    df.write_text(original + "RUN sleep 60\n")
    env = dict(team.engine.env(), DEVSYNC_STATE_DIR=str(state), DEVSYNC_NO_REFRESH="1")
    proc = subprocess.Popen([sys.executable, "-m", "devsync", "sync", *images, "--yes", "--json"],
                            cwd=team.path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"step_started"' in line and "sleep 60" in line:
            break
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert team.docker("image", "inspect", tag, check=False).returncode != 0  # no tag
    df.write_text(original)
    out = devsync(team.path, "sync", *images, "--yes", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    assert team.docker("image", "inspect", tag, check=False).returncode == 0


def test_status_lists_uncommitted_and_untracked_inputs_dockerignore_honoured(
        team: TeamRepo, tmp_path: Path) -> None:
    (team.path / "src" / "new.php").write_text("<?php\n")
    (team.path / "debug.log").write_text("ignored by .dockerignore\n")
    (team.path / "README.md").write_text("# shop, edited\n")
    try:
        out = devsync(team.path, "status", "--json", engine=team.engine,
                      state=tmp_path / "state")
        app = next(i for i in json.loads(out.stdout)["images"] if i["name"] == "app")
        assert app["untracked"] == ["src/new.php"]
        assert "README.md" in app["uncommitted"]
        assert app["state"] == "stale"
    finally:
        (team.path / "src" / "new.php").unlink()
        (team.path / "debug.log").unlink()
        git(team.path, "checkout", "--", "README.md")


def test_a_newer_deployment_makes_the_synced_image_stale(team: TeamRepo,
                                                         tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = devsync(team.path, "sync", "app", "--yes", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    out = devsync(team.path, "status", "--json", engine=team.engine, state=state)
    app = next(i for i in json.loads(out.stdout)["images"] if i["name"] == "app")
    assert app["state"] == "in-sync", app
    newer = team.ci_deploy("1.0.9")
    out = devsync(team.path, "status", "--json", engine=team.engine, state=state)
    app = next(i for i in json.loads(out.stdout)["images"] if i["name"] == "app")
    assert app["state"] == "stale" and newer in app["reason"], app


def test_resync_after_a_local_edit_reuses_your_own_build_first(team: TeamRepo,
                                                                tmp_path: Path) -> None:
    """The builder sticks to the first --cache-from source that matches: after your own
    build, putting it first reuses it where the deployed image no longer matches."""
    state = tmp_path / "state"
    (team.path / "src" / "lib.php").write_text("<?php function f() { return 3; }\n")
    out = devsync(team.path, "sync", "app", "--yes", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    out = devsync(team.path, "plan", "app", "--json", engine=team.engine, state=state)
    plan = json.loads(out.stdout)["images"][0]
    assert plan["cache_from"][0] == f"{team.repo}:dev"
    assert all(s["cached"] for s in plan["steps"]), plan["steps"]
    out = devsync(team.path, "sync", "app", "--yes", "--json", engine=team.engine, state=state)
    finished = [e for e in _events(out.stdout)
                if e["event"] == "step_finished" and e["predicted_cached"] is not None]
    assert finished and all(e["cached"] and e["predicted_cached"] for e in finished), finished
    git(team.path, "checkout", "--", "src/lib.php")


def test_an_edit_made_while_the_engine_builds_leaves_the_image_stale(team: TeamRepo,
                                                                     tmp_path: Path) -> None:
    """The state keeps what the build was made from, not what is on disk once it is done:
    composer.lock edited while a step runs makes the next prompt say the image is stale."""
    import subprocess
    import sys

    state = tmp_path / "state"
    df, lock = team.path / "Dockerfile", team.path / "composer.lock"
    original, lock_original = df.read_text(), lock.read_text()
    df.write_text(original + "RUN sleep 2\n")
    env = dict(team.engine.env(), DEVSYNC_STATE_DIR=str(state), DEVSYNC_NO_REFRESH="1")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "devsync", "sync", "app", "--yes",
                                 "--json"], cwd=team.path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if '"step_started"' in line and "sleep 2" in line:
                lock.write_text('{"packages": ["edited/while-building"]}\n')
                break
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        out = devsync(team.path, "--check", engine=team.engine, state=state)
        assert out.returncode == 0, out.stderr
        # (silent before: the state claimed the edit had been built)
        assert out.stdout.strip() == (
            "devsync: app: composer.lock changed (uncommitted) - run devsync sync")

        # once the edit is undone, what was built is what is on disk again
        lock.write_text(lock_original)
        out = devsync(team.path, "--check", engine=team.engine, state=state)
        assert out.returncode == 0 and out.stdout.strip() == "", out.stdout
    finally:
        df.write_text(original)
        lock.write_text(lock_original)
