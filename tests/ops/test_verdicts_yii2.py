"""Every verdict on a yii2-dockerized-shaped project (multi-stage base, context `build/`),
against the real engine and registry: what `status`, `--check` and `plan` say after each
thing a developer's day brings (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import git
from tests.support.yii2 import Yii2Repo, make_yii2_repo

_COUNTER = iter(range(1000))


@pytest.fixture
def yii(tmp_path: Path, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        busybox_image: str) -> Yii2Repo:
    return make_yii2_repo(tmp_path, engine, registry, busybox_image,
                          name=f"yii2-{next(_COUNTER)}")


def run(yii: Yii2Repo, where: Path, *args: str, state: Path) -> Any:
    return devsync(where, *args, engine=yii.engine, state=state)


def status(yii: Yii2Repo, where: Path, state: Path) -> dict[str, dict[str, Any]]:
    out = run(yii, where, "status", "--json", state=state)
    assert out.returncode == 0, out.stderr
    return {image["name"]: image for image in json.loads(out.stdout)["images"]}


def check(yii: Yii2Repo, where: Path, state: Path) -> str:
    # (a loaded machine must not turn the prompt's 200 ms deadline into silence)
    out = devsync(where, "--check", engine=yii.engine, state=state,
                  env={"DEVSYNC_CHECK_DEADLINE": "10"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def fresh_clone(yii: Yii2Repo, tmp_path: Path) -> Path:
    yii.forget_local_images()
    return yii.clone(tmp_path / "clone")


def test_a_fresh_clone_is_in_sync_after_its_first_sync(yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = fresh_clone(yii, tmp_path)
    out = run(yii, clone, "sync", "--yes", state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    images = status(yii, clone, state)
    assert (images["base"]["state"], images["app"]["state"]) == ("in-sync", "in-sync"), images
    assert images["base"]["action"] == images["app"]["action"] == ""
    assert check(yii, clone, state) == ""
    # the base's plan: only the final stage is compared with the deployed base
    plan = json.loads(run(yii, clone, "plan", "base", "--json", state=state).stdout)
    steps = plan["images"][0]["steps"]
    vendor = [s for s in steps if s["stage"] == 0]
    assert vendor and all("base image changed" not in s["reason"] for s in vendor), vendor
    final = [s for s in steps if s["stage"] == 1 and s["kind"] != "from"]
    before_copy_from = final[:[s["kind"] for s in final].index("copy-stage")]
    assert before_copy_from and all(s["cached"] for s in before_copy_from), final
    assert all("rebuilds after line" not in s["reason"] or int(s["reason"].split()[-1]) >=
               final[0]["line"] for s in final), final


def teammate_pushes(yii: Yii2Repo, clone: Path, rel: str, text: str, subject: str,
                    author: str = "Ben") -> str:
    """A teammate's commit arrives in the developer's clone by `git pull`."""
    yii.write(rel, text)
    sha = yii.commit(subject, author=author)
    git(clone, "pull", "-q", "--ff-only")
    return sha[:7]


def synced_clone(yii: Yii2Repo, tmp_path: Path, state: Path) -> Path:
    clone = fresh_clone(yii, tmp_path)
    out = run(yii, clone, "sync", "--yes", state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    return clone


def test_a_teammates_view_edit_names_the_file_and_its_commit(yii: Yii2Repo,
                                                              tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    short = teammate_pushes(yii, clone, "views/site/index.php", "<h1>Hello, team</h1>\n",
                            "New welcome text")
    cause = f"views/site/index.php changed in {short} by Ben: New welcome text"
    # the very next prompt, before status, a refresh or the TUI looked (a file under
    # `COPY . ...`, not watched one by one: the prompt asks git about the build context)
    assert check(yii, clone, state) == f"devsync: app: {cause} - run devsync sync"
    app = status(yii, clone, state)["app"]
    assert (app["state"], app["cause"], app["action"]) == ("stale", cause, "run devsync sync")
    # the prompt says the very same words
    assert check(yii, clone, state) == f"devsync: app: {cause} - run devsync sync"
    # the plan names it too, and says which line rebuilds, in its own stage
    plan = json.loads(run(yii, clone, "plan", "app", "--json", state=state).stdout)
    first = next(s for s in plan["images"][0]["steps"] if not s["cached"])
    assert first["instruction"].startswith("COPY . ") and "views/site/index.php" in first["reason"]
    assert "carries no" not in first["reason"]


def test_a_teammates_base_edit_is_one_sync_away(yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    dockerfile = (yii.path / "build/Dockerfile").read_text().replace(
        "php7-fpm php7-intl", "php7-fpm php7-intl php7-apcu")
    short = teammate_pushes(yii, clone, "build/Dockerfile", dockerfile, "Add php7-apcu")
    cause = f"build/Dockerfile changed in {short} by Ben: Add php7-apcu"
    # seen at the next prompt, before anything else ran
    assert check(yii, clone, state) == f"devsync: base: {cause} - run devsync sync"
    base = status(yii, clone, state)["base"]
    assert (base["state"], base["cause"], base["action"]) == ("stale", cause,
                                                              "run devsync sync")
    assert check(yii, clone, state) == f"devsync: base: {cause} - run devsync sync"
    # the one next step: a sync builds the base here from the changed Dockerfile
    out = run(yii, clone, "sync", "--yes", state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    images = status(yii, clone, state)
    assert (images["base"]["state"], images["app"]["state"]) == ("in-sync", "in-sync"), images
    assert check(yii, clone, state) == ""
    built = yii.docker("run", "--rm", "--entrypoint", "cat", yii.base_ref(),
                       "/etc/packages").stdout
    assert "php7-apcu" in built


def test_a_checkout_behind_the_deployment_says_git_pull_and_pulls_nothing(
        yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    yii.write("views/site/index.php", "<h1>Shipped</h1>\n")
    yii.commit("Ship the new welcome", author="Ben")
    deployed = yii.ci_deploy("1.0.1")
    yii.docker("rmi", deployed)  # (CI's machine is not the developer's)
    cause = f"1.0.1 was built from {yii.head[:7]}, which this checkout does not have"
    app = status(yii, clone, state)["app"]
    assert (app["state"], app["cause"], app["action"]) == ("stale", cause, "git pull")
    assert check(yii, clone, state) == f"devsync: app: {cause} - git pull"
    out = run(yii, clone, "sync", "--yes", state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "git pull" in out.stdout
    assert yii.docker("image", "inspect", deployed, check=False).returncode != 0  # not pulled
    assert status(yii, clone, state)["app"]["action"] == "git pull"  # never "in sync"


def test_with_the_engine_down_every_image_is_unknown_never_missing(
        yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    down = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    out = devsync(clone, "status", "--json", env=down, state=state)
    assert out.returncode == 0, out.stderr
    images = {i["name"]: i for i in json.loads(out.stdout)["images"]}
    for image in images.values():
        assert image["state"] == "unknown", image
        assert image["cause"].startswith("the Docker engine cannot be reached"), image
    assert check(yii, clone, state) == ""  # (no nagging at every prompt while it is down)
