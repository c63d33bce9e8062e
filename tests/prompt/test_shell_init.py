"""`devsync shell-init`: the prompt hook for bash, zsh and fish, run in the real shells.

Real interactive sessions in a terminal (tmux): the line shows when the shell starts, on
entering a repository and when it changes (a teammate's commit arriving by `git pull`, an
edit, a sync); between those the prompts stay silent. Cheaper checks run the shells on a
pipe.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.adapters import state
from devsync.prompt.check import NOT_SYNCED_LINE
from devsync.prompt.shell_init import SHELLS, check_command, snippet
from tests.support.terminal import ShellSession, terminal

STALE = "devsync: app: Dockerfile changed (uncommitted) - run devsync sync"


def _git(repo: Path, *args: str, author: str = "Ana") -> str:
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args], cwd=repo, check=True,
        capture_output=True, text=True,
        env=dict(os.environ, GIT_AUTHOR_NAME=author, GIT_AUTHOR_EMAIL=f"{author}@x",
                 GIT_COMMITTER_NAME=author, GIT_COMMITTER_EMAIL=f"{author}@x",
                 GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1"))
    return proc.stdout.strip()


def _mark_synced(repo: Path, paths: tuple[str, ...] = ("Dockerfile",)) -> None:
    """What a sync records: the watched inputs' content hashes, the image in sync."""
    watched = {p: hashlib.sha256((repo / p).read_bytes()).hexdigest() for p in paths}
    state.update(repo, lambda s: s.images.update(
        app=state.ImageRecord(name="app", status=state.STATUS_IN_SYNC, watched=watched)))


def _stale_repo(path: Path) -> Path:
    path.mkdir()
    _git(path, "init", "-q")
    (path / "Dockerfile").write_text("FROM x\n")
    (path / "sub").mkdir()
    (path / "sub" / "keep").write_text("")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "init")
    _mark_synced(path)
    (path / "Dockerfile").write_text("FROM y\n")
    return path


