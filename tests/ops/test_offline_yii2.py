"""Offline and partial days on the yii2-shaped project, against the real engine and a
registry of the test's own that it stops (issue 14, item 6): the team registry down, the
base's FROM registry (Docker Hub) out of reach; each image answers for itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.yii2 import Yii2Repo, make_yii2_repo


@pytest.fixture
def team_registry(tmp_path: Path, engine: sandbox.PrivateEngine) -> Iterator[
        sandbox.PrivateRegistry]:
    """The team's registry, the test's own: stopping it stops no other test."""
    reg = sandbox.PrivateRegistry(tmp_path / "team-registry").start()
    yield reg
    reg.stop()


def run(yii: Yii2Repo, where: Path, *args: str, state: Path) -> Any:
    return devsync(where, *args, engine=yii.engine, state=state)


def warnings(text: str) -> list[str]:
    """devsync's own warnings (not the engine's, e.g. "IPv4 forwarding is disabled")."""
    return [line.strip() for line in text.splitlines()
            if "warning:" in line and "IPv4 forwarding" not in line]


def unchecked(host: str) -> str:
    return (f"registry {host} could not be checked (not reachable: connection refused): "
            "working from the images on this machine")


def statuses(yii: Yii2Repo, where: Path, state: Path) -> dict[str, dict[str, Any]]:
    out = run(yii, where, "status", "--json", state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    return {image["name"]: image for image in json.loads(out.stdout)["images"]}


def test_with_the_team_registry_down_a_code_edit_is_planned_and_synced_from_local_images(
        tmp_path: Path, engine: sandbox.PrivateEngine, team_registry: sandbox.PrivateRegistry,
        busybox_image: str) -> None:
    yii = make_yii2_repo(tmp_path, engine, team_registry, busybox_image, name="yii2-offline")
    yii.forget_local_images()
    clone = yii.clone(tmp_path / "clone")
    state = tmp_path / "state"
    first = run(yii, clone, "sync", "--yes", state=state)
    assert first.returncode == 0, first.stdout + first.stderr

    (clone / "views/site/index.php").write_text("<h1>Written on a train</h1>\n")
    team_registry.stop()
    line = unchecked(team_registry.host)

    plan = run(yii, clone, "plan", "app", "--json", state=state)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert warnings(plan.stderr) == [f"devsync: warning: {line}"], plan.stderr
    (app,) = json.loads(plan.stdout)["images"]
    assert app["cache_from"][0] == f"{yii.repo}:1.0.0"
    first_rebuild = next(s for s in app["steps"] if not s["cached"])
    assert first_rebuild["instruction"].startswith("COPY . ")
    assert "views/site/index.php" in first_rebuild["reason"]

    every = run(yii, clone, "plan", state=state)  # (text, every image)
    assert every.returncode == 0, every.stdout + every.stderr
    assert warnings(every.stderr) == [f"devsync: warning: {line}"], every.stderr
    assert "unknown" not in every.stdout

    sync = run(yii, clone, "sync", "--yes", state=state)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "error" not in sync.stderr, sync.stderr
    assert warnings(sync.stdout) == [f"warning: {line}"], sync.stdout
    built = yii.docker("run", "--rm", "--entrypoint", "cat", f"{yii.repo}:dev",
                       "/var/www/html/views/site/index.php").stdout
    assert built == "<h1>Written on a train</h1>\n"
    status = run(yii, clone, "status", state=state)
    assert status.returncode == 0, status.stdout + status.stderr
    assert warnings(status.stderr) == [f"devsync: warning: {line}"], status.stderr
    images = statuses(yii, clone, state)
    assert images["app"]["state"] == "in-sync", images["app"]

    # nothing local to use (no deployed image here): the registry's error, as before
    yii.docker("rmi", f"{yii.repo}:1.0.0")
    alone = run(yii, clone, "plan", "app", state=state)
    assert alone.returncode == 8, alone.stdout + alone.stderr
    assert f"devsync: error: registry {team_registry.host} is not reachable: connection " \
           "refused" in alone.stderr
    assert "Traceback" not in alone.stderr
    refused = run(yii, clone, "sync", "app", "--yes", state=state)
    assert refused.returncode == 8, refused.stdout + refused.stderr
    assert f"registry {team_registry.host} is not reachable" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_with_the_bases_from_registry_unreachable_the_base_is_unknown_and_the_app_syncs(
        tmp_path: Path, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str) -> None:
    hub = f"localhost:{sandbox.free_port()}"  # a Docker Hub nobody serves: refused
    yii = make_yii2_repo(tmp_path, engine, registry, busybox_image, name="yii2-nohub",
                         hub=hub)
    yii.forget_local_images()
    yii.forget_hub_images()  # a fresh machine: composer and alpine are not here either
    clone = yii.clone(tmp_path / "clone")
    state = tmp_path / "state"
    cause = (f"{hub}/composer:2 is not on this machine and registry {hub} is not reachable: "
             "connection refused")

    plan = run(yii, clone, "plan", "--json", state=state)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    answers = {image["name"]: image for image in json.loads(plan.stdout)["images"]}
    base, app = answers["base"], answers["app"]
    assert (base["state"], base["error"], base["steps"], base["exit_code"]) == (
        "unknown", cause, [], 8)
    assert app["steps"] and app["cache_from"] == [f"{yii.repo}:1.0.0"], app
    assert all(s["cached"] for s in app["steps"]), app["steps"]

    text = run(yii, clone, "plan", state=state)
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"unknown: {cause}" in text.stdout
    assert "all 5 steps cached" in text.stdout, text.stdout

    one = run(yii, clone, "plan", "base", state=state)  # the failing image alone: its code
    assert one.returncode == 8, one.stdout + one.stderr
    assert f"devsync: error: {cause}" in one.stderr

    images = statuses(yii, clone, state)
    assert (images["base"]["state"], images["base"]["cause"]) == ("unknown", cause)
    assert images["app"]["state"] == "missing"

    sync = run(yii, clone, "sync", "--yes", state=state)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "error" not in sync.stderr, sync.stderr
    assert warnings(sync.stdout) == [
        f"warning: {yii.base_ref()} could not be checked against its Dockerfile: {cause}; "
        f"using the team's {yii.base_ref()}"], sync.stdout
    images = statuses(yii, clone, state)
    assert (images["base"]["state"], images["base"]["cause"]) == ("unknown", cause)
    assert images["app"]["state"] == "in-sync", images["app"]
    check = devsync(clone, "--check", engine=engine, state=state,
                    env={"DEVSYNC_CHECK_DEADLINE": "10"})
    assert (check.returncode, check.stdout) == (0, "")


def test_one_sync_on_a_fresh_machine_builds_a_changed_base_first(
        tmp_path: Path, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str) -> None:
    """A teammate changed the base's Dockerfile (CI has not built it): on a machine with no
    image of the project, one sync builds the base here, then the app on it."""
    yii = make_yii2_repo(tmp_path, engine, registry, busybox_image, name="yii2-fresh")
    base_df = (yii.path / "build/Dockerfile").read_text().replace(
        "php7-fpm php7-intl", "php7-fpm php7-intl php7-apcu")
    yii.write("build/Dockerfile", base_df)
    yii.commit("Add php7-apcu", author="Ben")
    yii.forget_local_images()
    clone = yii.clone(tmp_path / "clone")
    state = tmp_path / "state"

    sync = run(yii, clone, "sync", "--yes", state=state)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    phases = [line for line in sync.stdout.splitlines() if line.startswith("==> ")]
    build_base = phases.index(next(p for p in phases if p.startswith("==> base: build")))
    build_app = phases.index(next(p for p in phases if p.startswith("==> app: build")))
    assert build_base < build_app, phases
    # the app's plan is made again on the base just built, and said, before its build
    replanned = [n for n, line in enumerate(sync.stdout.splitlines())
                 if "planned again on the base built here:" in line]
    assert len(replanned) == 1, sync.stdout
    images = statuses(yii, clone, state)
    assert (images["base"]["state"], images["app"]["state"]) == ("in-sync", "in-sync"), images
    packages = yii.docker("run", "--rm", "--entrypoint", "cat", f"{yii.repo}:dev",
                          "/etc/packages").stdout
    assert "php7-apcu" in packages  # (the app is on the base built here)
    check = devsync(clone, "--check", engine=engine, state=state,
                    env={"DEVSYNC_CHECK_DEADLINE": "10"})
    assert (check.returncode, check.stdout) == (0, "")
