"""What a piece of devsync imports when a fresh interpreter runs it, as `-X importtime`
reports it.

The interpreter runs with `-S` and devsync's source on PYTHONPATH: site-packages' `.pth`
files (an editable install's import hook among them) load `re`, `contextlib` and more before
any of our code runs, which would hide what our code itself brings in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import devsync

SOURCE_ROOT = str(Path(devsync.__file__).resolve().parents[1])


def imported_modules(code: str, *args: str, cwd: Path | str | None = None,
                     env: dict[str, str] | None = None) -> list[str]:
    """The modules a fresh `python -S -c CODE ARGS...` imports, in order, beyond what the bare
    interpreter had already loaded; fails when the code fails."""
    full = dict(os.environ if env is None else env, PYTHONPATH=SOURCE_ROOT)
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    bare = _importtime(["-c", "pass"], cwd, full)
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", code, *args],
                          cwd=cwd, env=full, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [m for m in _names(proc.stderr) if m not in bare]


def _importtime(argv: list[str], cwd: Path | str | None, env: dict[str, str]) -> set[str]:
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return set(_names(proc.stderr))


def _names(stderr: str) -> list[str]:
    return [line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line
            and not line.rstrip().endswith("| imported package")]
