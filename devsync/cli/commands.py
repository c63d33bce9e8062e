"""The `devsync` commands: argument parsing and one small function per command.

Each command opens the core through one `Session`, runs an operation and renders what it
returns; nothing is decided here. (`--check` never gets this far: see `devsync.cli`.)
"""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, TypeVar

from devsync import __version__
from devsync.cli import output
from devsync.errors import DevsyncError, UsageError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Mapping
    from pathlib import Path


_P = TypeVar("_P")


def run(args: list[str], *, own_process: bool) -> int:
    """Run the command in `args`; `own_process`: devsync is the process's own program."""
    if own_process:
        _collect_rarely()
    code = _run(args)
    if own_process:  # the process ends next
        # Its last garbage collection walks every object the SDK and GitPython made (~50 ms
        # after a sync) to free memory the process is about to give back anyway; frozen
        # objects are skipped. Exit handlers still run.
        gc.freeze()
    return code


_usual_gc_threshold: tuple[int, ...] | None = None


def _collect_rarely() -> None:
    """A command makes tens of thousands of long-lived objects (its modules, the SDK's,
    GitPython's) and little cyclic garbage, so the collector's usual pace (a pass every 700
    allocations) mostly walks the same live objects again: ~25 ms of a `devsync plan`."""
    global _usual_gc_threshold
    _usual_gc_threshold = gc.get_threshold()
    gc.set_threshold(20_000, 10, 10)


def _collect_as_usual() -> None:
    """For the TUI, which runs for hours: cyclic garbage is collected at the usual pace."""
    if _usual_gc_threshold is not None:
        gc.set_threshold(*_usual_gc_threshold)


