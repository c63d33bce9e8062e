"""`devsync --check`: correctness across git operations, safety, deadline, start-up cost.

Real git repositories in tmp_path; state in tmp_path via DEVSYNC_STATE_DIR. In-process calls
use a generous deadline so a busy machine cannot turn a slow answer into silence; the
deadline itself is tested with things that block for ever.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devsync.adapters import state
from devsync.prompt import check, statestore
from tests.support.startup import imported_modules

AUTHOR = "Ana"
SLOW_OK = 30.0  # deadline for correctness tests


def _git_env(author: str = AUTHOR) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME=author, GIT_AUTHOR_EMAIL=f"{author.lower()}@example.com",
        GIT_COMMITTER_NAME=author, GIT_COMMITTER_EMAIL=f"{author.lower()}@example.com",
        GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
    )
    return env


def git(repo: Path, *args: str, author: str = AUTHOR) -> str:
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null", *args],
        cwd=repo, env=_git_env(author), capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout.strip()


def commit_all(repo: Path, message: str, author: str = AUTHOR) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, author=author)
    return git(repo, "rev-parse", "--short", "HEAD")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


IMAGES = {"app": ["Dockerfile", "app.py"], "base": ["Dockerfile.base"]}


def mark_synced(root: Path, images: dict[str, list[str]] = IMAGES,
                lines: dict[str, str] | None = None) -> None:
    """What a sync records: each image's watched inputs with their current content hash."""

    def mutate(s: state.RepoState) -> None:
        s.images.clear()
        for name, paths in images.items():
            s.images[name] = state.ImageRecord(
                name=name, status=state.STATUS_IN_SYNC, line=(lines or {}).get(name, ""),
                watched={p: sha256(root / p) for p in paths},
            )

    state.update(root, mutate)


def run(cwd: Path, *, exit_code: bool = False, deadline: float = SLOW_OK) -> tuple[int, str]:
    out = io.StringIO()
    code = check.run_check(cwd, exit_code=exit_code, deadline=deadline, out=out)
    return code, out.getvalue()


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVSYNC_NO_REFRESH", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    (r / "Dockerfile").write_text("FROM reg/app:base-1.0\nCOPY app.py /app/\n")
    (r / "Dockerfile.base").write_text("FROM reg/busybox:1\nRUN echo base\n")
    (r / "app.py").write_text("print('hello')\n")
    (r / "README.md").write_text("readme\n")
    (r / "src").mkdir()
    commit_all(r, "initial")
    mark_synced(r)
    age(r)
    return r


def age(repo: Path) -> None:
    """Date the work tree's files a minute back: the check does not cache the stat of a file
    modified within the last two seconds (it could change again unseen within the
    filesystem's timestamp granularity)."""
    past = time.time() - 60
    for path in repo.rglob("*"):
        if ".git" not in path.parts and path.is_file():
            os.utime(path, (past, past))


def assert_in_sync(repo: Path) -> None:
    assert run(repo, exit_code=True) == (0, "")


# -- silence where there is nothing to say ----------------------------------------------------


