"""`devsync --check`: at most one line on a shell prompt when local images need a sync.

Runs on every prompt, so it is built for start-up time and for never getting in the way:

* Fast path: the git fingerprint (`devsync.prompt.fingerprint`, a few reads in `.git`) plus a
  stat() of every watched path. If both equal what the last check stored, print the stored
  line and stop. This path imports nothing a bare interpreter has not already loaded beyond
  devsync's own prompt modules: no `re`, `enum`, `typing`, `dataclasses`, `json`,
  `contextlib`, `signal` (its enums), TOML parser, subprocess or hashlib (`python -X
  importtime` shows it; tests/prompt/test_check.py keeps it so).
* Otherwise hash the watched files and compare them with the baselines recorded at the last
  sync; name the first changed file (and the commit that changed it, from `git log` with a
  timeout, started without the `subprocess` module) or fall back to the lines the last
  sync/refresh stored per image. Store the answer for the next prompt (a raw-document update
  in `statestore`, under the state lock), skipping the write if another process holds the
  lock.
* A repository that looks like a devsync project (`.devsync.toml`, `Dockerfile` or
  `Dockerfile.base` at its top) but has no state at all, such as a brand-new clone, gets one
  nudge ("not synced yet"), once per repository: the state then records that it was given.
* A watchdog bounds the whole check (default 200 ms) because a read on a hung network mount
  cannot be cancelled otherwise; on timeout, or on any error at all, the check prints
  nothing and exits 0. It never touches the network; at most it starts a detached
  `devsync refresh` when the registry information is older than `registry_check_minutes`.

Safe in an untrusted clone: it reads files and writes only inside devsync's state directory.
The only process it runs is git (`log`, `rev-parse`), with every repository-controlled
setting that could make git execute a program neutralised (see `devsync.prompt.gitrun`), and
the detached refresh. Anything printed that comes
from the repository (file names, author names) is stripped of control characters and
terminal escape sequences.
"""

from __future__ import annotations

import os
import stat as stat_mod
import sys
import time

from devsync.prompt import statestore, wording
from devsync.prompt.fingerprint import git_fingerprint
from devsync.prompt.sanitize import one_line

try:  # the C module under `signal`: `signal` itself imports `enum` (~2 ms) for its constants
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~4 ms at start-up; annotations are strings anyway
    from typing import Any, NoReturn, TextIO

CONFIG_NAME = ".devsync.toml"
# The one default for `registry_check_minutes` (the TUI's schedule imports it from here).
DEFAULT_REGISTRY_CHECK_MINUTES = 30.0
NO_REFRESH_ENV = "DEVSYNC_NO_REFRESH"
DEADLINE_ENV = "DEVSYNC_CHECK_DEADLINE"  # seconds, read by main() only
DEFAULT_DEADLINE = 0.2
_MAX_LINE = 300
NOT_SYNCED_LINE = "devsync: not synced yet - run devsync"
# At the top of a repository, any of these says "a devsync project" when it has no state yet.
_PROJECT_MARKERS = (CONFIG_NAME, "Dockerfile", "Dockerfile.base")
_NUDGED_NOTE = "prompt_not_synced_nudge_at"
# A file modified this close to when we looked could change again within the filesystem's
# timestamp granularity without its stat changing ("racy git"); such stats are not cached.
_RACY_NS = 2_000_000_000
_NEVER_MATCHES = [-1, -1, -1]
_MISSING_STAT = [0, 0, 0]

class _Deadline(BaseException):
    """Raised from the SIGALRM handler. A BaseException so that no `except Exception` on the
    way (ours or a library's) can swallow it and carry on past the deadline."""


class _Unknown(Exception):
    """The state does not look like anything we understand: say nothing."""


class _Skip(Exception):
    """Abort a state update without writing."""


