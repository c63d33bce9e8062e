"""CLI views of the base-image workflow (`devsync base ...`, `devsync publish`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from devsync.cli.output import EventPrinter, clean, open_session
from devsync.ops import base as basework
from devsync.ops import operations


def run(start: Path, args: argparse.Namespace) -> int:
    cmd = args.base_command
    if cmd == "build":
        session = open_session(start, need_engine=True)
        with EventPrinter(as_json=args.json) as printer:
            for event in operations.base_build(session, version=args.base_version,
                                               push=args.push, replace=args.replace):
                printer.show(event)
        return 0
    if cmd == "bump":
        session = open_session(start, need_engine=args.local)
        done = operations.last(operations.base_bump(session, args.to_tag, local=args.local))
        changed = done.details["changed"]
        if not changed:
            print(f"devsync: {clean(done.summary)}")
            return 0
        for path in changed:
            print(f"{clean(path)}: {clean(done.details['old'])} -> {clean(done.details['new'])}")
        if done.next is not None:
            print(f"next: {done.next.command} ({done.next.why})")
        return 0
    session = open_session(start, need_engine=False)
    adv = basework.advice(session.project, session.resolver)
    if args.json:
        print(json.dumps(adv.to_json(), indent=2))
        return 0
    print(f"verdict: {clean(adv.verdict.reason)}")
    print(f"  base {adv.base_bytes / 1e6:.1f} MB; app layers above it "
          f"{adv.app_bytes / 1e6:.1f} MB ({adv.drift:.0%}), of which dependency installs "
          f"{adv.deps_bytes / 1e6:.1f} MB; {adv.layers} layers")
    for w in adv.warnings:
        print(f"warning: {clean(w)}")
    following = adv.verdict.next
    if following is not None:
        print(f"next: {following.command} ({following.why})")
    return 0


def publish(start: Path, args: argparse.Namespace) -> int:
    session = open_session(start, need_engine=True)
    with EventPrinter(as_json=args.json) as printer:
        for event in operations.publish(session, args.version, image=args.image,
                                        registry_cache=args.registry_cache):
            printer.show(event)
    return 0
