"""A developer with umask 002 (files 0664, directories 0775) against a deployed image built by CI
under umask 022: the docker CLI misses from the first COPY, devsync sends git's modes and
reuses every layer. Real git repository, real engine and registry, devsync as a subprocess.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import TeamRepo, make_team_repo


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamRepo]:
    # CI checks out (and so builds) under umask 022, whatever this test process's umask is
    old = os.umask(0o022)
    try:
        team = make_team_repo(tmp_path_factory.mktemp("gitmodes"), engine, registry,
                              busybox_image, "umaskshop")
    finally:
        os.umask(old)
    yield team


def _umask_002_checkout(team: TeamRepo) -> None:
    """The same commit as checked out by git under umask 002."""
    for p in [team.path, *team.path.rglob("*")]:
        if ".git" in p.relative_to(team.path).parts or p.is_symlink():
            continue
        if p.is_dir():
            p.chmod(0o775)
        else:
            p.chmod(0o775 if p.stat().st_mode & 0o111 else 0o664)


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _layers(team: TeamRepo, ref: str) -> list[str]:
    out = team.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).stdout
    layers: list[str] = json.loads(out)
    return layers


def test_umask_002_checkout_reuses_every_deployed_layer(team: TeamRepo, tmp_path: Path) -> None:
    deployed = f"{team.repo}:1.0.1"
    _umask_002_checkout(team)
    assert (team.path / "composer.json").stat().st_mode & 0o777 == 0o664
    assert (team.path / "src").stat().st_mode & 0o777 == 0o775
    team.forget_local_images()
    state = tmp_path / "state"

    # the plan, on a fresh machine: every step cached, with git's modes
    out = devsync(team.path, "plan", "app", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    (image,) = json.loads(out.stdout)["images"]
    assert image["context_flavor"] == "cli_modern_git_modes"
    assert image["cache_from"] == [deployed]
    assert all(s["cached"] for s in image["steps"]), image["steps"]
    assert any("0664/0775 (umask 002?)" in n and "git's modes 0644/0755" in n
               for n in image["notes"]), image["notes"]

    # devsync's own build does what the plan said: every step reused
    out = devsync(team.path, "sync", "app", "--yes", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    events = _events(out.stdout)
    finished = [e for e in events
                if e["event"] == "step_finished" and e["predicted_cached"] is not None]
    # ARG, FROM, ARG, WORKDIR, COPY, RUN, COPY, RUN, CMD: predicted (the LABEL steps are not)
    assert len(finished) == 9, [e["event"] for e in events]
    assert [e["cached"] for e in finished] == [e["predicted_cached"] for e in finished]
    assert all(e["cached"] for e in finished), [(e["index"], e["cached"]) for e in finished]
    assert not any(e["event"] == "warning" and "differed from the plan" in e["message"]
                   for e in events)
    # so the image is the deployed one's layers exactly (devsync's LABEL steps add none),
    # and its files carry CI's modes, not the developer's
    assert _layers(team, f"{team.repo}:dev") == _layers(team, deployed)
    modes = team.docker("run", "--rm", f"{team.repo}:dev", "stat", "-c", "%a %n",
                        "/var/www/html/composer.json", "/var/www/html/src").stdout.split("\n")
    assert modes[:2] == ["644 /var/www/html/composer.json", "755 /var/www/html/src"]
    # and status, replaying the build against that image with the same flavor, agrees
    out = devsync(team.path, "status", "--json", engine=team.engine, state=state)
    states = {i["name"]: i["state"] for i in json.loads(out.stdout)["images"]}
    assert states["app"] == "in-sync", out.stdout

    # the plain docker CLI sends the 0664/0775 modes and misses from the first COPY (line 5)
    team.forget_local_images()
    real = team.cli_build_with_cache([deployed], f"{team.repo}:cli-check")
    steps = image["steps"]
    first_miss = next(i for i, hit in enumerate(real) if not hit)
    assert steps[first_miss]["line"] == 5 and steps[first_miss]["instruction"].startswith("COPY")
    assert not any(real[first_miss:])


def test_umask_002_with_an_edit_blames_the_edit_not_the_modes(team: TeamRepo,
                                                              tmp_path: Path) -> None:
    _umask_002_checkout(team)
    lib = team.path / "src" / "lib.php"
    lib.write_text("<?php function f() { return 3; }\n")
    lib.chmod(0o664)
    team.forget_local_images()
    state = tmp_path / "state"
    out = devsync(team.path, "plan", "app", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    (image,) = json.loads(out.stdout)["images"]
    assert image["context_flavor"] == "cli_modern_git_modes"
    cached = {s["line"]: s["cached"] for s in image["steps"]}
    assert cached[5] and cached[6] and not cached[7] and not cached[8]
    step7 = next(s for s in image["steps"] if s["line"] == 7)
    assert "src/lib.php" in step7["reason"] and "uncommitted" in step7["reason"]
    assert "umask" not in step7["reason"] and "mode" not in step7["reason"]

    out = devsync(team.path, "sync", "app", "--yes", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    finished = [e for e in _events(out.stdout)
                if e["event"] == "step_finished" and e["predicted_cached"] is not None]
    assert len(finished) == 9
    assert [e["cached"] for e in finished] == [e["predicted_cached"] for e in finished]
    assert [e["cached"] for e in finished][4:6] == [True, True]
