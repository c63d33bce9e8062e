"""devsync's persistent per-repository state: what was synced, what the prompt check last saw.

One JSON document per repository lives under the user's state directory (see
`devsync.prompt.statestore` for the layout). Readers never lock: every write is an atomic
rename, so a reader sees the old or the new document. Writers go through `update`, a typed
view over `statestore.update_raw`, the one read-modify-write under an exclusive lock (the
prompt check writes its cached answer through it too), so concurrent processes never lose
each other's changes.

Damaged files never crash devsync: an unreadable file is moved aside (`*.corrupt-<ts>`) and
devsync starts afresh; a file written by a newer devsync is left untouched and treated as
read-only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from devsync.errors import StateLockedError, StateReadOnlyError, StateWriteError
from devsync.model.states import IN_SYNC, STALE, UNKNOWN, normalise
from devsync.prompt import statestore

SCHEMA_VERSION = statestore.SCHEMA_VERSION

# `ImageRecord.status` values: the one spelling of states (devsync.model.states); a record
# written by an earlier devsync ("in_sync", "error") is read in today's spelling.
STATUS_UNKNOWN = UNKNOWN
STATUS_IN_SYNC = IN_SYNC
STATUS_STALE = STALE


class _BadShape(ValueError):
    pass


@dataclass
class ImageRecord:
    """One image devsync manages in this repository, as of the last sync or refresh."""

    name: str
    tag: str | None = None
    dockerfile: str | None = None  # repo-relative
    deployed_ref: str | None = None  # e.g. "registry.example.com/app:1.0.8"
    deployed_digest: str | None = None  # "sha256:..." of the deployed manifest
    local_image_id: str | None = None
    synced_revision: str | None = None  # git commit the last sync was made from
    synced_at: float | None = None
    synced_deployed: str | None = None  # the deployed image the last sync built on
    status: str = STATUS_UNKNOWN
    reason: str | None = None
    # The prompt line for this image ("devsync: ... - run devsync sync"), "" when in sync.
    line: str = ""
    # Repo-relative input path (Dockerfile, COPY/ADD sources that are not the whole context)
    # -> sha256 hex of its content at the last sync: the baseline the prompt check compares to.
    watched: dict[str, str] = field(default_factory=dict)
    # The build context as git pathspecs, .dockerignore exclusions included: the prompt
    # check's `git log` for a teammate's commit under a whole-directory COPY.
    context_pathspecs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept on rewrite

    def to_json(self) -> dict[str, Any]:
        doc = dict(self.extra)
        doc.update(
            name=self.name,
            tag=self.tag,
            dockerfile=self.dockerfile,
            deployed_ref=self.deployed_ref,
            deployed_digest=self.deployed_digest,
            local_image_id=self.local_image_id,
            synced_revision=self.synced_revision,
            synced_at=self.synced_at,
            synced_deployed=self.synced_deployed,
            status=self.status,
            reason=self.reason,
            line=self.line,
            watched=dict(self.watched),
            context_pathspecs=list(self.context_pathspecs),
        )
        return doc

    @classmethod
    def from_json(cls, doc: object, name: str) -> ImageRecord:
        d = _dict(doc, "image")
        known = {
            "name", "tag", "dockerfile", "deployed_ref", "deployed_digest", "local_image_id",
            "synced_revision", "synced_at", "synced_deployed", "status", "reason", "line",
            "watched", "context_pathspecs",
        }
        return cls(
            name=_opt_str(d, "name") or name,
            tag=_opt_str(d, "tag"),
            dockerfile=_opt_str(d, "dockerfile"),
            deployed_ref=_opt_str(d, "deployed_ref"),
            deployed_digest=_opt_str(d, "deployed_digest"),
            local_image_id=_opt_str(d, "local_image_id"),
            synced_revision=_opt_str(d, "synced_revision"),
            synced_at=_opt_num(d, "synced_at"),
            synced_deployed=_opt_str(d, "synced_deployed"),
            status=normalise(_opt_str(d, "status")),
            reason=_opt_str(d, "reason"),
            line=_opt_str(d, "line") or "",
            watched=_str_map(d.get("watched", {}), "watched"),
            context_pathspecs=_str_list(d.get("context_pathspecs", []), "context_pathspecs"),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class CheckRecord:
    """What the last prompt check computed, so the next one can answer from a stat() sweep.

    The cached answer is valid while both `fingerprint` (the git fingerprint) and `stats`
    (path -> [mtime_ns, size, inode] of every watched path, plus `.devsync.toml`) still match.
    """

    fingerprint: str
    stats: dict[str, list[int]]
    line: str
    stale: bool
    computed_at: float
    # From .devsync.toml (whose stat is in `stats`), cached so the prompt never parses TOML.
    registry_check_minutes: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "stats": {k: list(v) for k, v in self.stats.items()},
            "line": self.line,
            "stale": self.stale,
            "computed_at": self.computed_at,
            "registry_check_minutes": self.registry_check_minutes,
        }

    @classmethod
    def from_json(cls, doc: object) -> CheckRecord:
        d = _dict(doc, "check")
        stats_doc = _dict(d.get("stats", {}), "check.stats")
        stats: dict[str, list[int]] = {}
        for path, value in stats_doc.items():
            if not (
                isinstance(value, list)
                and len(value) == 3
                and all(type(x) is int for x in value)
            ):
                raise _BadShape(f"check.stats[{path!r}]")
            stats[path] = list(value)
        stale = d.get("stale", False)
        if not isinstance(stale, bool):
            raise _BadShape("check.stale")
        return cls(
            fingerprint=_opt_str(d, "fingerprint") or "",
            stats=stats,
            line=_opt_str(d, "line") or "",
            stale=stale,
            computed_at=_opt_num(d, "computed_at") or 0.0,
            registry_check_minutes=_opt_num(d, "registry_check_minutes"),
        )


@dataclass
class RepoState:
    """Everything devsync remembers about one repository."""

    root: str  # real path of the repository root
    version: int = SCHEMA_VERSION
    updated_at: float | None = None
    images: dict[str, ImageRecord] = field(default_factory=dict)
    check: CheckRecord | None = None
    registry_checked_at: float | None = None  # last registry refresh (or attempt to start one)
    notes: dict[str, Any] = field(default_factory=dict)  # free-form JSON for other modules
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept on rewrite

    def to_json(self) -> dict[str, Any]:
        doc = dict(self.extra)
        doc.update(
            version=self.version,
            root=self.root,
            updated_at=self.updated_at,
            images={name: img.to_json() for name, img in self.images.items()},
            check=self.check.to_json() if self.check is not None else None,
            registry_checked_at=self.registry_checked_at,
            notes=dict(self.notes),
        )
        return doc

    @classmethod
    def from_json(cls, doc: object, root: str) -> RepoState:
        d = _dict(doc, "state")
        version = d.get("version", SCHEMA_VERSION)
        if type(version) is not int:
            raise _BadShape("version")
        images_doc = _dict(d.get("images", {}), "images")
        check_doc = d.get("check")
        known = {
            "version", "root", "updated_at", "images", "check", "registry_checked_at", "notes",
        }
        return cls(
            root=_opt_str(d, "root") or root,
            version=version,
            updated_at=_opt_num(d, "updated_at"),
            images={
                str(name): ImageRecord.from_json(img, str(name))
                for name, img in images_doc.items()
            },
            check=CheckRecord.from_json(check_doc) if check_doc is not None else None,
            registry_checked_at=_opt_num(d, "registry_checked_at"),
            notes=_dict(d.get("notes", {}), "notes"),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class LoadResult:
    state: RepoState
    problem: str | None = None  # one line for the user when the stored state was unusable
    read_only: bool = False  # True: never write this state back (a newer devsync's file)


def empty_state(root: str | os.PathLike[str]) -> RepoState:
    return RepoState(root=os.path.realpath(os.fspath(root)))


def load(root: str | os.PathLike[str]) -> LoadResult:
    """Read the repository's state. Never raises for a missing, corrupt or foreign file."""
    path = statestore.state_path(root)
    try:
        doc, outcome = statestore.read_raw(root)
    except OSError as exc:
        # Unreadable (permissions, I/O error): do not pretend it is empty and overwrite it.
        return LoadResult(
            empty_state(root), f"cannot read devsync state {path}: {exc.strerror}", True
        )
    if outcome == statestore.MISSING:
        return LoadResult(empty_state(root))
    if outcome == statestore.FUTURE:
        return LoadResult(empty_state(root), _future_problem(path), read_only=True)
    if doc is not None:
        try:
            return LoadResult(RepoState.from_json(doc, os.path.realpath(os.fspath(root))))
        except _BadShape:
            pass
    return LoadResult(empty_state(root), _quarantine_if_still_bad(root, path))


