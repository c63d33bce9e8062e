"""A BuildKit team, end to end: CI builds its base and app with the docker 20.10 CLI's
built-in BuildKit (`DOCKER_BUILDKIT=1 /usr/bin/docker build`, inline cache) and pushes them;
a developer on a machine that never built them (no images of the repository, no build cache)
runs `devsync sync`, `status` and `publish` as a user types them (subprocesses), against the
real private engine and registries. The builder is chosen by devsync (`builder` on "auto")."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import git

LEGACY_CLI = "/usr/bin/docker"
BASE = """\
FROM {busybox}
ENV LANG=C.UTF-8 APP_HOME=/var/www/html
RUN mkdir -p /opt/runtime && echo "runtime 1" > /opt/runtime/version
"""
APP = """\
FROM {repo}:base-1.0.0
WORKDIR /var/www/html
COPY composer.json ./
RUN head -c 3000000 /dev/urandom > /opt/vendor.bin && cat composer.json > /opt/vendor.txt
COPY . /var/www/html
RUN ls /var/www/html > /opt/files.txt && head -c 2000000 /dev/urandom > /opt/after.bin
CMD ["sh", "-c", "cat /opt/vendor.txt"]
"""
# the app's steps as the plan numbers them (FROM first)
FROM, WORKDIR, COPY_COMPOSER, INSTALL, COPY_CODE, LIST = range(6)
PASSWORD = "bk-s3cret-pass"
USER = "ci"


@dataclass
class Team:
    path: Path
    repo: str
    env: dict[str, str]  # what CI and the developer run with (the engine, DOCKER_CONFIG)

    def ci(self, *args: str, cwd: Path | None = None) -> str:
        env = dict(self.env, DOCKER_BUILDKIT="1")
        proc = subprocess.run([LEGACY_CLI, *args], env=env, cwd=cwd or self.path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def run(self, engine: sandbox.PrivateEngine, *args: str) -> subprocess.CompletedProcess[str]:
        """devsync as the developer types it (the 20.10 CLI for BuildKit, unless env says)."""
        return devsync(self.path, *args, engine=engine, state=self.path.parent / "state",
                       env={"DEVSYNC_DOCKER_CLI": LEGACY_CLI, **self.env})

    def fresh_machine(self) -> None:
        """No image of this repository and no build cache: a developer's machine."""
        self.ci("builder", "prune", "-af")
        out = self.ci("images", "--format", "{{.Repository}}:{{.Tag}}")
        refs = [ref for ref in out.split() if ref.startswith(self.repo + ":")]
        if refs:
            self.ci("rmi", "-f", *refs)
        self.ci("image", "prune", "-f")

    def has_image(self, ref: str) -> bool:
        env = dict(self.env)
        return subprocess.run([LEGACY_CLI, "image", "inspect", ref], env=env,
                              capture_output=True).returncode == 0


def make_team(root: Path, engine: sandbox.PrivateEngine, host: str, busybox: str, *,
              inline_cache: bool = True, docker_config: Path | None = None) -> Team:
    name = f"bk{uuid.uuid4().hex[:8]}"
    path = root / name
    path.mkdir(parents=True)
    repo = f"{host}/{name}"
    env = dict(engine.env())
    if docker_config is not None:
        env["DOCKER_CONFIG"] = str(docker_config)
    team = Team(path, repo, env)
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile.base").write_text(BASE.format(busybox=busybox))
    (path / "Dockerfile").write_text(APP.format(repo=repo))
    (path / "composer.json").write_text('{"require": {"php": "^8.2"}}\n')
    (path / "src").mkdir()
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / ".dockerignore").write_text(".git\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Initial commit")
    head = git(path, "rev-parse", "HEAD").strip()
    cache = ["--build-arg", "BUILDKIT_INLINE_CACHE=1"] if inline_cache else []
    label = ["--label", f"org.opencontainers.image.revision={head}"]
    team.ci("build", "-q", *cache, *label, "-f", "Dockerfile.base", "-t",
            f"{repo}:base-1.0.0", ".")
    team.ci("push", f"{repo}:base-1.0.0")
    team.ci("build", "-q", *cache, *label, "-t", f"{repo}:1.0.0", ".")
    team.ci("push", f"{repo}:1.0.0")
    team.fresh_machine()
    return team


