"""`devsync shell-init`: snippets for bash, zsh and fish, run in the real shells."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.adapters import state
from devsync.errors import UsageError
from devsync.prompt.shell_init import SHELLS, snippet

# -P: `python -m` would otherwise import from the working directory, i.e. the repository
CHECK = (sys.executable, "-P", "-m", "devsync.prompt.check")
STALE = "devsync: app: Dockerfile changed (uncommitted) - run devsync sync"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=repo, check=True,
                   capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="Ana", GIT_AUTHOR_EMAIL="a@x",
                            GIT_COMMITTER_NAME="Ana", GIT_COMMITTER_EMAIL="a@x",
                            GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1"))


def _stale_repo(path: Path) -> Path:
    path.mkdir()
    _git(path, "init", "-q")
    (path / "Dockerfile").write_text("FROM x\n")
    (path / "sub").mkdir()
    (path / "sub" / "keep").write_text("")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "init")
    digest = hashlib.sha256(b"FROM x\n").hexdigest()
    state.update(path, lambda s: s.images.update(
        app=state.ImageRecord(name="app", watched={"Dockerfile": digest})))
    (path / "Dockerfile").write_text("FROM y\n")
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    home = tmp_path / "home"
    home.mkdir()
    return dict(
        os.environ, DEVSYNC_STATE_DIR=str(tmp_path / "state"), DEVSYNC_NO_REFRESH="1",
        DEVSYNC_CHECK_DEADLINE="10", HOME=str(home), PS1="$ ", PROMPT_COMMAND="",
        XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
        ZDOTDIR=str(home),
    )


@pytest.fixture
def repos(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path]:
    return _stale_repo(tmp_path / "one"), _stale_repo(tmp_path / "two")


def test_unsupported_shell() -> None:
    with pytest.raises(UsageError) as info:
        snippet("tcsh")
    assert "tcsh" in info.value.message and info.value.hint is not None


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("on_cd", [False, True])
def test_snippets_name_the_check_once(shell: str, on_cd: bool) -> None:
    text = snippet(shell, on_cd=on_cd)
    assert text.count("devsync --check") == 1
    assert text.endswith("\n")
    hook = {"bash": "PROMPT_COMMAND", "zsh": "add-zsh-hook chpwd", "fish": "--on-variable PWD"}
    assert (hook[shell] in text) == on_cd


@pytest.mark.parametrize("on_cd", [False, True])
def test_bash_syntax(on_cd: bool) -> None:
    proc = subprocess.run(["bash", "-n"], input=snippet("bash", on_cd=on_cd), text=True,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_bash_shows_the_line_when_a_shell_starts(repos: tuple[Path, Path], tmp_path: Path,
                                                 env: dict[str, str]) -> None:
    rc = tmp_path / "bashrc"
    rc.write_text(snippet("bash", command=CHECK))
    proc = subprocess.run(["bash", "--rcfile", str(rc), "-i", "-c", "echo ready"],
                          cwd=repos[0] / "sub", env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.stdout == f"{STALE}\nready\n", proc.stderr
    # Sourcing it in a non-interactive shell does nothing at all.
    proc = subprocess.run(["bash", "-c", f"source {rc}; echo ready"], cwd=repos[0], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout == "ready\n"


def test_bash_eval_in_rc_file(repos: tuple[Path, Path], tmp_path: Path,
                              env: dict[str, str]) -> None:
    """The documented form, `eval "$(devsync shell-init bash)"`, with a stand-in devsync."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "devsync"
    args = " ".join(CHECK)
    init = ("import sys; from devsync.prompt.shell_init import snippet; "
            "print(snippet('bash'), end='')")
    fake.write_text(f'#!/bin/sh\nif [ "$1" = shell-init ]; then exec {sys.executable} -c '
                    f'"{init}"; fi\nexec {args} "$@"\n')
    fake.chmod(0o755)
    rc = tmp_path / "bashrc"
    rc.write_text('eval "$(devsync shell-init bash)"\n')
    env = dict(env, PATH=f"{bindir}:{env['PATH']}")
    proc = subprocess.run(["bash", "--rcfile", str(rc), "-i", "-c", "echo ready"],
                          cwd=repos[0], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.stdout == f"{STALE}\nready\n", proc.stderr


def _interactive(argv: list[str], cwd: Path, env: dict[str, str], script: str) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, input=script, capture_output=True,
                          text=True, timeout=120, check=False)
    return proc.stdout


