"""Every operation a view can start is one stream of events that ends in exactly one `Done`,
which words its own "what next": against the real engine and registry, and through the TUI's
services as well as the operations themselves."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from devsync.events import (
    AlreadyInSync,
    Done,
    Event,
    ImageBuilt,
    ImageSynced,
    LogLine,
    Pushed,
    Warning_,
)
from devsync.ops import operations
from devsync.ops.session import Session
from devsync.tui.services import CoreServices
from tests.support.teamrepo import TeamRepo, git, make_team_repo


def ends_in_one_done(events: Iterable[Event]) -> list[Event]:
    seen = list(events)
    assert seen, "an operation says something"
    dones = [e for e in seen if isinstance(e, Done)]
    assert len(dones) == 1 and seen[-1] is dones[0], [type(e).__name__ for e in seen]
    return seen


def test_one_done_keeps_the_last_and_places_the_others() -> None:
    stream = [LogLine("a", "x"), Done(summary="a done"), LogLine("b", "y"),
              Done(summary="b done", details={"n": 1})]
    out = list(operations.one_done(stream, empty="nothing"))
    assert out == [LogLine("a", "x"), ImageSynced("a done"), LogLine("b", "y"),
                   Done(summary="b done", details={"n": 1})]
    assert list(operations.one_done([Warning_("a", "skipped")], empty="nothing")) == [
        Warning_("a", "skipped"), Done(summary="nothing")]
    assert list(operations.one_done([Done(summary="a"), Warning_("b", "skipped")],
                                    empty="nothing"))[-2:] == [
        Warning_("b", "skipped"),
        Done(summary="1 image synced; the warnings above say why not the others")]


@dataclass
class _Plan:
    name: str
    pull_bytes: int


class _Project:
    def image(self, name: str) -> str:
        return name


class _Session:
    project = _Project()


@pytest.mark.parametrize(("ask", "prefetch"), [(True, False), (False, True)])
def test_a_sync_asks_before_a_large_pull_only_when_someone_can_answer(
        monkeypatch: pytest.MonkeyPatch, ask: bool, prefetch: bool) -> None:
    from devsync.ops import policy, sync

    seen: dict[str, object] = {}

    def run_sync(session: object, specs: list[str], *, cancel: object, before: Any,
                 prefetch: bool, only_needed: bool) -> Iterator[Event]:
        seen["prefetch"] = prefetch
        assert not only_needed  # (images named: each is synced, needed or not)
        for name, size in zip(specs, (policy.LARGE_PULL_BYTES, policy.LARGE_PULL_BYTES + 1),
                              strict=True):
            if before(_Plan(name, size)):
                yield Done(summary=f"{name} synced")
            else:
                yield Warning_(name, "skipped")

    monkeypatch.setattr(sync, "run_sync", run_sync)
    questions: list[str] = []
    shown: list[str] = []

    def answer(question: str) -> bool:
        questions.append(question)
        return False

    events = list(operations.sync(_Session(), ["small", "large"],  # type: ignore[arg-type]
                                  ask=answer if ask else None,
                                  show_plan=lambda plan: shown.append(plan.name)))
    assert seen["prefetch"] is prefetch and shown == ["small", "large"]
    assert questions == (["pull 210 MB for large?"] if ask else [])
    assert events[-1] == (Done(summary="1 image synced; the warnings above say why not the "
                               "others") if ask else Done(summary="large synced"))


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    return make_team_repo(tmp_path_factory.mktemp("ops"), engine, registry, busybox_image,
                          "opsshop")


@pytest.fixture
def in_team(team: TeamRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[TeamRepo]:
    for key, value in team.engine.env().items():
        if key.startswith("DOCKER"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVSYNC_NO_REFRESH", "1")
    git(team.path, "checkout", "-q", "--", ".")
    yield team


def test_every_operation_ends_in_one_done(in_team: TeamRepo) -> None:
    team = in_team
    team.forget_local_images()
    with Session(team.path, need_engine=True) as session:
        # every image: the base's end is an ImageSynced, the app's the one Done
        events = ends_in_one_done(operations.sync(session))
        assert any(isinstance(e, ImageSynced) for e in events)
    with Session(team.path, need_engine=True) as session:
        events = ends_in_one_done(operations.base_build(session, push=True))
        pushed = [e.reference for e in events if isinstance(e, Pushed)]
        done = events[-1]
        assert isinstance(done, Done) and done.summary == f"pushed {pushed[-1]}"
        assert done.next == operations.BUMP_FROM
    with Session(team.path, need_engine=False) as session:
        done = ends_in_one_done(operations.base_bump(session))[-1]
        assert isinstance(done, Done) and done.next == operations.COMMIT_THEN_SYNC
        assert done.details["changed"] == ["Dockerfile"]
    with Session(team.path, need_engine=False) as session:
        done = ends_in_one_done(operations.base_bump(session))[-1]
        assert isinstance(done, Done) and done.summary.startswith("FROM already uses")
        assert done.next is None
    team.commit("Bump the base")
    with Session(team.path, need_engine=True) as session:
        done = ends_in_one_done(operations.publish(session, "1.0.2"))[-1]
        assert isinstance(done, Done) and done.summary == "published 1.0.2"


def test_a_plain_sync_leaves_what_is_in_sync_alone(in_team: TeamRepo) -> None:
    """`devsync sync` with no image takes what `policy.needs_sync` takes, as the TUI's `s`
    does: an image in sync is said, not pulled or built again; a named image is synced."""
    team = in_team
    team.forget_local_images()
    with Session(team.path, need_engine=True) as session:
        ends_in_one_done(operations.sync(session))
    with Session(team.path, need_engine=True) as session:
        events = ends_in_one_done(operations.sync(session))
    assert sorted(e.image for e in events if isinstance(e, AlreadyInSync)) == ["app", "base"]
    assert [type(e) for e in events] == [AlreadyInSync, AlreadyInSync, Done], events
    assert events[-1] == Done(summary="every image is in sync: nothing to sync")
    index = team.path / "src" / "index.php"
    index.write_text("<?php echo 'edited';\n")
    try:
        with Session(team.path, need_engine=True) as session:
            events = ends_in_one_done(operations.sync(session))
        assert [e.image for e in events if isinstance(e, AlreadyInSync)] == ["base"]
        assert any(isinstance(e, ImageBuilt) and e.image == "app" for e in events), events
        with Session(team.path, need_engine=True) as session:  # named: synced all the same
            events = ends_in_one_done(operations.sync(session, ["app"]))
        assert not any(isinstance(e, AlreadyInSync) for e in events)
        assert any(isinstance(e, ImageBuilt) for e in events), events
    finally:
        git(team.path, "checkout", "-q", "--", ".")


def test_the_tui_runs_the_same_operations(in_team: TeamRepo) -> None:
    """The TUI's services open one Session per operation, say its warnings first, and end
    where the operation ends."""
    team = in_team
    config = team.path / ".devsync.toml"
    config.write_text("[devsync]\nno_such_setting = 1\n")
    try:
        services = CoreServices(team.path)
        events = ends_in_one_done(services.sync(["app"], threading.Event()))
        assert isinstance(events[0], Warning_) and "no_such_setting" in events[0].message
        ends_in_one_done(services.base_bump(threading.Event()))
    finally:
        config.unlink()
        git(team.path, "checkout", "-q", "--", ".")
