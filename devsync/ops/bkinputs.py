"""What a BuildKit image devsync built was made from, stamped on it as a label, so that
`status` can tell whether it is still what this checkout builds.

The classic builder's history names each COPY's content hash, and status replays the build
against it (devsync.model.classic). BuildKit's history does not (`COPY . . # buildkit`): so a
BuildKit build devsync makes carries `INPUTS_LABEL`, a digest of its inputs (the Dockerfile,
the build arguments and target, and the whole context as the CLI sends it: names, modes,
owners root, contents). Labels are image config: they change no BuildKit cache key.
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
    from devsync.model.project import ImageSpec

INPUTS_LABEL = "dev.devsync.inputs"


def inputs_digest(spec: ImageSpec, context: BuildContext) -> str:
    """`sha256:...` of what a build of `spec` reads; "" when the context cannot be hashed
    (the build itself will say why)."""
    try:
        tree = context.source_hash(["."], TarFlavor.CLI_MODERN) or ""
        dockerfile = read_regular(spec.dockerfile)
    except (DevsyncError, OSError):
        return ""
    head = json.dumps({"args": sorted(spec.build_args.items()), "target": spec.target or "",
                       "context": tree}, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(head + b"\0" + dockerfile).hexdigest()


__all__ = ["INPUTS_LABEL", "inputs_digest"]
