"""Everything the TUI asks of the core, behind one small interface.

Screens never touch the project, git, the engine or a registry themselves: they call a
`Services` object from worker threads and render what comes back. `CoreServices` is the real
thing; tests pass fakes with canned data. Every method may block (it runs in a worker) and
raises `DevsyncError` subclasses for anything a user can cause. Nothing here imports Textual.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from devsync.errors import DevsyncError, InterruptedError_, RegistryAuthError, RegistryError

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver
    from devsync.events import Event
    from devsync.model.project import Project
    from devsync.ops.session import Session
    from devsync.ops.status import ImageStatus

# CheckItem.state values
CHECK_OK = "ok"
CHECK_FAIL = "fail"
CHECK_WARN = "warn"
CHECK_BLOCKED = "blocked"  # cannot be checked until an earlier item passes

DEFAULT_REGISTRY_CHECK_MINUTES = 30.0


@dataclass(frozen=True)
class RepoInfo:
    """The repository as the header shows it."""

    root: Path
    branch: str | None  # None: detached HEAD
    head: str | None  # short sha, None before the first commit
    subject: str = ""
    author: str = ""


@dataclass
class Snapshot:
    """One consistent look at the repository and its images."""

    repo: RepoInfo
    statuses: list[ImageStatus]
    engine_problem: str | None = None  # one line when the engine cannot be reached
    first_run: bool = False  # nothing was ever built or synced here: offer the checklist
    registry_check_minutes: float = DEFAULT_REGISTRY_CHECK_MINUTES  # 0: never
    offline_registries: tuple[str, ...] = ()  # registries that could not be asked at all
    insecure_registries: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckItem:
    """One line of the onboarding checklist."""

    key: str  # "engine", "registry", "base", "deployed", "local" (+ ":image" when several)
    title: str
    state: str  # CHECK_OK, CHECK_FAIL, CHECK_WARN or CHECK_BLOCKED
    detail: str = ""
    fix: str = ""  # the exact command or key that fixes it, when it failed


class Services(Protocol):
    """What the TUI needs from the core. All methods may block; call them from workers."""

    @property
    def root(self) -> Path: ...

    def snapshot(self, *, registry: bool, cancel: threading.Event) -> Snapshot:
        """Project, git and every image's status. `registry`: ask the registry afresh rather
        than reuse what an earlier snapshot learned from it."""
        ...

    def checklist(self, cancel: threading.Event) -> list[CheckItem]: ...

    def pulse(self, snapshot: Snapshot) -> str:
        """Whether `snapshot` still holds: devsync.ops.pulse's STILL, LOOK_LOCAL or
        LOOK_REGISTRY (cheap: a ping, an inspect per tag, a `/v2/` per offline registry)."""
        ...

    def sync(self, images: Sequence[str], cancel: threading.Event) -> Iterator[Event]:
        """Sync these images (pull, then build what changed) and record it."""
        ...

    def base_build(self, cancel: threading.Event) -> Iterator[Event]:
        """Build the base image as the next base version and push it."""
        ...

    def base_bump(self, cancel: threading.Event) -> Iterator[Event]:
        """Point the app Dockerfile's FROM at the newest base tag."""
        ...

    def publish(self, version: str, cancel: threading.Event) -> Iterator[Event]: ...

    def watch(self, stop: threading.Event) -> Iterator[set[str]]:
        """Batches of repo-relative paths (under `.git` too) whose change may alter a status;
        returns when `stop` is set."""
        ...


# -- the real thing -------------------------------------------------------------------------