def _cd_script(tmp_path: Path, repos: tuple[Path, Path], exit_cmd: str = "exit") -> str:
    one, two = repos
    # Start outside any repository, enter one, wander inside it, leave, re-enter, switch.
    steps = [f"cd {one}", "echo step1", f"cd {one / 'sub'}", "echo step2", f"cd {one}",
             "echo step3", f"cd {tmp_path}", "echo step4", f"cd {one / 'sub'}",
             "echo step5", f"cd {two}", "echo step6", exit_cmd]
    return "\n".join(steps) + "\n"


def _lines_between_steps(out: str) -> list[int]:
    """How many check lines each `cd` of `_cd_script` produced: element i counts the lines
    before `echo step<i+1>` (after the previous step), the last those after step6. The
    shell starts outside any repository, so anything it printed at start lands in [0]."""
    counts = [0]
    for line in out.splitlines():
        if line.startswith("step"):
            counts.append(0)
        elif line == STALE:
            counts[-1] += 1
    return counts


def test_bash_on_cd_checks_when_entering_another_repository(
        repos: tuple[Path, Path], tmp_path: Path, env: dict[str, str]) -> None:
    rc = tmp_path / "bashrc"
    rc.write_text(snippet("bash", on_cd=True, command=CHECK))
    out = _interactive(["bash", "--rcfile", str(rc), "-i"], tmp_path, env,
                       _cd_script(tmp_path, repos))
    # enter one; cd within it and back: nothing; leave; re-enter (into a subdirectory);
    # switch to two
    assert _lines_between_steps(out) == [1, 0, 0, 0, 1, 1, 0], out


def test_bash_on_cd_starting_inside_a_repository(repos: tuple[Path, Path], tmp_path: Path,
                                                 env: dict[str, str]) -> None:
    rc = tmp_path / "bashrc"
    rc.write_text(snippet("bash", on_cd=True, command=CHECK))
    out = _interactive(["bash", "--rcfile", str(rc), "-i"], repos[0] / "sub", env,
                       f"cd {repos[0]}\necho moved\nexit\n")
    assert out.splitlines() == [STALE, "moved"]


def test_bash_hook_keeps_exit_status_and_other_prompt_commands(
        repos: tuple[Path, Path], tmp_path: Path, env: dict[str, str]) -> None:
    rc = tmp_path / "bashrc"
    rc.write_text("PROMPT_COMMAND='echo mine:$?'\n" + snippet("bash", on_cd=True, command=CHECK)
                  + snippet("bash", on_cd=True, command=CHECK))  # sourced twice: one hook
    out = _interactive(["bash", "--rcfile", str(rc), "-i"], tmp_path, env,
                       "false\ntrue\nexit\n")
    assert out.splitlines() == ["mine:0", "mine:1", "mine:0"]


def _need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed")
    return path


@pytest.mark.parametrize("on_cd", [False, True])
def test_zsh(repos: tuple[Path, Path], tmp_path: Path, env: dict[str, str],
             on_cd: bool) -> None:
    zsh = _need("zsh")
    (tmp_path / "home" / ".zshrc").write_text(snippet("zsh", on_cd=on_cd, command=CHECK))
    proc = subprocess.run([zsh, "-i", "-c", "echo ready"], cwd=repos[0], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout == f"{STALE}\nready\n", proc.stderr
    if on_cd:
        out = _interactive([zsh, "-i"], tmp_path, env, _cd_script(tmp_path, repos))
        # chpwd runs during `cd` itself: enter one, re-enter one after leaving, enter two
        assert _lines_between_steps(out) == [1, 0, 0, 0, 1, 1, 0], out


@pytest.mark.parametrize("on_cd", [False, True])
def test_fish(repos: tuple[Path, Path], tmp_path: Path, env: dict[str, str],
              on_cd: bool) -> None:
    fish = _need("fish")
    conf = tmp_path / "home" / ".config" / "fish"
    conf.mkdir(parents=True)
    (conf / "config.fish").write_text(snippet("fish", on_cd=on_cd, command=CHECK))
    proc = subprocess.run([fish, "-i", "-c", "echo ready"], cwd=repos[0], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout == f"{STALE}\nready\n", proc.stderr
    if on_cd:
        out = _interactive([fish, "-i"], tmp_path, env, _cd_script(tmp_path, repos))
        assert _lines_between_steps(out) == [1, 0, 0, 0, 1, 1, 0], out
