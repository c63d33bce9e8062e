from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devsync.devtools import sandbox


def test_private_engine_builds_and_pushes(engine: sandbox.PrivateEngine,
                                          registry: sandbox.PrivateRegistry,
                                          busybox_image: str) -> None:
    out = sandbox.docker_cli(engine, "run", "--rm", "--network=none", busybox_image,
                             "echo", "hello")
    assert out.stdout.strip() == "hello"
    # the image is in the registry, not just local
    import json
    import urllib.request

    with urllib.request.urlopen(f"{registry.url}/v2/busybox/tags/list") as resp:
        assert json.load(resp)["tags"] == ["1"]


def test_buildkit_runs_on_the_engines_own_bridge(engine: sandbox.PrivateEngine,
                                                 busybox_image: str, tmp_path: Path) -> None:
    """BuildKit's RUN needs a network: the private engine has a bridge of its own."""
    assert engine.bridge is not None
    assert len(engine.bridge.name) <= 15 and engine.bridge.name != "docker0"
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", engine.bridge.name],
                           capture_output=True, text=True, check=True).stdout
    assert str(engine.bridge.gateway) in shown
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN echo hi > /hi\n")
    env = dict(engine.env(), DOCKER_BUILDKIT="1")
    proc = subprocess.run([sandbox_cli(), "build", "--progress=plain", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RUN echo hi" in proc.stderr


def sandbox_cli() -> str:
    """The docker 20.10 CLI, whose BuildKit client is built in (DOCKER_BUILDKIT=1)."""
    if not Path("/usr/bin/docker").exists():
        pytest.skip("the docker 20.10 CLI (/usr/bin/docker) is not installed")
    return "/usr/bin/docker"


def test_private_bridges_never_collide_and_are_deleted(tmp_path: Path) -> None:
    """Two engines (two test sessions side by side) get two names and two /24s, neither in
    use elsewhere on the machine; deleting one leaves the other (and docker0) alone."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    used_before = sandbox._networks_in_use()
    first = sandbox.PrivateBridge.create(tmp_path / "one")
    try:
        second = sandbox.PrivateBridge.create(tmp_path / "two")
        try:
            assert first.name != second.name
            assert not first.subnet.overlaps(second.subnet)
            assert all(len(b.name) <= 15 for b in (first, second))
            for bridge in (first, second):
                assert not any(bridge.subnet.overlaps(n) for n in used_before)
            first.delete()
            assert not sandbox._link_exists(first.name)
            assert sandbox._link_exists(second.name)
        finally:
            second.delete()
        assert not sandbox._link_exists(second.name)
    finally:
        first.delete()