def update(
    root: str | os.PathLike[str],
    mutate: Callable[[RepoState], None],
    *,
    timeout: float | None = 10.0,
) -> RepoState:
    """Apply `mutate` to the stored state and write it back atomically; return the new state.

    Runs under the repository's state lock, so concurrent updates from several processes are
    serialised and none is lost. If `mutate` raises, nothing is written. Changing anything but
    the check record and `registry_checked_at` discards the cached prompt answer (`check`), so
    the next prompt recomputes it from the new images.

    Raises StateLockedError if the lock cannot be had within `timeout` seconds (0: don't wait),
    StateReadOnlyError if the stored file comes from a newer devsync.
    """
    real = os.path.realpath(os.fspath(root))
    path = statestore.state_path(real)
    updated: list[RepoState] = []

    def apply(doc: dict[str, Any]) -> None:
        try:
            state = RepoState.from_json(doc, real)
        except _BadShape:  # JSON, but not a state we understand: move it aside, start afresh
            statestore.quarantine(path)
            state = empty_state(real)
        before_core = _core(state)
        before_check = state.check
        mutate(state)
        if state.check is before_check and _core(state) != before_core:
            state.check = None
        doc.clear()
        doc.update(state.to_json())
        updated.append(state)

    try:
        doc = statestore.update_raw(real, apply, timeout=timeout)
    except statestore.LockBusy:
        raise StateLockedError(
            "devsync state for this repository is busy (another devsync is writing it)",
            hint="try again in a moment",
        ) from None
    except statestore.FutureState:
        raise StateReadOnlyError(_future_problem(path), hint="upgrade devsync") from None
    except OSError as exc:
        raise _write_error(exc) from None
    state = updated[0]
    state.version, state.root, state.updated_at = doc["version"], doc["root"], doc["updated_at"]
    return state