def _run(args: list[str]) -> int:
    try:
        return _main(args)
    except DevsyncError as exc:
        _error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("devsync: interrupted; nothing was left half-done (rerun to continue)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _error(exc: DevsyncError) -> None:
    from devsync.cli.output import clean

    print(f"devsync: error: {clean(exc.message)}", file=sys.stderr)
    if exc.hint:
        print(f"  hint: {clean(exc.hint)}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="devsync",
        description="Keep your local Docker images in sync with what the team has deployed. "
        "Without a command, opens the terminal UI.",
    )
    p.add_argument("--version", action="version", version=f"devsync {__version__}")
    p.add_argument("--check", action="store_true",
                   help="shell-prompt check: silent when in sync, one line when not")
    p.add_argument("--exit-code", action="store_true", help="with --check: exit 1 when stale")
    p.add_argument("-C", dest="directory", default=".", help="run as if started in DIRECTORY")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("status", help="each image's state and why")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("plan", help="predict which build steps will be reused or rebuilt")
    s.add_argument("image", nargs="?")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("sync", help="pull the latest deployed image and rebuild what changed")
    s.add_argument("image", nargs="?")
    s.add_argument("--yes", "-y", action="store_true", help="never ask")
    s.add_argument("--json", action="store_true", help="one JSON event per line")

    base = sub.add_parser("base", help="the base-image workflow")
    bsub = base.add_subparsers(dest="base_command", required=True)
    s = bsub.add_parser("build", help="build Dockerfile.base as the next REPO:base-VERSION")
    s.add_argument("--push", action="store_true")
    s.add_argument("--version", dest="base_version",
                   help="the new base's version (default: the next in the newest tag's scheme)")
    s.add_argument("--replace", action="store_true",
                   help="with --push and --version: replace that tag in the registry, where "
                        "it exists already")
    s.add_argument("--json", action="store_true")
    s = bsub.add_parser("bump", help="point FROM at the newest base tag")
    s.add_argument("--to", dest="to_tag",
                   help="tag to bump to, from the registry (default: its newest base tag)")
    s.add_argument("--local", action="store_true",
                   help="with --to: a base built on this machine, not (yet) in the registry")
    s = bsub.add_parser("advice", help="is a new base worth it? layer count and size drift")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("publish", help="CI deploy step: build the app with labels and push")
    s.add_argument("version")
    s.add_argument("image", nargs="?")
    s.add_argument("--registry-cache", action="store_true",
                   help="BuildKit: also push a registry cache (REPO:buildcache) of every "
                        "stage, like type=registry,mode=max")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("shell-init", help="print the snippet for your shell's rc file")
    s.add_argument("shell", choices=["bash", "zsh", "fish"])
    # (the hook now checks at every prompt, entering a repository included; kept for old rc files)
    s.add_argument("--on-cd", action="store_true", help=argparse.SUPPRESS)

    # started by `--check` in the background, never by a user: parsed, never offered
    s = sub.add_parser("refresh")  # no `help=`: no help row (SUPPRESS would print one)
    s.add_argument("root", nargs="?")
    s.add_argument("--quiet", action="store_true")

    sub.add_parser("demo", help="try devsync on a small sample project")
    sub.add_parser("tui", help="open the terminal UI (the default)")
    # argparse lists every choice in the usage line and in its "invalid choice" error
    sub.choices = _Offered(sub.choices, hidden={"refresh"})
    sub.metavar = "{" + ",".join(sub.choices) + "}"
    return p


class _Offered(dict[str, _P]):
    """A subparsers' choices that still accepts the hidden ones but never lists them."""

    def __init__(self, choices: Mapping[str, _P], *, hidden: set[str]) -> None:
        super().__init__(choices)
        self.hidden = hidden

    def __iter__(self) -> Iterator[str]:
        return (name for name in super().__iter__() if name not in self.hidden)


def _main(argv: list[str]) -> int:
    from pathlib import Path

    args = _parser().parse_args(argv)
    start = Path(args.directory).resolve()
    command = args.command
    if command is None or command == "tui":
        from devsync.tui.app import run

        _collect_as_usual()
        return run(start)
    if command == "shell-init":
        from devsync.prompt.shell_init import snippet

        print(snippet(args.shell), end="")
        return 0
    if command == "demo":
        from devsync.devtools.demo import run_demo

        return run_demo()
    if command == "refresh":
        return _refresh(Path(args.root) if args.root else start, quiet=args.quiet)
    if command == "status":
        return _status(start, as_json=args.json)
    if command == "plan":
        return _plan(start, args.image, as_json=args.json)
    if command == "sync":
        return _sync(start, args.image, yes=args.yes, as_json=args.json)
    if command == "base":
        from devsync.cli import base as basecli

        return basecli.run(start, args)
    if command == "publish":
        from devsync.cli import base as basecli

        return basecli.publish(start, args)
    raise UsageError(f"unknown command {command}")


# -- shared set-up ------------------------------------------------------------------------


def _status(start: Path, *, as_json: bool) -> int:
    import json

    from devsync.cli.output import print_status
    from devsync.ops.answers import unchecked_warnings
    from devsync.ops.recording import record_statuses
    from devsync.ops.snapshot import repo_info
    from devsync.ops.status import collect_statuses

    session = output.open_session(start, need_engine=False)
    statuses = collect_statuses(session.project, session.resolver, session.git,
                                engine_problem=session.engine_problem)
    record_statuses(session.project, statuses, session.git)
    for text in unchecked_warnings(session.resolver):
        output.warn(text)
    if as_json:
        print(json.dumps({
            "repository": str(session.project.root),
            "branch": session.git.branch, "head": session.git.head,
            "engine": None if session.engine_problem else "ok",
            "engine_problem": session.engine_problem,
            "images": [s.to_json() for s in statuses],
        }, indent=2))
    else:
        print_status(repo_info(session.project.root, session.git, brief=True), statuses,
                     session.engine_problem)
    return 0


def _plan(start: Path, image: str | None, *, as_json: bool) -> int:
    import json

    from devsync.cli.output import print_plan, print_unplanned
    from devsync.ops.answers import plan_images

    session = output.open_session(start, need_engine=False)
    report = plan_images(session, session.images(image))
    for text in report.warnings:
        output.warn(text)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    # nothing planned (`plan IMAGE` of one failing image): its error, said as errors are
    first = next((a.error for a in report.answers if a.error is not None), None)
    if report.exit_code and first is not None:
        _error(first)
        return report.exit_code
    if not as_json:
        for answer in report.answers:
            if answer.plan is not None:
                print_plan(answer.plan)
            else:
                print_unplanned(answer)
    return 0


def _sync(start: Path, image: str | None, *, yes: bool, as_json: bool) -> int:
    from devsync.cli.output import EventPrinter, confirm
    from devsync.ops import operations

    printer = EventPrinter(as_json=as_json)
    # someone can answer: a large pull asks first (the operation decides when)
    may_ask = not yes and not as_json and sys.stdin.isatty()
    with printer, output.open_session(start, need_engine=True) as session:
        for event in operations.sync(session, [image] if image else None,
                                     ask=confirm if may_ask else None,
                                     show_plan=None if as_json else printer.plan):
            printer.show(event)
    return 0


def _refresh(root: Path, *, quiet: bool) -> int:
    """Detached background refresh started by `--check`: recompute status into the state."""
    try:
        if quiet:
            devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
            sys.stdout = devnull
            sys.stderr = devnull
        from devsync.ops.recording import record_statuses
        from devsync.ops.status import collect_statuses

        session = output.open_session(root, need_engine=False)
        statuses = collect_statuses(session.project, session.resolver, session.git)
        record_statuses(session.project, statuses, session.git, registry_checked=True)
    except DevsyncError:
        if not quiet:
            raise
        return 0
    return 0
