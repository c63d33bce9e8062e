"""The BuildKit plan is exact: for a deployed image that CI built with BuildKit and its inline
cache (`DOCKER_BUILDKIT=1 /usr/bin/docker build --build-arg BUILDKIT_INLINE_CACHE=1`, the
docker 20.10 CLI with its built-in BuildKit client, as on Debian 12), a developer's BuildKit
build with `--cache-from` the deployed image reports CACHED exactly for the vertices the plan
said it would reuse.

Each scenario changes the team's repository the way developers do, asks devsync for the plan
(nothing pulled), then makes the developer's machine fresh (this repository's images removed,
the engine's BuildKit cache pruned, so that only the cache source can make a vertex CACHED)
and runs the real build, comparing vertex by vertex with BuildKit's own progress.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from devsync.devtools import sandbox
from tests.support.bkteam import (
    BKTeam,
    assert_exact,
    normal_modes,
    plan_app,
    reset,
    vertex_steps,
)
from tests.support.teamrepo import APP_DOCKERFILE, BASE_DOCKERFILE, git


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
         tmp_path_factory: pytest.TempPathFactory) -> BKTeam:
    path = tmp_path_factory.mktemp("bkexact") / "bkexact"
    path.mkdir()
    team = BKTeam(path, engine, f"{registry.host}/bkexact")
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile.base").write_text(BASE_DOCKERFILE.format(busybox=busybox_image))
    (path / "Dockerfile").write_text(APP_DOCKERFILE.format(repo=team.repo))
    (path / "composer.json").write_text('{"require": {"php": "^8.2"}}\n')
    (path / "composer.lock").write_text('{"packages": []}\n')
    (path / "src").mkdir()
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / "src" / "lib.php").write_text("<?php function f() {}\n")
    # (the scenarios that point devsync elsewhere write a .devsync.toml: not in the context)
    (path / ".dockerignore").write_text(".git\n*.log\n.devsync.toml\n")
    (path / ".gitignore").write_text("*.log\n")
    normal_modes(path)
    team.commit("Initial commit")
    team.ci_build_base("1.0.0")
    team.ci_deploy("1.0.0")
    (path / "src" / "index.php").write_text("<?php echo 'hello, world';\n")
    team.commit("Say hello to the world", author="Ben")
    team.ci_deploy("1.0.1")
    return team


def _nothing(team: BKTeam) -> None:
    pass


def _edit_uncommitted(team: BKTeam) -> None:
    (team.path / "src" / "lib.php").write_text("<?php function f() { return 1; }\n")


def _dependency_committed(team: BKTeam) -> None:
    (team.path / "composer.lock").write_text('{"packages": ["monolog"]}\n')
    team.commit("Add monolog", author="Dev")


def _chmod_x(team: BKTeam) -> None:
    (team.path / "src" / "index.php").chmod(0o755)


def _owned_by_uid_1000(team: BKTeam) -> None:
    for p in team.path.rglob("*"):
        if ".git" not in p.parts:
            os.chown(p, 1000, 1000)


def _arg_default_changed(team: BKTeam) -> None:
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("COMPOSER_FLAGS=--no-dev", "COMPOSER_FLAGS=--dev"))


def _env_added(team: BKTeam) -> None:
    # (after the ARG: the WORKDIR and COPY after it keep their keys, the RUN's env changes)
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("ARG COMPOSER_FLAGS=--no-dev\n",
                                         "ARG COMPOSER_FLAGS=--no-dev\nENV DEBUG=1\n"))


def _code_committed(team: BKTeam) -> None:
    _edit_uncommitted(team)
    team.commit("Return one", author="Chloe")


def _instruction_edited(team: BKTeam) -> None:
    # (the Dockerfile is in the context too: `COPY .` misses first)
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("ls -la /var/www/html", "ls -l /var/www/html"))


def _untracked_file(team: BKTeam) -> None:
    (team.path / "src" / "new.php").write_text("<?php\n")


def _older_commit(team: BKTeam) -> None:
    first = git(team.path, "rev-list", "--max-parents=0", "HEAD").strip()
    git(team.path, "checkout", "-q", first)
    normal_modes(team.path)


def _umask_002(team: BKTeam) -> None:
    # the same commit as git checks it out under umask 002: the docker CLI sends these modes
    for p in team.path.rglob("*"):
        if ".git" in p.parts or p.is_symlink():
            continue
        p.chmod(0o775 if p.is_dir() or p.stat().st_mode & 0o111 else 0o664)


def _ignored_file_added(team: BKTeam) -> None:
    (team.path / "debug.log").write_text("noise\n")


SCENARIOS: dict[str, tuple[Callable[[BKTeam], None], int | None]] = {
    # name: (change, line of the first vertex that runs, None when all are CACHED)
    "unchanged": (_nothing, None),
    "code-edited-uncommitted": (_edit_uncommitted, 7),
    "dependency-committed": (_dependency_committed, 5),
    "chmod-x": (_chmod_x, 7),
    # the docker CLI sends uid/gid 0: the owner on disk never counts
    "owned-by-uid-1000": (_owned_by_uid_1000, None),
    # BuildKit: the WORKDIR and the COPY before the RUN that uses the argument stay CACHED
    "arg-default-changed": (_arg_default_changed, 6),
    "ignored-file-added": (_ignored_file_added, None),
    # an ENV is in a RUN's key, not in a WORKDIR's or a COPY's (lines shift by one)
    "env-added": (_env_added, 7),
    # the developer changes of the classic exactness suite (tests/ops/test_plan_exact.py)
    "code-committed": (_code_committed, 7),
    "instruction-edited": (_instruction_edited, 7),
    "untracked-file": (_untracked_file, 7),
    "older-commit-checked-out": (_older_commit, 7),
    # BuildKit's content key counts modes: 0664 where CI had 0644 misses at the first COPY
    "umask-002": (_umask_002, 5),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_buildkit_plan_matches_buildkit(team: BKTeam, buildkit_env: None, scenario: str) -> None:
    change, first_rebuild = SCENARIOS[scenario]
    reset(team)
    change(team)
    plan = plan_app(team.path)
    assert plan.builder == "buildkit" and plan.transport == "cli"
    assert plan.deployed == f"{team.repo}:1.0.1"
    assert plan.cache_from == [f"{team.repo}:1.0.1"]
    first = next((s for s in plan.steps if not s.cached and s.kind != "nop"), None)
    assert (first.line if first else None) == first_rebuild, plan.summary
    if first is not None:
        assert first.reason and not first.reason.startswith("rebuilds after"), first.reason
    assert not any("cannot reuse" in n for n in plan.notes), plan.notes
    assert_exact(team, plan, scenario)


def test_reasons_say_what_buildkit_keys_on(team: BKTeam, buildkit_env: None) -> None:
    reset(team)
    _dependency_committed(team)
    first = plan_app(team.path).first_rebuild
    assert first is not None and first.line == 5
    assert "composer.lock" in first.reason and "Add monolog" in first.reason, first.reason

    reset(team)
    _chmod_x(team)
    first = plan_app(team.path).first_rebuild
    assert first is not None and first.line == 7
    assert "src/index.php" in first.reason and "0755" in first.reason, first.reason

    reset(team)
    _arg_default_changed(team)
    first = next(s for s in plan_app(team.path).steps if s.kind == "run" and not s.cached)
    assert first.line == 6 and "COMPOSER_FLAGS" in first.reason, first.reason


def test_base_bump_runs_every_vertex(team: BKTeam, buildkit_env: None) -> None:
    """A new base (other layers): BuildKit's FROM key is the base's ChainID, so no record
    of the deployed image matches, and every vertex runs."""
    reset(team)
    base = team.path / "Dockerfile.base"
    base.write_text(base.read_text().replace("runtime 1", "runtime 2"))
    team.commit("Runtime 2")
    team.ci_build_base("1.1.0")
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("BASE_TAG=base-1.0.0", "BASE_TAG=base-1.1.0"))
    plan = plan_app(team.path)
    assert plan.base == f"{team.repo}:base-1.1.0"
    vertices = vertex_steps(plan)
    assert not any(cached for cached, _certain in vertices.values()), plan.summary
    first = plan.first_rebuild
    assert first is not None and "base" in first.reason.lower(), first.reason
    assert_exact(team, plan, "base bump")


def test_no_cache_metadata_reuses_nothing_and_says_the_ci_fix(
        team: BKTeam, buildkit_env: None) -> None:
    """A BuildKit image pushed without cache metadata (build-push-action's default): BuildKit
    imports nothing from it, silently. The plan says so, with the CI change."""
    reset(team)
    other = team.repo + "-nometa"
    team.ci_deploy("1.0.1", inline_cache=False, repo=other)
    (team.path / ".devsync.toml").write_text(
        f'[images.app]\ndeployed = "{other}"\n')
    plan = plan_app(team.path)
    assert plan.builder == "buildkit" and plan.deployed == f"{other}:1.0.1"
    assert not any(cached for cached, _c in vertex_steps(plan).values()), plan.summary
    assert any("BUILDKIT_INLINE_CACHE=1" in n and "type=inline" in n for n in plan.notes), \
        plan.notes
    first = plan.first_rebuild
    assert first is not None and "no BuildKit cache metadata" in first.reason
    assert_exact(team, plan, "no metadata")
    (team.path / ".devsync.toml").unlink()


def test_ci_chaining_cache_from_across_releases(team: BKTeam, buildkit_env: None) -> None:
    """CI on a fresh runner builds each release `--cache-from` the previous one: the steps
    it took from that cache are re-exported in the new inline cache without their layers
    (moby/buildkit#1981), so a developer reuses only what CI really ran. Predicted as the
    engine behaves, and said why."""
    reset(team)
    chained = team.repo + "-chained"
    team.fresh_machine()
    team.ci_deploy("1.0.1", repo=chained)
    (team.path / "src" / "lib.php").write_text("<?php function g() {}\n")
    team.commit("Rename f to g")
    team.fresh_machine()
    team.ci_deploy("1.0.2", repo=chained, cache_from=f"{chained}:1.0.1")
    (team.path / ".devsync.toml").write_text(f'[images.app]\ndeployed = "{chained}"\n')
    plan = plan_app(team.path)
    assert plan.deployed == f"{chained}:1.0.2"
    # unchanged: the last steps' records have layers, and nothing before them is needed
    real = assert_exact(team, plan, "chained, unchanged")
    assert all(real.values()), real

    # an edit that COPY . sees: the step before it must be loaded, and its record (taken
    # from 1.0.1's cache by CI) has no layers: it and the ones before it run again
    _edit_uncommitted(team)
    plan = plan_app(team.path)
    real = assert_exact(team, plan, "chained, edited")
    assert not any(real.values()), real
    step = next(s for s in plan.steps if s.line == 6)
    assert "no layers" in step.reason and "type=registry,mode=max" in step.reason, step.reason
    (team.path / ".devsync.toml").unlink()


def test_classic_builder_setting_keeps_the_classic_plan(team: BKTeam, buildkit_env: None) -> None:
    """builder = "classic": the classic plan, which calls the BuildKit image out."""
    reset(team)
    (team.path / ".devsync.toml").write_text('[devsync]\nbuilder = "classic"\n')
    plan = plan_app(team.path)
    assert plan.builder == "classic"
    assert any("BuildKit" in n and "DOCKER_BUILDKIT=0" in n for n in plan.notes), plan.notes


def test_sync_builds_with_buildkit_as_planned(team: BKTeam, buildkit_env: None) -> None:
    """`devsync sync` of a BuildKit project: BuildKit's CACHED for each step is what the plan
    predicted (the sync compares them itself and would warn), unchanged and after an edit."""
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.events import StepFinished, Warning_
    from devsync.model.project import load_project
    from devsync.ops.sync import sync_image

    for change, first in ((_nothing, None), (_edit_uncommitted, 7)):
        reset(team)
        change(team)
        team.fresh_machine()
        project = load_project(team.path)
        engine = Engine.connect()
        plan = plan_app(team.path)
        assert plan.builder == "buildkit"
        first_step = next((s for s in plan.steps if not s.cached), None)
        assert (first_step.line if first_step else None) == first, plan.summary
        events = list(sync_image(project, project.image("app"), engine=engine,
                                 resolver=Resolver(engine), git=open_repo(team.path),
                                 plan=plan))
        differed = [e.message for e in events if isinstance(e, Warning_)
                    and ("the engine rebuilt" in e.message or "the engine reused" in e.message)]
        assert not differed, differed
        finished = [e for e in events if isinstance(e, StepFinished)]
        predicted = [e for e in finished if e.predicted_cached is not None]
        assert len(predicted) >= 5, finished
        assert all(e.cached == e.predicted_cached for e in predicted), finished


def test_registry_cache_is_read_and_merged(team: BKTeam, buildkit_env: None) -> None:
    """A registry cache next to the deployed image (REPO:buildcache, as `devsync publish
    --registry-cache` writes it) is read from its cacheconfig manifest, without layers, and
    joins the cache sources; the plan stays exact with both imported."""
    from devsync.adapters.engine import Engine
    from devsync.adapters.resolver import Resolver
    from devsync.model.buildkit import CacheGraph
    from devsync.ops.buildkit import write_registry_cache

    reset(team)
    resolver = Resolver(Engine.connect())
    write_registry_cache(resolver, team.repo, [f"{team.repo}:1.0.1"])
    config = Resolver(Engine.connect()).registry_cache(f"{team.repo}:buildcache")
    assert config is not None
    assert CacheGraph.from_cache_config(config).loadable >= 5
    assert Resolver(Engine.connect()).registry_cache(f"{team.repo}:1.0.1") is None
    _edit_uncommitted(team)
    plan = plan_app(team.path)
    assert plan.cache_from == [f"{team.repo}:1.0.1", f"{team.repo}:buildcache"]
    real = assert_exact(team, plan, "registry cache")
    assert real[6] and not real[7], real


def test_deployed_index_with_an_attestation_manifest(team: BKTeam, buildkit_env: None) -> None:
    """build-push-action pushes an index: the image for its platform and a provenance
    attestation manifest (platform unknown/unknown). The inline cache is read through it."""
    import hashlib
    import json
    import urllib.request

    from devsync.adapters.engine import Engine
    from devsync.adapters.registry._manifests import local_platform
    from devsync.adapters.resolver import Resolver, repository_path

    reset(team)
    path = repository_path(team.repo)
    host = team.repo.split("/", 1)[0].replace("localhost", "127.0.0.1")
    request = urllib.request.Request(
        f"http://{host}/v2/{path}/manifests/1.0.1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request) as resp:
        body = resp.read()
        media_type = resp.headers["Content-Type"]

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    client = Resolver(Engine.connect()).client(team.repo)
    config, statement = b"{}", b'{"_type": "https://in-toto.io/Statement/v0.1"}'
    client.put_blob(path, config)
    client.put_blob(path, statement)
    attestation = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": digest(statement),
                    "size": len(statement)}]}).encode()
    client.put_manifest(path, digest(attestation), attestation,
                        "application/vnd.oci.image.manifest.v1+json")
    _os, arch = local_platform().split("/", 1)
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": media_type, "digest": digest(body), "size": len(body),
             "platform": {"os": "linux", "architecture": arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": digest(attestation), "size": len(attestation),
             "annotations": {"vnd.docker.reference.digest": digest(body),
                             "vnd.docker.reference.type": "attestation-manifest"},
             "platform": {"os": "unknown", "architecture": "unknown"}}]}).encode()
    client.put_manifest(path, "2.0.0", index, "application/vnd.oci.image.index.v1+json")
    _edit_uncommitted(team)
    plan = plan_app(team.path)
    assert plan.deployed == f"{team.repo}:2.0.0"
    assert [s.line for s in plan.steps if s.kind != "nop" and not s.cached] == [7, 8]
    assert_exact(team, plan, "attested index")


def test_classic_image_as_a_buildkit_source(team: BKTeam, buildkit_env: None) -> None:
    """builder = "buildkit" while CI still builds with the classic builder: BuildKit imports
    nothing from a classic image, and the plan says so with the CI change."""
    reset(team)
    other = team.repo + "-classic"
    head = git(team.path, "rev-parse", "HEAD").strip()
    team.docker("build", "-q", "--label", f"org.opencontainers.image.revision={head}",
                "-t", f"{other}:1.0.1", ".", buildkit=False)
    team.docker("push", f"{other}:1.0.1")
    (team.path / ".devsync.toml").write_text(
        f'[devsync]\nbuilder = "buildkit"\n\n[images.app]\ndeployed = "{other}"\n')
    plan = plan_app(team.path)
    assert plan.builder == "buildkit" and plan.deployed == f"{other}:1.0.1"
    assert any("classic builder" in n and "BUILDKIT_INLINE_CACHE=1" in n for n in plan.notes)
    assert not any(cached for cached, _c in vertex_steps(plan).values()), plan.summary
    assert_exact(team, plan, "classic source")
    (team.path / ".devsync.toml").unlink()


def test_engine_api_transport_certain_steps_hold(team: BKTeam, buildkit_env: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a docker CLI devsync builds through the Engine API (the context as a tar in
    the request body). BuildKit then hashes the unpacked context root itself: a `COPY .`
    never matches a CLI-built cache (measured), and the plan says so and why."""
    from devsync.adapters.engine import Engine
    from devsync.adapters.engine._dockercli import forget_found
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.events import StepFinished, Warning_
    from devsync.model.project import load_project
    from devsync.ops.sync import sync_image

    monkeypatch.setenv("DEVSYNC_DOCKER_CLI", "none")
    forget_found()
    reset(team)
    team.fresh_machine()
    plan = plan_app(team.path)
    assert plan.transport == "api"
    root_copy = next(s for s in plan.steps if s.line == 7)
    assert not root_copy.cached and "Engine API" in root_copy.reason, root_copy.reason
    assert [s.line for s in plan.steps if s.kind != "nop" and not s.cached] == [7, 8]
    project = load_project(team.path)
    engine = Engine.connect()
    events = list(sync_image(project, project.image("app"), engine=engine,
                             resolver=Resolver(engine), git=open_repo(team.path), plan=plan))
    differed = [e.message for e in events if isinstance(e, Warning_)
                and ("the engine rebuilt" in e.message or "the engine reused" in e.message)]
    assert not differed, differed
    finished = {e.index: e for e in events if isinstance(e, StepFinished)}
    built = [s for s in plan.steps if s.kind != "skip"]
    outcome = {built[i].line: e.cached for i, e in finished.items() if i < len(built)}
    for step in built:
        if step.certain and step.kind in ("run", "copy"):
            assert outcome[step.line] == step.cached, (step.line, outcome, plan.summary)


def test_a_base_with_the_same_layers_and_another_env(team: BKTeam, buildkit_env: None) -> None:
    """CI rebuilt the base with only a trailing ENV changed: BuildKit took its RUN layers from
    cache, so the new base has the very same layers (BuildKit's FROM key) and another
    environment. The app's `WORKDIR` and `COPY` keep their keys; its RUN takes the
    environment into its op, so it runs. Predicted so, and said why."""
    reset(team)
    other = team.repo + "-baseenv"
    base = team.path / "Dockerfile.base"
    base.write_text(base.read_text() + "ENV PHP_INI=production\n")
    team.commit("Base: PHP_INI")
    team.ci_build_base("1.0.5")
    base.write_text(base.read_text().replace("PHP_INI=production", "PHP_INI=development"))
    team.commit("Base: PHP_INI for development")
    team.ci_build_base("1.0.6")  # (right after: BuildKit's cache gives the same RUN layers)
    layers = [team.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}",
                          f"{team.repo}:base-{v}").stdout for v in ("1.0.5", "1.0.6")]
    assert layers[0] == layers[1]
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("BASE_TAG=base-1.0.0", "BASE_TAG=base-1.0.5"))
    team.commit("App on base 1.0.5")
    team.ci_deploy("1.0.5", repo=other)
    (team.path / ".devsync.toml").write_text(f'[images.app]\ndeployed = "{other}"\n')
    try:
        df.write_text(df.read_text().replace("BASE_TAG=base-1.0.5", "BASE_TAG=base-1.0.6"))
        plan = plan_app(team.path)
        assert plan.deployed == f"{other}:1.0.5" and plan.builder == "buildkit"
        first = plan.first_rebuild
        assert first is not None and first.line == 6, plan.summary
        assert "environment" in first.reason and "PHP_INI" in first.reason, first.reason
        assert_exact(team, plan, "base with another env")
    finally:
        (team.path / ".devsync.toml").unlink()
