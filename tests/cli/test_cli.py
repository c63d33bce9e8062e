"""The CLI as a user types it: a subprocess in a real repository against the real engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devsync import __version__
from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import TeamRepo, make_team_repo


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    team = make_team_repo(tmp_path_factory.mktemp("cli"), engine, registry, busybox_image,
                          "clishop")
    team.forget_local_images()
    return team


def test_version_and_help(tmp_path: Path) -> None:
    out = devsync(tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"devsync {__version__}"
    out = devsync(tmp_path, "--help")
    assert out.returncode == 0 and "status" in out.stdout and "plan" in out.stdout


def test_help_offers_no_hidden_command(tmp_path: Path) -> None:
    """`refresh` is started by the prompt check, not by users: `--help` and a mistyped
    command's error list it nowhere (argparse printed `refresh  ==SUPPRESS==`)."""
    script = Path(sys.executable).parent / "devsync"  # the console script a user types
    command = [str(script)] if script.exists() else [sys.executable, "-m", "devsync"]
    out = subprocess.run([*command, "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "SUPPRESS" not in out.stdout and "refresh" not in out.stdout
    assert "{status,plan,sync,base,publish,shell-init,demo,tui}" in out.stdout
    typo = devsync(tmp_path, "stauts")
    assert typo.returncode == 2 and "invalid choice: 'stauts'" in typo.stderr
    assert "refresh" not in typo.stderr and "'status'" in typo.stderr
    # still there for the prompt hook that starts it
    assert devsync(tmp_path, "refresh", "--help").returncode == 0


def test_not_a_repo_is_one_clear_line(tmp_path: Path) -> None:
    out = devsync(tmp_path, "status", state=tmp_path / "state")
    assert out.returncode == 4
    assert out.stderr.startswith("devsync: error: not a git repository")
    assert "Traceback" not in out.stderr


def test_plan_json_contract(team: TeamRepo, tmp_path: Path) -> None:
    out = devsync(team.path, "plan", "app", "--json", engine=team.engine,
                  state=tmp_path / "state")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (image,) = doc["images"]
    assert image["name"] == "app"
    assert image["dockerfile"] == "Dockerfile"
    assert image["tag"] == f"{team.repo}:dev"
    assert image["cache_from"] == [f"{team.repo}:1.0.1"]
    lines = [s["line"] for s in image["steps"]]
    assert lines == sorted(lines) and lines[0] == 1
    instructions = [s["instruction"].split()[0] for s in image["steps"]]
    assert instructions == ["ARG", "FROM", "ARG", "WORKDIR", "COPY", "RUN", "COPY", "RUN", "CMD"]
    for step in image["steps"]:
        assert isinstance(step["cached"], bool) and isinstance(step["reason"], str)
    assert all(s["cached"] for s in image["steps"])


def test_status_human_and_json(team: TeamRepo, tmp_path: Path) -> None:
    out = devsync(team.path, "status", engine=team.engine, state=tmp_path / "state")
    assert out.returncode == 0, out.stderr
    assert "IMAGE" in out.stdout and "app" in out.stdout and "base" in out.stdout
    assert "\x1b[" not in out.stdout  # not a terminal: no colour
    out = devsync(team.path, "status", "--json", engine=team.engine, state=tmp_path / "state")
    doc = json.loads(out.stdout)
    states = {i["name"]: i["state"] for i in doc["images"]}
    assert states == {"base": "missing", "app": "missing"}


def test_engine_down_is_a_clear_error(team: TeamRepo, tmp_path: Path) -> None:
    out = devsync(team.path, "sync", "--yes", state=tmp_path / "state",
                  env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert out.returncode == 6, out.stderr
    assert out.stderr.startswith("devsync: error: ")
    assert "Traceback" not in out.stderr


def test_broken_dockerfile_is_one_line(tmp_path: Path) -> None:
    from tests.support.teamrepo import git

    repo = tmp_path / "broken"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "Dockerfile").write_text("FROM x\n<<<<<<< HEAD\nRUN a\n=======\nRUN b\n>>>>>>> b\n")
    out = devsync(repo, "plan", state=tmp_path / "state")
    assert out.returncode == 5
    assert "Dockerfile:2: unresolved merge conflict marker" in out.stderr


def test_a_command_collects_garbage_rarely_and_the_tui_as_usual() -> None:
    # the process's own entry (argv None) slows the collector for a one-shot command; what
    # runs for hours goes back to the pace it found
    import gc

    from devsync.cli import commands as cli

    before = gc.get_threshold()
    try:
        cli._collect_rarely()
        assert gc.get_threshold()[0] > before[0]
        cli._collect_as_usual()
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
    probe = ("import gc, sys\nfrom devsync import cli\nsys.argv = ['devsync', 'plan', '--help']\n"
             "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
             "print(gc.get_threshold()[0], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert int(out.stderr.split()[-1]) == 20_000


def test_sync_prints_no_build_plan_for_a_base_it_does_not_build(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    """yii2-dockerized's base: its plan has REBUILD lines (the vendor stage is never in an
    image), but a sync takes the registry's base-1.0 and builds nothing of it. The CLI said
    the REBUILD lines just before "base-1.0 is local"; now it says the base is not built
    here. A base a teammate changed is built here, and its plan is printed in full."""
    from tests.support.yii2 import make_yii2_repo

    yii = make_yii2_repo(tmp_path, engine, registry, busybox_image, name="yii2-cliplan")
    state = tmp_path / "state"
    plan = devsync(yii.path, "plan", "base", engine=engine, state=state)
    assert "REBUILD" in plan.stdout  # what made the sync's output read as a rebuild
    out = devsync(yii.path, "sync", "--yes", engine=engine, state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    if f"==> base: in sync  {yii.repo}:base-1.0 is up to date: nothing to do" in out.stdout:
        # the local base is what this checkout builds: a plain sync leaves it alone (the
        # TUI's `s` policy) and prints no plan for it at all
        assert "==> base: plan" not in out.stdout and "REBUILD" not in out.stdout, out.stdout
    else:
        base_part = out.stdout[out.stdout.index("==> base: plan"):]
        assert base_part.splitlines()[1:4] == [
            f"base  build/Dockerfile -> {yii.repo}:base-1.0",
            "  not built here: the registry's is what this checkout builds: pulled"
            if "pulling" in base_part else
            "  not built here: the local one is what this checkout builds",
            "",
        ], base_part
        assert "REBUILD" not in base_part and "cached " not in base_part, base_part
        assert f"done: {yii.repo}:base-1.0 is local" in base_part
    # named, the base is synced all the same, and still shown as not built here
    out = devsync(yii.path, "sync", "base", "--yes", engine=engine, state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    base_part = out.stdout[out.stdout.index("==> base: plan"):]
    assert base_part.splitlines()[2] == \
        "  not built here: the local one is what this checkout builds", base_part
    assert "REBUILD" not in base_part and "cached " not in base_part, base_part

    # a teammate changes the base: this sync builds it here, and shows how
    yii.write("build/etc/nginx/default.conf", "server { listen 8080; }\n")
    yii.commit("Nginx on 8080", author="Ben")
    out = devsync(yii.path, "sync", "--yes", engine=engine, state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    base_part = out.stdout[out.stdout.index("==> base: plan"):]
    assert "not built here" not in base_part
    assert "REBUILD" in base_part and "building it here" in base_part, base_part


def test_a_plain_sync_says_what_is_in_sync_and_leaves_it(team: TeamRepo, tmp_path: Path) -> None:
    """`devsync sync` as typed, twice: the second finds both images in sync, says so with the
    verdict's words, and pulls and builds nothing (the TUI's `s` takes the same images)."""
    state = tmp_path / "state"
    try:
        first = devsync(team.path, "sync", "--yes", engine=team.engine, state=state)
        assert first.returncode == 0, first.stdout + first.stderr
        again = devsync(team.path, "sync", "--yes", engine=team.engine, state=state)
        assert again.returncode == 0, again.stdout + again.stderr
        lines = again.stdout.splitlines()
        assert sorted(line.split("  ")[0] for line in lines[:2]) == ["==> app: in sync",
                                                                     "==> base: in sync"]
        assert all(line.endswith(": nothing to do") for line in lines[:2]), lines
        assert lines[2:] == ["done: every image is in sync: nothing to sync"], lines
    finally:
        team.forget_local_images()