@dataclass
class CoreServices:
    """`Services` backed by devsync's core, the user's engine and registries."""

    start: Path
    _root: Path | None = None
    _engine: Engine | None = None
    _resolver: Resolver | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def root(self) -> Path:
        if self._root is None:
            from devsync.model.project import find_repo_root

            self._root = find_repo_root(self.start)
        return self._root

    # -- status ---------------------------------------------------------------------------

    def snapshot(self, *, registry: bool, cancel: threading.Event) -> Snapshot:
        from devsync.adapters import state as state_mod
        from devsync.adapters.gitrepo import open_repo
        from devsync.model.project import ROLE_APP, load_project
        from devsync.ops.recording import record_statuses
        from devsync.ops.status import collect_statuses

        project = load_project(self.root)
        engine, problem = self._connected()
        resolver = self._resolver_for(project, engine, fresh_remote=registry)
        _check(cancel)
        with open_repo(project.root) as git:
            statuses = collect_statuses(project, resolver, git, engine_problem=problem)
            _check(cancel)
            repo = _repo_info(project.root, git)
            record_statuses(project, statuses, git, registry_checked=registry)
        synced_before = any(rec.synced_at for rec in state_mod.load(project.root).state.images
                            .values())
        built_here = any(s.local_id for s in statuses if s.role == ROLE_APP)
        minutes = float(project.config.registry_check_minutes or 0)
        return Snapshot(repo=repo, statuses=statuses, engine_problem=problem,
                        first_run=not synced_before and not built_here,
                        registry_check_minutes=minutes,
                        offline_registries=tuple(sorted(resolver.unreachable)),
                        insecure_registries=tuple(project.config.insecure_registries))

    def pulse(self, snapshot: Snapshot) -> str:
        from devsync.ops.pulse import look_again, take_pulse

        pulse = take_pulse([s.tag for s in snapshot.statuses], snapshot.offline_registries,
                           snapshot.insecure_registries)
        return look_again(snapshot.statuses, snapshot.engine_problem, pulse)

    def _connected(self) -> tuple[Engine | None, str | None]:
        from devsync.adapters.engine import Engine

        with self._lock:
            if self._engine is not None:
                try:
                    self._engine.ping()
                    return self._engine, None
                except DevsyncError:
                    pass
                # gone since: say so now, and connect afresh when it is back
                self._engine.close()
                self._engine = None
            try:
                self._engine = Engine.connect()
            except DevsyncError as exc:
                return None, exc.message
            return self._engine, None

    def _resolver_for(self, project: Project, engine: Engine | None, *,
                      fresh_remote: bool) -> Resolver:
        from devsync.adapters.resolver import Resolver

        insecure = list(project.config.insecure_registries)
        resolver = self._resolver
        if fresh_remote or resolver is None or resolver.engine is not engine \
                or resolver.insecure_registries != insecure:
            resolver = self._resolver = Resolver(engine, insecure)
        else:
            # A file or git change cannot change what the registry holds: keep its answers
            # (tags, configs, tokens) and forget only what the engine said.
            resolver.forget_local()
        return resolver

    # -- onboarding -----------------------------------------------------------------------

    def checklist(self, cancel: threading.Event) -> list[CheckItem]:
        from devsync.adapters.engine import Engine
        from devsync.model.project import load_project

        project = load_project(self.root)
        items: list[CheckItem] = []
        engine: Engine | None = None
        try:
            engine = Engine.connect()
            items.append(CheckItem("engine", "Docker engine reachable", CHECK_OK,
                                   f"{engine.host} (API {engine.api_version})"))
        except DevsyncError as exc:
            items.append(CheckItem("engine", "Docker engine reachable", CHECK_FAIL,
                                   exc.message, exc.hint or "start Docker, then press r"))
        try:
            _check(cancel)
            items += _registry_checks(project)
            _check(cancel)
            items += _image_checks(project, engine)
        finally:
            if engine is not None:
                engine.close()
        return items

    # -- operations -----------------------------------------------------------------------

    def sync(self, images: Sequence[str], cancel: threading.Event) -> Iterator[Event]:
        from devsync.ops.session import Session
        from devsync.ops.sync import run_sync

        with Session(self.root, need_engine=True) as session:
            specs = [session.project.image(name) for name in images]
            yield from run_sync(session, specs, cancel=cancel)

    def base_build(self, cancel: threading.Event) -> Iterator[Event]:
        from devsync.events import Done, Pushed
        from devsync.ops import base as basework

        with self._session() as (project, engine, resolver, git):
            pushed = ""
            for event in basework.base_build(project, engine=engine, resolver=resolver,
                                             git=git, push=True, cancel=cancel):
                if isinstance(event, Pushed):
                    pushed = event.reference
                yield event
            yield Done(ok=True, summary=f"pushed {pushed}; next: bump FROM (u)" if pushed
                       else "base built")

    def base_bump(self, cancel: threading.Event) -> Iterator[Event]:
        from devsync.events import Done, PhaseStarted
        from devsync.ops import base as basework

        with self._session(need_engine=False) as (project, _engine, resolver, _git):
            yield PhaseStarted("base", "bump")
            _check(cancel)
            result = basework.base_bump(project, resolver)
            if not result.changed:
                yield Done(ok=True, summary=f"FROM already uses {result.new}")
                return
            yield Done(ok=True, summary=f"{', '.join(result.changed)}: {result.old} -> "
                       f"{result.new}; commit it, then sync (s)")

    def publish(self, version: str, cancel: threading.Event) -> Iterator[Event]:
        from devsync.events import Done
        from devsync.ops import base as basework

        with self._session() as (project, engine, resolver, git):
            yield from basework.publish(project, version, engine=engine, resolver=resolver,
                                        git=git, cancel=cancel)
            yield Done(ok=True, summary=f"published {version}")

    def _session(self, *, need_engine: bool = True) -> _Session:
        return _Session(self.root, need_engine=need_engine)

    # -- watching -------------------------------------------------------------------------

    def watch(self, stop: threading.Event) -> Iterator[set[str]]:
        from devsync.adapters.gitrepo import open_repo

        with open_repo(self.root) as git:
            dirs = _watch_dirs(self.root, git)
        yield from watch_paths(self.root, dirs, stop)


