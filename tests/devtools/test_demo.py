"""`devsync demo` against the private engine and registry: what it says, and that quitting
leaves nothing behind, not even the untagged image a sync in the demo replaced."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devsync.devtools import demo as demo_module
from devsync.devtools import sandbox
from tests.support.cli import devsync


def _images(engine: sandbox.PrivateEngine) -> set[str]:
    """Every image the engine holds, intermediate ones included."""
    out = sandbox.docker_cli(engine, "images", "-a", "-q", "--no-trunc").stdout
    return set(out.split())


def test_demo_says_its_project_is_throwaway_and_quitting_leaves_no_image(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        ) -> None:
    before = _images(engine)
    made: list[demo_module.Demo] = []
    make = demo_module.create_demo

    def create_demo() -> demo_module.Demo:
        made.append(make(registry=registry.host, env=engine.env(),
                         parent=tmp_path, repository="quitdemo/app"))
        return made[-1]

    def the_tui(argv: list[str], env: dict[str, str]) -> int:
        """What a user does in the demo's TUI: sync (a new :dev; the old one is left
        untagged), and a base built here after a change to Dockerfile.base."""
        root = made[-1].root
        out = devsync(root, "sync", "--yes", engine=engine, state=tmp_path / "state")
        assert out.returncode == 0, out.stdout + out.stderr
        base = root / "Dockerfile.base"
        base.write_text(base.read_text().replace("php-8.2", "php-8.3"))
        demo_module.commit_as(root, "ana", "PHP 8.3")
        out = devsync(root, "sync", "--yes", engine=engine, state=tmp_path / "state")
        assert out.returncode == 0, out.stdout + out.stderr
        dangling = sandbox.docker_cli(engine, "images", "-q", "--filter",
                                      "dangling=true").stdout.split()
        leftovers = sandbox.docker_cli(engine, "images", "quitdemo/app", "-q").stdout
        assert dangling or leftovers  # (what used to stay behind)
        return 0

    monkeypatch.setattr(demo_module, "create_demo", create_demo)
    monkeypatch.setattr(subprocess, "call", the_tui)
    assert demo_module.run_demo() == 0
    root = made[-1].root
    said = capsys.readouterr().out.splitlines()
    assert said[1] == (f"devsync demo: a throwaway project in {root}, images in "
                       f"{made[-1].repository}; both are removed when you quit")
    assert said[-1] == "devsync demo: removed the sample project and its images"
    assert not root.exists()
    assert _images(engine) - before == set(), sandbox.docker_cli(
        engine, "images", "-a").stdout
