"""The onboarding checklist and the dashboard's snapshot without an engine: both are
operations now, and the snapshot carries the session's warnings for the TUI to show."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from devsync.errors import InterruptedError_
from devsync.ops.onboarding import CHECK_BLOCKED, CHECK_FAIL, CHECK_WARN, checklist
from devsync.ops.session import Hold
from devsync.ops.snapshot import take_snapshot
from tests.support.teamrepo import git


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVSYNC_NO_REFRESH", "1")
    root = tmp_path / "shop"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    (root / "app").write_text("hello\n")
    (root / ".devsync.toml").write_text("[devsync]\nno_such_setting = 1\n")
    git(root, "add", ".")
    git(root, "-c", "user.name=Ana", "-c", "user.email=ana@example.com", "commit", "-q",
        "-m", "Initial commit")
    return root


def test_checklist_without_an_engine(project: Path) -> None:
    items = {i.key: i for i in checklist(project, threading.Event())}
    assert items["engine"].state == CHECK_FAIL and items["engine"].fix
    assert items["registry"].state == CHECK_WARN  # nothing deployed: no registry to log in to
    assert {items[k].state for k in ("base", "deployed", "local")} == {CHECK_BLOCKED}


def test_a_cancelled_checklist_stops(project: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InterruptedError_):
        checklist(project, cancel)


def test_snapshot_without_an_engine_keeps_the_sessions_warnings(project: Path) -> None:
    hold = Hold()
    snapshot = take_snapshot(project, hold, registry=True, cancel=threading.Event())
    assert snapshot.engine_problem
    assert snapshot.repo.branch == "main" and snapshot.repo.subject == "Initial commit"
    assert snapshot.first_run
    assert any("no_such_setting" in w for w in snapshot.warnings), snapshot.warnings
    assert [s.name for s in snapshot.statuses] == ["app"]
    again = take_snapshot(project, hold, registry=False, cancel=threading.Event())
    assert again.warnings == snapshot.warnings
