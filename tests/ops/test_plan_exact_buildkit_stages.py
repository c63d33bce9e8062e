"""The BuildKit plan of a multi-stage Dockerfile is exact where it says so (`certain`).

yii2-dockerized's layout: a `vendor` stage installs the composer packages, the final stage
copies them in with `COPY --from=vendor`, then the code. CI builds with dockerd 20.10's
BuildKit and the inline cache (`DOCKER_BUILDKIT=1 /usr/bin/docker build --build-arg
BUILDKIT_INLINE_CACHE=1`); a second deployment also has a registry cache composed per stage,
as `devsync publish --registry-cache` writes it. Each scenario asks for the plan, then runs the
developer's build on a fresh machine (`builder prune -af`) and compares BuildKit's CACHED,
vertex by vertex, for both stages.

Measured here (and what the plan predicts):
* inline cache: the records of the vendor stage are there, without layers. When the final
  stage's `COPY --from` loads (unchanged, a code edit) the vendor stage is never needed and
  every vertex of it is reported CACHED; when it is needed (composer.json changed, or a change
  above `COPY --from` in the final stage) every vertex of it runs.
* registry cache: the vendor stage's records have layers: what it needs loads.
* composer.json changed: `COPY --from`'s key misses, and BuildKit compares the copied files
  once the stage is built: uncertain from there on, by design.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devsync.devtools import sandbox
from devsync.ops.plan import ImagePlan
from tests.support.bkteam import (
    BKTeam,
    normal_modes,
    plan_app,
    reset,
    vertex_steps,
)
from tests.support.teamrepo import git

STAGES_DOCKERFILE = """\
FROM {composer} AS vendor
WORKDIR /app
COPY composer.json composer.lock ./
RUN mkdir -p /app/vendor && cat composer.json composer.lock > /app/vendor/installed.json
FROM {alpine}
WORKDIR /var/www/html
COPY --from=vendor /app/vendor ./vendor
COPY src/ ./src/
RUN ls -laR . > /var/www/files.txt
CMD ["cat", "/var/www/files.txt"]
"""


@pytest.fixture(scope="module")
def stages(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, BKTeam]:
    """Two deployments of one repository: REPO:1.0.0 with its inline cache only, and
    REPO-reg:1.0.0 with a registry cache (REPO-reg:buildcache) composed per stage."""
    from devsync.adapters.engine import Engine
    from devsync.adapters.resolver import Resolver
    from devsync.ops.buildkit import write_registry_cache

    path = tmp_path_factory.mktemp("bkstages") / "bkstages"
    path.mkdir()
    inline = BKTeam(path, engine, f"{registry.host}/bkstages")
    reg = BKTeam(path, engine, f"{registry.host}/bkstages-reg")
    git(path, "init", "-q", "-b", "main")
    composer = f"{registry.host}/composer:2"
    (path / "Dockerfile.composer").write_text(
        f"FROM {busybox_image}\nRUN echo 'composer 2 (stand-in)' > /composer-version\n")
    inline.docker("build", "-q", "-f", "Dockerfile.composer", "-t", composer, ".")
    inline.docker("push", composer)
    (path / "Dockerfile").write_text(STAGES_DOCKERFILE.format(composer=composer,
                                                              alpine=busybox_image))
    (path / "composer.json").write_text('{"require": {"php": "^8.2"}}\n')
    (path / "composer.lock").write_text('{"packages": []}\n')
    (path / "src").mkdir()
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / ".dockerignore").write_text(".git\nDockerfile.composer\n.devsync.toml\n")
    (path / ".gitignore").write_text(".devsync.toml\n")
    normal_modes(path)
    inline.commit("Initial commit")
    inline.ci_deploy("1.0.0")
    reg.ci_deploy("1.0.0")
    vendor = f"{reg.repo}:buildcache-vendor"
    reg.docker("build", "-q", "--target", "vendor", "--build-arg", "BUILDKIT_INLINE_CACHE=1",
               "-t", vendor, ".")
    reg.docker("push", vendor)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_HOST", engine.url)
        write_registry_cache(Resolver(Engine.connect()), reg.repo, [vendor, f"{reg.repo}:1.0.0"])
    return {"inline": inline, "registry": reg}


def _nothing(team: BKTeam) -> None:
    pass


def _code_edit(team: BKTeam) -> None:
    (team.path / "src" / "index.php").write_text("<?php echo 'hello, world';\n")


def _composer_json(team: BKTeam) -> None:
    (team.path / "composer.json").write_text('{"require": {"php": "^8.3"}}\n')


def _final_workdir(team: BKTeam) -> None:
    df = team.path / "Dockerfile"
    df.write_text(df.read_text().replace("WORKDIR /var/www/html", "WORKDIR /var/www/app"))


ALL = {2, 3, 4, 6, 7, 8, 9}
# scenario: change, {cache: (CACHED lines, uncertain lines)}
SCENARIOS: dict[str, tuple[Callable[[BKTeam], None], dict[str, tuple[set[int], set[int]]]]] = {
    "unchanged": (_nothing, {"inline": (ALL, set()), "registry": (ALL, set())}),
    # COPY --from loads: the vendor stage is never needed, and reported CACHED
    "code-edited": (_code_edit, {"inline": ({2, 3, 4, 6, 7}, set()),
                                 "registry": ({2, 3, 4, 6, 7}, set())}),
    # the vendor stage is needed: inline, it runs from its FROM (no layers); with the
    # registry cache its WORKDIR loads. COPY --from and what follows: known once built
    "composer-json-changed": (_composer_json, {"inline": ({6}, {7, 8, 9}),
                                               "registry": ({2, 6}, {7, 8, 9})}),
    # the final stage changes above COPY --from: it needs the vendor stage's result
    "final-workdir-changed": (_final_workdir, {"inline": (set(), set()),
                                               "registry": ({2, 3, 4}, set())}),
}


def _built(team: BKTeam, plan: ImagePlan) -> dict[int, bool]:
    """BuildKit's CACHED per vertex line (FROM left out: resolved, never CACHED)."""
    real = team.developer_build(plan.cache_from)
    return {line: cached for line, cached in real.items() if line not in (1, 5)}