def problems(root: str | os.PathLike[str]) -> list[str]:
    """What the user should hear about this repository's state before a command runs: a
    corrupt file moved aside, a newer devsync's file left alone, a directory that cannot be
    written. One line each; reading never raises."""
    directory = statestore.state_dir()
    probe = directory
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        return [f"devsync state directory {directory} cannot be written: this run's results "
                "will not be remembered (the prompt check will not see them)"]
    loaded = load(root)
    return [loaded.problem] if loaded.problem else []


def _write_error(exc: OSError) -> StateWriteError:
    where = exc.filename or statestore.state_dir()
    return StateWriteError(
        f"cannot write devsync state at {where}: {exc.strerror or exc}",
        hint=f"check that {statestore.state_dir()} is a writable directory "
             f"(it comes from ${statestore.STATE_DIR_ENV} or XDG_STATE_HOME)",
    )


@contextmanager
def operation_lock(root: str | os.PathLike[str], what: str, wait: float = 0) -> Iterator[None]:
    """Hold the repository's long-operation lock (sync, refresh) for the `with` block.

    `what` names the operation for messages: a command ("sync", "refresh") or a verb phrase
    ("syncing"); the holder's appears in the error. If another process holds the lock, wait up
    to `wait` seconds, then raise StateLockedError naming its pid and start time. A holder that
    died releases the lock with its process, so crashes never leave the repository blocked.
    """
    holder = {"pid": os.getpid(), "started": time.time(), "what": what}
    entered = False
    try:
        with statestore.flocked(statestore.lock_path(root, "op"), timeout=wait, holder=holder):
            entered = True
            yield
    except statestore.LockBusy as busy:
        if entered:  # a LockBusy from inside the block is not about this lock
            raise
        raise _locked_error(busy.holder) from None
    except OSError as exc:
        if entered:  # the operation's own I/O error, not the lock's
            raise
        raise _write_error(exc) from None


