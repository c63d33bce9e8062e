"""Fixtures shared by the ops tests (their code lives in tests/support/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support import bkteam


@pytest.fixture
def buildkit_env(engine: sandbox.PrivateEngine, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """devsync against the test engine, finding the docker 20.10 CLI (BuildKit built in)."""
    yield from bkteam.buildkit_env(engine, tmp_path, monkeypatch)