def events(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def app_steps(evs: list[dict[str, Any]]) -> dict[int, bool]:
    """The app's steps as the sync said them: index -> cached (the last word)."""
    return {e["index"]: e["cached"] for e in evs
            if e["event"] == "step_finished" and e["image"] != "base"}


def registry_json(host: str, path: str, accept: str, auth: str | None = None) -> Any:
    request = urllib.request.Request(f"http://{host}{path}", headers={"Accept": accept})
    if auth:
        request.add_header("Authorization", f"Basic {auth}")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def image_manifest(host: str, ref: str, auth: str | None = None) -> tuple[dict[str, Any],
                                                                          dict[str, Any]]:
    """The manifest and config of `ref` as the registry serves them."""
    name, tag = ref.split("/", 1)[1].rsplit(":", 1)
    manifest = registry_json(host, f"/v2/{name}/manifests/{tag}",
                             "application/vnd.docker.distribution.manifest.v2+json", auth)
    config = registry_json(host, f"/v2/{name}/blobs/{manifest['config']['digest']}", "*/*",
                           auth)
    return manifest, config


@pytest.fixture
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
         tmp_path: Path) -> Team:
    return make_team(tmp_path, engine, registry.host, busybox_image)


def test_a_code_edit_syncs_through_buildkit_lazily_reusing_what_comes_before_the_code(
        team: Team, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry) -> None:
    (team.path / "src" / "index.php").write_text("<?php echo 'changed';\n")
    plan = json.loads(team.run(engine, "plan", "--json").stdout)
    app = next(i for i in plan["images"] if i["role"] == "app")
    # auto: CI built it with BuildKit through a CLI, so through the CLI too
    assert (app["builder"], app["transport"]) == ("buildkit", "cli")
    # (the classic-only advice is not given: the builder is BuildKit)
    assert not any("DOCKER_BUILDKIT=0" in note for note in app["notes"])

    evs = events(team.run(engine, "sync", "--yes", "--json"))
    steps = app_steps(evs)
    assert [steps[i] for i in (WORKDIR, COPY_COMPOSER, INSTALL)] == [True, True, True], steps
    assert [steps[i] for i in (COPY_CODE, LIST)] == [False, False], steps
    # lazy: the deployed image is not pulled, BuildKit fetched less than all of it
    deployed = f"{team.repo}:1.0.0"
    assert not any(e["event"] == "pull_started" and e["reference"] == deployed for e in evs)
    assert not team.has_image(deployed)
    built = next(e for e in evs if e["event"] == "image_built" and e["image"] != "base")
    manifest, _config = image_manifest(registry.host, deployed)
    whole = sum(layer["size"] for layer in manifest["layers"])
    assert 0 < built["fetched_bytes"] < whole - 1_500_000  # (not the last RUN's 2 MB)
    # (and the plan said so before: no step went against it)
    assert not [e for e in evs if e["event"].startswith("warning")
                and ("the engine re" in e["message"] or "differ" in e["message"])]
    assert all(e["predicted_cached"] in (None, e["cached"]) for e in evs
               if e["event"] == "step_finished")

    status = json.loads(team.run(engine, "status", "--json").stdout)
    states = {i["role"]: (i["state"], i["cause"]) for i in status["images"]}
    assert {i["role"]: i["builder"] for i in status["images"]}["app"] == "buildkit", status
    assert states["app"][0] == "in-sync", states
    assert states["base"][0] == "in-sync", states

    # and a further edit makes it stale again, naming the file
    (team.path / "src" / "index.php").write_text("<?php echo 'changed again';\n")
    status = json.loads(team.run(engine, "status", "--json").stdout)
    app_status = next(i for i in status["images"] if i["role"] == "app")
    assert app_status["state"] == "stale"
    assert "src/index.php" in app_status["cause"]


