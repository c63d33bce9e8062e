"""The prompt check as a new user meets it: a real bash with the shell-init line in its rc
file, a synced repository, then a teammate's Dockerfile change pulled from the remote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import TeamRepo, git, make_team_repo


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    return make_team_repo(tmp_path_factory.mktemp("prompt"), engine, registry, busybox_image,
                          "promptshop")


def _new_terminal(cwd: Path, rc: Path, env: dict[str, str]) -> str:
    """What a new interactive bash prints before its first prompt."""
    proc = subprocess.run(["bash", "--rcfile", str(rc), "-i", "-c", "true"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    # (stderr: bash without a terminal complains about job control)
    return proc.stdout


def test_new_terminals_after_sync_and_after_a_teammates_change(
        team: TeamRepo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    bindir = Path(sys.executable).parent
    # a generous deadline: this machine runs other suites at the same time
    env = dict(team.engine.env(), DEVSYNC_STATE_DIR=str(state), DEVSYNC_NO_REFRESH="1",
               DEVSYNC_CHECK_DEADLINE="5",
               PATH=f"{bindir}:{os.environ['PATH']}", HOME=str(tmp_path))
    snippet = subprocess.run([sys.executable, "-m", "devsync", "shell-init", "bash"],
                             capture_output=True, text=True, check=True).stdout
    rc = tmp_path / "bashrc"
    rc.write_text(snippet)

    # a bare remote the team pushes to; the developer works in a clone of it
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(team.path), str(remote))
    mine = tmp_path / "mine"
    git(tmp_path, "clone", "-q", str(remote), str(mine))

    out = devsync(mine, "sync", "--yes", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    assert _new_terminal(mine, rc, env).strip() == ""

    teammate = tmp_path / "teammate"
    git(tmp_path, "clone", "-q", str(remote), str(teammate))
    base = teammate / "Dockerfile.base"
    base.write_text(base.read_text().replace("runtime 1", "runtime 2"))
    git(teammate, "commit", "-qam", "Bump the runtime to 2",
        env={"GIT_AUTHOR_NAME": "Ben", "GIT_AUTHOR_EMAIL": "ben@example.com"})
    sha = git(teammate, "rev-parse", "--short", "HEAD").strip()
    git(teammate, "push", "-q", "origin", "HEAD:main")

    git(mine, "pull", "-q", "origin", "main")
    shown = _new_terminal(mine, rc, env).strip().splitlines()
    assert len(shown) == 1, shown
    assert shown[0].startswith("devsync: base: Dockerfile.base changed in ")
    assert sha[:7] in shown[0] and "Ben" in shown[0]
