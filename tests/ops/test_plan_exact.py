"""The plan is exact: on a fresh developer machine, after pulling the cache sources, a real
`docker build --cache-from` reuses exactly the steps the plan said it would.

Each scenario changes the team's repository the way developers do, asks devsync for the plan
(before anything is pulled), then runs the real pull + build with the docker CLI and compares
step by step.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devsync.cli.output import print_plan
from devsync.devtools import sandbox
from devsync.model.context import TarFlavor
from devsync.ops.plan import DEFAULT_FLAVORS, ImagePlan
from tests.support.teamrepo import LEGACY_CLI, TeamRepo, git, make_team_repo, parse_cache_hits


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    return make_team_repo(tmp_path_factory.mktemp("exact"), engine, registry, busybox_image,
                          "shop")


@pytest.fixture
def devsync_env(engine: sandbox.PrivateEngine, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    yield


def _plan(path: Path, name: str = "app"):  # type: ignore[no-untyped-def]
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import load_project
    from devsync.ops.plan import plan_image

    project = load_project(path)
    engine = Engine.connect()
    return plan_image(project, project.image(name), Resolver(engine), open_repo(path))


def _reset(team: TeamRepo) -> None:
    git(team.path, "checkout", "-q", "main")
    git(team.path, "reset", "-q", "--hard", team.deployed_head)
    git(team.path, "clean", "-qfdx")
    for p in team.path.rglob("*"):
        if ".git" in p.parts:
            continue
        os.chown(p, 0, 0)
        p.chmod(0o755 if p.is_dir() else 0o644)
    team.forget_local_images()


def _edit_uncommitted(team: TeamRepo) -> None:
    (team.path / "src" / "lib.php").write_text("<?php function f() { return 1; }\n")


def _edit_committed(team: TeamRepo) -> None:
    _edit_uncommitted(team)
    team.commit("Return one", author="Chloe")


def _dependency_changed(team: TeamRepo) -> None:
    (team.path / "composer.lock").write_text('{"packages": ["monolog"]}\n')
    team.commit("Add monolog", author="Dev")


def _instruction_edited(team: TeamRepo) -> None:
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("ls -la /var/www/html", "ls -l /var/www/html"))


def _arg_default_changed(team: TeamRepo) -> None:
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("COMPOSER_FLAGS=--no-dev", "COMPOSER_FLAGS=--dev"))


def _ignored_file_added(team: TeamRepo) -> None:
    (team.path / "debug.log").write_text("noise\n")


def _untracked_file(team: TeamRepo) -> None:
    (team.path / "src" / "new.php").write_text("<?php\n")


def _mode_changed(team: TeamRepo) -> None:
    (team.path / "src" / "index.php").chmod(0o755)


def _owned_by_uid_1000(team: TeamRepo) -> None:
    for p in team.path.rglob("*"):
        if ".git" not in p.parts:
            os.chown(p, 1000, 1000)


def _umask_002(team: TeamRepo) -> None:
    # the same commit as git checks it out under umask 002
    for p in team.path.rglob("*"):
        if ".git" in p.parts or p.is_symlink():
            continue
        if p.is_dir():
            p.chmod(0o775)
        else:
            p.chmod(0o775 if p.stat().st_mode & 0o111 else 0o664)


def _older_commit(team: TeamRepo) -> None:
    first = git(team.path, "rev-list", "--max-parents=0", "HEAD").strip()
    git(team.path, "checkout", "-q", first)


def _nothing(team: TeamRepo) -> None:
    pass


SCENARIOS: dict[str, tuple[Callable[[TeamRepo], None], int | None]] = {
    # name: (change, line of the first rebuilt step or None when all cached)
    "unchanged": (_nothing, None),
    "code-edited-uncommitted": (_edit_uncommitted, 7),
    "code-committed": (_edit_committed, 7),
    "dependency-changed": (_dependency_changed, 5),
    # the Dockerfile is in the context, so `COPY .` sees the edit first
    "instruction-edited": (_instruction_edited, 7),
    "arg-default-changed": (_arg_default_changed, 3),
    "ignored-file-added": (_ignored_file_added, None),
    "untracked-file": (_untracked_file, 7),
    "file-mode-changed": (_mode_changed, 7),
    "owned-by-uid-1000": (_owned_by_uid_1000, None),
    # "umask-002": devsync's build and the docker CLI's differ there, see its own test below
    "older-commit-checked-out": (_older_commit, 7),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_plan_matches_real_build(team: TeamRepo, devsync_env: None, scenario: str) -> None:
    change, first_rebuild_line = SCENARIOS[scenario]
    _reset(team)
    change(team)
    plan = _plan(team.path)
    assert plan.deployed == f"{team.repo}:1.0.1"
    assert plan.cache_from == [f"{team.repo}:1.0.1"]
    built = [s for s in plan.steps if s.kind != "skip"]
    predicted = [s.cached for s in built]
    first = plan.first_rebuild
    assert (first.line if first else None) == first_rebuild_line, plan.summary
    if first is not None:
        assert first.reason and not first.reason.startswith("rebuilds after")

    real = team.cli_build_with_cache(plan.cache_from, f"{team.repo}:dev-check")
    assert real == predicted, f"{scenario}: plan {predicted} vs engine {real}: {plan.summary}"


def _plan_as(path: Path, flavors: tuple[TarFlavor, ...], name: str = "app") -> ImagePlan:
    """The plan of what a client that writes its context tar as `flavors` would do."""
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import load_project
    from devsync.ops.plan import plan_image

    project = load_project(path)
    engine = Engine.connect()
    return plan_image(project, project.image(name), Resolver(engine), open_repo(path),
                      flavors=flavors)


def _devsync_build(path: Path, plan: ImagePlan, name: str = "app") -> list[tuple[str, bool]]:
    """`devsync sync` of `plan` against the real engine: each builder step and whether it hit
    the cache."""
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.events import StepFinished, StepStarted, Warning_
    from devsync.model.project import load_project
    from devsync.ops.sync import sync_image

    project = load_project(path)
    engine = Engine.connect()
    events = list(sync_image(project, project.image(name), engine=engine,
                             resolver=Resolver(engine), git=open_repo(path), plan=plan))
    assert not [e for e in events if isinstance(e, Warning_) and "differed" in e.message]
    started = {e.index: e.instruction for e in events if isinstance(e, StepStarted)}
    finished = sorted((e for e in events if isinstance(e, StepFinished)), key=lambda e: e.index)
    assert [e.index for e in finished] == list(range(len(finished))) == sorted(started)
    return [(started[e.index], e.cached) for e in finished]


def test_umask_002_plan_matches_devsync_build_and_cli_misses(team: TeamRepo,
                                                             devsync_env: None) -> None:
    """Files 0664 and directories 0775 where CI's checkout had 0644/0755 (git records only
    644/755). The docker CLI sends the local modes and rebuilds from the first COPY; devsync
    sends git's modes and reuses every step. Each plan must equal what the engine does."""
    _reset(team)
    _umask_002(team)

    # the plain docker CLI: the plan for its context flavor says line 5 rebuilds, and why
    cli_plan = _plan_as(team.path, (TarFlavor.CLI_MODERN,))
    assert cli_plan.cache_from == [f"{team.repo}:1.0.1"]
    first = cli_plan.first_rebuild
    assert first is not None and first.line == 5, cli_plan.summary
    # (line 5 copies two files: no directory's mode is involved)
    assert "0664 (umask 002?) here" in first.reason and "git's 0644/0755" in first.reason
    cli_built = [s for s in cli_plan.steps if s.kind != "skip"]
    real_cli = team.cli_build_with_cache(cli_plan.cache_from, f"{team.repo}:dev-check")
    assert real_cli == [s.cached for s in cli_built], cli_plan.summary

    # devsync on a fresh machine: git's modes win, every step is cached, and really is
    team.forget_local_images()
    plan = _plan_as(team.path, DEFAULT_FLAVORS)
    assert plan.deployed == f"{team.repo}:1.0.1"
    assert plan.cache_from == [f"{team.repo}:1.0.1"]
    assert plan.flavor is TarFlavor.CLI_MODERN_GIT_MODES
    assert plan.first_rebuild is None, plan.summary
    assert any("0664/0775 (umask 002?)" in n for n in plan.notes), plan.notes
    built = [s for s in plan.steps if s.kind != "skip"]
    real = _devsync_build(team.path, plan)
    assert [hit for _ins, hit in real[:len(built)]] == [s.cached for s in built], plan.summary
    # after the Dockerfile's steps comes the one LABEL step with devsync's labels
    extra = real[len(built):]
    assert len(extra) == 1 and extra[0][0].startswith("LABEL "), extra


