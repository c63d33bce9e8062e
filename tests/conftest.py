"""Shared fixtures: a private Docker engine and registry that the suite starts itself.

The engine lives under a fresh temporary root with its own socket, so the suite never sees or
touches the user's images. In CI (`CI=true`) a test that cannot get its engine fails; elsewhere
it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsync.devtools import sandbox

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"integration test cannot get its engine in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir() -> Iterator[Path]:
    """devsync's cache (file digests) in a directory of the suite's own, never the user's;
    subprocesses inherit it. A test of the cache itself points it elsewhere."""
    root = Path(tempfile.mkdtemp(prefix="devsync-cache-"))
    before = os.environ.get("DEVSYNC_CACHE_DIR")
    os.environ["DEVSYNC_CACHE_DIR"] = str(root)
    yield root
    if before is None:
        os.environ.pop("DEVSYNC_CACHE_DIR", None)
    else:
        os.environ["DEVSYNC_CACHE_DIR"] = before
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_root() -> Iterator[Path]:
    # short path: unix sockets are limited to ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="dsx-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def engine(sandbox_root: Path) -> Iterator[sandbox.PrivateEngine]:
    try:
        sandbox.ensure_system_packages()
        eng = sandbox.PrivateEngine(sandbox_root / "engine").start()
    except sandbox.SandboxUnavailable as exc:
        _unavailable(str(exc))
        raise
    yield eng
    eng.stop()
    # overlay mounts may outlive the daemon briefly; never fail teardown on them
    subprocess.run(["umount", "-R", str(sandbox_root / "engine")], capture_output=True)


@pytest.fixture(scope="session")
def registry(sandbox_root: Path) -> Iterator[sandbox.PrivateRegistry]:
    try:
        sandbox.ensure_system_packages()
        reg = sandbox.PrivateRegistry(sandbox_root / "registry").start()
    except sandbox.SandboxUnavailable as exc:
        _unavailable(str(exc))
        raise
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def busybox_image(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
                  sandbox_root: Path) -> str:
    """`localhost:PORT/busybox:1`, built FROM scratch with the classic builder and pushed."""
    ref = f"{registry.host}/busybox:1"
    ctx = sandbox.busybox_context(sandbox_root / "busybox-ctx")
    sandbox.docker_cli(engine, "build", "-q", "-t", ref, str(ctx))
    sandbox.docker_cli(engine, "push", ref)
    return ref


# Fixtures that start the private engine or a registry: a test that uses one, directly or
# through another fixture, needs them (`pytest -m "not engine"` is then a fast, real run).
_ENGINE_FIXTURES = frozenset({"engine", "registry"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)
