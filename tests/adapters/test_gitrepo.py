"""devsync.adapters.gitrepo against real repositories made with the git CLI in tmp_path."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import devsync
from devsync.adapters.gitrepo import (
    CommitInfo,
    GitRepo,
    WorkingChanges,
    git_fingerprint,
    open_repo,
    redact_url,
)
from devsync.errors import DevsyncError, NotARepoError

# Monotonic fake mtimes well in the past: a file written in the same clock tick as the index
# is "racily clean" and makes `git status` rewrite the index, which would blur what the
# fingerprint tests measure. Distinct mtimes also keep git from mistaking edits for no-ops.
_MTIMES = itertools.count(int(time.time()) - 100_000)


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's and the system's git config (and a hook's GIT_DIR) out of the tests."""
    cfg = tmp_path_factory.mktemp("gitcfg") / "gitconfig"
    cfg.write_text("[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n"
                   "[commit]\n\tgpgsign = false\n[advice]\n\tdetachedHead = false\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
                "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE",
                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE"):
        monkeypatch.delenv(var, raising=False)


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def git_rc(cwd: Path, *args: str) -> int:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True).returncode


def init(path: Path, name: str = "Ana Lima", email: str = "ana@example.com") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", name)
    git(path, "config", "user.email", email)
    return path


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    t = next(_MTIMES)
    os.utime(path, (t, t))
    return path


def commit(repo: Path, message: str, files: dict[str, str | bytes] | None = None,
           **env: str) -> str:
    for rel, data in (files or {}).items():
        write(repo / rel, data)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message, env=env)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return init(tmp_path / "repo")


@pytest.fixture
def gr(repo_dir: Path) -> Iterator[GitRepo]:
    commit(repo_dir, "initial", {"README.md": "hi\n"})
    with open_repo(repo_dir) as handle:
        yield handle


# -- opening -----------------------------------------------------------------------------


def test_open_from_subdirectory_or_file_finds_the_root(repo_dir: Path) -> None:
    commit(repo_dir, "c1", {"src/app/main.py": "x\n"})
    for start in (repo_dir, repo_dir / "src", repo_dir / "src/app",
                  repo_dir / "src/app/main.py", str(repo_dir / "src")):
        with open_repo(start) as r:
            assert r.root == repo_dir.resolve()


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotARepoError) as exc:
        open_repo(plain)
    assert exc.value.message == f"not a git repository: {plain}"
    assert exc.value.hint
    assert exc.value.exit_code == 4


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotARepoError, match="not a git repository") as exc:
        open_repo(tmp_path / "nope")
    assert exc.value.hint == "that path does not exist"


def test_bare_repository_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "b.git")
    with pytest.raises(NotARepoError, match="bare repository"):
        open_repo(tmp_path / "b.git")


def test_unborn_branch(repo_dir: Path) -> None:
    write(repo_dir / "new.txt", "n\n")
    with open_repo(repo_dir) as r:
        assert r.branch == "main"
        assert r.head is None
        assert r.head_short is None
        assert r.head_summary is None
        assert r.commits_touching(["new.txt"], None) == []
        assert r.last_commit_for("new.txt") is None
        assert r.last_commits_for(["new.txt"]) == {}
        assert r.resolve("HEAD") is None
        assert r.changes() == WorkingChanges(modified=[], untracked=["new.txt"], deleted=[])
        assert r.file_at("HEAD", "new.txt") is None


def test_detached_head(repo_dir: Path) -> None:
    first = commit(repo_dir, "one", {"a": "1"})
    commit(repo_dir, "two", {"a": "2"})
    git(repo_dir, "checkout", "-q", "--detach", first)
    with open_repo(repo_dir) as r:
        assert r.branch is None
        assert r.head == first
        assert first.startswith(r.head_short or "-")
        summary = r.head_summary
        assert summary is not None and summary.summary == "one"


def test_branch_with_slash(repo_dir: Path) -> None:
    commit(repo_dir, "one", {"a": "1"})
    git(repo_dir, "checkout", "-q", "-b", "feature/x")
    with open_repo(repo_dir) as r:
        assert r.branch == "feature/x"