def test_reasons_name_files_and_commits(team: TeamRepo, devsync_env: None) -> None:
    _reset(team)
    _dependency_changed(team)
    plan = _plan(team.path)
    first = plan.first_rebuild
    assert first is not None and first.line == 5
    assert "composer.lock" in first.reason
    assert "Dev" in first.reason and "Add monolog" in first.reason
    assert first.files == ["composer.lock"]

    _reset(team)
    _mode_changed(team)
    first = _plan(team.path).first_rebuild
    assert first is not None
    assert "src/index.php" in first.reason and "0755" in first.reason

    _reset(team)
    _arg_default_changed(team)
    first = _plan(team.path).first_rebuild
    assert first is not None
    assert "COMPOSER_FLAGS" in first.reason


def test_base_bump_invalidates_everything_after_from(team: TeamRepo,
                                                     devsync_env: None) -> None:
    _reset(team)
    base = team.path / "Dockerfile.base"
    base.write_text(base.read_text().replace("runtime 1", "runtime 2"))
    team.commit("Runtime 2", author="Ana")
    team.ci_build_base("1.1.0")
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("base-1.0.0", "base-1.1.0"))
    team.forget_local_images()
    plan = _plan(team.path)
    built = [s for s in plan.steps if s.kind != "skip"]
    assert built[0].cached  # FROM
    assert plan.first_rebuild is not None and plan.first_rebuild.line == 3
    assert "base image changed" in plan.first_rebuild.reason
    real = team.cli_build_with_cache(plan.cache_from, f"{team.repo}:dev-check")
    assert real == [s.cached for s in built]
    git(team.path, "reset", "-q", "--hard", "HEAD~1")


