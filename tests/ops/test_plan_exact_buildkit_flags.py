"""The BuildKit plan stays exact for the flags an image's history leaves out.

BuildKit writes `COPY composer.json ./` into the history for `COPY --chown=1000:1000
composer.json ./`, and `RUN /bin/sh -c ...` for `RUN --mount=type=cache,... ...`, yet the flags
are part of the op and so of its cache key. The Dockerfile at the deployed image's revision
(its org.opencontainers.image.revision label, read from git) vouches for them: the same line
after the same lines is CI's op; the same place with other flags is another op, a certain
miss. Each scenario is checked against dockerd 20.10's BuildKit on a fresh machine, vertex by
vertex (tests/support/bkteam.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devsync.devtools import sandbox
from tests.support.bkteam import BKTeam, assert_exact, normal_modes, plan_app, reset
from tests.support.teamrepo import git

FLAGS_DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY --chown=1000:1000 composer.json ./
RUN --mount=type=cache,target=/root/.cache cat composer.json > vendor.txt && ls -ln > owners.txt
COPY src/ ./src/
RUN ls -la /app/src > /app/files.txt
CMD ["cat", "/app/files.txt"]
"""


@pytest.fixture(scope="module")
def flags(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> BKTeam:
    path = tmp_path_factory.mktemp("bkflags") / "bkflags"
    path.mkdir()
    team = BKTeam(path, engine, f"{registry.host}/bkflags")
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile").write_text(FLAGS_DOCKERFILE.format(base=busybox_image))
    (path / "composer.json").write_text('{"require": {"php": "^8.2"}}\n')
    (path / "src").mkdir()
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / ".dockerignore").write_text(".git\n.devsync.toml\n")
    # (FROM is no team base here: where the app is deployed is said in the file)
    (path / ".devsync.toml").write_text(f'[images.app]\ndeployed = "{team.repo}"\n')
    normal_modes(path)
    team.commit("Initial commit")
    team.ci_deploy("1.0.0")
    return team


def _edit_dockerfile(team: BKTeam, old: str, new: str) -> None:
    df = team.path / "Dockerfile"
    text = df.read_text()
    assert old in text
    df.write_text(text.replace(old, new))


def _nothing(team: BKTeam) -> None:
    pass


def _code_edited(team: BKTeam) -> None:
    (team.path / "src" / "index.php").write_text("<?php echo 'hello, world';\n")


def _chown_changed(team: BKTeam) -> None:
    _edit_dockerfile(team, "--chown=1000:1000", "--chown=1001:1001")


def _chown_changed_committed(team: BKTeam) -> None:
    _chown_changed(team)
    team.commit("Run as 1001", author="Ben")


def _cache_mount_changed(team: BKTeam) -> None:
    _edit_dockerfile(team, "target=/root/.cache", "target=/tmp/cache")


FLAG_SCENARIOS: dict[str, tuple[Callable[[BKTeam], None], int | None]] = {
    # name: (change, line of the first vertex that runs, None when all are CACHED)
    "unchanged": (_nothing, None),
    "code-edited": (_code_edited, 5),
    "chown-changed": (_chown_changed, 3),
    "chown-changed-committed": (_chown_changed_committed, 3),
    "cache-mount-changed": (_cache_mount_changed, 4),
}


@pytest.mark.parametrize("scenario", list(FLAG_SCENARIOS))
def test_flagged_steps_are_predicted_exactly(flags: BKTeam, buildkit_env: None,
                                             scenario: str) -> None:
    change, first_rebuild = FLAG_SCENARIOS[scenario]
    reset(flags)
    change(flags)
    plan = plan_app(flags.path)
    assert plan.builder == "buildkit" and plan.deployed == f"{flags.repo}:1.0.0"
    first = next((s for s in plan.steps if not s.cached and s.kind != "nop"), None)
    assert (first.line if first else None) == first_rebuild, plan.summary
    assert not any("uncertain" in n for n in plan.notes), plan.notes
    if first is not None and first.line in (3, 4):
        # the line as it was at the deployed revision against the line now, and why it counts
        assert "instruction changed" in first.reason and "flags" in first.reason, first.reason
        assert ("1000:1000" in first.reason) == (first.line == 3), first.reason
    assert_exact(flags, plan, scenario)


def test_flags_not_vouched_for_stay_uncertain(flags: BKTeam, buildkit_env: None) -> None:
    """A line added above the flagged steps: the revision's lines no longer line up, so
    nothing vouches for the flags, and the plan says so rather than guessing."""
    reset(flags)
    _edit_dockerfile(flags, "WORKDIR /app\n", "WORKDIR /app\nENV MODE=dev\n")
    plan = plan_app(flags.path)
    copy = next(s for s in plan.steps if s.instruction.startswith("COPY --chown"))
    assert not copy.certain and "--chown" in copy.reason, copy.reason
    assert any("uncertain" in n for n in plan.notes), plan.notes


