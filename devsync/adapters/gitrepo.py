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
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devsync.errors import DevsyncError, NotARepoError
from devsync.prompt.fingerprint import git_fingerprint  # re-exported: the prompt's fast path
from devsync.prompt.gitsafe import SAFE_GIT_CONFIG

__all__ = ["CommitInfo", "CommitList", "GitRepo", "WorkingChanges", "git_fingerprint",
           "open_repo"]

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

# Past this many bytes of pathspecs (a `COPY .` of 50,000 files) one command line would hit
# the kernel's argument limit (E2BIG): ask about everything and filter here instead.
_MAX_PATHSPEC_BYTES = 64 * 1024

# %x1e starts a record, %x1f separates fields; the summary goes last so that an odd
# character in it cannot shift the other fields.
_LOG_FORMAT = "--format=%x1e%H%x1f%h%x1f%aN%x1f%aE%x1f%aI%x1f%s"
_RECORD_START = re.compile(rb"^[0-9a-f]{40}(?:[0-9a-f]{24})?\x1f")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
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
        if _too_many(specs):
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
        for p in _as_list(paths):
            wanted.setdefault(self._relpath(p), []).append(p)
        if not wanted or self.head is None:
            return {}
        specs = [_pathspec(p) for p in wanted]
        if _too_many(specs):
            specs = []  # every commit; the loop below picks the paths
        proc = self._spawn_log("--no-renames", "-c", "--name-only", "HEAD", "--", *specs)
        found: dict[str, CommitInfo] = {}
        popen = proc.proc
        finished = False
        try:
            for record in _split_records(_read_chunks(popen.stdout)):
                header, _, rest = record.partition(b"\0")
                names = rest.removeprefix(b"\n").split(b"\0")
                hits = _match_paths(names, wanted)
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
            if _too_many(specs):
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
            modified, untracked, deleted = (_under(keep, names)
                                            for names in (modified, untracked, deleted))
        return WorkingChanges(sorted(modified), sorted(untracked), sorted(deleted))

    def changed_since(self, rev: str, paths: list[str]) -> list[str]:
        """Repo-relative files among `paths` that differ between `rev` and the work tree
        (committed or not; untracked files are `changes()`'s business)."""
        specs = self._pathspecs(paths)
        if not specs or self.resolve(rev) is None:
            return []
        many = _too_many(specs)
        out = self._run_bytes("diff", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                              "--no-textconv", rev, "--", *([] if many else specs))
        names = {n for n in out.decode("utf-8", "surrogateescape").split("\0") if n}
        return sorted(_under(self._wanted(paths), names) if many else names)

    # -- revisions ----------------------------------------------------------------------

    def resolve(self, rev: str) -> str | None:
        """Full sha of the commit `rev` names (branch, tag, sha, `HEAD~2`...), or None."""
        if rev in self._commits:
            return rev
        if not _plausible_rev(rev):
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
        if not _plausible_rev(name):
            return None
        status, out, _ = self._try("remote", "get-url", name)
        if status != 0 or not out:
            return None
        return redact_url(out)

    def file_at(self, rev: str, path: str) -> bytes | None:
        """The raw blob of `path` at `rev` (no smudge or eol filters), None when the revision
        or the file does not exist there (or `path` is a directory there)."""
        if not _plausible_rev(rev):
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
            rel = _relative_to(raw, self.root)
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
        return [_pathspec(self._relpath(p)) for p in _as_list(paths)]

    def _wanted(self, paths: Iterable[str]) -> set[str]:
        return {self._relpath(p) for p in _as_list(paths)}

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
            for record in _split_records(_read_chunks(popen.stdout)):
                header, _, rest = record.partition(b"\0")
                names = rest.removeprefix(b"\n").split(b"\0")
                if "" in wanted or _match_paths(names, keyed):
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
        out = self._run_bytes("log", "--no-color", "-z", _LOG_FORMAT, *args)
        return [_parse_header(rec.partition(b"\0")[0]) for rec in _split_records([out])]

    def _spawn_log(self, *args: str) -> Any:
        git = _import_git()
        try:
            return self._repo.git.log("--no-color", "-z", _LOG_FORMAT, *args, as_process=True)
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
        return int(status), _as_bytes(out), _as_bytes(err)

    def _failure(self, stderr: str) -> NotARepoError:
        message = _first_error_line(stderr)
        if "dubious ownership" in message:
            return NotARepoError(
                f"git refuses this repository: {message}",
                hint=f"if you trust it: git config --global --add safe.directory {self.root}",
            )
        return NotARepoError(
            f"git failed in {self.root}: {message}",
            hint="the repository may be damaged; `git fsck` says more",
        )


