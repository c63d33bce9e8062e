"""Produce screenshots/*.svg of the TUI from real states (not drawn by hand).

    python tests/screenshots.py [OUTPUT_DIR] [--size 120x36]

Starts a private Docker engine and registry (devsync.devtools.sandbox; needs root, docker.io,
docker-registry and busybox-static, installed on the fly where apt-get works), builds the
`devsync demo` sample project against them, and drives the real TUI (real core services) with
Textual's `App.run_test()`:

- dashboard.svg   a developer who synced at 1.0.0, with 1.0.1 deployed since, a code commit
                  and a Dockerfile.base commit on top: both images stale, and why
- plan.svg        the base image's plan: the step whose instruction changed, the commit
- sync.svg        `s` pressed: the deployed image pulled layer by layer, cached steps lit,
                  caught as the first rebuilt step runs
- onboarding.svg  a machine that never pulled or built anything: the checklist and its fixes

Nothing of the user's own engine is touched; everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devsync.devtools import sandbox  # noqa: E402
from devsync.devtools.demo import Demo, commit_as, create_demo  # noqa: E402
from devsync.events import Event, StepStarted  # noqa: E402
from devsync.tui.app import DevsyncApp, make_app  # noqa: E402
from devsync.tui.screens.onboarding import OnboardingScreen  # noqa: E402
from devsync.tui.screens.operation import OperationScreen  # noqa: E402
from devsync.tui.services import CoreServices  # noqa: E402
from devsync.tui.widgets.images import ImagesTable  # noqa: E402


class PausingServices(CoreServices):
    """The real services, except that a sync holds still once the first step that the plan
    says will rebuild has started, so the screenshot catches a sync in progress."""

    def __init__(self, start: Path) -> None:
        super().__init__(start)
        self.paused = threading.Event()
        self.resume = threading.Event()

    def sync(self, images: Sequence[str], cancel: threading.Event, *,
             ask: Callable[[str], bool] | None = None) -> Iterator[Event]:
        held = False
        for event in super().sync(images, cancel, ask=ask):
            yield event
            if isinstance(event, StepStarted) and not held and self._rebuilds(event):
                held = True
                self.paused.set()
                while not (self.resume.wait(0.05) or cancel.is_set()):
                    pass

    def _rebuilds(self, event: StepStarted) -> bool:
        return event.instruction.startswith("COPY src/")


async def _until(pilot: Any, condition: Callable[[], bool], what: str,
                 seconds: float = 180) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise SystemExit(f"screenshots: gave up waiting for {what}")


async def _loaded(pilot: Any, app: DevsyncApp) -> None:
    await _until(pilot, lambda: app.snapshot is not None and not app.busy, "the first status")
    await pilot.pause(0.3)


async def _stale_screens(demo: Demo, out: Path, size: tuple[int, int]) -> None:
    services = PausingServices(demo.root)
    app = make_app(demo.root, services=services, watch=False)
    async with app.run_test(size=size) as pilot:
        await _loaded(pilot, app)
        app.save_screenshot("dashboard.svg", str(out))
        print("  dashboard.svg", flush=True)

        table = app.screen.query_one(ImagesTable)
        table.move_cursor(row=[s.name for s in app.snapshot.statuses].index("base"))  # type: ignore[union-attr]
        await pilot.press("enter")
        await pilot.pause(0.3)
        app.save_screenshot("plan.svg", str(out))
        print("  plan.svg", flush=True)

        await pilot.press("escape")  # leave the steps table; back on the images
        table.focus()
        await pilot.press("s")
        await _until(pilot, lambda: isinstance(app.screen, OperationScreen), "the sync screen")
        await _until(pilot, services.paused.is_set, "the first rebuilt step")
        await pilot.pause(0.5)  # the UI drains events 20 times a second
        # the toast about the base needing a new build would cover the log: clear it
        app.clear_notifications()
        await pilot.pause(0.2)
        app.save_screenshot("sync.svg", str(out))
        print("  sync.svg", flush=True)
        services.resume.set()
        screen = app.screen
        await _until(pilot, lambda: not screen.running, "the end of the sync")  # type: ignore[attr-defined]
        if screen.state != "done":  # type: ignore[attr-defined]
            raise SystemExit(f"screenshots: the sync ended {screen.state}")  # type: ignore[attr-defined]


async def _onboarding(demo: Demo, out: Path, size: tuple[int, int]) -> None:
    app = make_app(demo.root, services=CoreServices(demo.root), watch=False)
    async with app.run_test(size=size) as pilot:
        await _until(pilot, lambda: isinstance(app.screen, OnboardingScreen), "the checklist")
        screen = app.screen
        await _until(pilot, lambda: bool(screen.items) and  # type: ignore[attr-defined]
                     all(i.state != "checking" for i in screen.items),  # type: ignore[attr-defined]
                     "the checks")
        await pilot.pause(0.3)
        app.save_screenshot("onboarding.svg", str(out))
        print("  onboarding.svg", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / "screenshots"))
    parser.add_argument("--size", default="120x36", help="terminal COLUMNSxROWS")
    args = parser.parse_args(argv)
    cols, rows = (int(n) for n in args.size.lower().split("x"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    sandbox.ensure_system_packages()
    work = Path(tempfile.mkdtemp(prefix="dss-", dir="/tmp"))  # short: unix socket paths
    engine = registry = None
    try:
        engine = sandbox.PrivateEngine(work / "engine").start()
        registry = sandbox.PrivateRegistry(work / "registry").start()
        env = engine.env()
        # the TUI's core services find the engine the way the docker CLI does
        os.environ.update({"DOCKER_HOST": env["DOCKER_HOST"], "DOCKER_BUILDKIT": "0",
                           "DEVSYNC_STATE_DIR": str(work / "state")})
        os.environ.pop("DOCKER_CONTEXT", None)
        print(f"screenshots: engine {engine.url}, registry {registry.host}", flush=True)

        demo = create_demo(registry=registry.host, env=env, parent=work)
        (demo.root / "Dockerfile.base").write_text(
            (demo.root / "Dockerfile.base").read_text().replace("php-8.2", "php-8.3"))
        commit_as(demo.root, "ana", "bump PHP to 8.3")
        asyncio.run(_stale_screens(demo, out, (cols, rows)))
        demo.cleanup()

        fresh_registry = sandbox.PrivateRegistry(work / "registry-fresh").start()
        try:
            fresh = create_demo(registry=fresh_registry.host, env=env, parent=work, fresh=True)
            asyncio.run(_onboarding(fresh, out, (cols, rows)))
            fresh.cleanup()
        finally:
            fresh_registry.stop()
    finally:
        if registry is not None:
            registry.stop()
        if engine is not None:
            engine.stop()
            subprocess.run(["umount", "-R", str(work / "engine")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots: written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