def test_outside_a_git_repository_is_silent(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert run(tmp_path / "plain", exit_code=True) == (0, "")


def test_repository_without_devsync_is_silent_and_writes_nothing(tmp_path: Path) -> None:
    r = tmp_path / "other"
    r.mkdir()
    git(r, "init", "-q")
    (r / "README").write_text("no Dockerfile, no .devsync.toml\n")
    (r / "docker").mkdir()
    (r / "docker" / "Dockerfile").write_text("FROM x\n")  # only the top level is looked at
    commit_all(r, "x")
    assert run(r / ".", exit_code=True) == (0, "")
    assert run(r / "docker", exit_code=True) == (0, "")
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("marker", [".devsync.toml", "Dockerfile", "Dockerfile.base"])
def test_a_project_never_synced_gets_one_nudge(tmp_path: Path, marker: str) -> None:
    """A brand-new clone: no devsync state at all. The first check says so, once per
    repository (the state records it), not at every prompt nor in every new shell."""
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q")
    (r / marker).write_text("[devsync]\nregistry_check_minutes = 5\n" if marker ==
                            ".devsync.toml" else "FROM x\n")
    (r / "src").mkdir()
    assert run(r / "src", exit_code=True) == (1, check.NOT_SYNCED_LINE + "\n")
    assert check.NOT_SYNCED_LINE == "devsync: not synced yet - run devsync"
    assert run(r, exit_code=True) == (0, "")
    # another process (another shell) too
    proc = subprocess.run([sys.executable, "-P", "-c",
                           "from devsync.prompt.check import main; main()"],
                          cwd=r, capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, DEVSYNC_CHECK_DEADLINE="10"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    # what the state keeps of it does not get in the way of devsync's own state
    loaded = state.load(r)
    assert loaded.problem is None and loaded.state.images == {}
    mark_synced(r, {"app": [marker]})
    assert run(r, exit_code=True) == (0, "")


def test_no_nudge_when_it_cannot_be_remembered(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Unwritable state: showing the nudge would show it at every prompt, so it is not."""
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q")
    (r / "Dockerfile").write_text("FROM x\n")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(blocker / "state"))
    assert run(r, exit_code=True) == (0, "")
    assert run(r, exit_code=True) == (0, "")


def test_no_nudge_while_another_devsync_writes_the_state(tmp_path: Path) -> None:
    r = tmp_path / "fresh"
    r.mkdir()
    git(r, "init", "-q")
    (r / "Dockerfile").write_text("FROM x\n")
    with statestore.flocked(statestore.lock_path(r), timeout=None):
        assert run(r, exit_code=True) == (0, "")
    assert run(r, exit_code=True) == (1, check.NOT_SYNCED_LINE + "\n")


def test_in_sync_is_silent_and_the_answer_is_cached(repo: Path) -> None:
    assert_in_sync(repo)
    stored = state.load(repo).state.check
    assert stored is not None and not stored.stale and stored.line == ""
    assert set(stored.stats) == {"Dockerfile", "app.py", "Dockerfile.base", ".devsync.toml"}
    # From a subdirectory, same repository, same answer.
    assert run(repo / "src", exit_code=True) == (0, "")


def test_fast_path_answers_from_the_stored_record(repo: Path) -> None:
    assert_in_sync(repo)
    stored = state.load(repo).state.check
    assert stored is not None and stored.stats["app.py"] == list(_stat(repo / "app.py"))
    path = Path(statestore.state_path(repo))
    doc = json.loads(path.read_text())
    # Same fingerprint and stats, different answer: only the cache can produce this line.
    doc["check"]["line"] = "devsync: cached answer"
    doc["check"]["stale"] = True
    path.write_text(json.dumps(doc))
    assert run(repo, exit_code=True) == (1, "devsync: cached answer\n")
    assert run(repo) == (0, "devsync: cached answer\n")


def test_recently_modified_files_are_not_cached(repo: Path) -> None:
    (repo / "app.py").write_text("print('hello')\n")  # same content, fresh mtime
    assert_in_sync(repo)
    stored = state.load(repo).state.check
    assert stored is not None
    assert stored.stats["app.py"] == [-1, -1, -1]
    assert stored.stats["Dockerfile"] == list(_stat(repo / "Dockerfile"))


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


# -- watched files and git operations ---------------------------------------------------------


def test_uncommitted_edit_of_a_watched_file(repo: Path) -> None:
    assert_in_sync(repo)
    (repo / "app.py").write_text("print('changed')\n")
    expected = "devsync: app: app.py changed (uncommitted) - run devsync sync\n"
    assert run(repo, exit_code=True) == (1, expected)
    assert run(repo) == (0, expected)  # the cached answer, same line
    stored = state.load(repo).state.check
    assert stored is not None and stored.stale


def test_editing_an_unwatched_file_stays_in_sync(repo: Path) -> None:
    assert_in_sync(repo)
    (repo / "README.md").write_text("more docs\n")
    assert_in_sync(repo)
    commit_all(repo, "docs")
    assert_in_sync(repo)


def test_commit_names_commit_and_author(repo: Path) -> None:
    assert_in_sync(repo)
    (repo / "Dockerfile.base").write_text("FROM reg/busybox:1\nRUN echo base v2\n")
    short = commit_all(repo, "bump base", author="Bob")
    assert run(repo, exit_code=True) == (
        1, f"devsync: base: Dockerfile.base changed in {short} by Bob: bump base"
        " - run devsync sync\n")


def test_committed_then_edited_again_is_uncommitted(repo: Path) -> None:
    (repo / "Dockerfile").write_text("FROM reg/app:base-1.1\nCOPY app.py /app/\n")
    commit_all(repo, "bump")
    (repo / "Dockerfile").write_text("FROM reg/app:base-1.2\nCOPY app.py /app/\n")
    assert run(repo) == (0, "devsync: app: Dockerfile changed (uncommitted) - run devsync sync\n")


def test_deleted_watched_file(repo: Path) -> None:
    (repo / "app.py").unlink()
    assert run(repo, exit_code=True) == (
        1, "devsync: app: app.py deleted (uncommitted) - run devsync sync\n")
    short = commit_all(repo, "drop app.py", author="Bob")
    assert run(repo, exit_code=True) == (
        1, f"devsync: app: app.py deleted in {short} by Bob: drop app.py - run devsync sync\n")


def test_several_changes_name_the_first_and_count_the_rest(repo: Path) -> None:
    for name in ("Dockerfile", "app.py", "Dockerfile.base"):
        (repo / name).write_text("changed\n")
    code, out = run(repo, exit_code=True)
    assert code == 1
    assert out == "devsync: app: Dockerfile changed (uncommitted), +2 more - run devsync sync\n"


def test_checkout_of_another_branch_and_back(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "Dockerfile").write_text("FROM reg/app:base-2.0\nCOPY app.py /app/\n")
    short = commit_all(repo, "feature base")
    git(repo, "checkout", "-q", "main")
    assert_in_sync(repo)
    git(repo, "checkout", "-q", "feature")
    assert run(repo, exit_code=True) == (
        1, f"devsync: app: Dockerfile changed in {short} by Ana: feature base - run devsync sync\n")
    git(repo, "checkout", "-q", "main")
    assert_in_sync(repo)


def test_pull_from_a_second_clone(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "fetch", "-q", "origin")
    git(repo, "branch", "-q", "--set-upstream-to=origin/main")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(other))
    (other / "app.py").write_text("print('from bob')\n")
    short = commit_all(other, "bob's change", author="Bob")
    git(other, "push", "-q", "origin", "main")

    assert_in_sync(repo)
    git(repo, "pull", "-q", "--ff-only")
    assert run(repo, exit_code=True) == (
        1, f"devsync: app: app.py changed in {short} by Bob: bob's change - run devsync sync\n")


def test_rebase_onto_a_changed_base(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "README.md").write_text("feature work\n")
    commit_all(repo, "feature")
    git(repo, "checkout", "-q", "main")
    (repo / "Dockerfile.base").write_text("FROM reg/busybox:1\nRUN echo base on main\n")
    short = commit_all(repo, "base on main", author="Bob")
    git(repo, "checkout", "-q", "feature")
    mark_synced(repo)
    assert_in_sync(repo)
    git(repo, "rebase", "-q", "main")
    assert run(repo, exit_code=True) == (
        1, f"devsync: base: Dockerfile.base changed in {short} by Bob: base on main"
        " - run devsync sync\n")


def test_stash_and_pop(repo: Path) -> None:
    (repo / "Dockerfile").write_text("FROM reg/app:base-9\nCOPY app.py /app/\n")
    stale = (1, "devsync: app: Dockerfile changed (uncommitted) - run devsync sync\n")
    assert run(repo, exit_code=True) == stale
    git(repo, "stash", "-q")
    assert_in_sync(repo)
    git(repo, "stash", "pop", "-q")
    assert run(repo, exit_code=True) == stale


def test_git_add_of_a_watched_file_is_still_uncommitted(repo: Path) -> None:
    assert_in_sync(repo)
    (repo / "app.py").write_text("print('staged')\n")
    git(repo, "add", "app.py")
    assert run(repo) == (0, "devsync: app: app.py changed (uncommitted) - run devsync sync\n")


def test_a_new_sync_clears_the_line(repo: Path) -> None:
    (repo / "app.py").write_text("print('v2')\n")
    assert run(repo)[1] != ""
    mark_synced(repo)
    assert_in_sync(repo)


# -- lines stored by sync / refresh ----------------------------------------------------------


def test_stored_image_lines_are_shown(repo: Path) -> None:
    newer = "devsync: app 1.0.8 is deployed, you have 1.0.7 - run devsync sync"
    mark_synced(repo, lines={"app": newer})
    assert run(repo, exit_code=True) == (1, newer + "\n")
    base = "devsync: base 2 is deployed - run devsync sync"
    mark_synced(repo, lines={"app": newer, "base": base})
    assert run(repo, exit_code=True) == (
        1, "devsync: app 1.0.8 is deployed, you have 1.0.7, +1 more - run devsync sync\n")


def test_file_changes_take_precedence_over_stored_lines(repo: Path) -> None:
    mark_synced(repo, lines={"app": "devsync: app 1.0.8 is deployed - run devsync sync"})
    (repo / "app.py").write_text("x\n")
    assert run(repo) == (0, "devsync: app: app.py changed (uncommitted) - run devsync sync\n")


# -- garbage in state ------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"{broken", b"[]", b'{"version": 1, "images": []}',
    b'{"version": 1, "images": {"app": {"watched": {"Dockerfile": 3}}}}',
    b'{"version": 1, "images": {"app": {"watched": {"Dockerfile": "x"}, "line": 7}}}',
])
def test_garbage_state_is_silent(repo: Path, content: bytes) -> None:
    Path(statestore.state_path(repo)).write_bytes(content)
    (repo / "Dockerfile").write_text("changed\n")
    assert run(repo, exit_code=True) == (0, "")


def test_future_state_is_silent_and_untouched(repo: Path) -> None:
    path = Path(statestore.state_path(repo))
    future = b'{"version": 99, "whatever": true}'
    path.write_bytes(future)
    assert run(repo, exit_code=True) == (0, "")
    assert path.read_bytes() == future


def test_a_garbage_cached_record_is_recomputed(repo: Path) -> None:
    path = Path(statestore.state_path(repo))
    doc = json.loads(path.read_text())
    doc["check"] = {"fingerprint": 5, "stats": "no"}
    path.write_text(json.dumps(doc))
    (repo / "app.py").write_text("x\n")
    assert run(repo)[1] == "devsync: app: app.py changed (uncommitted) - run devsync sync\n"


def test_state_lock_busy_skips_the_write(repo: Path) -> None:
    (repo / "app.py").write_text("x\n")
    before = Path(statestore.state_path(repo)).read_bytes()
    with statestore.flocked(statestore.lock_path(repo), timeout=None):
        assert run(repo)[1] == "devsync: app: app.py changed (uncommitted) - run devsync sync\n"
    assert Path(statestore.state_path(repo)).read_bytes() == before


# -- sanitising what comes from the repository ------------------------------------------------


def test_hostile_file_and_author_names_are_cleaned(repo: Path) -> None:
    name = "evil\x1b[2Jname\u202e.txt"
    (repo / name).write_text("v1\n")
    commit_all(repo, "add")
    mark_synced(repo, {"app": [name]})
    (repo / name).write_text("v2\n")
    short = commit_all(repo, "change", author="Mal\x1b]0;pwned\x07lory\nX")
    assert run(repo)[0] == 0
    out = run(repo)[1]
    # git itself drops the newline from an identity; the OSC sequence is ours to remove
    assert out == (f"devsync: app: evilname.txt changed in {short} by MalloryX: change"
                   " - run devsync sync\n")
    assert "\x1b" not in out and "\u202e" not in out and out.count("\n") == 1


# -- deadline ----------------------------------------------------------------------------------


def _check_subprocess(cwd: Path, *args: str, env: dict[str, str] | None = None,
                      ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devsync.prompt.check", *args], cwd=cwd, capture_output=True,
        text=True, timeout=60, env=env if env is not None else dict(os.environ), check=False,
    )


def test_hung_state_file_ends_quietly(repo: Path) -> None:
    # A FIFO stands in for a file on a hung network mount: opening it blocks for ever.
    path = Path(statestore.state_path(repo))
    path.unlink()
    os.mkfifo(path)
    assert run(repo, exit_code=True, deadline=0.2) == (0, "")
    proc = _check_subprocess(repo, "--exit-code")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_hung_git_metadata_ends_quietly(repo: Path) -> None:
    (repo / "app.py").write_text("changed\n")
    head = repo / ".git" / "HEAD"
    head.unlink()
    os.mkfifo(head)
    assert run(repo, exit_code=True, deadline=0.2) == (0, "")
    proc = _check_subprocess(repo, "--exit-code")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_backstop_ends_a_wait_signals_cannot_interrupt(repo: Path, tmp_path: Path) -> None:
    # SIGALRM blocked: the handler can never run, as in a killable-but-uninterruptible read.
    path = Path(statestore.state_path(repo))
    path.unlink()
    os.mkfifo(path)
    script = "import signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM});" \
             "from devsync.prompt.check import main; main(['--exit-code'])"
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_watched_fifo_is_never_opened(repo: Path) -> None:
    (repo / "app.py").unlink()
    os.mkfifo(repo / "app.py")
    assert run(repo, exit_code=True, deadline=SLOW_OK) == (
        1, "devsync: app: app.py changed (uncommitted) - run devsync sync\n")


def test_a_callers_alarm_timer_and_handler_survive(repo: Path) -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 600)
        assert_in_sync(repo)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < left <= 600
        assert signal.getsignal(signal.SIGALRM) is not check._on_alarm
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        deadline = time.monotonic() + 30
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_off_the_main_thread_it_still_answers(repo: Path) -> None:
    (repo / "app.py").write_text("x\n")
    results: list[tuple[int, str]] = []
    t = threading.Thread(target=lambda: results.append(run(repo)))
    t.start()
    t.join()
    assert results == [(0, "devsync: app: app.py changed (uncommitted) - run devsync sync\n")]


def test_stand_alone_entry_point(repo: Path) -> None:
    env = dict(os.environ, DEVSYNC_CHECK_DEADLINE="10")
    proc = _check_subprocess(repo / "src", "--exit-code", env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    (repo / "Dockerfile").write_text("changed\n")
    proc = _check_subprocess(repo, "--exit-code", env=env)
    assert proc.returncode == 1
    assert proc.stdout == "devsync: app: Dockerfile changed (uncommitted) - run devsync sync\n"
    assert proc.stderr == ""
    assert _check_subprocess(repo, env=env).returncode == 0


def test_deleted_working_directory_is_silent(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f"import os; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r});" \
             "from devsync.prompt.check import main; main(['--exit-code'])"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


# -- imports -----------------------------------------------------------------------------------

# What the hook's command (`python -P -c 'from devsync.prompt.check import main; main()'`)
# may import. The fast path: nothing but devsync's prompt modules and a few small C modules
# on top of a bare interpreter (issue 17: no `re`, `enum`, `typing`, `dataclasses`).
_NEVER = ("docker", "git", "textual", "argparse", "platformdirs", "devsync.errors",
          "devsync.events", "devsync.adapters", "devsync.model", "devsync.ops", "devsync.cli")
_NOT_ON_THE_FAST_PATH = ("re", "enum", "typing", "dataclasses", "json", "contextlib", "signal",
                         "collections", "functools", "tomllib", "subprocess", "hashlib",
                         "threading", "pathlib", "datetime", "locale", "fcntl")
_HOOK = "from devsync.prompt.check import main; main()"


def _hook_modules(repo: Path) -> list[str]:
    # (a deadline a loaded machine cannot reach: these tests are about imports, not time)
    return imported_modules(_HOOK, cwd=repo, env=dict(os.environ, DEVSYNC_CHECK_DEADLINE="10"))


def _top(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def test_the_fast_path_imports_only_what_it_needs(repo: Path) -> None:
    assert_in_sync(repo)
    stored = state.load(repo).state.check
    loaded = _hook_modules(repo)
    assert state.load(repo).state.check == stored  # answered from the cached record
    found = sorted(m for m in loaded if _top(m) & {*_NEVER, *_NOT_ON_THE_FAST_PATH})
    assert found == [], loaded
    # and nothing else but devsync's prompt modules and these C modules
    assert {m for m in loaded if not m.startswith("devsync")} <= {
        "os", "stat", "_stat", "posixpath", "genericpath", "os.path", "_collections_abc",
        "zlib", "_sha256", "_sha2", "_json", "_signal", "time", "_thread",
        "__future__"}, loaded


def test_the_slow_path_imports_nothing_heavy(repo: Path) -> None:
    """Hashing, `git log`, a state write; .devsync.toml read with tomllib alone."""
    (repo / ".devsync.toml").write_text("[devsync]\nregistry_check_minutes = 7\n")
    (repo / "Dockerfile").write_text("changed\n")
    commit_all(repo, "change")
    loaded = _hook_modules(repo)
    assert sorted(m for m in loaded if _top(m) & set(_NEVER)) == [], loaded
    # git log without `subprocess`, the answer written without `json`, small files hashed
    # without OpenSSL: each would cost more than the work itself
    # (tomllib, for the changed .devsync.toml, brings re, enum and typing)
    assert not {"subprocess", "json", "hashlib", "threading"} & set(loaded), loaded
    record = state.load(repo).state.check
    assert record is not None and record.line.startswith("devsync: app: Dockerfile changed in ")
    assert record.registry_check_minutes == 7


# -- untrusted repositories ------------------------------------------------------------------


def _evil_script(tmp_path: Path, marker: Path, name: str, then: str = "cat") -> str:
    script = tmp_path / f"evil-{name}"
    script.write_text(f"#!/bin/sh\necho {name} >> {marker}\n{then}\n")
    script.chmod(0o755)
    return str(script)


def _arm(repo: Path, tmp_path: Path, marker: Path) -> None:
    """Every repository-controlled way found for git to run a program, pointed at `marker`."""
    gitdir = repo / ".git"
    settings = {
        "core.fsmonitor": _evil_script(tmp_path, marker, "fsmonitor"),
        "core.pager": _evil_script(tmp_path, marker, "pager"),
        "pager.log": _evil_script(tmp_path, marker, "pagerlog"),
        "log.showSignature": "true",
        "gpg.program": _evil_script(tmp_path, marker, "gpg"),
        "diff.external": _evil_script(tmp_path, marker, "extdiff"),
        "diff.evil.textconv": _evil_script(tmp_path, marker, "textconv"),
        "diff.evil.command": _evil_script(tmp_path, marker, "diffcmd"),
        "filter.evil.clean": _evil_script(tmp_path, marker, "clean"),
        "filter.evil.smudge": _evil_script(tmp_path, marker, "smudge"),
        "core.sshCommand": _evil_script(tmp_path, marker, "ssh", "exit 1"),
        "credential.helper": "!" + _evil_script(tmp_path, marker, "credential"),
        "core.hooksPath": str(gitdir / "hooks"),
        "alias.log": "!" + _evil_script(tmp_path, marker, "alias"),
    }
    for key, value in settings.items():
        git(repo, "config", key, value)
    (gitdir / "info").mkdir(exist_ok=True)
    (gitdir / "info" / "attributes").write_text("* diff=evil filter=evil\n")
    hook = _evil_script(tmp_path, marker, "hook")
    for name in ("pre-commit", "post-checkout", "post-index-change", "reference-transaction",
                 "fsmonitor-watchman", "pre-auto-gc"):
        (gitdir / "hooks").mkdir(exist_ok=True)
        (gitdir / "hooks" / name).write_text(Path(hook).read_text())
        (gitdir / "hooks" / name).chmod(0o755)


def _signed_commit(repo: Path, path: str, content: str) -> str:
    """A commit carrying a (bogus) signature: `git log --show-signature` runs gpg.program."""
    (repo / path).write_text(content)
    git(repo, "add", path)
    tree = git(repo, "write-tree")
    parent = git(repo, "rev-parse", "HEAD")
    body = (f"tree {tree}\nparent {parent}\nauthor Eve <e@x> 1700000000 +0000\n"
            f"committer Eve <e@x> 1700000000 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n"
            f" \n AAAA\n -----END PGP SIGNATURE-----\n\nsigned\n")
    obj = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=repo,
                         input=body, capture_output=True, text=True, check=True).stdout.strip()
    git(repo, "update-ref", "HEAD", obj)
    return git(repo, "rev-parse", "--short", "HEAD")


def test_malicious_repository_config_runs_nothing(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    short = _signed_commit(repo, "Dockerfile", "FROM evil\n")
    _arm(repo, tmp_path, marker)
    # The trap is live: plain git would have run the attacker's gpg.program.
    subprocess.run(["git", "log", "-1", "--raw", "--", "Dockerfile"], cwd=repo,
                   capture_output=True, check=False)
    assert marker.exists() and "gpg" in marker.read_text()
    marker.unlink()

    for _ in range(2):  # slow path, then fast path
        code, out = run(repo, exit_code=True)
        assert (code, out) == (
            1, f"devsync: app: Dockerfile changed in {short} by Eve: signed - run devsync sync\n")
    (repo / "app.py").write_text("uncommitted\n")
    assert run(repo)[1] == "devsync: app: Dockerfile changed in " \
        f"{short} by Eve: signed, +1 more - run devsync sync\n"
    assert not marker.exists(), marker.read_text()


def test_relative_path_entries_cannot_pick_the_repositorys_git(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "Dockerfile.base").write_text("FROM other\n")
    short = commit_all(repo, "base", author="Bob")
    marker = tmp_path / "pwned"
    for where in (repo, repo / "bin"):
        where.mkdir(exist_ok=True)
        (where / "git").write_text(f"#!/bin/sh\ntouch {marker}\n")
        (where / "git").chmod(0o755)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", os.pathsep.join(["", ".", "bin", os.environ["PATH"]]))
    assert run(repo) == (0, f"devsync: base: Dockerfile.base changed in {short} by Bob: base"
                            " - run devsync sync\n")
    assert not marker.exists()


def test_partial_clone_never_fetches(repo: Path, tmp_path: Path) -> None:
    """A partial clone fetches missing objects on demand; its remote (and the ssh command
    used to reach it) come from the repository's own config."""
    (repo / "Dockerfile").write_text("FROM reg/app:base-1.1\nCOPY app.py /app/\n")
    commit_all(repo, "second")
    server = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(server))
    git(server, "config", "uploadpack.allowFilter", "true")
    clone = tmp_path / "partial"
    git(tmp_path, "clone", "-q", "--filter=tree:0", f"file://{server}", str(clone))
    marker = tmp_path / "pwned"
    git(clone, "config", "remote.origin.url", "ssh://attacker.invalid/x")
    git(clone, "config", "core.sshCommand", _evil_script(tmp_path, marker, "ssh", "exit 1"))
    mark_synced(clone)
    (clone / "Dockerfile").write_text("FROM local-edit\n")
    # The trap is live: plain `git log -- path` needs old trees and fetches them.
    subprocess.run(["git", "log", "-1", "--raw", "--", "Dockerfile"], cwd=clone,
                   capture_output=True, check=False, timeout=60)
    assert marker.exists()
    marker.unlink()

    # Without the missing history git cannot say which commit: the line says just that much.
    assert run(clone, exit_code=True) == (
        1, "devsync: app: Dockerfile changed - run devsync sync\n")
    assert not marker.exists()


# -- background registry refresh -------------------------------------------------------------


def _refresh_spy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], list[str]]:
    log = tmp_path / "refreshes"

    def command(root: str) -> list[str]:
        code = f"open({str(log)!r}, 'a').write({root!r} + '\\n')"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(check, "refresh_command", command)
    monkeypatch.delenv("DEVSYNC_NO_REFRESH")

    def started() -> list[str]:
        deadline = time.monotonic() + 30
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return log.read_text().splitlines() if log.exists() else []

    return started


