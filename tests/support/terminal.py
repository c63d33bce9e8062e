"""A real terminal for tests: one tmux server of our own (its own socket, no config file),
one window running a program (an interactive shell, the TUI), driven with send-keys and read
with capture-pane, scrollback included.

CI installs tmux (.ci/test); elsewhere a test without it is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

PROMPT = re.compile(r"^@@(\d+) ?(.*)$")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# generous: the assertions are about what shows, not when
WAIT = 60.0


def need_tmux() -> None:
    if shutil.which("tmux") is None:
        if IN_CI:
            pytest.fail("tmux is not installed (.ci/test installs it)", pytrace=False)
        pytest.skip("tmux is not installed")


class Terminal:
    """One tmux server on `socket` (a path), one window named "t"."""

    def __init__(self, socket: Path) -> None:
        self.socket = str(socket)

    def tmux(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        base = os.environ if env is None else env
        clean = {k: v for k, v in base.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        proc = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, env=clean, timeout=30, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {args[0]} failed: {proc.stderr}")
        return proc.stdout

    def start(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str],
              cols: int = 240, rows: int = 60) -> None:
        """Run `argv` in a new window; the server (and so the program) gets exactly `env`."""
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(cols),
                  "-y", str(rows), "-c", str(cwd), "--", *argv, env=env)
        self.tmux("set-option", "-t", "t", "history-limit", "50000")

    def screen(self) -> str:
        """Everything the window showed since it started, wrapped lines joined, trailing
        blank lines dropped."""
        out = self.tmux("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "t",
                        check=False)
        return out.rstrip("\n")

    def type_line(self, text: str) -> None:
        """Type `text` literally, then Enter."""
        self.tmux("send-keys", "-t", "t", "-l", text)
        self.tmux("send-keys", "-t", "t", "Enter")

    def wait_for(self, condition: Callable[[str], bool], what: str,
                 timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if condition(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"never showed {what}; the screen was:\n{screen}")

    def kill(self) -> None:
        self.tmux("kill-server", check=False)


class ShellSession:
    """An interactive shell in a terminal whose prompt is `@@<last exit status> ` (bash:
    PS1='@@$? ', zsh: PS1='@@%? ', fish: a fish_prompt printing '@@$status ')."""

    def __init__(self, term: Terminal) -> None:
        self.term = term
        self.seen = 0  # prompts already read

    def prompts(self, screen: str) -> list[int]:
        return [i for i, line in enumerate(screen.splitlines()) if PROMPT.match(line)]

    def started(self) -> list[str]:
        """What the shell printed before its first prompt."""
        screen = self.term.wait_for(lambda s: bool(self.prompts(s)), "a first prompt")
        self.seen = 1
        return [ln for ln in screen.splitlines()[: self.prompts(screen)[0]] if ln.strip()]

    def run(self, command: str) -> tuple[list[str], int]:
        """Type `command`; what it and the prompt hook printed before the next prompt, and
        the exit status that prompt shows."""
        self.term.type_line(command)
        want = self.seen + 1
        screen = self.term.wait_for(
            lambda s: len(self.prompts(s)) >= want and s.splitlines()[-1].startswith("@@"),
            f"the prompt after {command!r}")
        lines = screen.splitlines()
        at = self.prompts(screen)
        start, end = at[want - 2], at[want - 1]
        self.seen = want
        typed, shown = PROMPT.match(lines[start]), PROMPT.match(lines[end])
        assert typed is not None and shown is not None
        # (fish may leave its autosuggestion's tail on the line it ran)
        assert typed.group(2).startswith(command), lines[start]
        return [ln for ln in lines[start + 1:end] if ln.strip()], int(shown.group(1))


@contextmanager
def terminal() -> Iterator[Terminal]:
    """A Terminal of its own, whose tmux server is killed (with what runs in it) when the
    block ends. Its socket lives in a short directory of its own under /tmp: unix socket
    paths are limited to ~107 bytes, more than a pytest tmp_path may leave."""
    need_tmux()
    where = Path(tempfile.mkdtemp(prefix="dst-", dir="/tmp"))
    term = Terminal(where / "tmux.sock")
    try:
        yield term
    finally:
        term.kill()
        shutil.rmtree(where, ignore_errors=True)