def test_legacy_cli_deployed_image_is_matched_by_flavor(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path_factory: pytest.TempPathFactory, devsync_env: None) -> None:
    """CI with the docker 20.10 CLI writes file-type bits into the context tar: the COPY
    hashes differ from a current CLI's. The plan detects it and picks that flavor."""
    if not shutil.which(LEGACY_CLI):
        pytest.fail("the docker.io package's CLI is missing")
    team = make_team_repo(tmp_path_factory.mktemp("legacy"), engine, registry, busybox_image,
                          "legacy-shop", cli=LEGACY_CLI)
    team.forget_local_images()
    plan = _plan(team.path)
    assert plan.flavor.name == "CLI_LEGACY"
    assert plan.first_rebuild is None, plan.summary


MULTI_STAGE = """\
FROM {repo}:base-1.0.0 AS assets
COPY src/ /build/src/
RUN cat /build/src/*.php > /build/bundle.txt
FROM {repo}:base-1.0.0
WORKDIR /var/www/html
COPY composer.json composer.lock ./
RUN cat composer.json composer.lock > /opt/vendor.txt
COPY --from=assets /build/bundle.txt /opt/bundle.txt
COPY . /var/www/html
"""


def test_multi_stage_plan_is_exact_where_it_is_certain(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path_factory: pytest.TempPathFactory, devsync_env: None) -> None:
    """Only the final stage is in the deployed image, so an earlier stage always rebuilds on a
    fresh machine, and a `COPY --from` it hangs on files that stage produces. The plan says
    so (`certain: false`); every step it is certain about must match the engine."""
    team = make_team_repo(tmp_path_factory.mktemp("multi"), engine, registry, busybox_image,
                          "multishop")
    (team.path / "Dockerfile").write_text(MULTI_STAGE.format(repo=team.repo))
    team.commit("Bundle assets in a stage")
    team.ci_deploy("1.1.0")
    for change in (_nothing, _dependency_changed, _edit_uncommitted):
        _reset(team)
        change(team)
        plan = _plan(team.path)
        steps = [s for s in plan.steps if s.kind != "skip"]
        by_kind = {s.line: s for s in steps}
        assert not by_kind[3].cached and by_kind[3].certain  # the stage's RUN rebuilds
        copy_from = by_kind[8]
        if change is _dependency_changed:
            assert not by_kind[6].cached and copy_from.certain
        else:
            assert not copy_from.certain and "byte-identical" in copy_from.reason
        real = team.cli_build_with_cache(plan.cache_from, f"{team.repo}:dev-check")
        assert len(real) == len(steps)
        for step, hit in zip(steps, real, strict=True):
            if step.certain:
                assert step.cached == hit, (change.__name__, step.line, plan.summary, real)


