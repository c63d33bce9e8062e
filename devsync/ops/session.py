"""What one operation needs, opened the same way for every view: the project, its git
repository, the engine (optional for read-only work) and a resolver for images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from devsync.errors import DevsyncError

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import ImageSpec, Project


class Session:
    """Opened from any directory inside the repository; closes the engine and git on exit.

    `warnings` holds what the user should hear but that stops nothing: unknown keys in
    `.devsync.toml`, a corrupt or foreign state file. With `need_engine=False` an engine that
    cannot be reached is not an error: `engine` is None and `engine_problem` says why.
    """

    def __init__(self, start: Path, *, need_engine: bool) -> None:
        from devsync.adapters.resolver import Resolver
        from devsync.adapters.state import problems
        from devsync.model.project import load_project

        self.project: Project = load_project(start)
        self.warnings: list[str] = list(self.project.warnings)
        self.warnings.extend(problems(self.project.root))
        self._git: GitRepo | None = None
        self.engine: Engine | None = None
        self.engine_problem: str | None = None
        try:
            from devsync.adapters.engine import Engine

            self.engine = Engine.connect()
        except DevsyncError as exc:
            if need_engine:
                raise
            self.engine_problem = exc.message
        self.resolver: Resolver = Resolver(self.engine,
                                           list(self.project.config.insecure_registries))

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
        if self.engine is not None:
            self.engine.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _GitWhenAsked:
    """Stands in for the session's GitRepo until an attribute of it is asked for."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session.git, name)
