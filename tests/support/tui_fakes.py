"""Canned core data and a scriptable `Services` for Pilot and snapshot tests.

Everything is fixed (names, hashes, sizes) so SVG snapshots are stable; nothing here reads a
clock, git, an engine or a registry.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devsync.errors import DevsyncError, InterruptedError_
from devsync.events import (
    Done,
    Event,
    ImageBuilt,
    LayerProgress,
    LogLine,
    PhaseStarted,
    PullFinished,
    PullProgress,
    PullStarted,
    StepFinished,
    StepStarted,
)
from devsync.ops.plan import ImagePlan, PlanStep
from devsync.ops.status import ImageStatus
from devsync.ops.verdict import IN_SYNC, MISSING, STALE, SYNC, Verdict
from devsync.tui.services import (
    CHECK_BLOCKED,
    CHECK_FAIL,
    CHECK_OK,
    CheckItem,
    RepoInfo,
    Snapshot,
)

REG = "registry.example.com/shop/api"
ROOT = Path("/home/ana/src/shop-api")


def commit(short: str, author: str, summary: str) -> dict[str, str]:
    return {"sha": short + "0" * (40 - len(short)), "short": short, "author": author,
            "summary": summary, "date": "2025-11-20T10:00:00+00:00"}


BUMP_PHP = commit("3f2a1c4", "Ana Lima", "bump PHP to 8.3")
GUZZLE = commit("9b1e77d", "Ben Okafor", "require guzzle 7.9")
ROUTES = commit("c0ffee1", "Chen Wu", "add /health route")


def step(line: int, instruction: str, cached: bool, reason: str, kind: str = "run",
         files: Sequence[str] = (), commits: Sequence[dict[str, str]] = ()) -> PlanStep:
    return PlanStep(line=line, instruction=instruction, cached=cached, reason=reason, kind=kind,
                    stage=0, files=list(files), commits=list(commits))


def base_status(state: str = "stale") -> ImageStatus:
    steps = [
        step(1, "FROM debian:bookworm-slim", True, "base debian:bookworm-slim", "from"),
        step(2, "ARG PHP_VERSION=8.3", state != "stale",
             "instruction changed (deployed: ARG PHP_VERSION=8.2)" if state == "stale"
             else f"cached from {REG}:base-1.0.0", "arg"),
        step(3, "RUN apt-get update && apt-get install -y php${PHP_VERSION}-cli "
                "php${PHP_VERSION}-mbstring composer", state != "stale",
             "rebuilds after line 2" if state == "stale" else f"cached from {REG}:base-1.0.0"),
        step(4, "WORKDIR /var/www/html", state != "stale",
             "rebuilds after line 2" if state == "stale" else f"cached from {REG}:base-1.0.0",
             "workdir"),
    ]
    plan = ImagePlan(name="base", role="base", dockerfile="Dockerfile.base", context=".",
                     tag=f"{REG}:base-1.0.0", cache_from=[f"{REG}:base-1.0.0"], steps=steps,
                     deployed=f"{REG}:base-1.0.0", deployed_digest="sha256:" + "b" * 64,
                     deployed_revision="5d4c3b2" + "0" * 33)
    verdict = (Verdict(STALE, "Dockerfile.base changed in 3f2a1c4 by Ana Lima: bump PHP to 8.3",
                       SYNC) if state == STALE
               else Verdict(state, f"{REG}:base-1.0.0 is up to date"))
    return ImageStatus(name="base", role="base", verdict=verdict,
                       tag=f"{REG}:base-1.0.0", local_id="sha256:" + "a" * 64,
                       deployed=f"{REG}:base-1.0.0", deployed_digest="sha256:" + "b" * 64,
                       dockerfile="Dockerfile.base", plan=plan,
                       commits=[BUMP_PHP] if state == "stale" else [])


def app_status(state: str = "stale", summary: str = GUZZLE["summary"]) -> ImageStatus:
    guzzle = dict(GUZZLE, summary=summary)
    stale = state != "in-sync"
    steps = [
        step(1, f"FROM {REG}:base-1.0.0", True, f"base {REG}:base-1.0.0", "from"),
        step(2, "WORKDIR /var/www/html", True, f"cached from {REG}:1.0.7", "workdir"),
        step(3, "COPY composer.json composer.lock ./", not stale,
             f"files changed: composer.json in 9b1e77d by Ben Okafor: {summary}" if stale
             else f"cached from {REG}:1.0.7", "copy",
             files=["composer.json"] if stale else [], commits=[guzzle] if stale else []),
        step(4, "RUN composer install --no-dev --prefer-dist \\\n    --no-interaction",
             not stale, "rebuilds after line 3" if stale else f"cached from {REG}:1.0.7"),
        step(5, "COPY . .", not stale, "rebuilds after line 3" if stale
             else f"cached from {REG}:1.0.7", "copy"),
        step(6, 'CMD ["php", "-S", "0.0.0.0:8080", "-t", "public"]', not stale,
             "rebuilds after line 3" if stale else f"cached from {REG}:1.0.7", "cmd"),
    ]
    plan = ImagePlan(name="app", role="app", dockerfile="Dockerfile", context=".",
                     tag=f"{REG}:dev", cache_from=[f"{REG}:1.0.7", f"{REG}:dev"], steps=steps,
                     deployed=f"{REG}:1.0.7", deployed_digest="sha256:" + "c" * 64,
                     deployed_revision="8e8e8e8" + "0" * 33, base=f"{REG}:base-1.0.0")
    verdicts = {STALE: Verdict(STALE, f"composer.json changed in 9b1e77d by Ben Okafor: {summary}",
                               SYNC),
                MISSING: Verdict(MISSING, f"{REG}:dev is not built here yet", SYNC),
                IN_SYNC: Verdict(IN_SYNC, f"{REG}:dev matches this checkout")}
    return ImageStatus(name="app", role="app", verdict=verdicts[state],
                       tag=f"{REG}:dev",
                       local_id=None if state == "missing" else "sha256:" + "d" * 64,
                       local_revision=None if state == "missing" else "5d4c3b2" + "0" * 33,
                       deployed=f"{REG}:1.0.7", deployed_digest="sha256:" + "c" * 64,
                       dockerfile="Dockerfile", plan=plan,
                       commits=[guzzle, ROUTES] if state == "stale" else [])


def worker_status() -> ImageStatus:
    reg = "registry.example.com/shop/worker"
    steps = [step(1, f"FROM {REG}:base-1.0.0", True, f"base {REG}:base-1.0.0", "from"),
             step(2, "COPY worker/ /srv/worker/", True, f"cached from {reg}:2.4.1", "copy"),
             step(3, 'CMD ["php", "/srv/worker/run.php"]', True, f"cached from {reg}:2.4.1",
                  "cmd")]
    plan = ImagePlan(name="worker", role="app", dockerfile="worker/Dockerfile", context=".",
                     tag=f"{reg}:dev", cache_from=[f"{reg}:2.4.1"], steps=steps,
                     deployed=f"{reg}:2.4.1")
    return ImageStatus(name="worker", role="app",
                       verdict=Verdict(IN_SYNC, f"{reg}:dev matches this checkout"),
                       tag=f"{reg}:dev",
                       local_id="sha256:" + "e" * 64, local_revision="3f2a1c4" + "0" * 33,
                       deployed=f"{reg}:2.4.1", dockerfile="worker/Dockerfile", plan=plan)


def repo_info() -> RepoInfo:
    return RepoInfo(root=ROOT, branch="main", head="3f2a1c4", subject="bump PHP to 8.3",
                    author="Ana Lima")


def stale_snapshot() -> Snapshot:
    return Snapshot(repo=repo_info(), statuses=[base_status(), app_status(), worker_status()])


def in_sync_snapshot() -> Snapshot:
    return Snapshot(repo=repo_info(), statuses=[base_status("in-sync"), app_status("in-sync"),
                                                worker_status()])


def first_run_snapshot() -> Snapshot:
    return Snapshot(repo=repo_info(), statuses=[base_status("in-sync"), app_status("missing")],
                    first_run=True)


def checklist_items() -> list[CheckItem]:
    return [
        CheckItem("engine", "Docker engine reachable", CHECK_OK,
                  "unix:///var/run/docker.sock (API 1.41)"),
        CheckItem("registry", "Registry login (registry.example.com)", CHECK_FAIL,
                  "registry.example.com refused the credentials (401 Unauthorized)",
                  "docker login registry.example.com"),
        CheckItem("base", "Base image pulled", CHECK_BLOCKED, "needs the registry login"),
        CheckItem("deployed", "Deployed image pulled", CHECK_BLOCKED,
                  "needs the registry login"),
        CheckItem("local", "Local image built", CHECK_FAIL, f"{REG}:dev is not built yet",
                  "press s to sync (devsync sync): pull, then build what changed"),
    ]


LAYERS = ["3c0ffee10001", "7a11ce5e0002", "9d0e0b1e0003"]


def sync_events_before_pause() -> list[Event]:
    """A sync of `app` caught halfway: pull partly done, three steps through the build."""
    ref = f"{REG}:1.0.7"
    return [
        PhaseStarted("app", "pull"),
        PullStarted(ref),
        LayerProgress(ref, LAYERS[0], "Already exists"),
        LayerProgress(ref, LAYERS[1], "Pull complete", 0, 0),
        LayerProgress(ref, LAYERS[2], "Downloading", 12_400_000, 31_000_000),
        PullProgress(ref, layers_done=2, layers_total=3, bytes_done=12_400_000,
                     bytes_total=31_000_000),
        PhaseStarted("app", "build", "2/6 steps cached; rebuilds from line 3"),
        StepStarted("app", 0, 6, f"FROM {REG}:base-1.0.0", 1),
        LogLine("app", f"Step 1/6 : FROM {REG}:base-1.0.0"),
        StepFinished("app", 0, True, True),
        StepStarted("app", 1, 6, "WORKDIR /var/www/html", 2),
        LogLine("app", "Step 2/6 : WORKDIR /var/www/html"),
        LogLine("app", " ---> Using cache"),
        StepFinished("app", 1, True, True),
        StepStarted("app", 2, 6, "COPY composer.json composer.lock ./", 3),
        LogLine("app", "Step 3/6 : COPY composer.json composer.lock ./"),
        StepFinished("app", 2, False, False),
        StepStarted("app", 3, 6, "RUN composer install --no-dev --prefer-dist --no-interaction",
                    4),
        LogLine("app", "Step 4/6 : RUN composer install --no-dev --prefer-dist"),
        LogLine("app", "Installing dependencies from lock file"),
        LogLine("app", "  - Installing guzzlehttp/guzzle (7.9.2): Extracting archive"),
    ]


def sync_events_after_pause() -> list[Event]:
    ref = f"{REG}:1.0.7"
    return [
        LayerProgress(ref, LAYERS[2], "Pull complete"),
        PullProgress(ref, 3, 3, 31_000_000, 31_000_000),
        PullFinished(ref, "sha256:" + "c" * 64),
        StepFinished("app", 3, False, False),
        StepStarted("app", 4, 6, "COPY . .", 5),
        StepFinished("app", 4, False, False),
        StepStarted("app", 5, 6, 'CMD ["php", "-S", "0.0.0.0:8080", "-t", "public"]', 6),
        StepFinished("app", 5, False, False),
        ImageBuilt("app", f"{REG}:dev", "sha256:" + "f" * 64, 2, 6),
        Done(True, f"{REG}:dev: 2/6 steps reused"),
    ]


PAUSE = object()


@dataclass(frozen=True)
class Ask:
    """In a script: the operation asks this (its `ask`), and notes the answer."""

    question: str


@dataclass
class FakeServices:
    """A `Services` whose answers the test sets. Operations follow `script`: events, and
    `PAUSE` where the generator blocks until `resume` is set (or it is cancelled)."""

    current: Snapshot = field(default_factory=stale_snapshot)
    items: list[CheckItem] = field(default_factory=checklist_items)
    script: list[object] = field(default_factory=lambda: [
        *sync_events_before_pause(), PAUSE, *sync_events_after_pause()])
    fail_with: DevsyncError | None = None
    snapshot_error: DevsyncError | None = None
    calls: list[tuple[object, ...]] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    changes: queue.Queue[set[str]] = field(default_factory=queue.Queue)
    snapshots_taken: int = 0
    pulse_answer: str = ""  # what the next pulse says (devsync.ops.pulse)
    root: Path = ROOT
    ask: Callable[[str], bool] | None = None  # what the last sync was given to ask with
    answers: list[bool] = field(default_factory=list)

    def snapshot(self, *, registry: bool, cancel: threading.Event) -> Snapshot:
        self.calls.append(("snapshot", registry))
        self.snapshots_taken += 1
        if self.snapshot_error is not None:
            raise self.snapshot_error
        return self.current

    def checklist(self, cancel: threading.Event) -> list[CheckItem]:
        self.calls.append(("checklist",))
        return list(self.items)

    def pulse(self, snapshot: Snapshot) -> str:
        # the answer once, as a real change is seen once: the snapshot taken next holds
        answer, self.pulse_answer = self.pulse_answer, ""
        return answer

    def _play(self, cancel: threading.Event) -> Iterator[Event]:
        for item in self.script:
            if isinstance(item, Ask):  # the operation asks its question (as a sync does)
                self.answers.append(self.ask(item.question) if self.ask is not None else True)
                continue
            if item is PAUSE:
                self.paused.set()
                while not self.resume.is_set():
                    if cancel.is_set():
                        self.cancelled.set()
                        raise InterruptedError_("sync cancelled")
                    time.sleep(0.01)
                continue
            assert isinstance(item, Event)
            yield item
        if self.fail_with is not None:
            raise self.fail_with

    def sync(self, images: Sequence[str], cancel: threading.Event, *,
             ask: Callable[[str], bool] | None = None) -> Iterator[Event]:
        self.calls.append(("sync", tuple(images)))
        self.ask = ask
        return self._play(cancel)

    def base_build(self, cancel: threading.Event) -> Iterator[Event]:
        self.calls.append(("base_build",))
        return self._play(cancel)

    def base_bump(self, cancel: threading.Event) -> Iterator[Event]:
        self.calls.append(("base_bump",))
        return self._play(cancel)

    def publish(self, version: str, cancel: threading.Event) -> Iterator[Event]:
        self.calls.append(("publish", version))
        return self._play(cancel)

    def watch(self, stop: threading.Event) -> Iterator[set[str]]:
        while not stop.is_set():
            try:
                yield self.changes.get(timeout=0.02)
            except queue.Empty:
                continue


async def until(pilot: object, condition: Callable[[], bool], what: str = "condition",
                *, attempts: int = 1000) -> None:
    """Let the app run until `condition` holds (workers are threads: give them turns)."""
    for _ in range(attempts):
        if condition():
            return
        await pilot.pause(0.02)  # type: ignore[attr-defined]
    raise AssertionError(f"never happened: {what}")