def _setup(team: BKTeam, change: Callable[[BKTeam], None]) -> ImagePlan:
    reset(team)
    (team.path / ".devsync.toml").write_text(f'[images.app]\ndeployed = "{team.repo}"\n')
    change(team)
    return plan_app(team.path)


@pytest.mark.parametrize("cache", ["inline", "registry"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_multi_stage_plan_matches_buildkit(stages: dict[str, BKTeam], buildkit_env: None,
                                           scenario: str, cache: str) -> None:
    team = stages[cache]
    change, expected = SCENARIOS[scenario]
    cached_lines, uncertain_lines = expected[cache]
    plan = _setup(team, change)
    assert plan.builder == "buildkit" and plan.deployed == f"{team.repo}:1.0.0"
    assert (f"{team.repo}:buildcache" in plan.cache_from) == (cache == "registry")
    predicted = vertex_steps(plan)
    assert sorted(predicted) == sorted(ALL), plan.summary
    assert {line for line, (_c, certain) in predicted.items() if not certain} \
        == uncertain_lines, [(s.line, s.cached, s.reason) for s in plan.steps]
    real = _built(team, plan)
    assert sorted(real) == sorted(ALL), real
    assert {line for line, cached in real.items() if cached} == cached_lines, real
    for line, (cached, certain) in predicted.items():
        if certain:
            assert real[line] == cached, (scenario, cache, line, predicted, real, plan.summary)


def test_copy_from_reason_says_the_files_decide(stages: dict[str, BKTeam],
                                                buildkit_env: None) -> None:
    plan = _setup(stages["inline"], _composer_json)
    step = next(s for s in plan.steps if s.line == 7)
    assert not step.cached and not step.certain
    assert "stage vendor" in step.reason and "byte-identical" in step.reason, step.reason
    vendor_copy = next(s for s in plan.steps if s.line == 3)
    assert vendor_copy.certain and "composer.json" in vendor_copy.reason, vendor_copy.reason


def test_changed_stage_text_stays_uncertain(stages: dict[str, BKTeam],
                                            buildkit_env: None) -> None:
    """A vendor stage whose text differs from the deployed revision's: no image history
    says what its ops were, so its vertices and COPY --from stay uncertain; the final
    stage's steps before COPY --from stay exact."""
    team = stages["inline"]

    def run_changed(t: BKTeam) -> None:
        df = t.path / "Dockerfile"
        df.write_text(df.read_text().replace("mkdir -p /app/vendor", "mkdir -p /app/vendor/"))

    plan = _setup(team, run_changed)
    predicted = vertex_steps(plan)
    assert {line for line, (_c, certain) in predicted.items() if not certain} \
        == {2, 3, 4, 7, 8, 9}, plan.summary
    real = _built(team, plan)
    assert predicted[6] == (True, True) and real[6], (predicted, real)
    # measured: the changed RUN makes the same files, and BuildKit, having built the stage,
    # finds COPY --from by its content key: CACHED, and what follows with it. Had the files
    # differed, it would have run: why the plan leaves it uncertain
    assert not real[4] and real[7], real
    assert all(real[line] for line in (8, 9)), real


@pytest.mark.parametrize("cache", ["inline", "registry"])
def test_sync_of_a_multi_stage_project_goes_as_planned(stages: dict[str, BKTeam],
                                                       buildkit_env: None,
                                                       cache: str) -> None:
    """`devsync sync` compares BuildKit's CACHED with the plan's certain steps itself, the
    vendor stage's included: no step against its prediction, after a code edit and after a
    composer.json change."""
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.events import StepFinished, Warning_
    from devsync.model.project import load_project
    from devsync.ops.sync import sync_image

    team = stages[cache]
    for change in (_code_edit, _composer_json):
        plan = _setup(team, change)
        team.fresh_machine()
        project = load_project(team.path)
        engine = Engine.connect()
        events = list(sync_image(project, project.image("app"), engine=engine,
                                 resolver=Resolver(engine), git=open_repo(team.path),
                                 plan=plan))
        differed = [e.message for e in events if isinstance(e, Warning_)
                    and ("the engine rebuilt" in e.message or "the engine reused" in e.message)]
        assert not differed, differed
        finished = [e for e in events if isinstance(e, StepFinished)]
        predicted = [e for e in finished if e.predicted_cached is not None]
        # the vendor stage's three vertices are predicted too
        assert len(predicted) >= 6, finished
        assert all(e.cached == e.predicted_cached for e in predicted), finished