def _is_stale_line(line: str) -> bool:
    return line == STALE


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A user's environment: a clean HOME, `devsync` on PATH (this installation's console
    script), state in tmp_path; a generous deadline so a busy machine cannot silence it."""
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    home = tmp_path / "home"
    (home / ".config" / "fish").mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "devsync").symlink_to(Path(sys.executable).parent / "devsync")
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PROMPT_COMMAND", "ZDOTDIR",
                                 "XDG_", "TMUX"))}
    return dict(
        keep, DEVSYNC_STATE_DIR=str(tmp_path / "state"), DEVSYNC_NO_REFRESH="1",
        DEVSYNC_CHECK_DEADLINE="10", HOME=str(home), PATH=f"{bindir}:{os.environ['PATH']}",
        XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
        ZDOTDIR=str(home), GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
        TERM="xterm-256color",
    )


@pytest.fixture
def repos(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path]:
    return _stale_repo(tmp_path / "one"), _stale_repo(tmp_path / "two")


def _need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{shell} is not installed (.ci/test installs it)", pytrace=False)
        pytest.skip(f"{shell} is not installed")
    return path


# -- the snippet ------------------------------------------------------------------------------


def test_unsupported_shell() -> None:
    with pytest.raises(ValueError, match="tcsh"):
        snippet("tcsh")


def test_the_cli_refuses_another_shell(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "devsync", "shell-init", "tcsh"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "tcsh" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_snippets_name_this_installation_by_absolute_path(shell: str) -> None:
    """As `starship init` does: the hook runs the devsync that printed it, whatever PATH."""
    text = snippet(shell)
    assert check_command()[0] == sys.executable and os.path.isabs(sys.executable)
    assert text.count(sys.executable) == 1
    assert text.endswith("\n")
    hook = {"bash": "PROMPT_COMMAND", "zsh": "add-zsh-hook precmd", "fish": "fish_prompt"}
    assert hook[shell] in text


@pytest.mark.parametrize("shell", SHELLS)
def test_the_cli_prints_the_snippet_with_its_own_interpreter(shell: str, tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    devsync = Path(sys.executable).parent / "devsync"
    # the console script's own interpreter (its #! line), by absolute path
    interpreter = devsync.read_text().splitlines()[0].removeprefix("#!")
    expected = snippet(shell, command=(interpreter, *check_command()[1:]))
    proc = subprocess.run([str(devsync), "shell-init", shell], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    assert proc.stdout == expected
    # the old opt-in flag is accepted (rc files have it); its behaviour is always on now
    proc = subprocess.run([str(devsync), "shell-init", shell, "--on-cd"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=True)
    assert proc.stdout == expected


@pytest.mark.parametrize("shell", SHELLS)
def test_syntax(shell: str) -> None:
    exe = _need(shell)
    argv = [exe, "--no-execute"] if shell == "fish" else [exe, "-n"]
    proc = subprocess.run(argv, input=snippet(shell), text=True, capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_fish_quoting_keeps_backslashes_and_quotes() -> None:
    fish = _need("fish")
    odd = "/tmp/a b/it's\\x"
    text = snippet("fish", command=("printf", "%s|", odd))
    m = re.search(r"set line \((.*) 2>/dev/null\)", text)
    assert m is not None
    out = subprocess.run([fish, "--no-config", "-c", m.group(1)], capture_output=True,
                         text=True, check=True).stdout
    assert out == f"{odd}|"


# -- a shell on a pipe ------------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_a_new_shell_shows_the_line(shell: str, repos: tuple[Path, Path], tmp_path: Path,
                                    env: dict[str, str]) -> None:
    """The documented rc line, with `devsync` from PATH; `-i -c`: no prompt, still said."""
    exe = _need(shell)
    rc = _write_rc(shell, tmp_path, env, prompt=False)
    proc = subprocess.run([*_interactive_argv(shell, exe, rc), "-c", "echo ready"],
                          cwd=repos[0] / "sub", env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and _is_stale_line(lines[0]) and lines[1] == "ready", proc.stderr
    # Sourcing it in a non-interactive shell does nothing at all.
    source = {"bash": ["bash", "-c", f"source {rc}; echo ready"],
              "zsh": [exe, "-c", f"source {rc}; echo ready"],
              "fish": [exe, "--no-config", "-c", f"source {rc}; echo ready"]}[shell]
    proc = subprocess.run(source, cwd=repos[0], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.stdout == "ready\n", proc.stderr


def _interactive_argv(shell: str, exe: str, rc: Path) -> list[str]:
    if shell == "bash":
        return [exe, "--noprofile", "--rcfile", str(rc), "-i"]
    return [exe, "-i"]  # zsh: $ZDOTDIR/.zshrc; fish: $XDG_CONFIG_HOME/fish/config.fish


def _write_rc(shell: str, tmp_path: Path, env: dict[str, str], *, prompt: bool,
              before: str = "") -> Path:
    """The user's rc file: the documented line (plus a recognisable prompt showing the last
    exit status, for the terminal tests)."""
    home = Path(env["HOME"])
    if shell == "bash":
        rc = tmp_path / "bashrc"
        text = before + ("PS1='@@$? '\n" if prompt else "") + 'eval "$(devsync shell-init bash)"\n'
    elif shell == "zsh":
        rc = home / ".zshrc"
        text = before + ("PS1='@@%? '\nunsetopt PROMPT_SP\n" if prompt else "") + \
            'eval "$(devsync shell-init zsh)"\n'
    else:
        rc = home / ".config" / "fish" / "config.fish"
        text = before + "set -g fish_greeting ''\n" + \
            ("function fish_prompt; printf '@@%s ' $status; end\n" if prompt else "") + \
            "devsync shell-init fish | source\n"
    rc.write_text(text)
    return rc


def _cd_script(tmp_path: Path, repos: tuple[Path, Path]) -> str:
    one, two = repos
    # Start outside any repository, enter one, wander inside it, leave, re-enter, switch.
    steps = [f"cd {one}", "echo step1", f"cd {one / 'sub'}", "echo step2", f"cd {one}",
             "echo step3", f"cd {tmp_path}", "echo step4", f"cd {one / 'sub'}",
             "echo step5", f"cd {two}", "echo step6", "exit"]
    return "\n".join(steps) + "\n"


def _lines_between_steps(out: str) -> list[int]:
    """How many check lines each `cd` of `_cd_script` produced: element i counts the lines
    before `echo step<i+1>` (after the previous step), the last those after step6. The
    shell starts outside any repository, so anything it printed at start lands in [0]."""
    counts = [0]
    for line in out.splitlines():
        if line.startswith("step"):
            counts.append(0)
        elif _is_stale_line(line):
            counts[-1] += 1
    return counts


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_entering_a_repository_says_it_again(shell: str, repos: tuple[Path, Path],
                                             tmp_path: Path, env: dict[str, str]) -> None:
    """Each prompt checks; a line is repeated only on entering a repository (bash and zsh
    read commands from a pipe here; fish, which draws no prompt there, in the terminal)."""
    exe = _need(shell)
    rc = _write_rc(shell, tmp_path, env, prompt=False)
    proc = subprocess.run(_interactive_argv(shell, exe, rc), cwd=tmp_path, env=env,
                          input=_cd_script(tmp_path, repos), capture_output=True, text=True,
                          timeout=120, check=False)
    # enter one; cd within it and back: nothing; leave; re-enter (into a subdirectory);
    # switch to two
    assert _lines_between_steps(proc.stdout) == [1, 0, 0, 0, 1, 1, 0], proc.stdout


def test_bash_hook_keeps_exit_status_and_other_prompt_commands(
        repos: tuple[Path, Path], tmp_path: Path, env: dict[str, str]) -> None:
    rc = tmp_path / "bashrc"
    rc.write_text("set -u\nPROMPT_COMMAND='echo mine:$?'\n"
                  + snippet("bash") + snippet("bash"))  # sourced twice: one hook
    proc = subprocess.run(["bash", "--noprofile", "--rcfile", str(rc), "-i"], cwd=tmp_path,
                          env=env, input="false\ntrue\nexit\n", capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.stdout.splitlines() == ["mine:0", "mine:1", "mine:0"]
    assert "unbound" not in proc.stderr, proc.stderr


def test_bash_prompt_command_as_an_array(repos: tuple[Path, Path], tmp_path: Path,
                                         env: dict[str, str]) -> None:
    rc = tmp_path / "bashrc"
    rc.write_text("PROMPT_COMMAND=('echo first:$?' 'echo second')\n" + snippet("bash"))
    proc = subprocess.run(["bash", "--noprofile", "--rcfile", str(rc), "-i"],
                          cwd=repos[0], env=env, input="false\nexit\n", capture_output=True,
                          text=True, timeout=120, check=False)
    lines = proc.stdout.splitlines()
    assert _is_stale_line(lines[0]) and lines[1:] == ["first:0", "second", "first:1",
                                                      "second"], proc.stdout


# -- real interactive sessions in a terminal ------------------------------------------------


def _team(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare remote, the developer's clone (synced, in sync) and a teammate's clone."""
    seed = tmp_path / "seed"
    seed.mkdir()
    _git(seed, "init", "-q")
    (seed / "Dockerfile").write_text("FROM reg/app:base-1.0\nCOPY app.py /app/\n")
    (seed / "app.py").write_text("print('hello')\n")
    (seed / "src").mkdir()
    (seed / "src" / "keep").write_text("")
    _git(seed, "add", "-A")
    _git(seed, "commit", "-q", "-m", "initial")
    remote = tmp_path / "remote.git"
    _git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    mine = tmp_path / "mine"
    _git(tmp_path, "clone", "-q", str(remote), str(mine))
    ben = tmp_path / "ben"
    _git(tmp_path, "clone", "-q", str(remote), str(ben))
    _mark_synced(mine, ("Dockerfile", "app.py"))
    return remote, mine, ben