def test_shallow_clone_and_unknown_since(tmp_path: Path) -> None:
    up = init(tmp_path / "up")
    old = commit(up, "old", {"src/a.txt": "1"})
    commit(up, "mid", {"src/a.txt": "2"})
    new = commit(up, "new", {"src/a.txt": "3"})
    git(tmp_path, "clone", "-q", "--depth", "1", up.resolve().as_uri(), "shallow")
    with open_repo(tmp_path / "shallow") as r:
        assert r.is_shallow
        assert r.head == new
        assert r.resolve(old) is None
        result = r.commits_touching(["src"], old)
        assert result.since_found is False
        assert [c.sha for c in result] == [new]
        assert r.is_ancestor(old, "HEAD") is False
    with open_repo(up) as r:
        assert not r.is_shallow


def test_linked_worktree(repo_dir: Path, tmp_path: Path) -> None:
    commit(repo_dir, "one", {"src/a.txt": "1"})
    wt = tmp_path / "wt"
    git(repo_dir, "worktree", "add", "-q", "-b", "feature", str(wt))
    assert (wt / ".git").is_file()
    sha = commit(wt, "in worktree", {"src/b.txt": "b"})
    write(wt / "src/c.txt", "c")
    with open_repo(wt / "src") as r:
        assert r.root == wt.resolve()
        assert r.branch == "feature"
        assert r.head == sha
        assert [c.summary for c in r.commits_touching(["src"], None)] == ["in worktree", "one"]
        assert r.changes().untracked == ["src/c.txt"]
        assert r.git_dir != r.common_dir
    with open_repo(repo_dir) as main:
        assert main.branch == "main"
        assert main.changes().clean


def test_git_dir_from_a_hook_does_not_redirect_commands(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a = init(tmp_path / "a")
    b = init(tmp_path / "b")
    commit(a, "in a", {"f": "a"})
    sha_b = commit(b, "in b", {"f": "b"})
    monkeypatch.setenv("GIT_DIR", str(a / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(a))
    with open_repo(b) as r:
        assert r.head == sha_b
        summary = r.head_summary
        assert summary is not None and summary.summary == "in b"


def test_garbage_head_is_reported_as_damage(repo_dir: Path) -> None:
    commit(repo_dir, "one", {"a": "1"})
    (repo_dir / ".git/HEAD").write_text("garbage\n")
    with pytest.raises(NotARepoError, match="damaged"):
        open_repo(repo_dir)


def test_broken_config_is_a_clear_error(repo_dir: Path) -> None:
    commit(repo_dir, "one", {"a": "1"})
    (repo_dir / ".git/config").write_text("[core\n")
    with pytest.raises(NotARepoError, match="bad config") as exc:
        open_repo(repo_dir)
    assert exc.value.hint


def test_missing_object_is_a_clear_error(repo_dir: Path) -> None:
    sha = commit(repo_dir, "one", {"a": "1"})
    (repo_dir / ".git/objects" / sha[:2] / sha[2:]).unlink()
    with open_repo(repo_dir) as r:
        assert r.head == sha  # the ref is fine; the object behind it is not
        with pytest.raises(NotARepoError, match=r"git failed in .*bad object"):
            r.head_summary  # noqa: B018
        with pytest.raises(NotARepoError):
            r.changes()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to give the repository to another user")
def test_dubious_ownership_gets_a_safe_directory_hint(repo_dir: Path) -> None:
    commit(repo_dir, "one", {"a": "1"})
    for dirpath, dirnames, filenames in os.walk(repo_dir):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), 65534, 65534)
    os.lchown(repo_dir, 65534, 65534)
    with pytest.raises(NotARepoError, match="dubious ownership") as exc:
        open_repo(repo_dir)
    assert exc.value.hint is not None and "safe.directory" in exc.value.hint


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    pkg_parent = str(Path(devsync.__file__).resolve().parent.parent)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": pkg_parent}, timeout=120)


