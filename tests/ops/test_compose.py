"""Docker Compose runs what devsync synced: the real docker-compose (Debian's 1.29.2) against
the private engine, `up --no-build` after `devsync sync`.

The private engine has no bridge (`--bridge=none`), so the Compose files here run their
services with `network_mode: none`: Compose then creates no network on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import TeamRepo, make_team_repo
from tests.support.yii2 import Yii2Repo, make_yii2_repo

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

COMPOSE = """\
version: "3"
services:
  web:
    build: ./
    network_mode: none
  db:
    image: {busybox}
    network_mode: none
    command: ["true"]
"""


@pytest.fixture(scope="module")
def compose_cli() -> str:
    try:
        return sandbox.compose_cli()
    except sandbox.SandboxUnavailable as exc:
        if IN_CI:
            pytest.fail(f"docker-compose is needed in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))


def _team(tmp_path: Path, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
          busybox: str, name: str) -> TeamRepo:
    team = make_team_repo(tmp_path, engine, registry, busybox, name)
    (team.path / "docker-compose.yml").write_text(COMPOSE.format(busybox=busybox))
    team.commit("Run it with docker-compose")
    return team


def _image_id(team: TeamRepo | Yii2Repo, ref: str) -> str:
    return team.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def _up_runs(team: TeamRepo | Yii2Repo, service: str,
             env: dict[str, str] | None = None) -> str:
    """`docker-compose up --no-build SERVICE`: the image its container ran (and remove it)."""
    up = sandbox.docker_compose(team.engine, "up", "--no-build", "--no-deps", service,
                                cwd=team.path, env=env, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    ps = sandbox.docker_compose(team.engine, "ps", "-a", "-q", service, cwd=team.path, env=env)
    [container] = ps.stdout.split()
    image = team.docker("inspect", "--format", "{{.Image}}", container).stdout.strip()
    sandbox.docker_compose(team.engine, "rm", "-f", "-s", service, cwd=team.path, env=env)
    return image


# yii2-dockerized's web service, runnable on the private engine: no ports (it has no bridge)
# and a command the stand-in base has (it has no s6 /init)
YII2_RUNNABLE = """version: '2'
services:
  web:
    build: ./
    network_mode: none
    entrypoint: ["cat", "/etc/s6/version"]
