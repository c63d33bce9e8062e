"""Repository faults: not git, detached HEAD, shallow clone, no commits yet, conflict markers,
a deleted Dockerfile, a symlink out of the context, an unreadable file, 50,000 files.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from tests.support.faultcases import FaultRecorder
from tests.support.faults import (
    StateDir,
    clone,
    devsync,
    devsync_unprivileged,
    expect_error,
    expect_ok,
    git,
    tagged_images,
)
from tests.support.teamrepo import TeamRepo

pytestmark = pytest.mark.engine


def _plan_json(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    expect_ok(out)
    image: dict[str, Any] = json.loads(out.stdout)["images"][-1]
    return image


@pytest.mark.fault("repo-not-git")
def test_not_a_git_repository(fault: FaultRecorder, busybox_image: str,
                              engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY . /app\n")
    state = StateDir(tmp_path / "state")
    before_images = tagged_images(engine)

    out = devsync(project, "plan", engine=engine, state=state.path)
    fault.saw(out)
    expect_error(out, 4, contains="not a git repository")
    assert "  hint: " in out.stderr  # and what to do
    assert fault.intact(state.files() == {} and tagged_images(engine) == before_images)

    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    out = devsync(project, "plan", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("repo-detached-head")
def test_detached_head(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                       tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    state = StateDir(tmp_path / "state")
    before_images = tagged_images(engine)

    out = devsync(repo, "status", engine=engine, state=state.path)
    fault.saw(out)
    expect_ok(out)
    assert "(detached)" in out.stdout.splitlines()[0]
    plan = _plan_json(devsync(repo, "plan", "app", "--json", engine=engine, state=state.path))
    # HEAD~1 is what 1.0.0 was built from: the code layer differs from the latest, 1.0.1
    assert plan["cache_from"][0] == f"{shop.repo}:1.0.1"
    assert fault.intact(state.valid() and tagged_images(engine) == before_images)
    fault.recovered(None, "nothing to recover from: works detached")


@pytest.mark.fault("repo-shallow-clone")
def test_shallow_clone(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                       tmp_path: Path) -> None:
    upstream = clone(shop.path, tmp_path / "upstream")
    (upstream / "src" / "lib.php").write_text("<?php function f() { return 3; }\n")
    git(upstream, "commit", "-q", "-am", "Return 3")
    (upstream / "src" / "new.php").write_text("<?php // new\n")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "Add new.php")
    # the deployed revision (1.0.1's label) is beyond this clone's horizon
    repo = clone(f"file://{upstream}", tmp_path / "repo", "--depth", "1")
    assert (repo / ".git" / "shallow").is_file()
    state = StateDir(tmp_path / "state")
    before_images = tagged_images(engine)

    out = devsync(repo, "plan", "app", engine=engine, state=state.path)
    fault.saw(out)
    expect_ok(out)
    plan = _plan_json(devsync(repo, "plan", "app", "--json", engine=engine, state=state.path))
    copy_all = next(s for s in plan["steps"] if s["instruction"] == "COPY . /var/www/html")
    assert not copy_all["cached"] and copy_all["reason"], copy_all
    fault.saw(out, said=f"(the plan) COPY . /var/www/html: {copy_all['reason']}")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    assert fault.intact(state.valid() and tagged_images(engine) == before_images)
    fault.recovered(None, "nothing to recover from: plans without the old history")


@pytest.mark.fault("repo-no-commits")
def test_no_commits_yet(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                        tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(shop.path, repo, ignore=shutil.ignore_patterns(".git"))
    git(repo, "init", "-q", "-b", "main")  # the files are there, nothing is committed
    state = StateDir(tmp_path / "state")
    before_images = tagged_images(engine)

    out = devsync(repo, "status", engine=engine, state=state.path)
    fault.saw(out)
    expect_ok(out)
    assert "(no commits)" in out.stdout.splitlines()[0]
    plan = _plan_json(devsync(repo, "plan", "app", "--json", engine=engine, state=state.path))
    assert plan["cache_from"][0] == f"{shop.repo}:1.0.1"
    assert fault.intact(state.valid() and tagged_images(engine) == before_images)

    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "First commit")
    out = devsync(repo, "status", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0, "after the first commit too")
    expect_ok(out)


@pytest.mark.fault("repo-conflict-markers")
def test_conflict_markers_in_the_dockerfile(fault: FaultRecorder, shop: TeamRepo,
                                            engine: sandbox.PrivateEngine,
                                            tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    original = (repo / "Dockerfile").read_text()
    git(repo, "checkout", "-q", "-b", "theirs")
    (repo / "Dockerfile").write_text(original.replace('"install ', '"install (optimised) '))
    git(repo, "commit", "-q", "-am", "Optimise the autoloader")
    git(repo, "checkout", "-q", "main")
    (repo / "Dockerfile").write_text(original.replace('"install ', '"install (no scripts) '))
    git(repo, "commit", "-q", "-am", "No scripts")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)
    merge = subprocess.run(["git", "merge", "-q", "theirs"], cwd=repo, capture_output=True)
    assert merge.returncode != 0 and "<<<<<<<" in (repo / "Dockerfile").read_text()

    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.saw(out)
    expect_error(out, 5, contains="Dockerfile:6: unresolved merge conflict marker")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    (repo / "Dockerfile").write_text(
        original.replace('"install ', '"install (optimised, no scripts) '))
    git(repo, "commit", "-q", "-am", "Merge theirs")
    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("repo-dockerfile-deleted")
def test_dockerfile_deleted(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                            tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    (repo / ".devsync.toml").write_text(
        f'[images.app]\ndockerfile = "Dockerfile"\ndeployed = "{shop.repo}"\n'
        f'tag = "{shop.repo}:dev"\n')
    git(repo, "add", ".devsync.toml")
    git(repo, "commit", "-q", "-m", "Configure devsync")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    (repo / "Dockerfile").unlink()
    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    fault.saw(out)
    expect_error(out, 3, contains="images.app.dockerfile: no such file: Dockerfile")
    assert ".devsync.toml:2:" in out.stderr  # the file and line that name it
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)
    check = devsync(repo, "--check", engine=engine, state=state.path)
    assert check.returncode == 0 and "Traceback" not in check.stderr

    git(repo, "checkout", "--", "Dockerfile")
    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("repo-symlink-outside")
def test_symlink_out_of_the_context(fault: FaultRecorder, shop: TeamRepo,
                                    engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "fifo")  # opening it for reading would block devsync forever
    (outside / "secret.txt").write_text("outside-secret-do-not-copy\n")
    (repo / "src" / "escape.php").symlink_to(outside / "fifo")
    (repo / "src" / "secret.txt").symlink_to(outside / "secret.txt")
    (repo / "src" / "shadow").symlink_to("/etc/shadow")
    (repo / "src" / "up").symlink_to("../../..")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    # COPY . sends the links as links, exactly as the docker CLI does
    plan = _plan_json(devsync(repo, "plan", "app", "--json", engine=engine, state=state.path))
    assert any(not s["cached"] for s in plan["steps"])
    # a COPY naming the link: the builder resolves it inside the context, where nothing is
    (repo / "Dockerfile").write_text((repo / "Dockerfile").read_text()
                                     + "COPY src/secret.txt /leak.txt\n")
    out = devsync(repo, "plan", "app", engine=engine, state=state.path)
    fault.saw(out)
    assert "Traceback" not in out.stdout + out.stderr
    assert "outside-secret" not in out.stdout + out.stderr
    if out.returncode != 0:
        expect_error(out, 5, contains="secret.txt")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    git(repo, "checkout", "--", "Dockerfile")
    out = devsync(repo, "sync", "app", "--yes", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0, "sync with the links in the context")
    expect_ok(out)
    run = sandbox.docker_cli(engine, "run", "--rm", "--network", "none", f"{shop.repo}:dev",
                             "sh", "-c", "readlink /var/www/html/src/secret.txt; "
                             "cat /var/www/html/src/secret.txt || true")
    assert run.stdout.splitlines()[0] == str(outside / "secret.txt")
    assert "outside-secret" not in run.stdout


def _unprivileged(repo: Path, *args: str, engine: sandbox.PrivateEngine, state: StateDir
                  ) -> subprocess.CompletedProcess[str]:
    return devsync_unprivileged(repo, *args, engine=engine, state=state.path)


@pytest.mark.fault("repo-unreadable-file")
def test_unreadable_file(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                         tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run devsync without CAP_DAC_OVERRIDE")
    repo = clone(shop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    expect_ok(_unprivileged(repo, "status", engine=engine, state=state))
    before_state, before_images = state.files(), tagged_images(engine)
    secret = repo / "src" / "secret.php"
    secret.write_text("<?php // the developer's own, unreadable\n")
    secret.chmod(0)

    out = _unprivileged(repo, "plan", "app", engine=engine, state=state)
    fault.saw(out)
    expect_error(out, 5, contains="no permission to read 'src/secret.php'")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    secret.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    out = _unprivileged(repo, "plan", "app", engine=engine, state=state)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("repo-50k-files")
def test_fifty_thousand_files(fault: FaultRecorder, shop: TeamRepo,
                              engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    assets = repo / "assets"
    for d in range(250):
        folder = assets / f"d{d:03}"
        folder.mkdir(parents=True)
        for f in range(200):
            (folder / f"f{f:03}.txt").write_bytes(b"%d/%d\n" % (d, f))
    state = StateDir(tmp_path / "state")
    before_images = tagged_images(engine)

    out = devsync(repo, "plan", "app", "--json", engine=engine, state=state.path)
    fault.saw(out, said="(the plan)" if out.returncode == 0 else None)
    plan = _plan_json(out)
    copy_all = next(s for s in plan["steps"] if s["instruction"] == "COPY . /var/www/html")
    assert not copy_all["cached"] and "assets/" in copy_all["reason"], copy_all
    assert fault.intact(tagged_images(engine) == before_images)
    fault.recovered(None, "nothing to recover from: the plan works")