def test_missing_git_binary_is_a_devsync_error(repo_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_PYTHON")}
    env["PATH"] = str(empty)
    code = (
        "import sys\n"
        "from devsync.errors import DevsyncError\n"
        "from devsync.adapters.gitrepo import open_repo\n"
        "try:\n"
        f"    open_repo({str(repo_dir)!r})\n"
        "except DevsyncError as e:\n"
        "    print(type(e).__name__, '|', e.message, '|', e.hint)\n"
        "    sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    proc = _run_python(code, env)
    assert proc.returncode == 0, proc.stderr
    assert "git is not installed" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_git_binary_vanishing_later_is_a_devsync_error(gr: GitRepo, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DevsyncError, match="git could not be started"):
        gr.changes()
    with pytest.raises(DevsyncError, match="git could not be started"):
        gr.last_commits_for(["README.md"])


def test_importing_gitinfo_does_not_import_gitpython() -> None:
    proc = _run_python(
        "import sys, devsync.adapters.gitrepo\nprint(sorted(m for m in sys.modules "
        "if m == 'git' or m.startswith('git.')))", dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- history -----------------------------------------------------------------------------


@pytest.fixture
def history(repo_dir: Path) -> dict[str, str]:
    """c1 adds src and docs, c2 docs only, c3 src, c4 a weird name under src."""
    shas = {
        "c1": commit(repo_dir, "c1: start", {"src/app.php": "1\n", "docs/readme": "r\n",
                                             "top.txt": "t\n"}),
        "c2": commit(repo_dir, "c2: docs", {"docs/readme": "r2\n"}),
        "c3": commit(repo_dir, "c3: app", {"src/app.php": "2\n"}),
        "c4": commit(repo_dir, "c4: weird", {"src/we ird*ü.txt": "w\n"}),
    }
    git(repo_dir, "tag", "-a", "-m", "deployed", "v1", shas["c2"])
    return shas


def _shas(commits: list[CommitInfo]) -> list[str]:
    return [c.sha for c in commits]


def _sha(info: CommitInfo | None) -> str | None:
    return info.sha if info else None


def test_commits_touching(repo_dir: Path, history: dict[str, str]) -> None:
    h = history
    with open_repo(repo_dir) as r:
        assert _shas(r.commits_touching(["src"], None)) == [h["c4"], h["c3"], h["c1"]]
        assert _shas(r.commits_touching(["src/"], None)) == [h["c4"], h["c3"], h["c1"]]
        assert _shas(r.commits_touching(["./src/app.php"], None)) == [h["c3"], h["c1"]]
        assert _shas(r.commits_touching(["docs", "src/app.php"], h["c1"])) == [
            h["c3"], h["c2"]]
        since_tag = r.commits_touching(["src", "docs"], "v1")
        assert _shas(since_tag) == [h["c4"], h["c3"]] and since_tag.since_found
        assert _shas(r.commits_touching(["."], h["c3"])) == [h["c4"]]
        assert r.commits_touching(["src"], h["c4"]) == []
        # absolute paths inside the work tree are accepted
        assert _shas(r.commits_touching([str(repo_dir / "docs")], None)) == [h["c2"], h["c1"]]
        # names are literal, not globs
        assert r.commits_touching(["src/*.php"], None) == []
        assert _shas(r.commits_touching(["src/we ird*ü.txt"], None)) == [h["c4"]]
        assert r.commits_touching([], None) == []
        assert r.commits_touching(["no/such/path"], None) == []


def test_commits_touching_limit_and_unknown_since(repo_dir: Path,
                                                  history: dict[str, str]) -> None:
    with open_repo(repo_dir) as r:
        limited = r.commits_touching(["src"], None, limit=2)
        assert _shas(limited) == [history["c4"], history["c3"]]
        assert limited.truncated and limited.since_found
        exact = r.commits_touching(["src"], None, limit=3)
        assert len(exact) == 3 and not exact.truncated
        unknown = r.commits_touching(["src"], "0123456789abcdef0123456789abcdef01234567")
        assert unknown.since_found is False
        assert len(unknown) == 3
        assert r.commits_touching(["src"], "release-that-never-was").since_found is False
        assert r.commits_touching(["src"], None).since_found is True


def test_paths_outside_the_repository_are_refused(repo_dir: Path, tmp_path: Path,
                                                  history: dict[str, str]) -> None:
    with open_repo(repo_dir) as r:
        for bad in ("../elsewhere", str(tmp_path / "elsewhere")):
            with pytest.raises(NotARepoError, match="not inside the git repository"):
                r.commits_touching([bad], None)


def test_commit_info_fields(repo_dir: Path) -> None:
    sha = commit(repo_dir, "Fix the thing\n\nLong body\nmore", {"f": "1"},
                 GIT_AUTHOR_NAME="Zoë Ångström", GIT_AUTHOR_EMAIL="zoe@example.org",
                 GIT_AUTHOR_DATE="2024-03-01T12:30:00+02:00")
    with open_repo(repo_dir) as r:
        info = r.head_summary
    assert info is not None
    assert info == CommitInfo(
        sha=sha, short=info.short, author="Zoë Ångström", email="zoe@example.org",
        date=datetime(2024, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        summary="Fix the thing")
    assert sha.startswith(info.short) and len(info.short) >= 7


def test_mailmap_gives_canonical_author(repo_dir: Path) -> None:
    commit(repo_dir, "one", {"f": "1"}, GIT_AUTHOR_NAME="ana", GIT_AUTHOR_EMAIL="old@x.org")
    write(repo_dir / ".mailmap", "Ana Lima <ana@example.com> <old@x.org>\n")
    with open_repo(repo_dir) as r:
        info = r.last_commit_for("f")
    assert info is not None and (info.author, info.email) == ("Ana Lima", "ana@example.com")


def test_last_commit_for_and_batch(repo_dir: Path, history: dict[str, str]) -> None:
    h = history
    with open_repo(repo_dir) as r:
        assert _sha(r.last_commit_for("src/app.php")) == h["c3"]
        assert _sha(r.last_commit_for("docs")) == h["c2"]
        assert _sha(r.last_commit_for("top.txt")) == h["c1"]
        assert r.last_commit_for("missing.txt") is None
        batch = r.last_commits_for(["src/app.php", "docs", "top.txt", "missing.txt",
                                    "src", "./src/app.php", "."])
        assert {k: v.sha for k, v in batch.items()} == {
            "src/app.php": h["c3"], "./src/app.php": h["c3"], "docs": h["c2"],
            "top.txt": h["c1"], "src": h["c4"], ".": h["c4"]}
        assert batch["docs"].author == "Ana Lima"
        assert r.last_commits_for([]) == {}


def test_batch_agrees_with_single_queries_across_merges_and_renames(repo_dir: Path) -> None:
    commit(repo_dir, "base", {"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n",
                              "old.txt": "o\n", "conflict.txt": "base\n"})
    git(repo_dir, "checkout", "-q", "-b", "feature")
    commit(repo_dir, "feature: a", {"a.txt": "a2\n", "conflict.txt": "feature\n"})
    git(repo_dir, "checkout", "-q", "main")
    commit(repo_dir, "main: b", {"b.txt": "b2\n", "conflict.txt": "main\n"})
    git(repo_dir, "mv", "old.txt", "new.txt")
    git(repo_dir, "commit", "-q", "-m", "rename old to new")
    assert git_rc(repo_dir, "merge", "-q", "--no-edit", "feature") != 0
    write(repo_dir / "conflict.txt", "resolved by hand\n")
    git(repo_dir, "add", "conflict.txt")
    git(repo_dir, "commit", "-q", "--no-edit")
    merge = git(repo_dir, "rev-parse", "HEAD").strip()
    paths = ["a.txt", "b.txt", "c.txt", "old.txt", "new.txt", "conflict.txt"]
    with open_repo(repo_dir) as r:
        single = {p: r.last_commit_for(p) for p in paths}
        batch = r.last_commits_for(paths)
    assert {p: c.summary for p, c in single.items() if c and p != "conflict.txt"} == {
        "a.txt": "feature: a", "b.txt": "main: b", "c.txt": "base",
        "old.txt": "rename old to new", "new.txt": "rename old to new"}
    # the hand-made resolution is a change of its own, made by the merge
    assert _sha(single["conflict.txt"]) == merge
    assert batch == {p: c for p, c in single.items() if c}


def test_batch_reads_long_histories(repo_dir: Path) -> None:
    first = commit(repo_dir, "first", {"old/one.txt": "1", "hot.txt": "0"})
    for i in range(60):
        commit(repo_dir, f"hot {i}", {"hot.txt": str(i + 1)})
    with open_repo(repo_dir) as r:
        found = r.last_commits_for(["hot.txt", "old/one.txt", "old"])
        assert found["hot.txt"].summary == "hot 59"
        assert found["old/one.txt"].sha == first == found["old"].sha
        # stopping early must not leave a git process behind or break the next call
        assert r.last_commits_for(["hot.txt"])["hot.txt"].summary == "hot 59"


def test_user_log_config_does_not_change_answers(repo_dir: Path,
                                                 history: dict[str, str]) -> None:
    for key, value in (("log.follow", "true"), ("log.showSignature", "true"),
                       ("log.showRoot", "false"), ("color.ui", "always"),
                       ("diff.renames", "copies"), ("status.showUntrackedFiles", "no"),
                       ("core.quotePath", "true")):
        git(repo_dir, "config", key, value)
    write(repo_dir / "dir/untracked ü.txt", "u")
    with open_repo(repo_dir) as r:
        assert _shas(r.commits_touching(["src/app.php"], None)) == [history["c3"], history["c1"]]
        assert r.last_commits_for(["top.txt"])["top.txt"].sha == history["c1"]
        assert r.changes().untracked == ["dir/untracked ü.txt"]


# -- working changes ---------------------------------------------------------------------


def test_changes_of_every_kind(repo_dir: Path) -> None:
    commit(repo_dir, "base", {
        "src/edit.txt": "e\n", "src/staged.txt": "s\n", "src/gone.txt": "g\n",
        "src/rm.txt": "r\n", "src/from.txt": "same content for the rename\n",
        "src/run.sh": "#!/bin/sh\n", "docs/x.md": "x\n", ".gitignore": "*.log\nbuild/\n",
    })
    write(repo_dir / "src/edit.txt", "edited\n")
    write(repo_dir / "src/staged.txt", "staged\n")
    git(repo_dir, "add", "src/staged.txt")
    (repo_dir / "src/gone.txt").unlink()
    git(repo_dir, "rm", "-q", "src/rm.txt")
    git(repo_dir, "mv", "src/from.txt", "src/to.txt")
    os.chmod(repo_dir / "src/run.sh", 0o755)
    write(repo_dir / "src/added.txt", "a\n")
    git(repo_dir, "add", "src/added.txt")
    write(repo_dir / "src/new dir/ünï cödé.txt", "u\n")
    write(repo_dir / "src/with\nnewline", "n\n")
    write(repo_dir / "src/debug.log", "ignored\n")
    write(repo_dir / "build/out.bin", "ignored\n")
    write(repo_dir / "docs/y.md", "y\n")
    with open_repo(repo_dir) as r:
        ch = r.changes()
        assert ch == WorkingChanges(
            modified=["src/added.txt", "src/edit.txt", "src/run.sh", "src/staged.txt",
                      "src/to.txt"],
            untracked=["docs/y.md", "src/new dir/ünï cödé.txt", "src/with\nnewline"],
            deleted=["src/from.txt", "src/gone.txt", "src/rm.txt"],
        )
        assert not ch.clean
        only_docs = r.changes(["docs"])
        assert only_docs == WorkingChanges(modified=[], untracked=["docs/y.md"], deleted=[])
        assert r.changes(["src/edit.txt", "src/new dir"]) == WorkingChanges(
            modified=["src/edit.txt"], untracked=["src/new dir/ünï cödé.txt"], deleted=[])
        assert r.changes([]).clean


def test_changes_clean_and_conflicts(repo_dir: Path) -> None:
    commit(repo_dir, "base", {"f.txt": "base\n", "g.txt": "g\n"})
    with open_repo(repo_dir) as r:
        assert r.changes().clean
    git(repo_dir, "checkout", "-q", "-b", "other")
    commit(repo_dir, "other", {"f.txt": "other\n"})
    git(repo_dir, "rm", "-q", "g.txt")
    git(repo_dir, "commit", "-q", "-m", "drop g")
    git(repo_dir, "checkout", "-q", "main")
    commit(repo_dir, "mine", {"f.txt": "mine\n", "g.txt": "g2\n"})
    assert git_rc(repo_dir, "merge", "-q", "other") != 0
    with open_repo(repo_dir) as r:
        ch = r.changes()
    assert ch.modified == ["f.txt", "g.txt"]  # both conflicted, both still on disk
    assert ch.deleted == [] and ch.untracked == []


# -- revisions and content ---------------------------------------------------------------


def test_resolve_and_is_ancestor(repo_dir: Path, history: dict[str, str]) -> None:
    h = history
    with open_repo(repo_dir) as r:
        assert r.resolve("HEAD") == h["c4"] == r.head
        assert r.resolve("main") == h["c4"]
        assert r.resolve("v1") == h["c2"]  # annotated tag peeled to its commit
        assert r.resolve("HEAD~2") == h["c2"]
        assert r.resolve(h["c1"][:10]) == h["c1"]
        for bad in ("nope", "", "-h", "--all", "HEAD:top.txt"):
            assert r.resolve(bad) is None
        assert r.is_ancestor(h["c1"], h["c3"])
        assert r.is_ancestor("v1", "HEAD")
        assert not r.is_ancestor(h["c3"], h["c1"])
        assert r.is_ancestor("HEAD", "HEAD")
        assert not r.is_ancestor("nope", "HEAD")


def test_a_full_commit_name_is_asked_of_git_once(repo_dir: Path, history: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    h = history
    with open_repo(repo_dir) as r:
        asked: list[tuple[str, ...]] = []
        original = GitRepo._try_bytes

        def counting(self: GitRepo, cmd: str, *args: str) -> tuple[int, bytes, bytes]:
            asked.append((cmd, *args))
            return original(self, cmd, *args)

        monkeypatch.setattr(GitRepo, "_try_bytes", counting)
        assert r.resolve(h["c1"]) == h["c1"]
        assert r.resolve(h["c1"]) == h["c1"]
        assert len(asked) == 1
        # names that can move (refs, HEAD, abbreviations) are asked every time
        for name in ("HEAD", "HEAD", h["c1"][:10], h["c1"][:10], "main", "main"):
            r.resolve(name)
        assert len(asked) == 7
        # and an object that is not there is asked again (a fetch may bring it)
        missing = "0" * 40
        assert r.resolve(missing) is None and r.resolve(missing) is None
        assert len(asked) == 9


def test_remote_url_never_shows_credentials(gr: GitRepo, repo_dir: Path) -> None:
    assert gr.remote_url() is None
    git(repo_dir, "remote", "add", "origin",
        "https://ana:s3cr3t-t0ken@git.example.com/team/app.git")
    assert gr.remote_url() == "https://git.example.com/team/app.git"
    git(repo_dir, "remote", "set-url", "origin", "https://ghp_TOKEN@git.example.com/x.git")
    assert gr.remote_url() == "https://git.example.com/x.git"
    git(repo_dir, "remote", "set-url", "origin", "git@git.example.com:team/app.git")
    assert gr.remote_url() == "git@git.example.com:team/app.git"
    git(repo_dir, "remote", "add", "upstream", "ssh://git:pw@example.com:2222/app.git")
    assert gr.remote_url("upstream") == "ssh://git@example.com:2222/app.git"
    assert gr.remote_url("nope") is None


@pytest.mark.parametrize(("url", "expected"), [
    ("https://user:tok@host/a.git", "https://host/a.git"),
    ("https://tok@host:8443/a.git?x=1", "https://host:8443/a.git?x=1"),
    ("http://u:p@ss@host/a", "http://host/a"),
    ("https://host/a@b.git", "https://host/a@b.git"),
    ("ssh://git@host/a.git", "ssh://git@host/a.git"),
    ("ssh://git:pw@host/a.git", "ssh://git@host/a.git"),
    ("git+ssh://:pw@host/a.git", "git+ssh://host/a.git"),
    ("git@host:a.git", "git@host:a.git"),
    ("/srv/git/a.git", "/srv/git/a.git"),
    ("file:///srv/git/a.git", "file:///srv/git/a.git"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_file_at(gr: GitRepo, repo_dir: Path) -> None:
    old = commit(repo_dir, "v1", {"data/blob.bin": b"\x00\x01\xff\n\n", "t.txt": "one\n"})
    commit(repo_dir, "v2", {"t.txt": "two\n\n"})
    assert gr.file_at("HEAD", "data/blob.bin") == b"\x00\x01\xff\n\n"
    assert gr.file_at("HEAD", "t.txt") == b"two\n\n"
    assert gr.file_at(old, "t.txt") == b"one\n"
    assert gr.file_at("HEAD~1", "./t.txt") == b"one\n"
    assert gr.file_at("HEAD", str(repo_dir / "t.txt")) == b"two\n\n"
    assert gr.file_at("HEAD", "missing.txt") is None
    assert gr.file_at("HEAD", "data") is None
    assert gr.file_at("no-such-rev", "t.txt") is None
    assert gr.file_at("-p", "t.txt") is None
    assert gr.file_at("HEAD~5", "t.txt") is None


# -- git_fingerprint ---------------------------------------------------------------------


def _settled(root: Path) -> str | None:
    """The fingerprint once `git status` has had its chance to refresh the index.

    A plain `git status` rewrites the index to refresh stat data while any file is "racily
    clean" (modified in the same second as the index was written: this git compares whole
    seconds), and it does so on every call until that second has passed. Instead of sleeping,
    move the work tree's mtimes into the past, as time would; then one warm-up `git status`
    refreshes the index and later ones must leave it, and the fingerprint, alone.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".git"]
            filenames = [f for f in filenames if f != ".git"]
        for name in filenames:
            t = next(_MTIMES)
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
    git(root, "status", "--porcelain")
    fp = git_fingerprint(root)
    git(root, "status", "--porcelain")
    assert git_fingerprint(root) == fp, "a no-op `git status` changed the fingerprint"
    return fp


def test_fingerprint_changes_on_every_git_operation(tmp_path: Path) -> None:
    up = init(tmp_path / "upstream")
    commit(up, "up: base", {"app.txt": "0\n", "lib.txt": "0\n"})
    git(tmp_path, "clone", "-q", str(up), "work")
    work = tmp_path / "work"
    git(work, "config", "user.name", "Ana Lima")
    git(work, "config", "user.email", "ana@example.com")

    def changes(name: str, action: Callable[[], object]) -> None:
        before = _settled(work)
        action()
        # read before settling: settling may rewrite the index, which is not the operation
        after = git_fingerprint(work)
        assert after is not None
        assert after != before, f"fingerprint did not change after: {name}"

    changes("edit + git add", lambda: (write(work / "app.txt", "1\n"),
                                       git(work, "add", "app.txt")))
    changes("commit", lambda: git(work, "commit", "-q", "-m", "c1"))
    changes("commit --amend", lambda: git(work, "commit", "-q", "--amend", "-m", "c1'"))
    changes("checkout -b (new branch, same commit)",
            lambda: git(work, "checkout", "-q", "-b", "topic"))
    changes("commit on topic", lambda: commit(work, "t1", {"lib.txt": "t\n"}))
    changes("branch switch", lambda: git(work, "switch", "-q", "main"))
    changes("checkout detached", lambda: git(work, "checkout", "-q", "HEAD~1"))
    changes("checkout branch", lambda: git(work, "checkout", "-q", "main"))
    changes("stash push", lambda: (write(work / "app.txt", "dirty\n"),
                                   git(work, "stash", "push", "-q")))
    changes("stash push (second)", lambda: (write(work / "lib.txt", "dirty2\n"),
                                            git(work, "stash", "push", "-q")))
    changes("stash drop of an older entry", lambda: git(work, "stash", "drop", "-q",
                                                        "stash@{1}"))
    changes("stash pop", lambda: git(work, "stash", "pop", "-q"))
    changes("git checkout -- file (restore)", lambda: git(work, "checkout", "--", "lib.txt"))
    changes("merge (fast-forward)", lambda: git(work, "merge", "-q", "--ff-only", "topic"))
    git(work, "checkout", "-q", "topic")
    commit(work, "t2", {"topic.txt": "t2\n"})
    git(work, "checkout", "-q", "main")
    commit(work, "m2", {"main.txt": "m2\n"})
    changes("merge (true merge)", lambda: git(work, "merge", "-q", "--no-edit", "topic"))
    changes("reset --hard HEAD~1", lambda: git(work, "reset", "-q", "--hard", "HEAD~1"))
    changes("rebase", lambda: git(work, "rebase", "-q", "topic"))
    commit(up, "up: more", {"up.txt": "u\n"})
    changes("pull", lambda: git(work, "pull", "-q", "--no-rebase", "--no-edit",
                                "origin", "main"))
    # a conflicted merge: the MERGE_HEAD marker appears, then goes with --abort
    commit(up, "up: conflict", {"app.txt": "upstream\n"})
    commit(work, "work: conflict", {"app.txt": "local\n"})
    git(work, "fetch", "-q", "origin")
    changes("merge stopped on a conflict",
            lambda: git_rc(work, "merge", "-q", "origin/main"))
    assert (work / ".git/MERGE_HEAD").exists()
    changes("merge --abort", lambda: git(work, "merge", "--abort"))
    git(work, "checkout", "-q", "-b", "pick", "HEAD~1")
    commit(work, "to pick", {"pick.txt": "p\n"})
    git(work, "checkout", "-q", "main")
    changes("cherry-pick", lambda: git(work, "cherry-pick", "pick"))
    changes("pack-refs", lambda: git(work, "pack-refs", "--all"))
    assert not (work / ".git/refs/heads/main").exists()
    changes("commit with packed refs", lambda: commit(work, "after pack", {"p.txt": "p\n"}))
    changes("stash with packed refs", lambda: (write(work / "p.txt", "dirty\n"),
                                               git(work, "stash", "push", "-q")))


def test_fingerprint_ignores_reads_and_devsync_itself(repo_dir: Path) -> None:
    commit(repo_dir, "one", {"a.txt": "1\n"})
    # freshly written and staged: racily clean, the case where a locking status would
    # rewrite the index
    (repo_dir / "b.txt").write_text("2\n")
    git(repo_dir, "add", "b.txt")
    fp = git_fingerprint(repo_dir)
    assert fp is not None
    with open_repo(repo_dir) as r:
        for _ in range(3):
            r.changes()
            r.head_summary  # noqa: B018
            r.commits_touching(["."], None)
            r.last_commits_for(["a.txt"])
        assert git_fingerprint(repo_dir) == fp
    settled = _settled(repo_dir)
    for cmd in (["log", "--oneline"], ["diff"], ["diff", "--cached"], ["branch"],
                ["rev-parse", "HEAD"], ["stash", "list"], ["show", "--stat"]):
        git(repo_dir, *cmd)
        assert git_fingerprint(repo_dir) == settled, f"`git {' '.join(cmd)}` changed it"
    # editing an unstaged working file is not git state (documented blind spot)
    write(repo_dir / "a.txt", "edited\n")
    assert git_fingerprint(repo_dir) == settled


def test_fingerprint_in_a_linked_worktree(repo_dir: Path, tmp_path: Path) -> None:
    commit(repo_dir, "one", {"a.txt": "1\n"})
    wt = tmp_path / "wt"
    git(repo_dir, "worktree", "add", "-q", "-b", "feature", str(wt))
    before = _settled(wt)
    assert before is not None and before != git_fingerprint(repo_dir)
    commit(wt, "in worktree", {"b.txt": "b\n"})
    after = _settled(wt)
    assert after not in (before, None)
    # work on another branch in the main worktree is none of this worktree's business
    commit(repo_dir, "on main", {"c.txt": "c\n"})
    assert git_fingerprint(wt) == after
    write(wt / "d.txt", "d\n")
    git(wt, "add", "d.txt")
    assert git_fingerprint(wt) != after


def test_fingerprint_of_an_unborn_repository(repo_dir: Path) -> None:
    empty = _settled(repo_dir)
    assert empty is not None
    write(repo_dir / "a.txt", "a\n")
    git(repo_dir, "add", "a.txt")
    staged = _settled(repo_dir)
    assert staged != empty
    git(repo_dir, "commit", "-q", "-m", "first")
    assert _settled(repo_dir) not in (staged, None)


def test_fingerprint_never_raises(tmp_path: Path) -> None:
    assert git_fingerprint(tmp_path / "missing") is None
    (tmp_path / "plain").mkdir()
    assert git_fingerprint(tmp_path / "plain") is None
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    assert git_fingerprint(tmp_path / "bare.git") is None
    bad = tmp_path / "badfile"
    bad.mkdir()
    (bad / ".git").write_text("not a gitdir line\n")
    assert git_fingerprint(bad) is None
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / ".git").write_text("gitdir: /nonexistent/worktrees/x\n")
    assert git_fingerprint(dangling) is None
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / ".git").write_bytes(b"gitdir: \xff\xfe\x00\n")
    assert git_fingerprint(binary) is None


def test_fingerprint_sees_a_packed_branch_change(repo_dir: Path) -> None:
    # With every ref packed there is no loose file to read: only packed-refs tells.
    commit(repo_dir, "one", {"a.txt": "1\n"})
    commit(repo_dir, "two", {"a.txt": "2\n"})
    git(repo_dir, "pack-refs", "--all")
    assert not (repo_dir / ".git/refs/heads/main").exists()
    before = _settled(repo_dir)
    git(repo_dir, "update-ref", "-d", "refs/heads/main")  # HEAD is now an unborn branch
    assert git_fingerprint(repo_dir) != before