def run_check(
    cwd: str | os.PathLike[str],
    *,
    exit_code: bool = False,
    deadline: float = DEFAULT_DEADLINE,
    out: TextIO | None = None,
) -> int:
    """Print at most one `devsync: ...` line to `out` (default: sys.stdout) and return the
    exit status: 0, or 1 when `exit_code` is set and the images need a sync.

    Never raises: an error, Ctrl-C or the deadline all mean no output and 0. Called from the
    main thread it never takes much longer than `deadline` seconds (SIGALRM watchdog; off the
    main thread there is no deadline). `main()` adds a backstop for waits no signal can end.
    """
    stream = out if out is not None else sys.stdout
    try:
        with _Watchdog(deadline):
            line, stale = _check(os.fspath(cwd), time.monotonic() + deadline)
    except (_Deadline, KeyboardInterrupt, Exception):
        return 0
    try:
        if line:
            stream.write(line + "\n")
            stream.flush()
    except Exception:
        return 0
    return 1 if exit_code and stale else 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Stand-alone entry: `python -m devsync.prompt.check [--exit-code]`."""
    args = sys.argv[1:] if argv is None else argv
    deadline = _deadline_from_env()
    # Backstop for waits a signal handler cannot interrupt (a hard-mounted NFS read sleeps
    # killable but not interruptible): a thread that ends the whole process. os._exit
    # kills every thread, including one stuck in such a read.
    _start_backstop(deadline + 0.1)
    try:
        cwd = os.getcwd()
    except OSError:  # the shell's directory was deleted
        os._exit(0)
    code = run_check(cwd, exit_code="--exit-code" in args, deadline=deadline)
    try:
        sys.stdout.flush()
    except Exception:
        code = 0
    # Skip interpreter teardown: a few ms on every prompt, and nothing left to clean up.
    os._exit(code)


def _deadline_from_env() -> float:
    # For slow machines and for tests that must not depend on machine load.
    try:
        value = float(os.environ.get(DEADLINE_ENV, "") or DEFAULT_DEADLINE)
    except ValueError:
        return DEFAULT_DEADLINE
    return min(max(value, 0.05), 10.0) if value == value else DEFAULT_DEADLINE


# -- the check ------------------------------------------------------------------------------


def _check(cwd: str, end: float) -> tuple[str, bool]:
    root = find_root(cwd)
    if root is None:
        return "", False
    doc, outcome = statestore.read_raw(root)
    if outcome == statestore.MISSING:
        nudge = _nudge_once(root)
        return nudge, bool(nudge)
    if outcome is not None or doc is None:
        return "", False  # corrupt or from a newer devsync: unknown, so silent
    config_stat = _stat(os.path.join(root, CONFIG_NAME))
    images = _images(doc)
    cached = _cached_check(doc.get("check"))

    fingerprint = git_fingerprint(root)
    paths = _watched_paths(images)
    stats = {p: _stat(os.path.join(root, p)) for p in paths}
    stats[CONFIG_NAME] = config_stat

    if (
        cached is not None
        and fingerprint is not None
        and cached["fingerprint"] == fingerprint
        and cached["stats"] == stats
    ):
        line, stale, minutes = cached["line"], cached["stale"], cached["minutes"]
    else:
        line, stale = _recompute(root, images, end, _revisions(doc), _contexts(doc))
        if cached is not None and cached["stats"].get(CONFIG_NAME) == config_stat:
            minutes = cached["minutes"]  # .devsync.toml unchanged: no TOML parser
        else:
            minutes = _registry_check_minutes(root) if config_stat != _MISSING_STAT else None
        if fingerprint is not None:
            _store(root, doc, fingerprint, stats, line, stale, minutes)
    if images or config_stat != _MISSING_STAT:  # (a state with just the nudge: nothing to check)
        _maybe_refresh(root, doc.get("registry_checked_at"), minutes)
    return one_line(line, _MAX_LINE), stale


def _nudge_once(root: str) -> str:
    """`NOT_SYNCED_LINE` the first time a project without any devsync state is seen, "" for
    anything else (not a devsync project; nudged before, by this or another shell).

    The nudge is recorded in a new state document before it is shown, under the state lock,
    so that it is shown once per repository however many shells look at once, and not at all
    when it cannot be recorded (it would come back at every prompt).
    """
    if not any(os.path.isfile(os.path.join(root, name)) for name in _PROJECT_MARKERS):
        return ""

    def record(doc: dict[str, Any]) -> None:
        if set(doc) - {"version", "root"}:
            raise _Skip  # another process wrote a state since we looked
        doc["notes"] = {_NUDGED_NOTE: time.time()}

    try:
        statestore.update_raw(root, record, timeout=0)
    except (_Skip, statestore.LockBusy, statestore.FutureState, OSError):
        return ""
    return NOT_SYNCED_LINE


def find_root(cwd: str) -> str | None:
    """The nearest directory at or above `cwd` containing `.git` (a directory or a file)."""
    d = os.path.abspath(cwd)
    while True:
        if os.path.lexists(os.path.join(d, ".git")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def _revisions(doc: dict[str, Any]) -> dict[str, str]:
    """Per image: HEAD when its last sync read the build's inputs."""
    images = doc.get("images", {})
    return {str(name): img["synced_revision"] for name, img in images.items()
            if isinstance(img, dict) and isinstance(img.get("synced_revision"), str)}


