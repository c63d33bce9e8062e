"""What a BuildKit image devsync built was made from, stamped on it as a label, so that
`status` can tell whether it is still what this checkout builds.

The classic builder's history names each COPY's content hash, and status replays the build
against it (devsync.model.classic). BuildKit's history does not (`COPY . . # buildkit`): so a
BuildKit build devsync makes carries `INPUTS_LABEL`, a digest of its inputs (the Dockerfile,
the build arguments and target, and the files its COPY/ADD steps take from the context as the
CLI sends them: names, modes, owners root, contents; the whole context when a source names a
variable). Labels are image config: they change no BuildKit cache key.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError
from devsync.model.context import TarFlavor
from devsync.model.files import read_regular

if TYPE_CHECKING:
    from devsync.model.context import BuildContext
    from devsync.model.dockerfiles import Dockerfile
    from devsync.model.project import ImageSpec, Project

INPUTS_LABEL = "dev.devsync.inputs"


def copied_sources(dockerfile: Dockerfile) -> list[list[str]]:
    """The context sources of each COPY/ADD (not `--from`, not a URL); `[["."]]` when one
    names a variable (then the whole context counts)."""
    out: list[list[str]] = []
    for stage in dockerfile.stages:
        for ins in stage.instructions:
            if ins.cmd not in ("COPY", "ADD") or ins.flag("from"):
                continue
            sources = [src for src in ins.value[:-1] if "://" not in src]
            if any("$" in src for src in sources):
                return [["."]]
            if sources:
                out.append(sources)
    return out


def inputs_digest(spec: ImageSpec, dockerfile: Dockerfile, context: BuildContext) -> str:
    """`sha256:...` of what a build of `spec` reads; "" when the context cannot be hashed
    (the build itself will say why)."""
    try:
        copies = [context.source_hash(sources, TarFlavor.CLI_MODERN) or ""
                  for sources in copied_sources(dockerfile)]
        text = read_regular(spec.dockerfile)
    except (DevsyncError, OSError):
        return ""
    head = json.dumps({"args": sorted(spec.build_args.items()), "target": spec.target or "",
                       "copies": copies}, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(head + b"\0" + text).hexdigest()


def stamp_inputs(labels: dict[str, str], project: Project, spec: ImageSpec,
                 context: BuildContext) -> None:
    """Add `INPUTS_LABEL` to the labels of a BuildKit build of `spec`, and keep the digests
    hashed for it (the next plan and status hash nothing again)."""
    from devsync.ops.contexts import save_digests

    labels[INPUTS_LABEL] = inputs_digest(spec, project.dockerfile(spec), context)
    save_digests(context)


def copied_files(dockerfile: Dockerfile, context: BuildContext) -> list[str]:
    """The context files (relative to it) the COPY/ADD steps take."""
    out: set[str] = set()
    for sources in copied_sources(dockerfile):
        try:
            out.update(context.files_under(sources))
        except DevsyncError:
            continue
    return sorted(out)


__all__ = ["INPUTS_LABEL", "copied_files", "copied_sources", "inputs_digest", "stamp_inputs"]
