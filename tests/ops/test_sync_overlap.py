"""What `run_sync` does in the background, with fakes: the pulls while the plan is made
(a failed pull matters only if the plan needs its image), and the base's plan while the
engine builds the app. The real engine runs both in tests/test_sync.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from devsync.errors import DevsyncError, RegistryError
from devsync.events import Event, LayerProgress, PullFinished, PullStarted
from devsync.ops import sync

APP, BASE = "reg/app:1.0.0", "reg/app:base-1.0.0"


class FakeEngine:
    def __init__(self, *, base_fails: bool = False) -> None:
        self.base_fails = base_fails

    def has_image(self, ref: str) -> bool:
        return False

    def pull(self, ref: str, *, cancel: Any = None) -> Iterator[Event]:
        yield PullStarted(ref)
        if ref == BASE and self.base_fails:
            raise RegistryError(f"{ref}: manifest unknown")
        yield LayerProgress(ref, "aaa", "Pull complete")
        yield PullFinished(ref, digest="sha256:" + "0" * 64)


def _refs(events: list[Event]) -> list[str]:
    return [e.reference for e in events if isinstance(e, PullStarted | PullFinished)]


def test_the_pulls_events_come_in_order() -> None:
    fetch = sync._Prefetch(FakeEngine(), [APP, BASE], cancel=None)  # type: ignore[arg-type]
    try:
        events = list(fetch.events({APP, BASE}))
    finally:
        fetch.stop()
    assert _refs(events) == [APP, APP, BASE, BASE]


def test_a_failed_base_pull_is_raised_only_when_the_plan_needs_the_base() -> None:
    fetch = sync._Prefetch(FakeEngine(base_fails=True), [APP, BASE], cancel=None)  # type: ignore[arg-type]
    try:
        assert _refs(list(fetch.events({APP}))) == [APP, APP, BASE]
    finally:
        fetch.stop()
    fetch = sync._Prefetch(FakeEngine(base_fails=True), [APP, BASE], cancel=None)  # type: ignore[arg-type]
    try:
        with pytest.raises(RegistryError, match="manifest unknown"):
            list(fetch.events({APP, BASE}))
    finally:
        fetch.stop()


def test_plans_made_ahead_come_back_and_so_do_their_errors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import devsync.ops.plan

    def plan_image(project: object, spec: Any, resolver: object, git: object) -> str:
        if spec.name == "broken":
            raise DevsyncError("Dockerfile.base: does not parse")
        return f"plan of {spec.name}"

    monkeypatch.setattr(devsync.ops.plan, "plan_image", plan_image)
    session = SimpleNamespace(project=None, resolver=None, git=None)
    specs = [SimpleNamespace(name="base"), SimpleNamespace(name="broken")]
    ahead = sync._PlanAhead(session, specs)  # type: ignore[arg-type]
    assert ahead.take(specs[0]) == "plan of base"  # type: ignore[arg-type, comparison-overlap]
    with pytest.raises(DevsyncError, match="does not parse"):
        ahead.take(specs[1])  # type: ignore[arg-type]
    assert ahead.take(SimpleNamespace(name="other")) is None  # type: ignore[arg-type]


class SlowToAnswer(FakeEngine):
    """An engine that takes its time to answer the pull request (resolving the manifest)."""

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer

    def pull(self, ref: str, *, cancel: Any = None) -> Iterator[Event]:
        yield PullStarted(ref)
        self.answer.wait(10)
        yield from list(super().pull(ref))[1:]


def test_the_plan_waits_until_the_engine_took_up_the_pull() -> None:
    import threading

    answer = threading.Event()
    fetch = sync._Prefetch(SlowToAnswer(answer), [APP], cancel=None)  # type: ignore[arg-type]
    try:
        # not answered: the wait gives up after its timeout
        fetch.wait_answered(0.05)
        assert not fetch._answered.is_set()
        answer.set()
        fetch.wait_answered(10)
        assert fetch._answered.is_set()
        assert _refs(list(fetch.events({APP}))) == [APP, APP]
    finally:
        fetch.stop()


def test_nothing_to_pull_or_a_failed_pull_does_not_hold_the_plan() -> None:
    class Present(FakeEngine):
        def has_image(self, ref: str) -> bool:
            return True

    for engine in (Present(), FakeEngine(base_fails=True)):
        fetch = sync._Prefetch(engine, [BASE], cancel=None)  # type: ignore[arg-type]
        try:
            fetch.wait_answered(10)
            assert fetch._answered.is_set()
        finally:
            fetch.stop()


def test_the_labels_take_the_revision_the_sync_already_read() -> None:
    """HEAD is read once per build: for the state's record and the revision label alike."""
    asked: list[str] = []

    class Git:
        @property
        def head(self) -> str:
            asked.append("head")
            return "b" * 40

        def remote_url(self) -> str | None:
            return None

    spec = SimpleNamespace(tag="reg/app:dev")
    labels = sync.oci_labels(None, spec, Git(), revision="a" * 40)  # type: ignore[arg-type]
    assert labels["org.opencontainers.image.revision"] == "a" * 40
    assert asked == []
    assert sync.oci_labels(None, spec, Git())[  # type: ignore[arg-type]
        "org.opencontainers.image.revision"] == "b" * 40