@pytest.mark.parametrize("shell", SHELLS)
def test_the_hook_in_a_real_terminal(shell: str, tmp_path: Path, env: dict[str, str]) -> None:
    """A day at the prompt: in sync and silent; a teammate's Dockerfile commit arrives by
    `git pull` and the very next prompt says so, once; leaving and entering the repository
    says it again; a sync silences it; an edit is seen at the next prompt; a never-synced
    clone gets its nudge once; a new shell in a stale repository says it at start."""
    exe = _need(shell)
    _remote, mine, ben = _team(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _write_rc(shell, tmp_path, env, prompt=True)
    argv = _interactive_argv(shell, exe, tmp_path / "bashrc")

    with terminal() as term:
        term.start(argv, cwd=mine / "src", env=env)
        session = ShellSession(term)
        assert session.started() == []  # in sync: nothing to say
        assert session.run("echo one") == (["one"], 0)

        (ben / "Dockerfile").write_text("FROM reg/app:base-1.1\nCOPY app.py /app/\n")
        _git(ben, "commit", "-qam", "Move to base 1.1", author="Ben")
        short = _git(ben, "rev-parse", "--short", "HEAD")
        _git(ben, "push", "-q", "origin", "HEAD:main")

        out, status = session.run("git pull -q")
        assert status == 0 and len(out) == 1, out
        said = out[0]
        assert said.startswith("devsync: ") and f"Dockerfile changed in {short} by Ben" in said
        assert said.endswith(" - run devsync sync")
        # nothing changed since: silence, whatever the last command's status
        assert session.run("echo two") == (["two"], 0)
        assert session.run("false") == ([], 1)
        assert session.run("true") == ([], 0)
        assert session.run(f"cd {mine}") == ([], 0)
        # leaving the repository and coming back in says it again
        assert session.run(f"cd {elsewhere}") == ([], 0)
        assert session.run(f"cd {mine / 'src'}") == ([said], 0)
        # a sync (what it records) makes it in sync: silent from the next prompt on
        _mark_synced(mine, ("Dockerfile", "app.py"))
        assert session.run("echo three") == (["three"], 0)
        # an edit of a watched file, made in this shell
        out, status = session.run(f"echo \"print('bye')\" > {mine / 'app.py'}")
        assert status == 0 and len(out) == 1 and out[0].startswith("devsync: "), out
        assert "app.py changed (uncommitted)" in out[0]
        edited = out[0]
        assert session.run("echo four") == (["four"], 0)

        # a brand-new clone, never synced: one nudge, once per repository
        fresh = tmp_path / "fresh"
        _git(tmp_path, "clone", "-q", str(tmp_path / "remote.git"), str(fresh))
        assert session.run(f"cd {fresh}") == ([NOT_SYNCED_LINE], 0)
        assert session.run("echo five") == (["five"], 0)
        assert session.run(f"cd {mine}") == ([edited], 0)
        assert session.run(f"cd {fresh}") == ([], 0)
        term.type_line("exit")

    with terminal() as term:
        # a new shell, started in the stale repository, says it before its first prompt
        term.start(argv, cwd=mine, env=env)
        session = ShellSession(term)
        assert session.started() == [edited]
        assert session.run("echo six") == (["six"], 0)
        term.type_line("exit")
