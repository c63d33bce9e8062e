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
        assert any("would pay off" in w for w in advice["warnings"]), advice
        assert any("overlay2 refuses" in w for w in advice["warnings"]), advice
    finally:
        config.unlink()