"""


def test_yii2_web_runs_the_synced_image_with_the_deployed_layers(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path, compose_cli: str) -> None:
    yii = make_yii2_repo(tmp_path, engine, registry, busybox_image, name="yii2-dockerized")
    state = tmp_path / "state"
    # zero config, on the project's own docker-compose.yml (`web: build: ./`)
    out = devsync(yii.path, "status", "--json", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    images = {i["name"]: i for i in json.loads(out.stdout)["images"]}
    assert images["app"]["services"] == ["web"]
    assert images["app"]["compose_tags"] == ["yii2-dockerized-web", "yii2-dockerized_web"]
    assert images["base"]["services"] == []  # build/docker-compose.yml is not the project's

    yii.write("docker-compose.yml", YII2_RUNNABLE)
    yii.commit("Run web on this machine")
    yii.forget_local_images()
    out = devsync(yii.path, "sync", "--yes", engine=engine, state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    synced = _image_id(yii, f"{yii.repo}:dev")
    assert _up_runs(yii, "web") == synced
    # what Compose runs carries the deployed image's layers, not a build of its own
    layers = json.loads(yii.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                   "yii2-dockerized_web").stdout)
    deployed = json.loads(yii.docker("image", "inspect", "--format",
                                     "{{json .RootFS.Layers}}", yii.deployed[-1]).stdout)
    assert layers[:len(deployed) - 2] == deployed[:-2]  # all but COPY . and the RUN after it


def test_compose_up_no_build_runs_the_synced_image(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path, compose_cli: str) -> None:
    team = _team(tmp_path, engine, registry, busybox_image, "composeshop")
    state = tmp_path / "state"
    # before: Compose has nothing to run without building its own image
    up = sandbox.docker_compose(engine, "up", "--no-build", "--no-deps", "web", cwd=team.path,
                                check=False)
    assert up.returncode != 0
    assert "needs to be built" in up.stderr

    out = devsync(team.path, "sync", "--yes", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "docker compose runs it for web as composeshop-web, composeshop_web" in out.stdout
    synced = _image_id(team, f"{team.repo}:dev")
    assert _image_id(team, "composeshop-web") == synced  # Compose v2's name
    assert _image_id(team, "composeshop_web") == synced  # Compose v1's name
    assert _up_runs(team, "web") == synced
    labels = json.loads(team.docker("image", "inspect", "--format",
                                    "{{json .Config.Labels}}", "composeshop_web").stdout)
    assert labels["org.opencontainers.image.revision"]  # devsync's build, with the deployed layers

    # status says which service each image serves
    out = devsync(team.path, "status", "--json", engine=engine, state=state)
    images = {i["name"]: i for i in json.loads(out.stdout)["images"]}
    assert images["app"]["services"] == ["web"]
    assert images["app"]["compose_tags"] == ["composeshop-web", "composeshop_web"]
    assert images["base"]["services"] == []
    out = devsync(team.path, "status", engine=engine, state=state)
    header, *rows = out.stdout.splitlines()[1:]
    assert header.split()[:3] == ["IMAGE", "SERVICES", "STATE"]
    assert any(row.split()[:3] == ["app", "web", "in-sync"] for row in rows), out.stdout


def test_compose_project_name_and_a_moved_tag(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path, compose_cli: str) -> None:
    """yii2-dockerized's .env names the project; a name Compose built before is moved to the
    synced image, and nothing else of the user's is touched."""
    team = _team(tmp_path, engine, registry, busybox_image, "yii2-dockerized")
    (team.path / ".env").write_text('COMPOSE_PROJECT_NAME="myapp"\n')
    state = tmp_path / "state"
    # what `docker-compose build` made earlier (here: any image), and a tag of the user's
    team.docker("tag", busybox_image, "myapp_web")
    team.docker("tag", busybox_image, "myapp_web:mine")
    out = devsync(team.path, "sync", "--yes", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    synced = _image_id(team, f"{team.repo}:dev")
    assert _image_id(team, "myapp_web") == _image_id(team, "myapp-web") == synced
    assert _image_id(team, "myapp_web:mine") == _image_id(team, busybox_image)
    assert _up_runs(team, "web") == synced
    # the environment wins over .env, as with Compose
    out = devsync(team.path, "sync", "--yes", "app", engine=engine, state=state,
                  env={"COMPOSE_PROJECT_NAME": "other"})
    assert out.returncode == 0, out.stderr
    synced = _image_id(team, f"{team.repo}:dev")  # (a new one: its labels name the time)
    assert _image_id(team, "other_web") == synced
    assert _up_runs(team, "web", env={"COMPOSE_PROJECT_NAME": "other"}) == synced


def test_compose_image_name_and_build_args(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path, compose_cli: str) -> None:
    """A service with `image:` is tagged with that name; its args are the build's args."""
    team = make_team_repo(tmp_path, engine, registry, busybox_image, "argshop")
    (team.path / "docker-compose.yml").write_text(f"""\
version: "3"
services:
  web:
    image: local/argshop-web:${{WEB_TAG:-dev}}
    build:
      context: .
      args:
        COMPOSER_FLAGS: --prefer-dist
      cache_from: [local/argshop-web:dev, local/never-built:1]
    network_mode: none
  db:
    image: {busybox_image}
    network_mode: none
""")
    team.commit("Compose with args")
    state = tmp_path / "state"
    out = devsync(team.path, "plan", "app", "--json", engine=engine, state=state)
    steps = json.loads(out.stdout)["images"][0]["steps"]
    install = next(s for s in steps if s["instruction"].startswith("RUN echo"))
    assert not install["cached"]  # another COMPOSER_FLAGS than the deployed build's
    out = devsync(team.path, "sync", "--yes", "app", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "docker compose runs it for web as local/argshop-web:dev" in out.stdout
    synced = _image_id(team, f"{team.repo}:dev")
    assert _image_id(team, "local/argshop-web:dev") == synced
    assert "argshop-web" not in team.docker("images", "--format", "{{.Repository}}",
                                            "argshop_web").stdout
    history = team.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}",
                          synced).stdout
    assert "COMPOSER_FLAGS=--prefer-dist" in history
    assert _up_runs(team, "web") == synced
    # Compose's cache_from: a cache source once it is local (the builder looks only there)
    out = devsync(team.path, "plan", "app", "--json", engine=engine, state=state)
    plan = json.loads(out.stdout)["images"][0]
    assert "local/argshop-web:dev" in plan["cache_from"]
    assert "local/never-built:1" not in plan["cache_from"]