@pytest.mark.parametrize("way", ["cli", "api"])
def test_a_registry_with_a_login_builds_with_dockers_credentials(
        engine: sandbox.PrivateEngine, busybox_image: str, tmp_path: Path, way: str) -> None:
    """Through the CLI's session, lazily; without a CLI, through the Engine API, which pulls
    what needs a login first (BuildKit there has no session)."""
    from tests.support.registry import bcrypt_hash, write_docker_config

    hashed, _tool = bcrypt_hash(PASSWORD)
    (tmp_path / "htpasswd").write_text(f"{USER}:{hashed}\n")
    try:
        reg = sandbox.PrivateRegistry(tmp_path / "reg", htpasswd=tmp_path / "htpasswd").start()
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(str(exc))
    try:
        config = write_docker_config(tmp_path / "dockercfg", reg.host, USER, PASSWORD)
        team = make_team(tmp_path / "work", engine, reg.host, busybox_image,
                         docker_config=config)
        if way == "api":
            team.env["DEVSYNC_DOCKER_CLI"] = "none"
        (team.path / "src" / "index.php").write_text("<?php echo 'changed';\n")
        plan = json.loads(team.run(engine, "plan", "--json").stdout)
        assert {(i["builder"], i["transport"]) for i in plan["images"]} == {("buildkit", way)}
        proc = team.run(engine, "sync", "--yes", "--json")
        evs = events(proc)
        steps = app_steps(evs)
        assert [steps[i] for i in (WORKDIR, COPY_COMPOSER, INSTALL)] == [True] * 3, steps
        assert steps[COPY_CODE] is False
        # lazy through the session; the Engine API's way pulls it first, and says why
        assert team.has_image(f"{team.repo}:1.0.0") == (way == "api")
        if way == "api":
            assert any("asks for a login" in e["message"] for e in evs
                       if e["event"].startswith("warning"))
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        for secret in (PASSWORD, auth):
            assert secret not in proc.stdout + proc.stderr
        status = json.loads(team.run(engine, "status", "--json").stdout)
        assert {i["role"]: i["state"] for i in status["images"]} == \
            {"app": "in-sync", "base": "in-sync"}
    finally:
        reg.stop()


def test_a_deployed_image_without_cache_metadata_syncs_and_says_the_ci_fix(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path) -> None:
    team = make_team(tmp_path, engine, registry.host, busybox_image, inline_cache=False)
    evs = events(team.run(engine, "sync", "--yes", "--json"))
    steps = app_steps(evs)
    assert not any(steps[i] for i in (WORKDIR, COPY_COMPOSER, INSTALL, COPY_CODE, LIST)), steps
    said = " ".join(e["message"] for e in evs if e["event"].startswith("warning"))
    assert "no BuildKit cache metadata" in said
    for fix in ("BUILDKIT_INLINE_CACHE=1", "cache-to: type=inline", "type=registry,mode=max"):
        assert fix in said
    done = [e for e in evs if e["event"] == "done"]
    assert done and all(e["ok"] for e in done)

    # builder = "classic" in .devsync.toml: the classic builder, and what it cannot do said
    (team.path / ".devsync.toml").write_text('[devsync]\nbuilder = "classic"\n')
    plan = json.loads(team.run(engine, "plan", "--json").stdout)
    app = next(i for i in plan["images"] if i["role"] == "app")
    assert (app["builder"], app["transport"]) == ("classic", None)
    (note,) = [n for n in app["notes"] if "built with BuildKit" in n]
    assert 'builder = "buildkit"' in note and "DOCKER_BUILDKIT=0" in note


@pytest.mark.parametrize("way", ["cli", "api"])
def test_publish_through_buildkit_writes_the_inline_cache(
        team: Team, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
        way: str) -> None:
    (team.path / "src" / "index.php").write_text("<?php echo 'release 2';\n")
    git(team.path, "commit", "-qam", "Release 2")
    if way == "api":
        team.env["DEVSYNC_DOCKER_CLI"] = "none"  # (no CLI: the Engine API)
    proc = team.run(engine, "publish", "2.0.0", "--json")
    evs = events(proc)
    assert any(e["event"] == "image_built" for e in evs)
    _manifest, config = image_manifest(registry.host, f"{team.repo}:2.0.0")
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == "2.0.0"
    assert config.get("moby.buildkit.cache.v0")  # the inline cache metadata
    assert any("# buildkit" in h.get("created_by", "") for h in config["history"])
    labels = config["config"]["Labels"]
    assert (labels.get("dev.devsync.buildkit.transport") == "api") == (way == "api")


def test_base_build_goes_through_buildkit_with_the_inline_cache(
        team: Team, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry) -> None:
    base = team.path / "Dockerfile.base"
    base.write_text(base.read_text() + 'RUN echo "runtime 2" > /opt/runtime/version\n')
    git(team.path, "commit", "-qam", "Runtime 2")
    proc = team.run(engine, "base", "build", "--push", "--version", "1.1.0", "--json")
    evs = events(proc)
    steps = {e["index"]: e["cached"] for e in evs if e["event"] == "step_finished"}
    assert steps[1] is True and steps[2] is True, steps  # ENV, the first RUN: CI's cache
    assert steps[3] is False
    _manifest, config = image_manifest(registry.host, f"{team.repo}:base-1.1.0")
    assert config.get("moby.buildkit.cache.v0")
    assert any("# buildkit" in h.get("created_by", "") for h in config["history"])
