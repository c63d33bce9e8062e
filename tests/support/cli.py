"""devsync run as a user types it: a subprocess of `python -m devsync`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devsync.devtools import sandbox


def devsync(cwd: Path, *args: str, env: dict[str, str] | None = None,
            engine: sandbox.PrivateEngine | None = None, state: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    if engine is not None:
        full.update(engine.env())
    full["DEVSYNC_NO_REFRESH"] = "1"
    full["NO_COLOR"] = "1"
    if state is not None:
        full["DEVSYNC_STATE_DIR"] = str(state)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "devsync", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300)
