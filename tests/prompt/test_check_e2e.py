"""The prompt check as a new user meets it: a real bash with the shell-init line in its rc
file, a synced repository, then a teammate's Dockerfile change pulled from the remote: in new
terminals, and at the very next prompt of one that stays open (tmux)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import TeamRepo, git, make_team_repo
from tests.support.terminal import ShellSession, terminal


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


def _synced_clone(team: TeamRepo, tmp_path: Path, state: Path) -> tuple[Path, Path]:
    """A bare remote the team pushes to, and the developer's clone of it, synced."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(team.path), str(remote))
    mine = tmp_path / "mine"
    git(tmp_path, "clone", "-q", str(remote), str(mine))
    out = devsync(mine, "sync", "--yes", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    return remote, mine


def _teammate_bumps_the_runtime(tmp_path: Path, remote: Path) -> str:
    """Ben's commit to Dockerfile.base, pushed; its short hash."""
    teammate = tmp_path / "teammate"
    git(tmp_path, "clone", "-q", str(remote), str(teammate))
    base = teammate / "Dockerfile.base"
    base.write_text(base.read_text().replace("runtime 1", "runtime 2"))
    git(teammate, "commit", "-qam", "Bump the runtime to 2",
        env={"GIT_AUTHOR_NAME": "Ben", "GIT_AUTHOR_EMAIL": "ben@example.com"})
    sha = git(teammate, "rev-parse", "--short", "HEAD").strip()
    git(teammate, "push", "-q", "origin", "HEAD:main")
    return sha


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

    remote, mine = _synced_clone(team, tmp_path, state)
    assert _new_terminal(mine, rc, env).strip() == ""

    sha = _teammate_bumps_the_runtime(tmp_path, remote)
    git(mine, "pull", "-q", "origin", "main")
    shown = _new_terminal(mine, rc, env).strip().splitlines()
    assert len(shown) == 1, shown
    assert shown[0].startswith("devsync: base: Dockerfile.base changed in ")
    assert sha[:7] in shown[0] and "Ben" in shown[0]


def test_a_teammates_base_edit_at_the_next_prompt_of_an_open_bash(
        team: TeamRepo, tmp_path: Path) -> None:
    """After a real sync, a bash stays open in the repository (a real terminal): silent while
    in sync; `git pull` brings a teammate's Dockerfile.base commit and the very next prompt
    names it, once; then a sync silences it."""
    state = tmp_path / "state"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "devsync").symlink_to(Path(sys.executable).parent / "devsync")
    env = dict(team.engine.env(), DEVSYNC_STATE_DIR=str(state), DEVSYNC_NO_REFRESH="1",
               DEVSYNC_CHECK_DEADLINE="5", PATH=f"{bindir}:{os.environ['PATH']}",
               HOME=str(tmp_path), TERM="xterm-256color", GIT_CONFIG_GLOBAL="/dev/null",
               GIT_CONFIG_NOSYSTEM="1")
    rc = tmp_path / "bashrc"
    rc.write_text("PS1='@@$? '\n" 'eval "$(devsync shell-init bash)"\n')
    remote, mine = _synced_clone(team, tmp_path, state)

    with terminal() as term:
        term.start(["bash", "--noprofile", "--rcfile", str(rc), "-i"], cwd=mine, env=env)
        session = ShellSession(term)
        assert session.started() == []
        assert session.run("echo in sync") == (["in sync"], 0)

        sha = _teammate_bumps_the_runtime(tmp_path, remote)
        shown, status = session.run("git pull -q origin main")
        assert status == 0 and len(shown) == 1, shown
        assert shown[0].startswith("devsync: base: Dockerfile.base changed in ")
        assert sha[:7] in shown[0] and "Ben" in shown[0]
        assert session.run("echo again") == (["again"], 0)

        out = devsync(mine, "sync", "--yes", engine=team.engine, state=state)
        assert out.returncode == 0, out.stderr
        assert session.run("echo synced") == (["synced"], 0)
        term.type_line("exit")
