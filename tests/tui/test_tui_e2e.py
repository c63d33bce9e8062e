"""End to end: the real TUI (`python -m devsync`) in a real terminal (tmux), against the real
private engine and registry, on the `devsync demo` project.

It opens and shows a stale image; a commit to Dockerfile.base made here shows up in the
running TUI; `s` syncs with per-layer progress and steps marked cached or rebuilt; `q` quits.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from devsync.devtools.demo import Demo, commit_as, create_demo

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
COLS, ROWS = 120, 36
# generous limits for a slow CI machine; the assertions are about what shows, not when
WAIT = 90.0


@pytest.fixture(scope="module")
def demo(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    made = create_demo(registry=registry.host, env=engine.env(),
                       parent=tmp_path_factory.mktemp("demo"))
    yield made
    made.cleanup()


class Terminal:
    """One tmux server of our own (its own socket), one window running the TUI."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str, check: bool = True) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        proc = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {args[0]} failed: {proc.stderr}")
        return proc.stdout

    def start(self, script: Path) -> None:
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "tui", "-x", str(COLS),
                  "-y", str(ROWS), f"sh {shlex.quote(str(script))}")
        self.tmux("set-option", "-t", "tui", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "tui", check=False)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "tui", *keys)

    def wait_for(self, condition: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if condition(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"never showed {what}; the screen was:\n{screen}")

    def dead(self) -> bool:
        out = self.tmux("display-message", "-p", "-t", "tui", "#{pane_dead}", check=False)
        return out.strip() == "1"

    def kill(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture(scope="module")
def fresh_demo(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo on a machine that never pulled or built any of it."""
    made = create_demo(registry=registry.host, env=engine.env(), fresh=True,
                       parent=tmp_path_factory.mktemp("fresh"), repository="devsync-fresh/app")
    yield made
    made.cleanup()


@pytest.fixture
def terminal(demo: Demo, tmp_path: Path) -> Iterator[Terminal]:
    yield from _terminal(demo, tmp_path)


@pytest.fixture
def fresh_terminal(fresh_demo: Demo, tmp_path: Path) -> Iterator[Terminal]:
    yield from _terminal(fresh_demo, tmp_path)


def _terminal(demo: Demo, tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("the end-to-end TUI test needs tmux (apt-get install tmux)")
        pytest.skip("tmux is not installed")
    env = dict(demo.env, DEVSYNC_STATE_DIR=str(tmp_path / "state"), TERM="xterm-256color",
               PYTHONPATH=str(ROOT), COLORTERM="truecolor")
    script = tmp_path / "tui.sh"
    # the terminal's own size must rule (Textual honours COLUMNS and LINES)
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()
                      if k.replace("_", "").isalnum() and k not in ("COLUMNS", "LINES"))
    script.write_text(f"{exports}unset COLUMNS LINES\ncd {shlex.quote(str(demo.root))}\n"
                      f"exec {shlex.quote(sys.executable)} -m devsync\n")
    term = Terminal(f"devsync-e2e-{os.getpid()}")
    term.start(script)
    yield term
    term.kill()


def _toast(screen: str) -> str:
    """The text of the notifications: right of the toast's left edge, lines joined."""
    parts = [ln.rsplit("▌", 1)[1] for ln in screen.splitlines() if "▌" in ln]
    return " ".join(" ".join(parts).split())


def _line(screen: str, start: str) -> str:
    return next((ln for ln in screen.splitlines() if ln.strip().startswith(start)), "")


def test_tui_shows_stale_follows_git_and_syncs(demo: Demo, terminal: Terminal) -> None:
    # opens on the dashboard: the app is stale (1.0.1 deployed, a code commit on top)
    screen = terminal.wait_for(lambda s: "STALE" in _line(s, "app ") and "Plan · app" in s,
                               "the stale app image")
    assert "demo-app" in screen and "⎇ main" in screen and "add /health route" in screen
    assert "IN SYNC" in _line(screen, "base ")
    assert "files changed: src/health.php" in screen and "Chen Wu" in screen
    assert "Traceback" not in screen

    # a commit to Dockerfile.base made in "another terminal" shows up in the running TUI
    dockerfile = demo.root / "Dockerfile.base"
    dockerfile.write_text(dockerfile.read_text().replace("php-8.2", "php-8.3"))
    commit_as(demo.root, "ana", "bump PHP to 8.3")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=demo.root,
                          capture_output=True, text=True, check=True).stdout.strip()
    screen = terminal.wait_for(
        lambda s: "STALE" in _line(s, "base ") and f"HEAD {head} bump PHP to 8.3" in s,
        "the Dockerfile.base commit")
    terminal.wait_for(lambda s: "base is stale" in s, "the stale notification")
    screen = terminal.wait_for(
        lambda s: f"Dockerfile.base changed in {head} by Ana Lima: bump PHP to 8.3" in _toast(s),
        "who changed Dockerfile.base")

    # one key syncs, with visible progress: layer bars, steps lighting up, the log; the
    # changed base is built here first (the verdict's one next step is a sync)
    terminal.keys("s")
    terminal.wait_for(lambda s: "Sync base, app" in s, "the sync screen")
    screen = terminal.wait_for(lambda s: " done " in _line(s, "Sync base, app") or
                               " failed " in _line(s, "Sync base, app"), "the end of the sync")
    assert " done " in _line(screen, "Sync base, app"), screen
    assert "Layers" in screen and "100%" in screen
    assert "app:1.0.1 pulled" in screen
    steps = [ln for ln in screen.splitlines() if "cached" in ln or "rebuilt" in ln]
    # (on the base built here the app's steps all rebuild, and the plan beside them, made
    # again on that base, says so: no step planned cached and rebuilt)
    assert any("↻ rebuilt" in ln and "RUN echo" in ln for ln in steps), screen
    assert any("↻ rebuilt" in ln and "COPY src/" in ln for ln in steps), screen
    assert not any(re.search(r"cached\s*↻ rebuilt", ln) for ln in steps), screen
    assert "Traceback" not in screen

    # back on the dashboard both are in sync; q quits cleanly
    terminal.keys("Escape")
    screen = terminal.wait_for(lambda s: "IN SYNC" in _line(s, "app "), "the app in sync")
    assert "IN SYNC" in _line(screen, "base ")  # built here from the changed Dockerfile.base
    terminal.keys("q")
    terminal.wait_for(lambda _s: terminal.dead(), "the TUI exiting")
    assert "Traceback" not in terminal.screen()


def test_checklist_takes_a_new_machine_to_a_built_image(fresh_terminal: Terminal) -> None:
    term = fresh_terminal
    screen = term.wait_for(lambda s: "Getting started" in s and "Next:" in s, "the checklist")
    assert "✓ Docker engine reachable" in screen
    assert "✓ Registry login" in screen
    assert "✗ Base image pulled" in screen and "✗ Local image built" in screen
    assert "fix: press s to sync" in screen
    term.keys("s")
    screen = term.wait_for(lambda s: " done " in _line(s, "Sync ") or
                           " failed " in _line(s, "Sync "), "the end of the sync")
    assert " done " in _line(screen, "Sync base, app"), screen
    term.keys("Escape")
    screen = term.wait_for(lambda s: "All set" in s, "every item green")
    assert "✗" not in screen and "✓ Local image built" in screen
    term.keys("Escape")
    screen = term.wait_for(lambda s: "IN SYNC" in _line(s, "app "), "the dashboard")
    assert "Traceback" not in screen