class _Session:
    """The core's Session for one operation, as (project, engine, resolver, git)."""

    def __init__(self, root: Path, *, need_engine: bool) -> None:
        self.root = root
        self.need_engine = need_engine
        self._session: Session | None = None

    def __enter__(self) -> tuple[Project, Engine, Resolver, GitRepo]:
        from devsync.ops.session import Session

        session = self._session = Session(self.root, need_engine=self.need_engine)
        # without need_engine the engine may be None; such callers do not use it
        return (session.project, session.engine,  # type: ignore[return-value]
                session.resolver, session.git)

    def __exit__(self, *exc: object) -> None:
        if self._session is not None:
            self._session.close()


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise InterruptedError_("cancelled")


def _repo_info(root: Path, git: GitRepo) -> RepoInfo:
    head = git.head_summary
    return RepoInfo(root=root, branch=git.branch, head=head.short if head else None,
                    subject=head.summary if head else "", author=head.author if head else "")


# -- checklist helpers ----------------------------------------------------------------------


def _registry_checks(project: Project) -> list[CheckItem]:
    from devsync.adapters.dockerconfig import get_credentials
    from devsync.adapters.registry import RegistryClient, RegistryNotFound
    from devsync.adapters.resolver import repository_path
    from devsync.model.versions import registry_of

    repos: dict[str, list[str]] = {}
    for spec in project.images:
        repo = spec.deployed_repository
        if repo:
            repos.setdefault(registry_of(repo), []).append(repo)
    if not repos:
        return [CheckItem("registry", "Registry login", CHECK_WARN,
                          "no deployed image is configured, so there is no registry to log in to",
                          "set images.NAME.deployed in .devsync.toml")]
    items: list[CheckItem] = []
    insecure = list(project.config.insecure_registries)
    for host, names in repos.items():
        key = "registry" if len(repos) == 1 else f"registry:{host}"
        title = f"Registry login ({host})"
        try:
            creds = get_credentials(host)
            client = RegistryClient(host, insecure=host in insecure)
            client.tags(repository_path(names[0]))
        except RegistryNotFound:
            items.append(CheckItem(key, title, CHECK_WARN,
                                   f"{host} answers, but {names[0]} has no image yet",
                                   "publish one from CI (devsync publish VERSION)"))
            continue
        except RegistryAuthError as exc:
            items.append(CheckItem(key, title, CHECK_FAIL, exc.message, f"docker login {host}"))
            continue
        except RegistryError as exc:
            items.append(CheckItem(key, title, CHECK_FAIL, exc.message,
                                   exc.hint or f"check that {host} is reachable from here "
                                   "(VPN, proxy), then press r"))
            continue
        who = (f"logged in as {creds.username}" if creds is not None
               else "answers without a login")
        items.append(CheckItem(key, title, CHECK_OK, f"{host} {who}"))
    return items


