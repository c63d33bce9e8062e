"""Errors devsync reports to the user: one clear line each, and a distinct exit code.

Every failure a user can cause or meet (a daemon that is down, a registry that refuses, a
broken Dockerfile) is raised as a `DevsyncError` subclass; the CLI prints `message` (and
`hint` when there is one) and exits with `exit_code`. Anything else is a bug.
"""

from __future__ import annotations


class DevsyncError(Exception):
    """Base of every error devsync reports to the user instead of a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DevsyncError):
    exit_code = 2


class ConfigError(DevsyncError):
    """A `.devsync.toml` that is malformed or names things that do not exist."""

    exit_code = 3


class NotARepoError(DevsyncError):
    exit_code = 4


class DockerfileError(DevsyncError):
    """A Dockerfile that does not parse or that devsync cannot follow."""

    exit_code = 5


class EngineUnavailableError(DevsyncError):
    """The Docker Engine cannot be reached (not running, wrong socket, no permission)."""

    exit_code = 6


class EngineError(DevsyncError):
    """The engine answered but refused (a failed build, a full disk, a failed pull)."""

    exit_code = 7


class RegistryError(DevsyncError):
    """The registry is down, answers errors, or lacks what was asked for."""

    exit_code = 8


class RegistryUnreachableError(RegistryError):
    """The registry cannot be asked at all: not reachable (refused, no answer, no such host)
    or failing (HTTP 5xx). What is already local can still be used: devsync then works from
    the engine's images and says the registry could not be checked."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (or asked for some and there are none)."""

    exit_code = 9


class UnknownBaseError(DevsyncError):
    """A `FROM` image that is neither local nor in its registry."""

    exit_code = 10


class StateLockedError(DevsyncError):
    """Another devsync process holds the lock on this repository's state."""

    exit_code = 11


class StateReadOnlyError(DevsyncError):
    """The state file comes from a newer devsync; overwriting it would lose its data."""

    exit_code = 12


class StateWriteError(DevsyncError):
    """The state directory cannot be written (not a directory, no permission, disk full)."""

    exit_code = 13


class InterruptedError_(DevsyncError):
    """The user pressed Ctrl-C; whatever was done so far is left consistent."""

    exit_code = 130