def test_flags_after_a_deployment_without_a_revision_label(flags: BKTeam,
                                                           buildkit_env: None) -> None:
    """Without org.opencontainers.image.revision devsync cannot read CI's Dockerfile: the
    flagged steps are uncertain, never a confident guess."""
    reset(flags)
    other = flags.repo + "-nolabel"
    flags.docker("build", "-q", "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t",
                 f"{other}:1.0.0", ".")
    flags.docker("push", f"{other}:1.0.0")
    (flags.path / ".devsync.toml").write_text(f'[images.app]\ndeployed = "{other}"\n')
    plan = plan_app(flags.path)
    copy = next(s for s in plan.steps if s.instruction.startswith("COPY --chown"))
    run = next(s for s in plan.steps if s.instruction.startswith("RUN --mount"))
    assert plan.deployed == f"{other}:1.0.0"
    assert not copy.certain and not run.certain, plan.summary


def _sync(team: BKTeam) -> list[object]:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import load_project
    from devsync.ops.sync import sync_image

    project = load_project(team.path)
    engine = Engine.connect()
    return list(sync_image(project, project.image("app"), engine=engine,
                           resolver=Resolver(engine), git=open_repo(team.path),
                           plan=plan_app(team.path)))


@pytest.mark.parametrize("scenario", ["unchanged", "chown-changed"])
def test_sync_of_flagged_steps_goes_as_planned(flags: BKTeam, buildkit_env: None,
                                               scenario: str) -> None:
    """devsync's own sync compares BuildKit's CACHED with the plan, vertex by vertex: with a
    cache mount dockerfile2llb names the one stage `stage-0`, and every vertex is still
    matched to its line."""
    from devsync.events import StepFinished, Warning_

    reset(flags)
    FLAG_SCENARIOS[scenario][0](flags)
    flags.fresh_machine()
    events = _sync(flags)
    differed = [e.message for e in events if isinstance(e, Warning_)
                and ("the engine rebuilt" in e.message or "the engine reused" in e.message)]
    assert not differed, differed
    finished = [e for e in events if isinstance(e, StepFinished)]
    predicted = [e for e in finished if e.predicted_cached is not None]
    assert len(predicted) == 7, finished  # (every line, FROM and CMD too)
    assert all(e.cached == e.predicted_cached for e in predicted), finished
    assert any(not e.cached for e in predicted) == (scenario != "unchanged"), finished


def test_nothing_deployed_a_cache_mount_chooses_buildkit(flags: BKTeam,
                                                         buildkit_env: None) -> None:
    """builder = "auto" with no deployed image to follow would be the classic builder, which
    rejects `RUN --mount`: the Dockerfile decides, and the sync builds it with BuildKit."""
    from devsync.events import Done

    reset(flags)
    (flags.path / ".devsync.toml").write_text(
        f'[images.app]\ndeployed = "{flags.repo}-new"\n')
    plan = plan_app(flags.path)
    assert plan.builder == "buildkit", plan.notes
    assert plan.deployed is None or "not in its registry" in " ".join(plan.notes)
    flags.fresh_machine()
    events = _sync(flags)
    assert isinstance(events[-1], Done), events[-1]


def test_the_onboarding_checklist_of_a_buildkit_project(flags: BKTeam,
                                                        buildkit_env: None) -> None:
    """A BuildKit sync pulls nothing first: the checklist does not ask for the base or the
    deployed image to be pulled, before the sync or after it (when neither is pulled)."""
    import threading

    from devsync.ops.onboarding import CHECK_FAIL, CHECK_OK, checklist

    reset(flags)
    flags.fresh_machine()
    before = {i.key: i for i in checklist(flags.path, threading.Event())}
    assert before["base"].state == CHECK_OK and "BuildKit" in before["base"].detail
    assert before["deployed"].state == CHECK_OK, before["deployed"]
    assert "BuildKit reuses its layers" in before["deployed"].detail
    assert before["local"].state == CHECK_FAIL
    _sync(flags)
    after = {i.key: i for i in checklist(flags.path, threading.Event())}
    assert {after[k].state for k in ("base", "deployed", "local")} == {CHECK_OK}, after
    assert flags.docker("image", "inspect", f"{flags.repo}:1.0.0",
                        check=False).returncode != 0  # (really not pulled)