def _locked_error(holder: dict[str, Any]) -> StateLockedError:
    what = holder.get("what")
    pid = holder.get("pid")
    started = holder.get("started")
    doing = _doing(what) if isinstance(what, str) and what else "working on"
    details = []
    if type(pid) is int:
        details.append(f"pid {pid}")
    if isinstance(started, int | float) and not isinstance(started, bool):
        fmt = "%H:%M" if time.time() - started < 20 * 3600 else "%Y-%m-%d %H:%M"
        details.append("started " + time.strftime(fmt, time.localtime(started)))
    suffix = f" ({', '.join(details)})" if details else ""
    hint = "wait for it to finish"
    if type(pid) is int:
        hint += f", or stop it (kill {pid}) if it is stuck"
    message = f"another devsync is already {doing} this repository{suffix}"
    return StateLockedError(message, hint=hint)


_VERBS = {"sync": "syncing", "refresh": "refreshing", "base": "building the base of",
          "build": "building", "pull": "pulling into"}


def _doing(what: str) -> str:
    """"syncing" for both "sync" (a command name) and "syncing" (a verb phrase)."""
    if what in _VERBS:
        return _VERBS[what]
    if what.split(" ", 1)[0].endswith("ing"):
        return what
    return f"running `devsync {what}` in"


def _quarantine_if_still_bad(root: str | os.PathLike[str], path: str) -> str:
    """Move a corrupt state file aside, unless a writer is busy (it will replace it anyway)."""
    try:
        with statestore.flocked(statestore.lock_path(root), timeout=0):
            try:
                with open(path, "rb") as f:
                    doc, outcome = statestore.decode(f.read())
            except FileNotFoundError:
                return f"devsync state {path} was unreadable; starting afresh"
            if outcome is None and doc is not None:
                try:
                    RepoState.from_json(doc, os.path.realpath(os.fspath(root)))
                    return f"devsync state {path} was being rewritten; starting afresh"
                except _BadShape:
                    pass
            if outcome == statestore.FUTURE:
                return _future_problem(path)
            moved = statestore.quarantine(path)
    except (statestore.LockBusy, OSError):
        return f"devsync state {path} is unreadable; starting afresh"
    return f"devsync state was unreadable; moved it to {moved} and started afresh"


def _future_problem(path: str) -> str:
    return f"devsync state {path} was written by a newer devsync; leaving it untouched"


def _core(state: RepoState) -> dict[str, Any]:
    doc = state.to_json()
    for volatile in ("check", "registry_checked_at", "updated_at", "version", "root"):
        doc.pop(volatile, None)
    return doc


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _BadShape(what)
    return value


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise _BadShape(key)
    return value


def _opt_num(d: dict[str, Any], key: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadShape(key)
    return float(value)


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadShape(what)
    return list(value)


def _str_map(value: object, what: str) -> dict[str, str]:
    d = _dict(value, what)
    if not all(isinstance(v, str) for v in d.values()):
        raise _BadShape(what)
    return dict(d)
