"""What one operation needs, opened the same way for every view: the project, its git
repository, the engine (optional for read-only work) and a resolver for images."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from devsync.errors import DevsyncError

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import ImageSpec, Project


def repo_root(start: Path) -> Path:
    """The git work tree containing `start` (fast: no git process); NotARepoError if none."""
    from devsync.model.project import find_repo_root

    return find_repo_root(start)


class Session:
    """Opened from any directory inside the repository; closes the engine and git on exit.

    `warnings` holds what the user should hear but that stops nothing: unknown keys in
    `.devsync.toml`, a corrupt or foreign state file. With `need_engine=False` an engine that
    cannot be reached is not an error: `engine` is None and `engine_problem` says why.

    With a `hold` (a view that opens sessions again and again, as the TUI does on every
    change) the engine connection and the registry's answers are the hold's, kept between
    sessions; closing the session leaves them open.
    """

    def __init__(self, start: Path, *, need_engine: bool, hold: Hold | None = None) -> None:
        from devsync.adapters.resolver import Resolver
        from devsync.adapters.state import problems
        from devsync.model.project import load_project

        self.project: Project = load_project(start)
        self.warnings: list[str] = list(self.project.warnings)
        self.warnings.extend(problems(self.project.root))
        self._git: GitRepo | None = None
        self._hold = hold
        self.engine: Engine | None = None
        self.engine_problem: str | None = None
        insecure = list(self.project.config.insecure_registries)
        if hold is not None:
            self.engine, self.engine_problem = hold.engine()
            if self.engine is None and need_engine:
                raise DevsyncError(self.engine_problem or "the Docker engine is not reachable")
            self.resolver: Resolver = hold.resolver(self.engine, insecure)
            return
        try:
            from devsync.adapters.engine import Engine

            self.engine = Engine.connect()
        except DevsyncError as exc:
            if need_engine:
                raise
            self.engine_problem = exc.message
        self.resolver = Resolver(self.engine, insecure)

    @property
    def git(self) -> GitRepo:
        """The project's repository, opened on first use (NotARepoError if it cannot be).

        Opening it imports GitPython (~0.1 s); a sync starts its pulls before that.
        """
        if self._git is None:
            from devsync.adapters.gitrepo import open_repo

            self._git = open_repo(self.project.root)
        return self._git

    def git_when_asked(self) -> GitRepo:
        """`git`, opened only when something asks it a question: a plan whose every step is
        cached never does, and so never imports GitPython."""
        return cast("GitRepo", _GitWhenAsked(self))

    def images(self, name: str | None) -> list[ImageSpec]:
        return [self.project.image(name)] if name else list(self.project.images)

    def close(self) -> None:
        if self._git is not None:
            self._git.close()
        if self.engine is not None and self._hold is None:
            self.engine.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hold:
    """An engine connection and a resolver kept across sessions (see `Session`): the engine
    is connected once it can be, and pinged at each session (a lost one is said, not kept);
    the resolver keeps what registries said until `forget_remote`
    and forgets what the engine said at every new session."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._resolver: Resolver | None = None
        self._lock = threading.Lock()

    def engine(self) -> tuple[Engine | None, str | None]:
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

    def resolver(self, engine: Engine | None, insecure: list[str]) -> Resolver:
        from devsync.adapters.resolver import Resolver

        resolver = self._resolver
        if resolver is None or resolver.engine is not engine \
                or resolver.insecure_registries != insecure:
            resolver = self._resolver = Resolver(engine, insecure)
        else:
            # A file or git change cannot change what the registry holds: keep its answers
            # (tags, configs, tokens) and forget only what the engine said.
            resolver.forget_local()
        return resolver

    def forget_remote(self) -> None:
        """Ask registries afresh from the next session on."""
        self._resolver = None


class _GitWhenAsked:
    """Stands in for the session's GitRepo until an attribute of it is asked for."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session.git, name)
