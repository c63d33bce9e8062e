"""The base-image workflow against the real engine and registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import TeamRepo, make_team_repo


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    return make_team_repo(tmp_path_factory.mktemp("base"), engine, registry, busybox_image,
                          "baseshop")


def test_base_build_push_bump_publish(team: TeamRepo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    base = team.path / "Dockerfile.base"
    base.write_text(base.read_text().replace("runtime 1", "runtime 2"))
    team.commit("Runtime 2")
    out = devsync(team.path, "base", "build", "--push", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "devsync base bump" in out.stdout
    tags = team.docker("images", "--format", "{{.Tag}}", team.repo).stdout.split()
    assert "base-1.1.0" in tags

    before = (team.path / "Dockerfile").read_bytes()
    out = devsync(team.path, "base", "bump", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    after = (team.path / "Dockerfile").read_bytes()
    assert after == before.replace(b"base-1.0.0", b"base-1.1.0")
    team.commit("Bump base to 1.1.0")

    out = devsync(team.path, "publish", "1.0.2", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert any(e["event"] == "pushed" for e in events)
    labels = json.loads(team.docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                                    f"{team.repo}:1.0.2").stdout)
    assert labels["org.opencontainers.image.version"] == "1.0.2"


def test_advice_flags_cache_busting_order(team: TeamRepo, tmp_path: Path) -> None:
    df = team.path / "Dockerfile"
    text = df.read_text()
    df.write_text(text.replace("COPY . /var/www/html\n", "").replace(
        "COPY composer.json composer.lock ./\n",
        "COPY . /var/www/html\nRUN composer install || true\n"))
    out = devsync(team.path, "base", "advice", "--json", engine=team.engine,
                  state=tmp_path / "state")
    assert out.returncode == 0, out.stderr
    warnings = json.loads(out.stdout)["warnings"]
    assert any("Dockerfile:6: this dependency install comes after `COPY .` (line 5)" in w
               for w in warnings), warnings
    out = devsync(team.path, "plan", "app", "--json", engine=team.engine,
                  state=tmp_path / "state")
    notes = json.loads(out.stdout)["images"][0]["notes"]
    assert any("comes after `COPY .`" in n for n in notes), notes
    df.write_text(text)


def test_advice_warns_on_drift_and_depth_with_configured_thresholds(team: TeamRepo,
                                                                    tmp_path: Path) -> None:
    config = team.path / ".devsync.toml"
    config.write_text("[devsync]\nbase_drift_threshold = 0.0001\nlayer_warning = 3\n")
    try:
        out = devsync(team.path, "base", "advice", "--json", engine=team.engine,
                      state=tmp_path / "state")
        assert out.returncode == 0, out.stderr
        advice = json.loads(out.stdout)
        assert advice["app_bytes"] > 0 and advice["base_bytes"] > 0
        # the drift is the verdict's reason (it was a warning before the verdict)
        assert advice["verdict"]["worth_it"] is True, advice
        assert advice["verdict"]["reason"].startswith("a new base would save "), advice
        assert any("overlay2 refuses" in w for w in advice["warnings"]), advice
    finally:
        config.unlink()


def test_advice_answers_with_a_verdict_and_its_reason(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    """`base advice` answers "is a new base worth it?": not while the dependency layers above
    the base are small; yes, with the MB a new base saves per deploy, once a deploy ships
    large dependency layers again. The CLI prints the verdict ops computed; --json has it."""
    team = make_team_repo(tmp_path, engine, registry, busybox_image, "adviceshop")
    state = tmp_path / "state"
    out = devsync(team.path, "base", "advice", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout)["verdict"]
    assert verdict["worth_it"] is False, verdict
    assert verdict["reason"].startswith("not worth it yet: app's dependency layers above "
                                        "base-1.0.0 are 0.0 MB, 0% of the base"), verdict
    assert "a new base pays off from 50% (base_drift_threshold)" in verdict["reason"]
    human = devsync(team.path, "base", "advice", engine=team.engine, state=state)
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0] == f"verdict: {verdict['reason']}"
    assert "next:" not in human.stdout

    # the dependencies grow: 3 MB of incompressible packages installed above the base
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace(
        "> /opt/vendor.txt\n",
        "> /opt/vendor.txt && head -c 3000000 /dev/urandom > /opt/vendor.bin\n"))
    (team.path / "composer.lock").write_text('{"packages": ["yiisoft/yii2"]}\n')
    team.commit("Require yii2")
    team.ci_deploy("1.0.2")
    out = devsync(team.path, "base", "advice", "--json", engine=team.engine, state=state)
    assert out.returncode == 0, out.stderr
    advice = json.loads(out.stdout)
    verdict = advice["verdict"]
    assert verdict["worth_it"] is True, verdict
    assert 3_000_000 <= verdict["saving_bytes"] == advice["deps_bytes"] < 3_200_000, advice
    saving = f"{verdict['saving_bytes'] / 1e6:.1f} MB"
    assert verdict["reason"].startswith(f"a new base would save {saving} per deploy: app's "
                                        "dependency layers above base-1.0.0 have grown to "
                                        f"{saving}"), verdict
    assert f"its last deploy shipped {saving} of them again" in verdict["reason"], verdict
    # the code layers (COPY . and after) ship with every deploy: not counted as saved
    assert advice["app_bytes"] > advice["deps_bytes"]
    human = devsync(team.path, "base", "advice", engine=team.engine, state=state)
    assert human.stdout.splitlines()[0] == f"verdict: {verdict['reason']}"
    assert verdict["next"] == "devsync base build --push"
    assert human.stdout.splitlines()[-1] == ("next: devsync base build --push (then devsync "
                                             "base bump points FROM at it)")
    assert "warning:" not in human.stdout  # the verdict, said once


# -- base tag schemes: yii2-dockerized tags its bases `base-1.0`, `base-1.1` -------------------


def _two_part_team(root: Path, engine: sandbox.PrivateEngine,
                   registry: sandbox.PrivateRegistry, busybox: str, name: str,
                   base_tags: list[str], from_tag: str) -> TeamRepo:
    """A team whose CI pushed the bases `base_tags` and whose Dockerfile starts FROM
    `from_tag`."""
    team = make_team_repo(root, engine, registry, busybox, name)
    for tag in base_tags:
        team.docker("tag", f"{team.repo}:base-1.0.0", f"{team.repo}:{tag}")
        team.docker("push", f"{team.repo}:{tag}")
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("base-1.0.0", from_tag))
    team.commit(f"FROM {from_tag}")
    return team


def _registry_tags(team: TeamRepo) -> list[str]:
    import urllib.request

    name = team.repo.split("/", 1)[1]
    with urllib.request.urlopen(f"{team.registry.url}/v2/{name}/tags/list") as answer:
        return sorted(json.load(answer)["tags"])


def test_two_part_base_tags_bump_build_and_local_bump(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    team = _two_part_team(tmp_path, engine, registry, busybox_image, "yiibase",
                          ["base-1.0", "base-1.1"], "base-1.0")
    state = tmp_path / "state"
    df = team.path / "Dockerfile"
    before = df.read_bytes()

    # bump: the registry's newest base, in its own scheme
    out = devsync(team.path, "base", "bump", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert df.read_bytes() == before.replace(b"base-1.0", b"base-1.1")
    assert "Dockerfile: base-1.0 -> base-1.1" in out.stdout
    team.commit("Bump the base to 1.1")

    # build: after base-1.1 comes base-1.2 (not base-1.2.0, not an error)
    out = devsync(team.path, "base", "build", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert f"{team.repo}:base-1.2:" in out.stdout
    assert team.docker("image", "inspect", f"{team.repo}:base-1.2").returncode == 0
    assert "base-1.2" not in _registry_tags(team)

    # --to a tag the registry lacks is refused, and says how to use the local one
    bumped = df.read_bytes()
    out = devsync(team.path, "base", "bump", "--to", "base-1.2", engine=engine, state=state)
    assert out.returncode == 10, out.stderr
    assert (f"{team.repo}:base-1.2 is not in the registry "
            "(its newest: base-1.0, base-1.0.0, base-1.1)") in out.stderr
    assert "devsync base bump --to base-1.2 --local" in out.stderr
    assert "Traceback" not in out.stderr
    assert df.read_bytes() == bumped

    # --local: it must exist on this machine
    out = devsync(team.path, "base", "bump", "--to", "base-1.3", "--local", engine=engine,
                  state=state)
    assert out.returncode == 10, out.stderr
    assert f"{team.repo}:base-1.3 is not an image on this machine" in out.stderr
    out = devsync(team.path, "base", "bump", "--to", f"{team.repo}:base-1.2", "--local",
                  engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert df.read_bytes() == bumped.replace(b"base-1.1", b"base-1.2")
    team.commit("Bump the base to the local 1.2")

    # a plain bump never goes back to the registry's older newest
    out = devsync(team.path, "base", "bump", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "FROM already uses base-1.2, newer than any base in the registry" in out.stdout
    assert b"base-1.2" in df.read_bytes()

    # the next build follows the FROM line's base-1.2 and is pushed; bump then finds it
    out = devsync(team.path, "base", "build", "--push", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "base-1.3" in _registry_tags(team)
    out = devsync(team.path, "base", "bump", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "Dockerfile: base-1.2 -> base-1.3" in out.stdout


def test_base_tags_order_as_versions_in_the_registry(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    team = _two_part_team(tmp_path, engine, registry, busybox_image, "tenbase",
                          ["base-1.9", "base-1.10", "base-1.2"], "base-1.9")
    state = tmp_path / "state"
    out = devsync(team.path, "base", "bump", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "Dockerfile: base-1.9 -> base-1.10" in out.stdout
    out = devsync(team.path, "base", "build", "--json", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert f"{team.repo}:base-1.11" in out.stdout


def test_calendar_base_tags_build_todays_base(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    import datetime

    team = _two_part_team(tmp_path, engine, registry, busybox_image, "calbase",
                          ["base-20240430", "base-20240501"], "base-20240430")
    state = tmp_path / "state"
    out = devsync(team.path, "base", "bump", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert "Dockerfile: base-20240430 -> base-20240501" in out.stdout
    out = devsync(team.path, "base", "build", "--push", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    today = f"base-{datetime.date.today():%Y%m%d}"
    assert today in _registry_tags(team)
    # a second base the same day is counted up
    out = devsync(team.path, "base", "build", "--push", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert f"{today}.1" in _registry_tags(team)


def test_base_commands_refuse_bad_versions_with_a_usage_error(team: TeamRepo,
                                                              tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = (team.path / "Dockerfile").read_bytes()
    out = devsync(team.path, "base", "build", "--version", "1.x", engine=team.engine,
                  state=state)
    assert out.returncode == 2, out.stderr
    assert "--version 1.x: not a version (e.g. 1.2, 1.2.0, 2024.05 or 20240501)" in out.stderr
    for args, message in [(("--to", "other/repo:base-1.1"), "expected a tag of"),
                          (("--to", "Base 1.1"), "--to Base 1.1:"),
                          (("--local",), "--local needs --to TAG")]:
        out = devsync(team.path, "base", "bump", *args, engine=team.engine, state=state)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert (team.path / "Dockerfile").read_bytes() == before


def test_bump_to_with_the_registry_down_says_how_to_bump_offline(tmp_path: Path) -> None:
    from tests.support.teamrepo import git

    root = tmp_path / "offline"
    root.mkdir()
    git(root, "init", "-q")
    (root / "Dockerfile").write_text("FROM 127.0.0.1:9/yii2:base-1.0\nCOPY . /app\n")
    (root / "Dockerfile.base").write_text("FROM alpine\n")
    out = devsync(root, "base", "bump", "--to", "base-1.1", state=tmp_path / "state")
    assert out.returncode == 8, out.stderr
    assert "devsync base bump --to base-1.1 --local" in out.stderr
    out = devsync(root, "base", "bump", state=tmp_path / "state")
    assert out.returncode == 8, out.stderr
    assert (root / "Dockerfile").read_text().startswith("FROM 127.0.0.1:9/yii2:base-1.0\n")


def test_yii2_base_1_1_bump_sync_and_next_base(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    """yii2-dockerized's own scheme: CI pushes base-1.1; bump, sync on it, build base-1.2."""
    from tests.support.yii2 import make_yii2_repo

    yii = make_yii2_repo(tmp_path, engine, registry, busybox_image, name="yii2-bump")
    state = tmp_path / "state"
    yii.write("build/composer.json", '{"require": {"yiisoft/yii2": "~2.0.40"}}\n')
    yii.commit("Yii 2.0.40")
    yii.ci_build_base("1.1")
    df = yii.path / "Dockerfile"
    before = df.read_bytes()
    out = devsync(yii.path, "base", "bump", engine=engine, state=state)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Dockerfile: base-1.0 -> base-1.1\n")
    assert df.read_bytes() == before.replace(b":base-1.0\n", b":base-1.1\n")
    yii.commit("Bump the base to 1.1")
    out = devsync(yii.path, "sync", "--yes", engine=engine, state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    out = devsync(yii.path, "status", "--json", engine=engine, state=state)
    images = {i["name"]: i for i in json.loads(out.stdout)["images"]}
    assert images["base"]["tag"] == f"{yii.repo}:base-1.1"
    assert images["app"]["state"] == "in-sync", images["app"]
    out = devsync(yii.path, "base", "build", engine=engine, state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{yii.repo}:base-1.2: " in out.stdout
    yii.docker("image", "inspect", f"{yii.repo}:base-1.2")


def test_a_base_tag_the_registry_has_is_never_pushed_over_unasked(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    shop = make_team_repo(tmp_path / "team", engine, registry, busybox_image, "keepbase")
    state = tmp_path / "state"
    digest_before = _registry_digest(registry, "keepbase", "base-1.0.0")
    base = shop.path / "Dockerfile.base"
    base.write_text(base.read_text().replace("runtime 1", "runtime 9"))
    shop.commit("Runtime 9")

    out = devsync(shop.path, "base", "build", "--version", "1.0.0", "--push",
                  engine=shop.engine, state=state)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{shop.repo}:base-1.0.0 is already in the registry" in out.stderr
    assert "--replace" in out.stderr and "Traceback" not in out.stderr
    assert _registry_digest(registry, "keepbase", "base-1.0.0") == digest_before

    # a new version is fine; so is the same one when asked for
    out = devsync(shop.path, "base", "build", "--version", "1.0.0", "--push", "--replace",
                  engine=shop.engine, state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _registry_digest(registry, "keepbase", "base-1.0.0") != digest_before


def test_publish_refuses_a_version_that_is_not_one_as_a_usage_error(team: TeamRepo,
                                                                      tmp_path: Path) -> None:
    out = devsync(team.path, "publish", "1.x", engine=team.engine, state=tmp_path / "state")
    assert out.returncode == 2, out.stderr
    assert "1.x: not a semantic version" in out.stderr and "Traceback" not in out.stderr


def _registry_digest(registry: sandbox.PrivateRegistry, path: str, tag: str) -> str | None:
    from devsync.adapters.registry import RegistryClient

    return RegistryClient(registry.host).head_digest(path, tag)