def test_buildkit_built_deployed_image_is_called_out_and_predicted(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path_factory: pytest.TempPathFactory, devsync_env: None) -> None:
    """CI that builds with BuildKit writes `... # buildkit` histories, which the Engine API's
    classic builder never matches: the plan must say so, and predict the rebuild."""
    import subprocess

    team = make_team_repo(tmp_path_factory.mktemp("bk"), engine, registry, busybox_image,
                          "bkshop")
    ref = f"{team.repo}:1.1.0"
    env = dict(engine.env(), DOCKER_BUILDKIT="1")
    # (the private engine has no bridge network: BuildKit's RUN steps run without one)
    subprocess.run([LEGACY_CLI, "build", "--network=none", "-q", "-t", ref, "."],
                   cwd=team.path, env=env, check=True, capture_output=True)
    team.docker("push", ref)
    history = team.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref).stdout
    assert "# buildkit" in history
    team.forget_local_images()
    # (devsync now builds a BuildKit image's project with BuildKit, see
    # test_plan_exact_buildkit.py; this is the classic builder's plan, asked for)
    (team.path / ".devsync.toml").write_text('[devsync]\nbuilder = "classic"\n')
    plan = _plan(team.path)
    assert plan.deployed == ref
    assert any("BuildKit" in n and "DOCKER_BUILDKIT=0" in n for n in plan.notes), plan.notes
    first = plan.first_rebuild
    assert first is not None and first.line == 3 and "BuildKit" in first.reason
    built = [s for s in plan.steps if s.kind != "skip"]
    real = team.cli_build_with_cache(plan.cache_from, f"{team.repo}:dev-check")
    assert real == [s.cached for s in built]


def test_without_a_cache_source_earlier_local_builds_make_steps_uncertain(
        engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
        tmp_path: Path, devsync_env: None) -> None:
    """With no `--cache-from` the classic builder reuses any image this engine built on the
    same base. devsync cannot read those images' build configs: on an engine that holds
    some, the steps it would call "rebuild" are uncertain, and said so; without, certain."""
    # a base of its own, pushed and removed: nothing has ever been built on it here
    base = f"{registry.host}/nocache-base-{uuid.uuid4().hex[:8]}:1"
    base_ctx = tmp_path / "base"
    base_ctx.mkdir()
    (base_ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN echo {base} > /base\n")
    sandbox.docker_cli(engine, "build", "-q", "-t", base, str(base_ctx))
    sandbox.docker_cli(engine, "push", base)
    sandbox.docker_cli(engine, "rmi", base)
    repo = tmp_path / "app"
    repo.mkdir()
    (repo / "Dockerfile").write_text(f"FROM {base}\nWORKDIR /app\nCOPY f.txt /app/\n"
                                     "RUN cat /app/f.txt > /out\nENV READY=1\n")
    (repo / "f.txt").write_text("hello\n")
    # nothing deployed that this developer can reuse, and no build of their own yet
    (repo / ".devsync.toml").write_text(
        f'[images.app]\ndockerfile = "Dockerfile"\ndeployed = "{registry.host}/nocache-none"\n'
        f'tag = "{registry.host}/nocache-app:mine"\n')
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "App")

    def by_hand(tag: str) -> list[bool]:
        proc = sandbox.docker_cli(engine, "build", "-t", f"{registry.host}/nocache-app:{tag}",
                                  ".", cwd=repo)
        return parse_cache_hits(proc.stdout)

    fresh = _plan(repo)
    assert fresh.cache_from == []
    built = [s for s in fresh.steps if s.kind not in ("skip", "meta", "from")]
    assert built and all(not s.cached and s.certain for s in built), fresh.summary
    assert not any("local cache" in n for n in fresh.notes)
    real = by_hand("first")
    steps = [s for s in fresh.steps if s.kind != "skip"]
    assert [s.cached for s in steps] == real, (fresh.summary, real)

    # that build left images on the base: the builder's local cache now has them
    again = _plan(repo)
    assert again.cache_from == []
    assert any("local cache" in n for n in again.notes), again.notes
    built = [s for s in again.steps if s.kind not in ("skip", "meta", "from")]
    assert built and all(not s.cached and not s.certain for s in built), again.summary
    real = by_hand("second")
    steps = [s for s in again.steps if s.kind != "skip"]
    assert any(hit and not s.certain for s, hit in zip(steps, real, strict=True)), real
    for step, hit in zip(steps, real, strict=True):
        if step.certain:
            assert step.cached == hit, (step.line, again.summary, real)
    shown = io.StringIO()
    print_plan(again, shown)
    assert "  maybe " in shown.getvalue() and "REBUILD" not in shown.getvalue()

    # the base's tag removed again (its image stays: it has children): the pull would bring
    # back that very image, local cache and all
    sandbox.docker_cli(engine, "rmi", base)
    third = _plan(repo)
    assert any("local cache" in n for n in third.notes), third.notes
