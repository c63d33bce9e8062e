"""Where devsync keeps per-repository state on disk, and how it touches those files safely.

This is the low level under `devsync.adapters.state`, and the only place that reads, locks or
writes a state file: paths, keys, `flock` locks, atomic writes, a tolerant raw read and
`update_raw`, the one read-modify-write under the lock. Standard library only, and little of
it on the read path (no `json`, `re`, `contextlib`, `tempfile` or `hashlib`): `devsync --check`
reads state on every shell prompt, and interpreter start-up time is most of its budget.

Layout under the state directory:
    repos/<key>.json           one JSON document per repository
    repos/.<key>.json.tmp      the next version while it is being written (then os.replace)
    repos/<key>.json.corrupt-<ts>   an unreadable file moved aside, never deleted
    locks/<key>.lock           short read-modify-write lock (`update_raw`)
    locks/<key>.op.lock        long operation lock (sync, refresh), records pid and start time
where <key> is the first 16 hex digits of sha256(realpath(repository root)).
"""

from __future__ import annotations

import os
import stat
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~4 ms at start-up; annotations are strings anyway
    from collections.abc import Callable
    from typing import IO, Any

SCHEMA_VERSION = 1
STATE_DIR_ENV = "DEVSYNC_STATE_DIR"
APP_NAME = "devsync"

# Outcomes of `read_raw`.
MISSING = "missing"
CORRUPT = "corrupt"
FUTURE = "future"


class LockBusy(Exception):
    """The lock is held by another open file (process) and we were told not to wait longer."""

    def __init__(self, holder: dict[str, Any]) -> None:
        super().__init__("lock busy")
        self.holder = holder


class FutureState(Exception):
    """The state file was written by a newer devsync: it is left untouched."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


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
    """The state directory: `$DEVSYNC_STATE_DIR`, else the platform's per-user state directory
    (the same answer as platformdirs' `user_state_dir("devsync")`, without its import)."""
    override = os.environ.get(STATE_DIR_ENV, "")
    if override:
        return os.path.abspath(override)
    return default_state_dir(os.environ, sys.platform)


def default_state_dir(environ: Any, platform: str) -> str:
    """The per-user state directory platformdirs names on `platform` ("linux", "darwin", other
    unixes as linux): `$XDG_STATE_HOME/devsync` when that is an absolute path (macOS too), else
    `~/.local/state/devsync`, or `~/Library/Application Support/devsync` on macOS; `~` is $HOME
    when that is absolute, else the account's home directory. Raises OSError when there is
    no home directory to be found."""
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, APP_NAME)
    home = environ.get("HOME")
    if home is None or not home.startswith("/"):
        try:
            import pwd

            home = pwd.getpwuid(os.getuid()).pw_dir
        except (ImportError, KeyError):
            home = ""
        if not home.startswith("/"):
            raise OSError(2, "cannot find your home directory for devsync's state: "
                             f"set HOME or {STATE_DIR_ENV}")
    base = "Library/Application Support" if platform == "darwin" else ".local/state"
    return f"{home.rstrip('/')}/{base}/{APP_NAME}"


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
        doc = _loads(data)
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


def encode(doc: dict[str, Any]) -> bytes:
    """A state document as written to disk: `json.dumps(doc, indent=2, sort_keys=True)` and a
    newline (diffable by a person), byte for byte, without importing `json` (see `_loads`)."""
    out: list[str] = []
    try:
        from _json import encode_basestring_ascii

        _dump(doc, encode_basestring_ascii, out, "\n")
    except (ImportError, _NotPlain):
        pass
    else:
        out.append("\n")
        return "".join(out).encode()
    import json

    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


class _NotPlain(Exception):
    """A value `_dump` leaves to `json` (a non-string key, a type JSON does not have)."""


