"""The README's install commands, run as written by a new user: a clean HOME, a copy of this
source tree, the tool (uv or pipx) on PATH and nothing of devsync. Afterwards a new shell has a
working `devsync` on PATH, and the prompt hook it prints runs that installation.

The dependencies come from the package index this machine's tools are set up for. The pipx
run takes about a minute (pip resolves every dependency one request at a time): it runs in
CI (`CI=true`) and when DEVSYNC_TEST_PIPX=1, and is skipped with that reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.prompt.check import NOT_SYNCED_LINE

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info",
                                     "__pycache__", ".mypy_cache", ".ruff_cache",
                                     ".pytest_cache", "screenshots")


def readme_install_line(tool: str) -> str:
    """The README's install line for `tool` (the first block of shell commands), without its
    comment."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [ln.split("#", 1)[0].strip() for ln in block.splitlines()
             if ln.startswith(f"{tool} ")]
    assert len(lines) == 1, f"the README's first sh block has no single `{tool}` line"
    return lines[0]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (a test extra)", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return found


@pytest.mark.parametrize("tool", ["uv", "pipx"])
def test_the_readme_install_puts_a_working_devsync_on_path(tool: str, tmp_path: Path) -> None:
    if tool == "pipx" and not (IN_CI or os.environ.get("DEVSYNC_TEST_PIPX") == "1"):
        pytest.skip("pipx installs every dependency one request at a time (~1 min): "
                    "runs with CI=true or DEVSYNC_TEST_PIPX=1")
    command = readme_install_line(tool)
    assert command in (f"{tool} tool install . && {tool} tool update-shell",
                       f"{tool} install . && {tool} ensurepath")
    home = tmp_path / "home"
    home.mkdir()
    source = tmp_path / "devsync-src"
    shutil.copytree(ROOT, source, ignore=_NOT_COPIED, symlinks=True)
    bindir = tmp_path / "tools"  # the installer on PATH, and nothing else of this venv
    bindir.mkdir()
    (bindir / tool).symlink_to(_tool(tool))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "XDG_", "PIPX_", "UV_", "DEVSYNC_",
                                "BASH_ENV", "ENV", "PROMPT_COMMAND"))}
    # SHELL as a user's terminal always sets it (`uv tool update-shell` picks the rc file by
    # it); CI runners start without one.
    env.update(HOME=str(home), PATH=f"{bindir}:/usr/local/bin:/usr/bin:/bin", SHELL="/bin/bash",
               DEVSYNC_STATE_DIR=str(tmp_path / "state"), DEVSYNC_NO_REFRESH="1",
               DEVSYNC_CHECK_DEADLINE="10")

    proc = subprocess.run(["bash", "-c", command], cwd=source, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # A new interactive shell, as the user opens one: its rc files now put devsync on PATH.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        ["bash", "-i", "-c", "command -v devsync && devsync --help >/dev/null && "
                             "devsync shell-init bash"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where, snippet = proc.stdout.split("\n", 1)
    assert where == str(home / ".local" / "bin" / "devsync")
    # The hook names the installed devsync's own Python, by absolute path, not this venv's.
    hook_python = snippet.split("line=$(", 1)[1].split(" ", 1)[0]
    assert hook_python.startswith(str(home)) and os.access(hook_python, os.X_OK), hook_python

    # The documented rc line works in a brand-new clone: the one-time nudge.
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "Dockerfile").write_text("FROM busybox\n")
    with (home / ".bashrc").open("a") as rc:
        rc.write('eval "$(devsync shell-init bash)"\n')
    proc = subprocess.run(["bash", "-i", "-c", "echo ready"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.splitlines() == [NOT_SYNCED_LINE, "ready"], proc.stdout + proc.stderr