def _contexts(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Per image: its build context as git pathspecs (`:(top...)` only), as the core
    recorded it."""
    out: dict[str, list[str]] = {}
    for name, img in doc.get("images", {}).items():
        specs = img.get("context_pathspecs") if isinstance(img, dict) else None
        if isinstance(specs, list) and specs and all(
                isinstance(p, str) and p.startswith(":(top") and "\0" not in p for p in specs):
            out[str(name)] = specs
    return out


def _images(doc: dict[str, Any]) -> list[tuple[str, dict[str, str], str]]:
    """(name, watched baselines, stored line) per image; _Unknown if the shape is off."""
    images = doc.get("images", {})
    if not isinstance(images, dict):
        raise _Unknown
    result = []
    for name, img in images.items():
        if not isinstance(img, dict):
            raise _Unknown
        watched = img.get("watched", {})
        line = img.get("line") or ""
        if not isinstance(watched, dict) or not isinstance(line, str):
            raise _Unknown
        if not all(isinstance(v, str) for v in watched.values()):
            raise _Unknown
        result.append((str(name), watched, line))
    return result


def _watched_paths(images: list[tuple[str, dict[str, str], str]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, watched, _ in images:
        for path in watched:
            if _safe_relpath(path):
                seen.setdefault(path, None)
    return list(seen)


def _safe_relpath(path: str) -> bool:
    # State is ours, but its paths come from the repository's Dockerfiles: stay inside it.
    if not path or path.startswith("/") or "\0" in path:
        return False
    return ".." not in path.split("/")


def _cached_check(raw: object) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    fingerprint, stats, line, stale = (raw.get(k) for k in ("fingerprint", "stats", "line",
                                                            "stale"))
    minutes = raw.get("registry_check_minutes")
    if not (
        isinstance(fingerprint, str)
        and isinstance(stats, dict)
        and isinstance(line, str)
        and isinstance(stale, bool)
        and (minutes is None or (isinstance(minutes, int | float)
                                 and not isinstance(minutes, bool)))
    ):
        return None
    return {"fingerprint": fingerprint, "stats": stats, "line": line, "stale": stale,
            "minutes": minutes}


def _stat(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except OSError:
        return list(_MISSING_STAT)
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _recompute(
    root: str, images: list[tuple[str, dict[str, str], str]], end: float,
    revisions: dict[str, str] | None = None, contexts: dict[str, list[str]] | None = None,
) -> tuple[str, bool]:
    """The first watched file that differs from its baseline, worded as the core's verdict
    words it (`devsync.prompt.wording`), else the lines the last sync or refresh stored; an
    image whose stored line is "" (in sync) is asked of git: a commit since its sync under
    its build context (`_context_line`)."""
    digests: dict[str, str | None] = {}
    changed: dict[str, str] = {}  # path -> the first image it makes stale
    for name, watched, _ in images:
        for path, baseline in sorted(watched.items()):
            if not _safe_relpath(path):
                continue
            if path not in digests:
                digests[path] = _sha256_file(os.path.join(root, path))
            if digests[path] != baseline:
                changed.setdefault(path, name)
    if changed:
        (first, image), *rest = changed.items()
        cause = _describe_change(root, first, digests[first] is None, end,
                                 (revisions or {}).get(image))
        return wording.with_more(wording.prompt_line(image, cause, wording.SYNC),
                                 len(rest)), True
    lines = [line or _context_line(root, name, (contexts or {}).get(name),
                                   (revisions or {}).get(name), end)
             for name, _, line in images]
    lines = [line for line in lines if line]
    if not lines:
        return "", False
    line = lines[0] if lines[0].startswith("devsync:") else "devsync: " + lines[0]
    return wording.with_more(line, len(lines) - 1), True


_NOT_REGULAR = "not-a-regular-file"


def _sha256_file(path: str) -> str | None:
    """sha256 hex of a regular file; None if it does not exist; a marker that matches no
    baseline for anything else."""
    return _hash_regular(path, "sha256", blob_header=False)


def _hash_regular(path: str, algorithm: str, *, blob_header: bool) -> str | None:
    # O_NONBLOCK + fstat: a FIFO or device planted in the repository must never be read
    # (opening a FIFO for reading blocks until a writer appears).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return _NOT_REGULAR
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            return _NOT_REGULAR
        h = _new_hash(algorithm, st.st_size)
        if blob_header:  # git's object id: "blob <size>\0" + content
            h.update(b"blob %d\0" % st.st_size)
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


_SMALL_FILE = 256 << 10


def _new_hash(algorithm: str, size: int) -> Any:
    """A sha256 or sha1 object for `size` bytes: the interpreter's own implementation for a
    small file, OpenSSL's (`hashlib`, ~8x faster) for a big one. Importing hashlib loads
    OpenSSL, which costs more than hashing the few small files a prompt usually reads."""
    if size <= _SMALL_FILE:
        try:
            if algorithm == "sha1":
                from _sha1 import sha1

                return sha1()
            try:
                from _sha256 import sha256  # CPython <= 3.11
            except ImportError:
                from _sha2 import sha256  # CPython >= 3.12
            return sha256()
        except ImportError:
            pass
    import hashlib

    return hashlib.new(algorithm)


def _describe_change(root: str, path: str, deleted: bool, end: float,
                     synced: str | None = None) -> str:
    """Why `path` differs from what the last sync built, as the core's verdict says it:
    "PATH changed in SHORT by AUTHOR: SUBJECT" when a commit since that sync (`synced`, when
    known) explains it, "PATH changed (uncommitted)" when the file is not as HEAD has it,
    "PATH changed since your last sync" when it is (an edit that was built, then reverted);
    "PATH changed" if git cannot tell in time."""
    unexplained = wording.changed_unexplained(path, deleted=deleted)
    timeout = end - time.monotonic() - 0.03  # leave time to store the answer
    if timeout < 0.02:
        return unexplained
    since = synced if synced and _is_hex_sha(synced) else None
    args = ["log", "-1", "--no-show-signature", "--no-ext-diff", "--no-textconv",
            "--no-renames", "--no-color", "--no-decorate", "--raw",
            "--format=%h%x1f%an%x1f%s", f"{since}..HEAD" if since else "HEAD", "--",
            f":(top,literal){path}"]
    out = _git(root, args, timeout)
    if out is None and since is not None:  # (a revision this clone lacks: all of history)
        since = None
        args[args.index(f"{synced}..HEAD")] = "HEAD"
        out = _git(root, args, end - time.monotonic() - 0.03)
    if out is None:
        return unexplained
    lines = out.splitlines()
    if not lines or "\x1f" not in lines[0]:
        if since is not None:
            # no commit since the sync touched it: is the file as HEAD has it?
            head = _git(root, ["rev-parse", "-q", "--verify", f"HEAD:{path}"],
                        end - time.monotonic() - 0.03)
            if head is not None and not deleted and _blob_matches(root, path, head.strip()):
                return wording.changed_since_sync(path)
        return wording.changed_uncommitted(path, deleted=deleted)
    short, author, subject = [*lines[0].split("\x1f"), "", ""][:3]
    raw = next((ln for ln in lines[1:] if ln.startswith(":")), None)
    if raw is None:
        return unexplained  # e.g. a merge: history names it but shows no diff
    fields = raw.split("\t", 1)[0].split()
    if len(fields) < 5:
        return unexplained
    new_blob, status = fields[3].rstrip("."), fields[4]
    committed = status.startswith("D") if deleted else _blob_matches(root, path, new_blob)
    if not committed:
        return wording.changed_uncommitted(path, deleted=deleted)
    return wording.changed_in(path, short, author, subject, deleted=deleted)


def _context_line(root: str, image: str, pathspecs: list[str] | None, synced: str | None,
                  end: float) -> str:
    """The prompt line for a commit since the image's sync that changed what its build is
    sent (its context less the `.dockerignore`'s exclusions: `pathspecs`), e.g. a
    teammate's edit under `COPY . /app`: one `git log`, worded as `status` words it."""
    timeout = end - time.monotonic() - 0.03
    if not pathspecs or not synced or not _is_hex_sha(synced) or timeout < 0.02:
        return ""
    out = _git(root, ["-c", "core.quotePath=false", "log", "-1", "--no-show-signature",
                      "--no-ext-diff", "--no-textconv", "--no-renames", "--no-color",
                      "--no-decorate", "--raw", "--format=%h%x1f%an%x1f%s", f"{synced}..HEAD",
                      "--", *pathspecs], timeout)
    lines = (out or "").splitlines()
    raw = next((ln for ln in lines[1:] if ln.startswith(":") and "\t" in ln), None)
    if not lines or "\x1f" not in lines[0] or raw is None:
        return ""  # nothing since the sync (or a merge, which shows no files)
    short, author, subject = [*lines[0].split("\x1f"), "", ""][:3]
    fields, path = raw.split("\t", 1)[0].split(), raw.split("\t", 1)[1]
    if len(fields) < 5 or not _safe_relpath(path) or path.startswith('"'):
        return ""  # (a name git had to quote: left to `status`)
    deleted = fields[4].startswith("D")
    here = os.path.lexists(os.path.join(root, path))
    committed = not here if deleted else _blob_matches(root, path, fields[3].rstrip("."))
    cause = (wording.changed_in(path, short, author, subject, deleted=deleted) if committed
             else wording.changed_uncommitted(path, deleted=not here))
    return wording.prompt_line(image, cause, wording.SYNC)


def _is_hex_sha(text: str) -> bool:
    return 7 <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)


def _blob_matches(root: str, path: str, blob: str) -> bool:
    """Whether the file's content is git object `blob` (abbreviated like %h: git picks a
    unique length, so a prefix of our own id is a match)."""
    full = os.path.join(root, path)
    return len(blob) >= 7 and any((blob_id or "").startswith(blob)
                                  for blob_id in (_git_blob_id(full, "sha1"),
                                                  _git_blob_id(full, "sha256")))


def _git(root: str, args: list[str], timeout: float) -> str | None:
    """`git ARGS` in `root`, made safe for a repository we do not trust (see
    `devsync.prompt.gitrun`); its output, or None on failure or timeout."""
    from devsync.prompt.gitrun import git

    return git(root, args, timeout)


def _git_blob_id(path: str, algorithm: str) -> str | None:
    """git's object id for the file's current content ("sha1", or "sha256" repositories)."""
    return _hash_regular(path, algorithm, blob_header=True)


def _registry_check_minutes(root: str) -> float | None:
    """`registry_check_minutes` from .devsync.toml; None (the default) if it can't be had.

    Read with `tomllib` alone (the slow path only; the answer is cached with the check), and
    held to the rule `devsync.model.config` applies: an integer of at least 1.
    """
    try:
        data = statestore.read_regular(os.path.join(root, CONFIG_NAME), 1 << 20)
        if data is None:
            return None
        import tomllib

        settings = tomllib.loads(data.decode("utf-8-sig")).get("devsync", {})
        value = settings.get("registry_check_minutes") if isinstance(settings, dict) else None
    except Exception:
        return None
    if type(value) is int and value >= 1:
        return float(value)
    return None


def _store(
    root: str,
    doc: dict[str, Any],
    fingerprint: str,
    stats: dict[str, list[int]],
    line: str,
    stale: bool,
    minutes: float | None,
) -> None:
    """Remember the answer for the next prompt (the state's `check` record, in the shape
    `devsync.adapters.state.CheckRecord` reads); skip quietly if the state is busy."""
    now_ns = time.time_ns()
    cached = {
        path: (list(_NEVER_MATCHES) if st != _MISSING_STAT and abs(now_ns - st[0]) < _RACY_NS
               else st)
        for path, st in stats.items()
    }
    basis = _basis(_images(doc))

    def mutate(current: dict[str, Any]) -> None:
        try:
            unchanged = _basis(_images(current)) == basis
        except _Unknown:
            unchanged = False
        if not unchanged:
            raise _Skip  # a sync or refresh changed the images since we read them
        current["check"] = {
            "fingerprint": fingerprint, "stats": cached, "line": line, "stale": stale,
            "computed_at": time.time(), "registry_check_minutes": minutes,
        }

    try:
        statestore.update_raw(root, mutate, timeout=0)
    except (_Skip, statestore.LockBusy, statestore.FutureState, OSError):
        return  # busy or not writable: the next prompt works it out again


def _basis(images: list[tuple[str, dict[str, str], str]]) -> list[tuple[str, Any, str]]:
    return sorted((name, sorted(watched.items()), line) for name, watched, line in images)


# -- background registry refresh ------------------------------------------------------------


def _maybe_refresh(root: str, checked_at: object, minutes: float | None) -> None:
    """Start a detached `devsync refresh` when registry information is older than allowed.

    The attempt is recorded first, under the state lock, so that many shells opening at once
    start one refresh between them. Never waits for it.
    """
    if os.environ.get(NO_REFRESH_ENV, "") not in ("", "0"):
        return
    interval = (DEFAULT_REGISTRY_CHECK_MINUTES if minutes is None else minutes) * 60
    if interval <= 0:
        return  # registry_check_minutes = 0: automatic refresh switched off
    if not _due(checked_at, interval):
        return

    def mark(doc: dict[str, Any]) -> None:
        if not _due(doc.get("registry_checked_at"), interval):
            raise _Skip  # another shell got here first
        doc["registry_checked_at"] = time.time()

    try:
        statestore.update_raw(root, mark, timeout=0)
    except (_Skip, statestore.LockBusy, statestore.FutureState, OSError):
        return
    import subprocess

    # cwd "/": never the repository, whose files must not shadow anything we import.
    subprocess.Popen(
        refresh_command(root),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        close_fds=True, start_new_session=True, cwd="/",
    )


def refresh_command(root: str) -> list[str]:
    """The detached background refresh the check starts (implemented by the CLI).

    `-P`: `python -m` would otherwise put the working directory first on sys.path.
    """
    return [sys.executable, "-P", "-m", "devsync", "refresh", "--quiet", root]


def _due(checked_at: object, interval: float) -> bool:
    if not isinstance(checked_at, int | float) or isinstance(checked_at, bool):
        return True
    age = time.time() - checked_at
    return not 0 <= age < interval  # a timestamp in the future means the clock moved: due


# -- deadline ---------------------------------------------------------------------------


class _Watchdog:
    """Raise `_Deadline` in the main thread after `seconds` (SIGALRM via setitimer).

    Off the main thread signals cannot be used; the check then runs without a deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False
        self.previous: Any = None
        self.outer: tuple[float, float] = (0.0, 0.0)
        self.started = 0.0

    def __enter__(self) -> _Watchdog:
        try:
            self.previous = signal.signal(signal.SIGALRM, _on_alarm)
        except ValueError:  # not the main thread
            return self
        self.armed = True
        self.started = time.monotonic()
        self.outer = signal.setitimer(signal.ITIMER_REAL, max(self.seconds, 0.001))
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.armed:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)
        delay, interval = self.outer
        if delay > 0:  # give back a timer the caller had running (e.g. a test timeout)
            left = delay - (time.monotonic() - self.started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.000001), interval)


def _on_alarm(signum: int, frame: object) -> None:
    raise _Deadline


def _start_backstop(seconds: float) -> None:
    import _thread

    def _kill() -> None:
        time.sleep(seconds)
        os._exit(0)

    _thread.start_new_thread(_kill, ())


if __name__ == "__main__":
    main()
