"""Reasons that name the right thing, on the yii2-shaped project against the real engine and
registry (issue 14, item 2): the cache source a step is compared with gives the revision; a
FROM bump is the FROM line; a changed line is old against new, cut where they differ; an
edit built and then reverted is not blamed on an older commit; "rebuilds after line N"
stays in its stage."""

from __future__ import annotations

import json
import re
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
                          name=f"yii2-why-{next(_COUNTER)}")


def run(yii: Yii2Repo, where: Path, *args: str, state: Path) -> Any:
    out = devsync(where, *args, engine=yii.engine, state=state,
                  env={"DEVSYNC_CHECK_DEADLINE": "10"})
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def plan(yii: Yii2Repo, where: Path, image: str, state: Path) -> dict[str, Any]:
    (answer,) = json.loads(run(yii, where, "plan", image, "--json", state=state).stdout)[
        "images"]
    return answer  # type: ignore[no-any-return]


def step_at(answer: dict[str, Any], line: int) -> dict[str, Any]:
    return next(s for s in answer["steps"] if s["line"] == line)


def synced_clone(yii: Yii2Repo, tmp_path: Path, state: Path) -> Path:
    yii.forget_local_images()
    clone = yii.clone(tmp_path / "clone")
    run(yii, clone, "sync", "--yes", state=state)
    return clone


def teammate_pushes(yii: Yii2Repo, clone: Path, changes: dict[str, str], subject: str) -> str:
    for rel, text in changes.items():
        yii.write(rel, text)
    sha = yii.commit(subject, author="Ben")
    git(clone, "pull", "-q", "--no-rebase", "--no-edit")
    return sha[:7]


def test_a_step_compared_with_your_labelled_build_takes_its_revision(
        yii: Yii2Repo, tmp_path: Path) -> None:
    # CI deploys 1.0.1 without the revision label
    yii.write("views/site/index.php", "<h1>1.0.1</h1>\n")
    yii.commit("Ship 1.0.1", author="Ben")
    yii.docker("build", "-q", "-t", f"{yii.repo}:1.0.1", ".")
    yii.docker("push", f"{yii.repo}:1.0.1")
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    # your own commit, synced: your :dev (labelled) is the image the next steps match
    (clone / "config/php/productive.ini").write_text("display_errors = On\n")
    git(clone, "commit", "-qam", "Errors on, here")
    run(yii, clone, "sync", "--yes", state=state)
    short = teammate_pushes(yii, clone, {"views/site/index.php": "<h1>Ben's</h1>\n"},
                            "New welcome text")

    answer = plan(yii, clone, "app", state)
    assert step_at(answer, 8)["reason"] == f"cached from {yii.repo}:dev"
    copy_all = step_at(answer, 11)
    assert copy_all["reason"] == (f"files changed: views/site/index.php in {short} by Ben: "
                                  "New welcome text")
    assert all("carries no" not in s["reason"] for s in answer["steps"]), answer["steps"]


def test_a_from_bump_is_reported_as_the_from_line(yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    yii.write("build/composer.json", '{"require": {"yiisoft/yii2": "~2.0.40"}}\n')
    yii.commit("Yii 2.0.40")
    yii.ci_build_base("1.1")
    bumped = (yii.path / "Dockerfile").read_text().replace(":base-1.0\n", ":base-1.1\n")
    short = teammate_pushes(yii, clone, {"Dockerfile": bumped}, "Bump the base to 1.1")

    answer = plan(yii, clone, "app", state)
    after_from = step_at(answer, 8)  # (FROM makes no layer: the first step after it rebuilds)
    assert after_from["reason"] == (
        f"FROM changed (line 5): was `FROM {yii.repo}:base-1.0` in the deployed image, "
        f"now `FROM {yii.repo}:base-1.1`")
    text = run(yii, clone, "plan", "app", state=state).stdout
    assert "rebuilds from line 8: FROM changed (line 5)" in text
    assert "line 8 (COPY" not in text
    status = json.loads(run(yii, clone, "status", "--json", state=state).stdout)["images"]
    app = next(i for i in status if i["name"] == "app")
    assert app["cause"] == f"Dockerfile changed in {short} by Ben: Bump the base to 1.1"


def test_a_changed_line_is_old_against_new_cut_where_they_differ(
        yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    base_df = (yii.path / "build/Dockerfile").read_text().replace(
        "php7-fpm php7-intl", "php7-fpm php7-intl php7-apcu")
    app_df = (yii.path / "Dockerfile").read_text().replace(
        "conf.d/90-productive.ini", "conf.d/99-productive.ini")
    teammate_pushes(yii, clone, {"build/Dockerfile": base_df, "Dockerfile": app_df},
                    "PHP settings")

    base = plan(yii, clone, "base", state)
    assert step_at(base, 24)["reason"] == (
        'instruction changed: was `...php7-fpm php7-intl" > /etc/packages` in the deployed '
        'image, now `...php7-fpm php7-intl php7-apcu" > /etc/packages`')
    app = plan(yii, clone, "app", state)
    assert step_at(app, 8)["reason"] == (
        "instruction changed: was `COPY (files) /etc/php7/conf.d/90-productive.ini` in the "
        "deployed image, now `COPY (files) /etc/php7/conf.d/99-productive.ini`")
    for answer in (base, app):  # no content hashes, no builder-internal forms
        for step in answer["steps"]:
            assert not re.search(r"(file|dir|multi):[0-9a-f]{6}|#\(nop\)", step["reason"]), step


def test_an_edit_built_then_reverted_is_not_blamed_on_an_older_commit(
        yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    ini = "display_errors = Off\nlog_errors = On\nmemory_limit = 256M\n"
    older = teammate_pushes(yii, clone, {"config/php/productive.ini": ini}, "Memory limit")
    run(yii, clone, "sync", "--yes", state=state)  # (the image has that commit)
    edited = clone / "config/php/productive.ini"
    edited.write_text(ini + "opcache.enable = 1\n")
    run(yii, clone, "sync", "--yes", state=state)  # the edit is built...
    edited.write_text(ini)  # ...and reverted

    cause = "config/php/productive.ini changed since your last sync"
    line = f"devsync: app: {cause} - run devsync sync"
    # the next prompt, before anything else looked
    assert run(yii, clone, "--check", state=state).stdout.strip() == line
    status = json.loads(run(yii, clone, "status", "--json", state=state).stdout)["images"]
    app = next(i for i in status if i["name"] == "app")
    assert (app["state"], app["cause"]) == ("stale", cause)
    assert older not in app["cause"]
    assert run(yii, clone, "--check", state=state).stdout.strip() == line


def test_rebuilds_after_line_n_stays_in_its_stage(yii: Yii2Repo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    clone = synced_clone(yii, tmp_path, state)
    teammate_pushes(yii, clone, {"build/composer.lock":
                                 '{"packages": [{"name": "yiisoft/yii2", "version": "2.0.15"}]}\n'},
                    "Lock yii 2.0.15")
    answer = plan(yii, clone, "base", state)
    stage_of = {s["line"]: s["stage"] for s in answer["steps"]}
    after = [(s, int(m.group(1))) for s in answer["steps"]
             if (m := re.match(r"rebuilds after line (\d+)$", s["reason"]))]
    assert {s["stage"] for s, _line in after} == {0, 1}, answer["steps"]  # (both stages)
    for step, line in after:
        assert stage_of[line] == step["stage"] and line < step["line"], step
    # the final stage's rebuild starts at its COPY --from the vendor stage
    assert step_at(answer, 42)["reason"] == "rebuilds after line 35"