def _dump(value: object, quote: Callable[[str], str], out: list[str], newline: str) -> None:
    # json's own pure-Python encoder with indent=2, sort_keys=True, ensure_ascii=True.
    if isinstance(value, str):
        out.append(quote(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value:
            out.append("NaN")
        elif value in (float("inf"), float("-inf")):
            out.append("Infinity" if value > 0 else "-Infinity")
        else:
            out.append(float.__repr__(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        if not all(isinstance(key, str) for key in value):
            raise _NotPlain
        inner = newline + "  "
        out.append("{")
        for n, (key, item) in enumerate(sorted(value.items())):
            out.append(inner if n == 0 else "," + inner)
            out.append(quote(key))
            out.append(": ")
            _dump(item, quote, out, inner)
        out.append(newline + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = newline + "  "
        out.append("[")
        for n, item in enumerate(value):
            out.append(inner if n == 0 else "," + inner)
            _dump(item, quote, out, inner)
        out.append(newline + "]")
    else:
        raise _NotPlain


class _ScanContext:
    # What the C scanner reads from a `json.JSONDecoder`, with json's defaults.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__


_scan: Callable[[str, int], tuple[object, int]] | None = None


def _loads(data: bytes) -> object:
    """`json.loads(data)` for the documents we write, without importing `json` (which imports
    `re`: ~3 ms of the prompt check's start-up). The scanner is the C one `json` itself uses;
    anything it cannot take goes to `json`, which then decides (and raises ValueError)."""
    global _scan
    text = data.decode("utf-8")
    try:
        if _scan is None:
            from _json import make_scanner

            _scan = make_scanner(_ScanContext())  # type: ignore[arg-type]
        start = len(text) - len(text.lstrip(" \t\n\r"))
        doc, end = _scan(text, start)
        if not text[end:].strip(" \t\n\r"):
            return doc
    except Exception:  # StopIteration, a scanner error, no _json: let json say what it is
        pass
    import json

    return json.loads(text)


def read_raw(root: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The repository's state document without validation beyond version and top-level shape.

    Returns (document, None), or (None, MISSING | CORRUPT | FUTURE). Never raises for a bad
    file; I/O errors other than "not found" propagate.
    """
    data = read_regular(state_path(root))
    if data is None:
        return None, MISSING
    return decode(data)


def read_regular(path: str, limit: int | None = None) -> bytes | None:
    """The content of the regular file at `path`, None when there is none. Raises OSError for
    anything else there (a FIFO or device is never opened for a blocking read, which would
    hold up the prompt until its deadline) and for a file over `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            import errno

            raise OSError(errno.EINVAL, "not a regular file", path)
        if limit is not None and st.st_size > limit:
            import errno

            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def update_raw(
    root: str | os.PathLike[str],
    mutate: Callable[[dict[str, Any]], None],
    *,
    timeout: float | None,
) -> dict[str, Any]:
    """Read the repository's state document, let `mutate` change it in place, and write it
    back atomically; return it. The one read-modify-write of a state file (the prompt check's
    cached answer and `devsync.adapters.state.update` both go through here).

    Runs under the repository's state lock (`timeout` as in `flocked`), so concurrent updates
    from several processes are serialised and none is lost. A missing document starts empty
    (`{"version": SCHEMA_VERSION, "root": ...}`); a corrupt one is moved aside first (never
    deleted) and starts empty too. If `mutate` raises, nothing is written. `version`, `root`
    and `updated_at` are set on the way out.

    Raises LockBusy, FutureState (a newer devsync's file, left untouched), OSError.
    """
    real = os.path.realpath(os.fspath(root))
    path = state_path(real)
    with flocked(lock_path(real), timeout=timeout):
        data = read_regular(path)
        doc: dict[str, Any] | None = None
        if data is not None:
            doc, outcome = decode(data)
            if outcome == FUTURE:
                raise FutureState(path)
            if doc is None:
                quarantine(path)
        if doc is None:
            doc = {"version": SCHEMA_VERSION, "root": real}
        mutate(doc)
        doc["version"] = SCHEMA_VERSION
        doc["root"] = real
        doc["updated_at"] = time.time()
        write_atomic(path, encode(doc))
        return doc


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
    import errno

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
    # (not contextlib.suppress: this module stays free of contextlib's import)
    try:  # noqa: SIM105
        os.unlink(path)
    except OSError:
        pass


def _read_holder(f: IO[bytes]) -> dict[str, Any]:
    try:
        f.seek(0)
        info = _loads(f.read(4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class flocked:  # lower case: used like the function it was, `with flocked(path, ...)`
    """Hold an exclusive `flock` on `path` (created if needed) for the `with` block.

    timeout: None waits forever, 0 does not wait, otherwise poll up to that many seconds. On
    failure raise `LockBusy` carrying what the holder recorded. `holder` (pid, start time, ...)
    is written into the lock file once acquired so a blocked process can say who holds it.
    The kernel drops a `flock` when its process dies, so a crashed holder never blocks anyone.
    (A class, not a `contextlib.contextmanager`: contextlib costs the prompt check ~2 ms.)
    """

    def __init__(self, path: str, *, timeout: float | None,
                 holder: dict[str, Any] | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.holder = holder
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        _ensure_dir(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        f = os.fdopen(fd, "r+b", buffering=0)
        try:
            _acquire(f, self.timeout)
        except BaseException:
            f.close()
            raise
        if self.holder is not None:
            import json

            try:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(self.holder).encode())
            except OSError:
                pass  # only used for messages
        self.file = f
        return f

    def __exit__(self, *exc: object) -> None:
        import fcntl

        f, self.file = self.file, None
        if f is None:
            return
        try:
            if self.holder is not None:
                try:  # noqa: SIM105 - as in _unlink_quietly
                    f.truncate(0)
                except OSError:
                    pass
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        finally:
            f.close()


def _acquire(f: IO[bytes], timeout: float | None) -> None:
    import fcntl

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
