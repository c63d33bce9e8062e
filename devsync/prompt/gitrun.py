"""The prompt check's git process: `git ARGS` in a repository we do not trust, bounded in time,
started without the `subprocess` module.

Settings from the repository's own .git/config that can make `git log` start a program, and
how each is neutralised:
  log.showSignature=true + gpg.program=CMD      runs CMD for every commit shown -> forced off,
                                                --no-show-signature, gpg.program=false
  partial clone with a missing object           lazy fetch through the promisor remote runs
    (extensions.partialClone, remote.*.promisor) core.sshCommand / credential helpers /
                                                remote helpers -> protocol.allow=never (all
                                                transports), GIT_NO_LAZY_FETCH=1 (git>=2.44)
  core.fsmonitor=CMD                             hook run by index-reading commands -> false
  diff.external, diff.<drv>.command / textconv   only for content diffs (-p, --stat, --ext-
                                                diff); the check asks for --raw only, and
                                                passes --no-ext-diff --no-textconv anyway
  core.pager / pager.log                         only with a terminal on stdout (we use a
                                                pipe) -> --no-pager, GIT_PAGER=cat too
  core.hooksPath / hooks                         git log runs no hooks -> /dev/null anyway
  core.sshCommand, core.gitProxy, credential.*   only reachable through a fetch, which
                                                protocol.allow=never refuses
Not settable from the repository (system/global config or environment only): trace2.*,
safe.directory (we keep the user's: git refuses repositories owned by someone else). Every
setting is pinned with `-c` (`devsync.prompt.gitsafe.SAFE_GIT_CONFIG`), which wins over any
config file; `git` itself is found on PATH's absolute entries only.

`os.posix_spawn` and a pipe instead of `subprocess`: that module's import (signal's enums,
threading, selectors, contextlib) costs the first prompt after a pull more than git does.
"""

from __future__ import annotations

import os
import time

from devsync.prompt.gitsafe import SAFE_GIT_CONFIG

# Environment variables that would point git at another repository than the one we found.
_GIT_LOCATION_ENV = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT", "GIT_EXTERNAL_DIFF",
)
_MAX_OUTPUT = 1 << 20  # more than any answer the check asks for


def git(root: str, args: list[str], timeout: float) -> str | None:
    """The output of `git ARGS` run in `root` with every repository setting that could run a
    program neutralised; None when git is missing, fails, or takes longer than `timeout`
    seconds (it is then killed)."""
    if timeout < 0.02:
        return None
    exe = find_git()
    if exe is None:
        return None
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_ENV}
    env.update(GIT_PAGER="cat", PAGER="cat", GIT_TERMINAL_PROMPT="0", GIT_NO_LAZY_FETCH="1",
               GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    cmd = [exe, "--no-pager", "--no-optional-locks"]
    for setting in SAFE_GIT_CONFIG:
        cmd += ["-c", setting]
    cmd += ["-C", root, *args]
    done = run(cmd, env, timeout)
    if done is None or done[0] != 0:
        return None
    return done[1].decode("utf-8", "replace")


def find_git() -> str | None:
    """`git` from $PATH, ignoring relative entries ("", ".", "bin"): we run inside a
    repository we do not trust, and a relative entry would find an executable it ships."""
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not os.path.isabs(entry):
            continue
        candidate = os.path.join(entry, "git")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, bytes] | None:
    """(exit code, stdout) of `argv` run with stdin and stderr on /dev/null; None when it
    cannot start or is still running after `timeout` seconds (then it is killed and reaped).
    Whatever interrupts the wait (the check's deadline) kills it too."""
    import select

    try:
        import _signal as signal
    except ImportError:  # pragma: no cover - not CPython
        import signal

    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, write_end, 1),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ], setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))  # Python ignores these; git must not
    except OSError:
        os.close(read_end)
        return None
    finally:
        os.close(write_end)
    chunks: list[bytes] = []
    size = 0
    finished = False
    try:
        end = time.monotonic() + timeout
        while size <= _MAX_OUTPUT:
            left = end - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                break  # out of time
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                finished = True
                break
            chunks.append(chunk)
            size += len(chunk)
        if finished:
            status = os.waitpid(pid, 0)[1]
            return os.waitstatus_to_exitcode(status), b"".join(chunks)
        return None
    finally:
        os.close(read_end)
        if not finished:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