def test_stale_registry_information_starts_one_background_refresh(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _refresh_spy(monkeypatch, tmp_path)
    before = time.time()
    assert_in_sync(repo)
    recorded = state.load(repo).state.registry_checked_at
    assert recorded is not None and recorded >= before
    assert started() == [os.path.realpath(repo)]
    # Recorded before starting: the next prompts do not start another one.
    assert_in_sync(repo)
    (repo / "README.md").write_text("x\n")
    commit_all(repo, "x")
    assert_in_sync(repo)
    assert state.load(repo).state.registry_checked_at == recorded


def test_refresh_interval_comes_from_the_config(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _refresh_spy(monkeypatch, tmp_path)
    (repo / ".devsync.toml").write_text("[devsync]\nregistry_check_minutes = 5\n")
    ten_minutes_ago = time.time() - 600
    state.update(repo, lambda s: setattr(s, "registry_checked_at", ten_minutes_ago))
    assert_in_sync(repo)
    assert started() == [os.path.realpath(repo)]
    assert state.load(repo).state.check.registry_check_minutes == 5  # type: ignore[union-attr]


def test_fresh_registry_information_starts_nothing(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refresh_spy(monkeypatch, tmp_path)
    two_minutes_ago = time.time() - 120
    state.update(repo, lambda s: setattr(s, "registry_checked_at", two_minutes_ago))
    assert_in_sync(repo)
    assert state.load(repo).state.registry_checked_at == two_minutes_ago


def test_refresh_can_be_disabled(repo: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _refresh_spy(monkeypatch, tmp_path)
    monkeypatch.setenv("DEVSYNC_NO_REFRESH", "1")
    assert_in_sync(repo)
    assert state.load(repo).state.registry_checked_at is None


def test_a_hung_daemon_cannot_touch_the_prompt(repo: Path, tmp_path: Path) -> None:
    """The check never talks to the engine: with DOCKER_HOST on a socket that accepts and
    never answers, `devsync --check` (the CLI entry, as the shell runs it) still answers,
    and the socket sees no connection at all."""
    from devsync.devtools.sandbox import silent_socket

    sock_path = tmp_path / "hung.sock"
    (repo / "Dockerfile").write_text("FROM reg/app:base-1.1\nCOPY app.py /app/\n")
    # (a deadline a loaded machine cannot reach: the subject here is the socket)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock_path}", DEVSYNC_CHECK_DEADLINE="5")
    with silent_socket(sock_path) as accepted:
        proc = subprocess.run([sys.executable, "-m", "devsync", "--check", "--exit-code"],
                              cwd=repo, capture_output=True, text=True, timeout=60, env=env)
        connections = len(accepted)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("devsync: app: Dockerfile changed")
    assert connections == 0


def test_one_default_for_the_registry_refresh() -> None:
    """The prompt owns the default (the TUI's schedule imports it from there); the model,
    which may not import the prompt, must agree with it."""
    from devsync.model import config

    assert config.DEFAULT_REGISTRY_CHECK_MINUTES == check.DEFAULT_REGISTRY_CHECK_MINUTES
    assert config.DevsyncConfig().registry_check_minutes == check.DEFAULT_REGISTRY_CHECK_MINUTES