# -- parsing helpers -----------------------------------------------------------------------


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


def _as_list(paths: Iterable[str]) -> list[str]:
    # A lone string would otherwise be taken one character at a time.
    return [paths] if isinstance(paths, str) else list(paths)


def _nearest_dotgit(start: Path) -> Path | None:
    for directory in (start.absolute(), *start.absolute().parents):
        candidate = directory / ".git"
        if os.path.lexists(candidate):
            return candidate
    return None


def _as_bytes(value: str | bytes | None) -> bytes:
    # GitPython decodes stderr even when asked for bytes on stdout.
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return value or b""


def _git_missing(exc: Exception) -> DevsyncError:
    return DevsyncError(f"git could not be started: {exc}",
                        hint="install git; devsync needs it to read the repository")


def _first_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:")):
            return redact_text(ln)
    return redact_text(lines[0]) if lines else "unknown error"


def _too_many(specs: list[str]) -> bool:
    return sum(len(s) + 1 for s in specs) > _MAX_PATHSPEC_BYTES


def _under(wanted: set[str], names: Iterable[str]) -> set[str]:
    """The names that are one of `wanted` or inside one of them ("" is the whole tree)."""
    if "" in wanted:
        return set(names)
    out = set()
    for name in names:
        probe = name
        while probe:
            if probe in wanted:
                out.add(name)
                break
            probe = probe.rpartition("/")[0]
    return out


def _pathspec(rel: str) -> str:
    # top: relative to the root whatever the cwd; literal: `*` or `?` in a name is a name.
    return f":(top,literal){rel}"


def _plausible_rev(rev: str) -> bool:
    # A leading "-" would be read as an option.
    return bool(rev) and not rev.startswith("-") and "\0" not in rev and "\n" not in rev


def _relative_to(path: str, root: Path) -> str | None:
    for base in (os.fspath(root), os.path.realpath(root)):
        for candidate in (path, os.path.join(os.path.realpath(os.path.dirname(path)),
                                              os.path.basename(path))):
            rel = os.path.relpath(candidate, base)
            if rel != ".." and not rel.startswith("../"):
                return rel
    return None


def _read_chunks(stream: Any) -> Iterator[bytes]:
    while True:
        chunk = stream.read1(65536)
        if not chunk:
            return
        yield chunk


def _split_records(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Records of `_LOG_FORMAT` output; a \\x1e inside a summary or a file name does not
    start a record, since what follows it is not a sha and a field separator."""
    pending: bytes | None = None
    tail = b""
    for chunk in chunks:
        pieces = (tail + chunk).split(b"\x1e")
        tail = pieces.pop()
        for piece in pieces:
            if pending is None:
                pending = piece
            elif _RECORD_START.match(piece):
                if pending:
                    yield pending
                pending = piece
            else:
                pending += b"\x1e" + piece
    if pending is None:
        pending = tail
    elif _RECORD_START.match(tail):
        if pending:
            yield pending
        pending = tail
    else:
        pending += b"\x1e" + tail
    if pending:
        yield pending


def _parse_header(header: bytes) -> CommitInfo:
    sha, short, author, email, date, summary = header.decode("utf-8", "replace").split(
        "\x1f", 5)
    return CommitInfo(sha=sha, short=short, author=author, email=email,
                      date=datetime.fromisoformat(date), summary=summary)


def _match_paths(names: list[bytes], wanted: dict[str, list[str]]) -> set[str]:
    hits: set[str] = set()
    for raw in names:
        if not raw:
            continue
        name = raw.decode("utf-8", "surrogateescape")
        while True:
            if name in wanted:
                hits.add(name)
            if not name:
                break
            cut = name.rfind("/")
            name = name[:cut] if cut > 0 else ""
    return hits


def redact_url(url: str) -> str:
    """`url` without credentials: `https://user:token@host/x` -> `https://host/x`.

    For ssh URLs the user name is kept (it is an account such as `git`, not a secret) and
    only a password is dropped; scp-like `git@host:path` and local paths are unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "/?#":
        pos = rest.find(stop)
        if pos != -1:
            end = min(end, pos)
    authority, path = rest[:end], rest[end:]
    at = authority.rfind("@")
    if at == -1:
        return url
    userinfo, host = authority[:at], authority[at + 1:]
    if scheme.lower() in ("ssh", "git+ssh", "ssh+git"):
        user = userinfo.partition(":")[0]
        return f"{scheme}://{user}@{host}{path}" if user else f"{scheme}://{host}{path}"
    return f"{scheme}://{host}{path}"


def redact_text(text: str) -> str:
    """Free text (an error message) with credentials removed from any URL in it."""
    return _URL_USERINFO.sub(r"\1", text)


