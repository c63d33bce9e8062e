"""The devsync Textual application.

`make_app` builds it for the CLI, the tests and the screenshot script alike; `run` is what
`devsync` without arguments calls. All blocking work (git, the engine, registries) runs in
thread workers that talk to the core through `Services`; results come back as messages, and
failures become a banner, a notification or a dialog with the message and its hint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from devsync.ops.policy import next_publish_version, to_sync
from devsync.ops.pulse import LOOK_REGISTRY, PULSE_SECONDS
from devsync.ops.verdict import ROLE_APP, ROLE_BASE, STALE
from devsync.tui.errors import WorkerCancel, describe, is_cancellation
from devsync.tui.messages import FilesChanged, LookAgain, SnapshotReady
from devsync.tui.screens.dashboard import DashboardScreen
from devsync.tui.screens.modals import ConfirmScreen, HelpScreen, plain_body
from devsync.tui.screens.onboarding import OnboardingScreen
from devsync.tui.screens.operation import OperationScreen
from devsync.tui.services import CoreServices, Services, Snapshot

if TYPE_CHECKING:
    from devsync.events import Event
    from devsync.ops.status import ImageStatus

DARK = "textual-dark"
LIGHT = "textual-light"


class DevsyncApp(App[int]):
    CSS_PATH = "devsync.tcss"
    TITLE = "devsync"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "toggle_theme", "Theme"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    snapshot: reactive[Snapshot | None] = reactive[Snapshot | None](None, always_update=True)
    busy: reactive[bool] = reactive(False)
    load_error: reactive[tuple[str, str] | None] = reactive[tuple[str, str] | None](None)

    def __init__(self, services: Services, *, watch: bool = True,
                 onboarding: bool = True, theme: str = DARK) -> None:
        super().__init__()
        self.services = services
        self._watching = watch
        self._auto_onboarding = onboarding
        self._stop = threading.Event()
        self._status_worker: Worker[None] | None = None
        self._dirty = False
        self._onboarding_offered = False
        self._registry_timer: Timer | None = None
        self._timer_minutes = 0.0
        self._last_error = ""
        self._pulse_worker: Worker[None] | None = None
        # notifications that arrive while the help screen is open: shown when it closes
        self._help_open = False
        self._held: list[tuple[str, dict[str, object]]] = []
        self._warned: set[str] = set()
        self.theme = theme

    def get_default_screen(self) -> Screen[None]:
        return DashboardScreen()

    def on_mount(self) -> None:
        self.refresh_status(registry=True)
        if self._watching:
            self._watch()
            self.set_interval(PULSE_SECONDS, self._pulse_tick)

    # -- status ---------------------------------------------------------------------------

    def refresh_status(self, *, registry: bool = False) -> None:
        """Recompute every image's status in a worker; a change that arrives while one runs
        is folded into one more run after it."""
        running = self._status_worker is not None and self._status_worker.state in (
            WorkerState.PENDING, WorkerState.RUNNING)
        if running and not registry:
            self._dirty = True
            return
        self._dirty = False
        self.busy = True
        self._status_worker = self._load(registry)

    @work(thread=True, exclusive=True, group="status", exit_on_error=False)
    def _load(self, registry: bool) -> None:
        worker = get_current_worker()
        snapshot = self.services.snapshot(registry=registry, cancel=WorkerCancel(worker))
        if not worker.is_cancelled:
            self.post_message(SnapshotReady(snapshot, registry=registry))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        previous = self.snapshot
        snapshot = message.snapshot
        self.load_error = None
        self._last_error = ""
        self.snapshot = snapshot
        self._notify_warnings(snapshot.warnings)
        self._notify_stale(previous, snapshot)
        self._schedule_registry_check(snapshot.registry_check_minutes)
        if snapshot.first_run and self._auto_onboarding and not self._onboarding_offered:
            self._onboarding_offered = True
            if isinstance(self.screen, DashboardScreen):
                self.action_onboarding()

    def _notify_warnings(self, warnings: Sequence[str]) -> None:
        """The session's warnings (an unknown key in .devsync.toml, a corrupt state file),
        each once until it goes away and comes back."""
        for text in warnings:
            if text not in self._warned:
                self.notify(text, title="Warning", severity="warning", markup=False,
                            timeout=10)
        self._warned = set(warnings)

    def _notify_stale(self, previous: Snapshot | None, snapshot: Snapshot) -> None:
        """A toast with the verdict's own words when an image goes stale, or goes stale
        for another cause."""
        if previous is None:
            return
        old = {s.name: s.verdict for s in previous.statuses}
        for status in snapshot.statuses:
            verdict = status.verdict
            if verdict.state != STALE or old.get(status.name) == verdict:
                continue
            self.notify(verdict.text, title=f"{status.name} is stale",
                        severity="warning", markup=False, timeout=8)

    def _schedule_registry_check(self, minutes: float) -> None:
        if minutes == self._timer_minutes:
            return
        if self._registry_timer is not None:
            self._registry_timer.stop()
            self._registry_timer = None
        self._timer_minutes = minutes
        if minutes > 0:
            self._registry_timer = self.set_interval(
                minutes * 60, lambda: self.refresh_status(registry=True))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if worker.group == "status" and worker is self._status_worker:
            self.busy = False
            if event.state == WorkerState.ERROR and not is_cancellation(worker.error):
                message, hint = describe(worker.error)
                self.load_error = (message, hint)
                if message != self._last_error:
                    self._last_error = message
                    self.notify(f"{message}\n{hint}" if hint else message,
                                title="Could not read the project", severity="error",
                                markup=False, timeout=10)
            if self._dirty:
                self.refresh_status()
        elif worker.group == "watch" and event.state == WorkerState.ERROR:
            message, _hint = describe(worker.error)
            self.notify(f"Stopped following file changes: {message}. Press r to refresh.",
                        severity="warning", markup=False, timeout=10)

    # -- the pulse: the engine and the registries, which no file watch sees -------------------

    def _pulse_tick(self) -> None:
        snapshot = self.snapshot
        if snapshot is None or self.busy or self._operation_running():
            return  # a status is being taken, or an operation will take one when it ends
        if self._pulse_worker is not None and self._pulse_worker.state in (
                WorkerState.PENDING, WorkerState.RUNNING):
            return
        self._pulse_worker = self._pulse(snapshot)

    @work(thread=True, group="pulse", exit_on_error=False)
    def _pulse(self, snapshot: Snapshot) -> None:
        answer = self.services.pulse(snapshot)
        if answer and not get_current_worker().is_cancelled:
            self.post_message(LookAgain(registry=answer == LOOK_REGISTRY))

    def on_look_again(self, message: LookAgain) -> None:
        if message.registry or not self.busy:
            self.refresh_status(registry=message.registry)

    # -- watching -------------------------------------------------------------------------

    @work(thread=True, group="watch", exit_on_error=False)
    def _watch(self) -> None:
        for paths in self.services.watch(self._stop):
            if self._stop.is_set():
                return
            self.post_message(FilesChanged(paths))

    def on_files_changed(self, _message: FilesChanged) -> None:
        self.refresh_status()

    # -- operations -----------------------------------------------------------------------

    def _operation_running(self) -> bool:
        return any(isinstance(s, OperationScreen) for s in self.screen_stack)

    def run_operation(self, title: str, runner: Callable[[threading.Event], Iterator[Event]],
                      plans: Iterable[ImageStatus] = (),
                      after: Callable[[], None] | None = None) -> None:
        if self._operation_running():
            self.notify("Another operation is running.", severity="warning")
            return
        screen = OperationScreen(title, runner, [s.plan for s in plans
                                                 if s.plan is not None and s.role != ROLE_BASE])

        def finished(_ok: bool | None) -> None:
            self.refresh_status(registry=True)
            if after is not None:
                after()

        self.push_screen(screen, finished)

    def start_sync(self, names: Sequence[str] | None = None, *,
                   after: Callable[[], None] | None = None) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            self.notify("Still reading the project; try again in a moment.")
            return
        if names is not None:
            statuses = [s for s in snapshot.statuses if s.name in names]
        else:
            statuses = to_sync(snapshot.statuses)
        if not statuses:
            if not any(s.state == STALE for s in snapshot.statuses):
                self.notify("Every image is in sync.", severity="information")
            return
        chosen = [s.name for s in statuses]
        self.run_operation(f"Sync {', '.join(chosen)}",
                           lambda cancel: self.services.sync(chosen, cancel,
                                                             ask=self.ask_from_worker),
                           statuses, after)

    def ask_from_worker(self, question: str) -> bool:
        """An operation's question (`devsync: pull 900 MB for app?`) as a dialog; blocks the
        worker that asks until it is answered, or the app stops."""
        answered = threading.Event()
        answer = [False]

        def done(value: str | None) -> None:
            answer[0] = value is not None
            answered.set()

        screen = ConfirmScreen("Large pull", plain_body(question[:1].upper() + question[1:]),
                               confirm="Pull")
        self.call_from_thread(self.push_screen, screen, done)
        while not answered.wait(0.05):
            if self._stop.is_set():
                return False
        return answer[0]

    def action_sync(self) -> None:
        self.start_sync()

    def action_refresh(self) -> None:
        self.refresh_status(registry=True)

    def action_onboarding(self) -> None:
        if any(isinstance(s, OnboardingScreen) for s in self.screen_stack):
            return
        name = self.snapshot.repo.root.name if self.snapshot is not None else ""
        self.push_screen(OnboardingScreen(self.services, name))

    def _image(self, role: str) -> ImageStatus | None:
        if self.snapshot is None:
            return None
        return next((s for s in self.snapshot.statuses if s.role == role), None)

    def action_base_build(self) -> None:
        base = self._image(ROLE_BASE)
        if base is None:
            self.notify("This project has no base image (no Dockerfile.base or configured base).",
                        severity="warning")
            return
        body = plain_body(
            f"Build {base.dockerfile} as the next base version after {base.tag}, "
            "and push it to the registry.",
            "The app keeps its current base until FROM is bumped (u).")
        self.push_screen(ConfirmScreen("Build and push a new base image?", body,
                                       confirm="Build and push"),
                         lambda answer: self._confirmed(answer, "Base build",
                                                        self.services.base_build))

    def action_base_bump(self) -> None:
        app = self._image(ROLE_APP)
        if app is None or self._image(ROLE_BASE) is None:
            self.notify("This project has no base image to bump to.", severity="warning")
            return
        body = plain_body(
            f"Rewrite the FROM line of {app.dockerfile} to the newest base tag in the "
            "registry. Only that line changes; review and commit it afterwards.")
        self.push_screen(ConfirmScreen("Bump FROM to the newest base?", body, confirm="Bump"),
                         lambda answer: self._confirmed(answer, "Bump FROM",
                                                        self.services.base_bump))

    def action_publish(self) -> None:
        app = self._image(ROLE_APP)
        if app is None:
            self.notify("This project has no app image to publish.", severity="warning")
            return
        body = plain_body(
            f"Build {app.name} from {app.dockerfile} with OCI labels and push it as the new "
            "deployed version. This is CI's deploy step: use it when you publish by hand.")
        self.push_screen(ConfirmScreen("Publish a new version?", body, confirm="Publish",
                                       value=next_publish_version(app.deployed),
                                       value_label="Version"),
                         self._publish_confirmed)

    def _publish_confirmed(self, version: str | None) -> None:
        if version:
            self.run_operation(f"Publish {version}",
                               lambda cancel: self.services.publish(version, cancel))

    def _confirmed(self, answer: str | None, title: str,
                   runner: Callable[[threading.Event], Iterator[Event]]) -> None:
        if answer is not None:
            self.run_operation(title, runner)

    # -- look and help --------------------------------------------------------------------

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.current_theme.dark else DARK

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self._help_open = True
            self.push_screen(HelpScreen(), callback=self._help_closed)

    def _help_closed(self, _result: None) -> None:
        self._help_open = False
        held, self._held = self._held, []
        for message, options in held:
            self.notify(message, **options)  # type: ignore[arg-type]

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        # a toast over the help screen would hide the keys being read: held until it closes
        if self._help_open:
            self._held.append((message, {"title": title, "severity": severity,
                                         "timeout": timeout, "markup": markup}))
            return
        super().notify(message, title=title, severity=severity, timeout=timeout,
                       markup=markup)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Sync", "Pull the deployed image and rebuild what changed",
                            self.action_sync)
        yield SystemCommand("Refresh", "Recompute every image's status", self.action_refresh)
        yield SystemCommand("Onboarding checklist", "What this machine still needs",
                            self.action_onboarding)
        yield SystemCommand("Base build", "Build and push the next base image",
                            self.action_base_build)
        yield SystemCommand("Bump FROM", "Point the app at the newest base",
                            self.action_base_bump)
        yield SystemCommand("Publish", "Build and push a new app version", self.action_publish)

    async def action_quit(self) -> None:
        self.shutdown()
        self.exit(0)

    def shutdown(self) -> None:
        """Tell every thread to stop: the watcher and any running operation."""
        self._stop.set()
        for screen in self.screen_stack:
            if isinstance(screen, OperationScreen):
                screen.cancel_event.set()

    def on_unmount(self) -> None:
        self.shutdown()


def make_app(path: Path, *, services: Services | None = None, watch: bool = True,
             onboarding: bool = True, theme: str = DARK) -> DevsyncApp:
    """The app for the repository at `path` (real core services unless given)."""
    return DevsyncApp(services if services is not None else CoreServices(Path(path)),
                      watch=watch, onboarding=onboarding, theme=theme)


def run(path: Path) -> int:
    """`devsync` without a command: open the TUI on the repository containing `path`."""
    from devsync.ops.session import repo_root

    repo_root(path)  # not a repository: one clear line from the CLI, not a blank UI
    app = make_app(path)
    result = app.run()
    return int(result or 0)
