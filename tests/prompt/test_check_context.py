"""`devsync --check` and a teammate's commit under a COPY of a whole directory (`COPY . /app`):
after the `git pull` that brings it, the very next prompt names the file and the commit,
in the words `status` uses; what the `.dockerignore` excludes says nothing.

Real git repositories in tmp_path (a teammate's clone, a bare remote); the state is what a
sync records: the watched files' digests, HEAD, and the build context as git pathspecs
(devsync.ops.status.context_pathspecs, over the `.dockerignore`).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from devsync.adapters import state
from devsync.model.dockerignore import context_pathspecs, read_dockerignore
from devsync.prompt import check
from tests.support.startup import imported_modules

SLOW_OK = 30.0  # deadline for correctness tests (a busy machine must not make them silent)
DOCKERIGNORE = ".git\nvendor/\n*.log\nbuild/\n"


def git(repo: Path, *args: str, author: str = "Ana") -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME=author, GIT_AUTHOR_EMAIL=f"{author}@example.com",
               GIT_COMMITTER_NAME=author, GIT_COMMITTER_EMAIL=f"{author}@example.com",
               GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    proc = subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout.strip()


def commit_all(repo: Path, message: str, author: str = "Ana") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, author=author)
    return git(repo, "rev-parse", "--short", "HEAD")


def mark_synced(root: Path) -> None:
    """What a sync of the app records (devsync.ops.recording.record_sync)."""
    head = git(root, "rev-parse", "HEAD")

    def mutate(s: state.RepoState) -> None:
        s.images.clear()
        s.images["app"] = state.ImageRecord(
            name="app", status=state.STATUS_IN_SYNC, synced_revision=head,
            watched={p: hashlib.sha256((root / p).read_bytes()).hexdigest()
                     for p in ("Dockerfile", ".dockerignore")},
            context_pathspecs=context_pathspecs(".", read_dockerignore(root)))

    state.update(root, mutate)


def run(cwd: Path) -> str:
    out = io.StringIO()
    check.run_check(cwd, deadline=SLOW_OK, out=out)
    return out.getvalue().strip()


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVSYNC_NO_REFRESH", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path]:
    """(the developer's synced clone, a teammate's clone), through a bare remote."""
    team = tmp_path / "team"
    team.mkdir()
    git(team, "init", "-q")
    files = {"Dockerfile": "FROM reg/app:base-1.0\nCOPY . /var/www/html\n",
             ".dockerignore": DOCKERIGNORE, "views/site/index.php": "<h1>Welcome</h1>\n",
             "views/layouts/main.php": "<html></html>\n", "vendor/lib.php": "<?php\n",
             "build/Dockerfile": "FROM reg/alpine:3.11\n", "README.md": "# app\n"}
    for rel, text in files.items():
        (team / rel).parent.mkdir(parents=True, exist_ok=True)
        (team / rel).write_text(text)
    commit_all(team, "Initial commit")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(team), str(remote))
    mine, ben = tmp_path / "mine", tmp_path / "ben"
    git(tmp_path, "clone", "-q", str(remote), str(mine))
    git(tmp_path, "clone", "-q", str(remote), str(ben))
    mark_synced(mine)
    past = time.time() - 60  # (stats of files older than 2 s are cached)
    for path in mine.rglob("*"):
        if ".git" not in path.parts and path.is_file():
            os.utime(path, (past, past))
    assert run(mine) == ""
    return mine, ben


def bens_commit(ben: Path, changes: dict[str, str | None], subject: str) -> str:
    for rel, text in changes.items():
        if text is None:
            (ben / rel).unlink()
        else:
            (ben / rel).parent.mkdir(parents=True, exist_ok=True)
            (ben / rel).write_text(text)
    short = commit_all(ben, subject, author="Ben")
    git(ben, "push", "-q", "origin", "main")
    return short


def test_a_teammates_commit_under_copy_dot_reaches_the_next_prompt(
        clones: tuple[Path, Path]) -> None:
    mine, ben = clones
    short = bens_commit(ben, {"views/site/index.php": "<h1>Hello, team</h1>\n"},
                        "New welcome text")
    git(mine, "pull", "-q", "--ff-only")
    line = (f"devsync: app: views/site/index.php changed in {short} by Ben: New welcome text "
            "- run devsync sync")
    assert run(mine) == line
    assert run(mine) == line  # (the next prompt: from the stored answer)
    assert state.load(mine).state.check is not None
    mark_synced(mine)  # a sync
    assert run(mine) == ""


def test_what_the_dockerignore_excludes_says_nothing(clones: tuple[Path, Path]) -> None:
    mine, ben = clones
    bens_commit(ben, {"vendor/lib.php": "<?php // 2\n", "debug.log": "x\n",
                      "build/Dockerfile": "FROM reg/alpine:3.12\n"}, "Not in the context")
    git(mine, "pull", "-q", "--ff-only")
    assert run(mine) == ""
    # an older commit to a file that is sent still is, past a newer one that is not
    short = bens_commit(ben, {"views/layouts/main.php": "<html><body></body></html>\n"},
                        "Layout")
    bens_commit(ben, {"vendor/lib.php": "<?php // 3\n"}, "Vendor again")
    git(mine, "pull", "-q", "--ff-only")
    assert run(mine) == (f"devsync: app: views/layouts/main.php changed in {short} by Ben: "
                         "Layout - run devsync sync")


def test_a_deleted_file_and_an_edit_on_top_of_the_commit(clones: tuple[Path, Path]) -> None:
    mine, ben = clones
    short = bens_commit(ben, {"views/site/index.php": None}, "No index")
    git(mine, "pull", "-q", "--ff-only")
    assert run(mine) == (f"devsync: app: views/site/index.php deleted in {short} by Ben: "
                         "No index - run devsync sync")
    short = bens_commit(ben, {"views/site/index.php": "<h1>Back</h1>\n"}, "Index back")
    git(mine, "pull", "-q", "--ff-only")
    (mine / "views/site/index.php").write_text("<h1>Mine</h1>\n")
    git(mine, "commit", "-q", "--allow-empty", "-m", "touch the fingerprint")
    assert run(mine) == ("devsync: app: views/site/index.php changed (uncommitted) - run "
                         "devsync sync")


def test_the_prompt_with_a_context_runs_git_log_once_and_imports_nothing_heavy(
        clones: tuple[Path, Path]) -> None:
    mine, ben = clones
    bens_commit(ben, {"views/site/index.php": "<h1>Hello</h1>\n"}, "Hello")
    git(mine, "pull", "-q", "--ff-only")
    loaded = imported_modules("from devsync.prompt.check import main; main()", cwd=mine,
                              env=dict(os.environ, DEVSYNC_CHECK_DEADLINE="10"))
    assert not {"subprocess", "json", "hashlib", "threading", "docker", "git",
                "textual"} & {m.split(".")[0] for m in loaded}, loaded
    record = state.load(mine).state.check
    assert record is not None and record.line.startswith(
        "devsync: app: views/site/index.php changed in ")
