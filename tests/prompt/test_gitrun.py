"""devsync.prompt.gitrun: the check's process runner, without the subprocess module."""

from __future__ import annotations

import os
import time
from pathlib import Path

from devsync.prompt import gitrun


def test_exit_code_and_stdout_stderr_discarded() -> None:
    assert gitrun.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], {}, 10) == \
        (3, b"out\n")


def test_stdin_is_empty() -> None:
    assert gitrun.run(["/bin/sh", "-c", "cat; echo done"], {}, 10) == (0, b"done\n")


def test_a_missing_program_is_none(tmp_path: Path) -> None:
    assert gitrun.run([str(tmp_path / "nothing")], {}, 10) is None


def test_too_slow_is_killed_and_reaped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    assert gitrun.run(["/bin/sh", "-c", f"echo $$ > {pidfile}; echo partial; exec sleep 60"],
                      {}, 0.5) is None
    assert time.monotonic() - started < 5
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"{pid} still runs (or was never reaped)")


def test_the_child_does_not_inherit_pythons_ignored_sigpipe() -> None:
    done = gitrun.run(["/bin/sh", "-c", "grep SigIgn /proc/$$/status"], {}, 10)
    assert done is not None and done[0] == 0
    ignored = int(done[1].split()[1], 16)
    assert not ignored & (1 << (13 - 1)), hex(ignored)  # SIGPIPE is 13


def test_git_finds_no_git_on_relative_path_entries(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "git").write_text("#!/bin/sh\necho fake\n")
    (tmp_path / "git").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join(["", ".", os.environ["PATH"]]))
    found = gitrun.find_git()
    assert found is not None and os.path.isabs(found) and found != str(tmp_path / "git")
