"""Where devsync keeps per-repository state on disk, and how it touches those files safely.

This is the low level under `devsync.adapters.state`: paths, keys, `flock` locks, atomic writes
and a
tolerant raw read. It deliberately imports almost nothing (no `dataclasses`, `tempfile`,
`hashlib` or `platformdirs` on Linux) because `devsync --check` reads state on every shell
prompt and interpreter start-up time is most of its budget.

Layout under the state directory:
    repos/<key>.json           one JSON document per repository
    repos/.<key>.json.tmp      the next version while it is being written (then os.replace)
    repos/<key>.json.corrupt-<ts>   an unreadable file moved aside, never deleted
    locks/<key>.lock           short read-modify-write lock (`devsync.adapters.state.update`)
    locks/<key>.op.lock        long operation lock (sync, refresh), records pid and start time
where <key> is the first 16 hex digits of sha256(realpath(repository root)).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~4 ms at start-up; annotations are strings anyway
    from typing import IO, Any

SCHEMA_VERSION = 1
STATE_DIR_ENV = "DEVSYNC_STATE_DIR"

# Outcomes of `read_raw`.
MISSING = "missing"
CORRUPT = "corrupt"
FUTURE = "future"


class LockBusy(Exception):
    """The lock is held by another open file (process) and we were told not to wait longer."""

    def __init__(self, holder: dict[str, Any]) -> None:
        super().__init__("lock busy")
        self.holder = holder


def _sha256_hex(data: bytes) -> str:
    # hashlib pulls in OpenSSL (~3-5 ms at start-up); the builtin module is enough for one key.
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    return str(sha256(data).hexdigest())


def state_dir() -> str:
    """The state directory: `$DEVSYNC_STATE_DIR`, else platformdirs' `user_state_dir("devsync")`."""
    override = os.environ.get(STATE_DIR_ENV, "")
    if override:
        return os.path.abspath(override)
    if sys.platform.startswith("linux"):
        # Same answer as platformdirs.user_state_dir("devsync") on Linux (tested), without its
        # ~10 ms import. Anything unusual (relative $HOME, other platforms) goes to platformdirs.
        xdg = os.environ.get("XDG_STATE_HOME", "")
        if os.path.isabs(xdg):
            return os.path.join(xdg, "devsync")
        home = os.environ.get("HOME", "")
        if os.path.isabs(home):
            return os.path.join(home.rstrip("/") or "/", ".local", "state", "devsync")
    import platformdirs

    return str(platformdirs.user_state_dir("devsync"))


def repo_key(root: str | os.PathLike[str]) -> str:
    """Stable identifier of a repository: sha256 of its real path, 16 hex digits."""
    real = os.path.realpath(os.fspath(root))
    return _sha256_hex(os.fsencode(real))[:16]


def state_path(root: str | os.PathLike[str]) -> str:
    return os.path.join(state_dir(), "repos", repo_key(root) + ".json")


def lock_path(root: str | os.PathLike[str], kind: str = "") -> str:
    suffix = f".{kind}.lock" if kind else ".lock"
    return os.path.join(state_dir(), "locks", repo_key(root) + suffix)


def _ensure_dir(path: str) -> None:
    # Private (0700): state names the user's repositories and images.
    os.makedirs(path, mode=0o700, exist_ok=True)


def decode(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a state document. Returns (document, None) or (None, CORRUPT | FUTURE)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, CORRUPT
    if not isinstance(doc, dict):
        return None, CORRUPT
    version = doc.get("version")
    if type(version) is not int or version < 1:
        return None, CORRUPT
    if version > SCHEMA_VERSION:
        return None, FUTURE
    return doc, None


def read_raw(root: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The repository's state document without validation beyond version and top-level shape.

    Returns (document, None), or (None, MISSING | CORRUPT | FUTURE). Never raises for a bad
    file; I/O errors other than "not found" propagate.
    """
    try:
        with open(state_path(root), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, MISSING
    return decode(data)


def quarantine(path: str) -> str:
    """Move an unreadable state file aside (never delete user data) and return the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    os.replace(path, target)
    return target


def write_atomic(path: str, data: bytes) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never a partial one.

    Only call this while holding the file's lock: the temporary name is fixed per file, so a
    leftover from a killed writer is simply overwritten next time.
    """
    directory, name = os.path.split(path)
    _ensure_dir(directory)
    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    # The rename itself must reach the disk too, or a crash can bring back the old file.
    dfd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(dfd)


def _unlink_quietly(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


def _read_holder(f: IO[bytes]) -> dict[str, Any]:
    try:
        f.seek(0)
        info = json.loads(f.read(4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


@contextmanager
def flocked(
    path: str, *, timeout: float | None, holder: dict[str, Any] | None = None
) -> Iterator[IO[bytes]]:
    """Hold an exclusive `flock` on `path` (created if needed) for the `with` block.

    timeout: None waits forever, 0 does not wait, otherwise poll up to that many seconds. On
    failure raise `LockBusy` carrying what the holder recorded. `holder` (pid, start time, ...)
    is written into the lock file once acquired so a blocked process can say who holds it.
    The kernel drops a `flock` when its process dies, so a crashed holder never blocks anyone.
    """
    _ensure_dir(os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    f = os.fdopen(fd, "r+b", buffering=0)
    try:
        _acquire(f, timeout)
        if holder is not None:
            try:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(holder).encode())
            except OSError:
                pass  # only used for messages
        try:
            yield f
        finally:
            if holder is not None:
                with suppress(OSError):
                    f.truncate(0)
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()


def _acquire(f: IO[bytes], timeout: float | None) -> None:
    if timeout is None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        return
    end = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now >= end:
            raise LockBusy(_read_holder(f))
        time.sleep(min(delay, end - now))
        delay = min(delay * 2, 0.1)