def _image_checks(project: Project, engine: Engine | None) -> list[CheckItem]:
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import ROLE_APP, ROLE_BASE

    apps = [s for s in project.images if s.role == ROLE_APP]
    several = len(apps) > 1
    titles = {"base": "Base image pulled", "deployed": "Deployed image pulled",
              "local": "Local image built"}

    def item(kind: str, name: str, state: str, detail: str, fix: str = "") -> CheckItem:
        key = f"{kind}:{name}" if several else kind
        title = f"{titles[kind]} ({name})" if several else titles[kind]
        return CheckItem(key, title, state, detail, fix)

    items: list[CheckItem] = []
    if engine is None:
        for spec in apps:
            for kind in ("base", "deployed", "local"):
                items.append(item(kind, spec.name, CHECK_BLOCKED, "needs the Docker engine"))
        return items
    resolver = Resolver(engine, list(project.config.insecure_registries))
    base_tags = {s.tag for s in project.images if s.role == ROLE_BASE}
    for spec in apps:
        base = spec.base_ref
        if not base or base == "scratch":
            items.append(item("base", spec.name, CHECK_OK, "built FROM scratch: nothing to pull"))
        elif engine.has_image(base):
            items.append(item("base", spec.name, CHECK_OK, f"{base} is here"))
        else:
            fix = f"press s to sync (it pulls the base), or: docker pull {base}"
            if base in base_tags and _remote_missing(resolver, base):
                fix = (f"{base} is not in its registry yet: press b to build and push it "
                       "(devsync base build --push)")
            items.append(item("base", spec.name, CHECK_FAIL, f"{base} is not pulled yet", fix))
        deployed = None
        if spec.deployed:
            try:
                deployed = resolver.latest_deployed(spec.deployed)
            except DevsyncError as exc:
                items.append(item("deployed", spec.name, CHECK_FAIL, exc.message,
                                  exc.hint or "fix the registry login above, then press r"))
                deployed = ""
        if deployed is None:
            items.append(item("deployed", spec.name, CHECK_WARN,
                              "no deployed image to reuse: the first build runs every step",
                              "publish one from CI (devsync publish VERSION)"))
        elif deployed:
            if engine.has_image(deployed):
                items.append(item("deployed", spec.name, CHECK_OK, f"{deployed} is here"))
            else:
                items.append(item("deployed", spec.name, CHECK_FAIL,
                                  f"{deployed} is not pulled yet",
                                  f"press s to sync (it pulls it), or: docker pull {deployed}"))
        local = engine.image(spec.tag)
        if local is not None:
            items.append(item("local", spec.name, CHECK_OK,
                              f"{spec.tag} is built ({local.id[7:19]})"))
        else:
            items.append(item("local", spec.name, CHECK_FAIL, f"{spec.tag} is not built yet",
                              "press s to sync (devsync sync): pull, then build what changed"))
    return items


def _remote_missing(resolver: Resolver, ref: str) -> bool:
    try:
        return resolver.remote(ref) is None
    except DevsyncError:
        return False


# -- watching -------------------------------------------------------------------------------

# Inside a git dir, only these move when a commit, checkout, merge, rebase, stash, pull or
# `git add` happens; objects/ and logs/ churn without changing what any status says.
_GIT_FILES = frozenset({"HEAD", "index", "packed-refs", "ORIG_HEAD", "MERGE_HEAD",
                        "REBASE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "commondir"})
_GIT_PREFIXES = ("refs/heads/", "refs/stash", "refs/worktree/", "rebase-merge/",
                 "rebase-apply/")
_SKIP_DIRS = frozenset({"node_modules", "vendor", ".venv", "venv", "__pycache__", ".tox",
                        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".idea", ".cache"})
_EDITOR_DEBRIS = ("~", ".swp", ".swx", ".swo", ".tmp", ".lock")


def _watch_dirs(root: Path, git: GitRepo) -> list[Path]:
    """The work tree, plus the git dirs when they live elsewhere (linked worktrees)."""
    dirs = [root]
    for d in (git.git_dir, git.common_dir):
        d = Path(os.path.realpath(d))
        if not any(d == x or x in d.parents for x in dirs):
            dirs.append(d)
    return dirs


def wanted_change(path: str, root: Path, git_dirs: Sequence[Path]) -> bool:
    """Whether a change at `path` may alter an image's status (see the module doc)."""
    p = Path(path)
    for gd in git_dirs:
        if p == gd or gd in p.parents:
            rel = p.relative_to(gd).as_posix()
            if rel.endswith(".lock"):
                return False  # git renames X.lock over X: the rename is what counts
            return rel in _GIT_FILES or rel.startswith(_GIT_PREFIXES)
    try:
        parts = p.relative_to(root).parts
    except ValueError:
        return False
    if not parts or parts[0] == ".git" or any(d in _SKIP_DIRS for d in parts[:-1]):
        return False
    name = parts[-1]
    return not (name.endswith(_EDITOR_DEBRIS) or name.startswith(".#") or name == "4913")


def watch_paths(root: Path, dirs: Sequence[Path], stop: threading.Event,
                *, debounce_ms: int = 150) -> Iterator[set[str]]:
    """Repo-relative paths that changed under `dirs`, in debounced batches, until `stop`."""
    from watchfiles import watch

    root = Path(os.path.realpath(root))
    git_dirs = [Path(os.path.realpath(d)) for d in dirs if d != root] + [root / ".git"]

    def wanted(_change: object, path: str) -> bool:
        return wanted_change(os.path.realpath(path) if os.path.islink(path) else path, root,
                             git_dirs)

    for changes in watch(*dirs, watch_filter=wanted, debounce=debounce_ms, step=50,
                         stop_event=stop, raise_interrupt=False, ignore_permission_denied=True,
                         rust_timeout=1000):
        out: set[str] = set()
        for _change, path in changes:
            p = Path(path)
            try:
                out.add(p.relative_to(root).as_posix())
            except ValueError:
                out.add(p.as_posix())
        if out:
            yield out
