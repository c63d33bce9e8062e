"""What git knows about the project: branch, HEAD, history of paths, uncommitted changes.

`open_repo` returns a `GitRepo` backed by GitPython, but every question is answered by one
`git` plumbing command with a machine-readable format (never by walking objects in Python),
so answers match what `git` itself says and cost one process each. `import git` happens only
inside `open_repo`: importing this module must stay cheap for `devsync --check`.

`git_fingerprint` is the exception: it reads `.git` directly, costs a few stat/read calls and
never starts a process, for the shell-prompt fast path that must decide in well under a
millisecond whether anything git-related changed since last time.

Commands run with GIT_OPTIONAL_LOCKS=0 so that devsync never takes the index lock behind the
user's back (which could make their own `git commit` fail) and never rewrites the index
(which would change `git_fingerprint` although nothing happened).

A clone may come from someone else (a tarball with its `.git`, a shared checkout), so no
setting of the repository's own config may make these commands start a program: see
`SAFE_GIT_CONFIG` and `_neutralise_filters`.

The pathspecs devsync passes, the parsing of what git prints and the redaction of credentials
from URLs and messages live in `_parse`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devsync.adapters.gitrepo._parse import (
    LOG_FORMAT,
    as_bytes,
    as_list,
    first_error_line,
    match_paths,
    pathspec,
    plausible_rev,
    read_chunks,
    redact_url,
    relative_to,
    split_records,
    too_many,
    under,
)
from devsync.errors import DevsyncError, NotARepoError
from devsync.prompt.fingerprint import git_fingerprint  # re-exported: the prompt's fast path
from devsync.prompt.gitsafe import SAFE_GIT_CONFIG

if TYPE_CHECKING:
    import git

__all__ = [
    "CommitInfo",
    "CommitList",
    "GitRepo",
    "WorkingChanges",
    "git_fingerprint",
    "open_repo",
    "redact_url",
]

# Config pinned on every command so the user's settings cannot change what we parse:
# log.follow rewrites single-path logs, log.showSignature injects gpg output, log.showRoot=false
# hides the root commit's files from --name-only.
# And so that the repository's own .git/config cannot make git run a program (the settings
# devsync.prompt.check neutralises for its `git log`, plus what status and diff can reach):
#   core.fsmonitor=CMD           run by every index-reading command (status, diff)
#   core.hooksPath / hooks       no command here runs hooks; pointed nowhere anyway
#   core.pager / pager.*         only with a terminal on stdout; forced to cat anyway
#   diff.external, textconv      content diffs only (we ask for names); --no-ext-diff too
#   gpg.program + showSignature  signature checks in log output
#   promisor remotes, ssh, creds a lazy fetch of a partial clone's missing object
#   filter.<driver>.clean/process  see _neutralise_filters (driver names are the repo's)

_UNMERGED = frozenset({"DD", "AU", "UD", "UA", "DU", "AA", "UU"})


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    short: str
    author: str
    email: str
    date: datetime  # author date, timezone-aware
    summary: str


class CommitList(list[CommitInfo]):
    """Commits, newest first, plus what the caller needs to word the answer honestly.

    `since_found` is False when the `since` revision is unknown to this clone (a deployed
    commit that was never fetched, or one beyond a shallow clone's horizon): the list then
    covers all reachable history instead of `since..HEAD`. `truncated` is True when more
    commits matched than `limit`.
    """

    def __init__(self, commits: Iterable[CommitInfo] = (), *, since_found: bool = True,
                 truncated: bool = False) -> None:
        super().__init__(commits)
        self.since_found = since_found
        self.truncated = truncated


@dataclass(frozen=True)
class WorkingChanges:
    """Uncommitted state relative to HEAD, repo-relative POSIX paths, each list sorted.

    `modified` holds staged or unstaged modifications, additions, type/mode changes, the new
    side of renames and copies, and conflicted files still on disk. `deleted` holds files
    gone from the index or the work tree, including the old side of renames. A file removed
    with `git rm --cached` but still on disk is in both `deleted` and `untracked`.
    """

    modified: list[str]
    untracked: list[str]
    deleted: list[str]

    @property
    def clean(self) -> bool:
        return not (self.modified or self.untracked or self.deleted)


def open_repo(path: Path | str) -> GitRepo:
    """The work tree containing `path` (any directory or file inside it)."""
    start = Path(path)
    try:
        if not start.exists():
            raise NotARepoError(f"not a git repository: {start}",
                                hint="that path does not exist")
        if not start.is_dir():
            start = start.parent
    except OSError as exc:
        raise NotARepoError(f"not a git repository: {start} ({exc.strerror})") from None
    git = _import_git()
    try:
        repo = git.Repo(os.fspath(start), search_parent_directories=True, expand_vars=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        damaged = _nearest_dotgit(start)
        if damaged is not None:
            raise NotARepoError(
                f"not a git repository: {start} ({damaged} is damaged or incomplete)",
                hint=f"`git status` in {damaged.parent} says what is wrong",
            ) from None
        raise NotARepoError(
            f"not a git repository: {start}",
            hint="run devsync inside a git work tree (or create one with `git init`)",
        ) from None
    except (OSError, ValueError) as exc:
        raise NotARepoError(f"not a git repository: {start} ({exc})",
                            hint="the repository's .git looks damaged") from None
    if repo.bare or repo.working_tree_dir is None:
        repo.close()
        raise NotARepoError(
            f"not a git repository: {start} (it is a bare repository)",
            hint="devsync needs a work tree; run it in a clone that has checked-out files",
        )
    env: dict[str, Any] = {"GIT_OPTIONAL_LOCKS": "0", "GIT_NO_LAZY_FETCH": "1",
                           "GIT_PAGER": "cat", "GIT_EXTERNAL_DIFF": ""}
    if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:
        # Set by git for hooks: without this, commands would act on the hook's repository
        # rather than the one we were asked about.
        env["GIT_DIR"] = repo.git_dir
        env["GIT_WORK_TREE"] = repo.working_tree_dir
    repo.git.update_environment(**env)
    repo.git.set_persistent_git_options(c=list(SAFE_GIT_CONFIG))
    handle = GitRepo(repo, Path(repo.working_tree_dir))
    # Let git itself confirm the repository (ownership checks, readable config, a git binary)
    # so those problems surface here rather than in the middle of a later question.
    try:
        handle.root = Path(handle._run("rev-parse", "--show-toplevel"))
        _neutralise_filters(handle)
    except DevsyncError:
        handle.close()
        raise
    return handle


def _neutralise_filters(handle: GitRepo) -> None:
    """Empty every content filter driver the repository's own config defines.

    `.gitattributes` (committed, so cloned) picks a driver by name and the config gives the
    driver's command; status and diff run a driver's `clean`/`process` command on files whose
    stat changed. Drivers from the user's global or system config (git-lfs) are the user's
    own and stay; a driver the repository defines (also through its includes) gets an empty
    command, which git takes as "no filter", and `required=false`. Reading config runs nothing.
    """
    status, out, _ = handle._try("config", "-z", "--show-scope", "--get-regexp", r"^filter\.")
    if status != 0 or not out:
        return
    drivers: set[str] = set()
    fields = out.split("\0")
    for scope, entry in zip(fields[::2], fields[1::2], strict=False):
        key = entry.split("\n", 1)[0]
        name = key[len("filter."):].rpartition(".")[0]
        if scope in ("local", "worktree") and name:
            drivers.add(name)
    if not drivers:
        return
    extra = [f"filter.{name}.{key}={value}" for name in sorted(drivers)
             for key, value in (("clean", ""), ("smudge", ""), ("process", ""),
                                ("required", "false"))]
    handle._repo.git.set_persistent_git_options(c=[*SAFE_GIT_CONFIG, *extra])


class GitRepo:
    """An open work tree. Not thread-safe to share; open one per thread."""

    def __init__(self, repo: git.Repo, root: Path) -> None:
        self._repo = repo
        self.root = root
        self.git_dir = Path(repo.git_dir)
        self.common_dir = Path(os.path.normpath(repo.common_dir))
        # full object names known to be commits: an object, once there, keeps its name and
        # kind, so asking git again (one process per question) would learn nothing
        self._commits: set[str] = set()

    def __repr__(self) -> str:
        return f"GitRepo({str(self.root)!r})"

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HEAD ---------------------------------------------------------------------------

    @property
    def branch(self) -> str | None:
        """The checked-out branch ("main", "feature/x"), also when it has no commit yet;
        None when HEAD is detached."""
        status, out, _ = self._try("symbolic-ref", "-q", "HEAD")
        if status != 0:
            return None
        return out.removeprefix("refs/heads/")

    @property
    def head(self) -> str | None:
        """Full sha of HEAD, None before the first commit."""
        # Not peeled with ^{commit}: a HEAD whose object is missing is damage to report
        # later (head_summary, log), not an unborn branch.
        status, out, _ = self._try("rev-parse", "-q", "--verify", "HEAD")
        return out if status == 0 and out else None

    @property
    def head_short(self) -> str | None:
        status, out, _ = self._try("rev-parse", "-q", "--verify", "--short", "HEAD")
        return out if status == 0 and out else None

    @property
    def is_shallow(self) -> bool:
        return (self.common_dir / "shallow").is_file()

    @property
    def head_summary(self) -> CommitInfo | None:
        if self.head is None:
            return None
        commits = self._log("-1", "HEAD")
        return commits[0] if commits else None

    # -- history ------------------------------------------------------------------------

    def commits_touching(self, paths: list[str], since: str | None,
                         *, limit: int = 50) -> CommitList:
        """Commits in `since..HEAD` (all of HEAD's history if `since` is None or unknown)
        that changed any of `paths` (repo-relative files or directories), newest first."""
        specs = self._pathspecs(paths)
        since_sha = self.resolve(since) if since is not None else None
        since_found = since is None or since_sha is not None
        if not specs or self.head is None or limit <= 0:
            return CommitList(since_found=since_found)
        rev = f"{since_sha}..HEAD" if since_sha else "HEAD"
        if too_many(specs):
            commits = self._log_filtered(self._wanted(paths), limit + 1, rev)
        else:
            commits = self._log(f"--max-count={limit + 1}", rev, "--", *specs)
        return CommitList(commits[:limit], since_found=since_found,
                          truncated=len(commits) > limit)

    def last_commit_for(self, path: str) -> CommitInfo | None:
        """The commit that last changed `path` (a file or a directory), by git's own
        history simplification (`git log -1 -- path`)."""
        specs = self._pathspecs([path])
        if self.head is None:
            return None
        commits = self._log("-1", "HEAD", "--", *specs)
        return commits[0] if commits else None

    def last_commits_for(self, paths: Iterable[str]) -> dict[str, CommitInfo]:
        """`last_commit_for` for many paths with one `git log`, stopped as soon as every path
        is accounted for. Keys are the paths as given; paths no commit touched are absent.

        One walk over the union of paths can differ from per-path walks only when a merge
        resolved a conflict by taking one side verbatim while the other side also changed
        that path later; the batch then names the later side's commit.
        """
        wanted: dict[str, list[str]] = {}
        for p in as_list(paths):
            wanted.setdefault(self._relpath(p), []).append(p)
        if not wanted or self.head is None:
            return {}
        specs = [pathspec(p) for p in wanted]
        if too_many(specs):
            specs = []  # every commit; the loop below picks the paths
        proc = self._spawn_log("--no-renames", "-c", "--name-only", "HEAD", "--", *specs)
        found: dict[str, CommitInfo] = {}
        popen = proc.proc
        finished = False
        try:
            for record in split_records(read_chunks(popen.stdout)):
                header, _, rest = record.partition(b"\0")
                names = rest.removeprefix(b"\n").split(b"\0")
                hits = match_paths(names, wanted)
                if hits:
                    info = _parse_header(header)
                    for key in hits:
                        for original in wanted.pop(key):
                            found[original] = info
                if not wanted:
                    break
            else:
                finished = True
        finally:
            self._end_stream(popen, finished)
        return found

    # -- work tree ----------------------------------------------------------------------

    def changes(self, paths: list[str] | None = None) -> WorkingChanges:
        """Staged, unstaged and untracked (not ignored) changes, optionally within paths."""
        args = ["--porcelain=v1", "-z", "--untracked-files=all"]
        keep: set[str] | None = None
        if paths is not None:
            specs = self._pathspecs(paths)
            if not specs:
                return WorkingChanges([], [], [])
            if too_many(specs):
                keep = self._wanted(paths)
            else:
                args += ["--", *specs]
        # Not _run: its newline trimming could eat the end of a file name.
        out = self._run_bytes("status", *args).decode("utf-8", "surrogateescape")
        modified: set[str] = set()
        untracked: set[str] = set()
        deleted: set[str] = set()
        fields = iter(out.split("\0"))
        for entry in fields:
            if len(entry) < 4:
                continue
            xy, name = entry[:2], entry[3:]
            if xy == "??":
                untracked.add(name)
            elif xy == "!!":
                continue
            elif xy in _UNMERGED:
                exists = os.path.lexists(self.root / name)
                (modified if exists else deleted).add(name)
            else:
                if xy[0] in "RC":
                    source = next(fields, "")
                    if xy[0] == "R" and source:
                        deleted.add(source)
                (deleted if "D" in xy else modified).add(name)
        if keep is not None:
            modified, untracked, deleted = (under(keep, names)
                                            for names in (modified, untracked, deleted))
        return WorkingChanges(sorted(modified), sorted(untracked), sorted(deleted))

    def changed_since(self, rev: str, paths: list[str]) -> list[str]:
        """Repo-relative files among `paths` that differ between `rev` and the work tree
        (committed or not; untracked files are `changes()`'s business)."""
        specs = self._pathspecs(paths)
        if not specs or self.resolve(rev) is None:
            return []
        many = too_many(specs)
        out = self._run_bytes("diff", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                              "--no-textconv", rev, "--", *([] if many else specs))
        names = {n for n in out.decode("utf-8", "surrogateescape").split("\0") if n}
        return sorted(under(self._wanted(paths), names) if many else names)

    # -- revisions ----------------------------------------------------------------------

    def resolve(self, rev: str) -> str | None:
        """Full sha of the commit `rev` names (branch, tag, sha, `HEAD~2`...), or None."""
        if rev in self._commits:
            return rev
        if not plausible_rev(rev):
            return None
        status, out, _ = self._try("rev-parse", "-q", "--verify", f"{rev}^{{commit}}")
        if status != 0 or not out:
            return None
        if out == rev:
            self._commits.add(rev)
        return out

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether commit `a` is reachable from `b` (a commit is its own ancestor). False
        when either is unknown here (in a shallow clone: unknown beyond its horizon)."""
        sha_a, sha_b = self.resolve(a), self.resolve(b)
        if sha_a is None or sha_b is None:
            return False
        status, _, err = self._try("merge-base", "--is-ancestor", sha_a, sha_b)
        if status in (0, 1):
            return status == 0
        raise self._failure(err)

    def remote_url(self, name: str = "origin") -> str | None:
        """The remote's fetch URL (after `insteadOf` rewriting) with credentials removed."""
        if not plausible_rev(name):
            return None
        status, out, _ = self._try("remote", "get-url", name)
        if status != 0 or not out:
            return None
        return redact_url(out)

    def file_at(self, rev: str, path: str) -> bytes | None:
        """The raw blob of `path` at `rev` (no smudge or eol filters), None when the revision
        or the file does not exist there (or `path` is a directory there)."""
        if not plausible_rev(rev):
            return None
        spec = f"{rev}:{self._relpath(path)}"
        status, data, err = self._try_bytes("cat-file", "blob", spec)
        if status == 0:
            return data
        # Tell "not there" from "broken": only the latter is an error.
        status, kind, _ = self._try("cat-file", "-t", spec)
        if status != 0 or kind != "blob":
            return None
        raise self._failure(err.decode("utf-8", "replace"))

    # -- internals ----------------------------------------------------------------------

    def _relpath(self, path: str | os.PathLike[str]) -> str:
        raw = os.fspath(path)
        if os.path.isabs(raw):
            rel = relative_to(raw, self.root)
            if rel is None:
                raise NotARepoError(f"not inside the git repository at {self.root}: {raw}")
            raw = rel
        norm = posixpath.normpath(raw.replace(os.sep, "/"))
        if norm == ".":
            return ""
        if norm == ".." or norm.startswith("../"):
            raise NotARepoError(f"not inside the git repository at {self.root}: {raw}")
        return norm

    def _pathspecs(self, paths: Iterable[str]) -> list[str]:
        return [pathspec(self._relpath(p)) for p in as_list(paths)]

    def _wanted(self, paths: Iterable[str]) -> set[str]:
        return {self._relpath(p) for p in as_list(paths)}

    def _log_filtered(self, wanted: set[str], limit: int, rev: str) -> list[CommitInfo]:
        """`git log rev -- PATHS` for more paths than a command line holds: every commit in
        `rev` with its changed files (merges: those that differ from every parent, as git's
        history simplification keeps them), filtered here; stops after `limit` matches."""
        keyed = {p: [p] for p in wanted}
        proc = self._spawn_log("--no-renames", "-c", "--name-only", rev)
        popen = proc.proc
        found: list[CommitInfo] = []
        finished = False
        try:
            for record in split_records(read_chunks(popen.stdout)):
                header, _, rest = record.partition(b"\0")
                names = rest.removeprefix(b"\n").split(b"\0")
                if "" in wanted or match_paths(names, keyed):
                    found.append(_parse_header(header))
                    if len(found) >= limit:
                        break
            else:
                finished = True
        finally:
            self._end_stream(popen, finished)
        return found

    def _end_stream(self, popen: Any, finished: bool) -> None:
        """Stop a streamed git command: killed when we stopped reading early (we had what we
        needed), else waited for, and its failure raised."""
        if not finished:
            popen.kill()
        stderr = popen.stderr.read() if finished and popen.stderr else b""
        code = popen.wait()
        for stream in (popen.stdout, popen.stderr):
            if stream:
                stream.close()
        if finished and code != 0:
            raise self._failure(stderr.decode("utf-8", "replace"))

    def _log(self, *args: str) -> list[CommitInfo]:
        out = self._run_bytes("log", "--no-color", "-z", LOG_FORMAT, *args)
        return [_parse_header(rec.partition(b"\0")[0]) for rec in split_records([out])]

    def _spawn_log(self, *args: str) -> Any:
        git = _import_git()
        try:
            return self._repo.git.log("--no-color", "-z", LOG_FORMAT, *args, as_process=True)
        except git.GitCommandNotFound as exc:
            raise _git_missing(exc) from None

    def _run(self, cmd: str, *args: str) -> str:
        status, out, err = self._try(cmd, *args)
        if status != 0:
            raise self._failure(err)
        return out

    def _run_bytes(self, cmd: str, *args: str) -> bytes:
        status, out, err = self._try_bytes(cmd, *args)
        if status != 0:
            raise self._failure(err.decode("utf-8", "replace"))
        return out

    def _try(self, cmd: str, *args: str) -> tuple[int, str, str]:
        status, out, err = self._try_bytes(cmd, *args)
        text = out.decode("utf-8", "surrogateescape").rstrip("\n")
        return status, text, err.decode("utf-8", "replace")

    def _try_bytes(self, cmd: str, *args: str) -> tuple[int, bytes, bytes]:
        git = _import_git()
        method = getattr(self._repo.git, cmd.replace("-", "_"))
        try:
            status, out, err = method(
                *args, with_extended_output=True, with_exceptions=False,
                stdout_as_string=False, strip_newline_in_stdout=False,
            )
        except git.GitCommandNotFound as exc:
            raise _git_missing(exc) from None
        except OSError as exc:
            raise NotARepoError(f"git could not run in {self.root}: {exc}") from None
        return int(status), as_bytes(out), as_bytes(err)

    def _failure(self, stderr: str) -> NotARepoError:
        message = first_error_line(stderr)
        if "dubious ownership" in message:
            return NotARepoError(
                f"git refuses this repository: {message}",
                hint=f"if you trust it: git config --global --add safe.directory {self.root}",
            )
        return NotARepoError(
            f"git failed in {self.root}: {message}",
            hint="the repository may be damaged; `git fsck` says more",
        )


# -- helpers -----------------------------------------------------------------------------


def _import_git() -> Any:
    try:
        import git
    except ImportError as exc:
        # GitPython refuses to import when no git binary is on PATH.
        raise DevsyncError(
            "git is not installed (or not on PATH)",
            hint="install git; devsync needs it to read the repository",
        ) from exc
    return git


def _nearest_dotgit(start: Path) -> Path | None:
    for directory in (start.absolute(), *start.absolute().parents):
        candidate = directory / ".git"
        if os.path.lexists(candidate):
            return candidate
    return None


def _git_missing(exc: Exception) -> DevsyncError:
    return DevsyncError(f"git could not be started: {exc}",
                        hint="install git; devsync needs it to read the repository")


def _parse_header(header: bytes) -> CommitInfo:
    sha, short, author, email, date, summary = header.decode("utf-8", "replace").split(
        "\x1f", 5)
    return CommitInfo(sha=sha, short=short, author=author, email=email,
                      date=datetime.fromisoformat(date), summary=summary)
