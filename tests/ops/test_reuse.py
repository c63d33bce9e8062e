"""A sync whose plan proves every step cached makes the image without a build, and that image
is the full build's; when the engine or the files say otherwise, a real build runs and the
sync says why. Against the real engine and registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from devsync.events import Done, Event, ImageBuilt, LogLine, StepFinished, Warning_
from devsync.model.context import BuildContext
from devsync.ops.plan import plan_image
from devsync.ops.session import Session
from devsync.ops.sync import BuildInput, build_image, run_sync, sync_image
from tests.support.teamrepo import TeamRepo, git, make_team_repo

NOT_SENT = "the build context is not sent"


@pytest.fixture(scope="module")
def team(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    return make_team_repo(tmp_path_factory.mktemp("reuse"), engine, registry, busybox_image,
                          "reuseshop")


@pytest.fixture
def session(team: TeamRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Session]:
    for key, value in team.engine.env().items():
        if key.startswith("DOCKER"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVSYNC_NO_REFRESH", "1")
    git(team.path, "checkout", "-q", "--", ".")
    team.forget_local_images()
    with Session(team.path, need_engine=True) as opened:
        yield opened


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The contexts whose tar went to the engine."""
    calls: list[str] = []
    real = BuildContext.tar_stream

    def recording(self: BuildContext, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(self.context_dir))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BuildContext, "tar_stream", recording)
    return calls


def _inspect(team: TeamRepo, ref: str) -> dict[str, Any]:
    return dict(json.loads(team.docker("image", "inspect", ref).stdout)[0])


def _history(team: TeamRepo, ref: str) -> list[str]:
    out = team.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref).stdout
    return out.splitlines()[::-1]  # oldest first


def test_nothing_changed_makes_the_full_builds_image_without_sending_the_context(
        team: TeamRepo, session: Session, sent: list[str]) -> None:
    spec = session.project.image("app")
    events = list(run_sync(session, [spec]))
    warnings = [e.message for e in events if isinstance(e, Warning_)]
    assert any(isinstance(e, LogLine) and NOT_SENT in e.text for e in events), warnings
    assert sent == []
    finished = [e for e in events if isinstance(e, StepFinished) and e.predicted_cached]
    assert finished and all(e.cached for e in finished)
    done = [e for e in events if isinstance(e, Done)]
    assert done[-1].ok and "9/9 Dockerfile steps reused" in done[-1].summary, done
    made = _inspect(team, spec.tag)
    labels = made["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == git(team.path, "rev-parse",
                                                              "HEAD").strip()

    # the full build of the same plan, with the same labels
    plan = plan_image(session.project, spec, session.resolver, session.git)
    assert plan.reuse is not None and plan.reuse.ref == team.deployed[-1]
    full_tag = f"{team.repo}:full"
    oci = {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")}
    with BuildInput(session.project, spec, plan, session.git, labels=oci) as prepared:
        built = [e for e in build_image(session.project, spec, plan, engine=session.engine,
                                        git=session.git, tag=full_tag, prepared=prepared)
                 if isinstance(e, ImageBuilt)]
    assert built and len(sent) == 1  # (this one did send it)
    full = _inspect(team, full_tag)
    assert made["RootFS"]["Layers"] == full["RootFS"]["Layers"]
    assert {k: v for k, v in made["Config"].items() if k != "Image"} == \
        {k: v for k, v in full["Config"].items() if k != "Image"}
    assert (made["Architecture"], made["Os"]) == (full["Architecture"], full["Os"])
    # the history: the full build's, but for the deployed image's own trailing label step
    # (CI's --label), an empty entry that stays
    ours, theirs = _history(team, spec.tag), _history(team, full_tag)
    ci_label = [h for h in _history(team, team.deployed[-1]) if "LABEL" in h]
    assert [h for h in ours if h not in ci_label] == theirs
    assert ours[-1] == theirs[-1] and ours[-1].startswith("/bin/sh -c #(nop)  LABEL ")
    team.docker("rmi", full_tag)

    # status agrees: the image made so is in sync
    with Session(team.path, need_engine=False) as again:
        from devsync.ops.status import collect_statuses

        statuses = {s.name: s.state for s in collect_statuses(again.project, again.resolver,
                                                               again.git)}
    assert statuses["app"] == "in-sync"


def _sync_with(session: Session, plan_edit: Any = None) -> list[Event]:
    spec = session.project.image("app")
    plan = plan_image(session.project, spec, session.resolver, session.git)
    assert plan.reuse is not None
    if plan_edit is not None:
        plan_edit()
    return list(sync_image(session.project, spec, engine=session.engine,  # type: ignore[arg-type]
                           resolver=session.resolver, git=session.git, plan=plan))


def test_a_file_changed_since_the_plan_is_built_and_said(team: TeamRepo, session: Session,
                                                          sent: list[str]) -> None:
    lib = team.path / "src" / "lib.php"
    events = _sync_with(session, lambda: lib.write_text("<?php function f() { return 3; }\n"))
    warnings = [e.message for e in events if isinstance(e, Warning_)]
    assert any("changed since the plan: building it" in w for w in warnings), warnings
    assert not any(isinstance(e, LogLine) and NOT_SENT in e.text for e in events)
    assert len(sent) == 1
    # the real build's answer, compared with the plan: COPY . rebuilt, and said
    assert any("differed from the plan" in w for w in warnings), warnings
    assert any(isinstance(e, ImageBuilt) for e in events)


def test_a_deployed_tag_that_is_another_image_here_is_built(team: TeamRepo, session: Session,
                                                            sent: list[str]) -> None:
    deployed = team.deployed[-1]

    def retag() -> None:
        team.docker("pull", team.deployed[0])
        team.docker("tag", team.deployed[0], deployed)  # the older deployment, under the tag

    events = _sync_with(session, retag)
    warnings = [e.message for e in events if isinstance(e, Warning_)]
    assert any("is not the image the plan read: building it" in w for w in warnings), warnings
    assert len(sent) == 1
    team.docker("rmi", deployed)


def test_a_deployed_image_with_labels_of_its_own_is_built(team: TeamRepo, session: Session,
                                                          sent: list[str]) -> None:
    """CI stamped a label devsync does not set again: FROM it would keep that label, which
    the full build drops, so the sync builds."""
    head = git(team.path, "rev-parse", "HEAD").strip()
    ref = f"{team.repo}:1.0.2"
    team.docker("build", "-q", "--label", f"org.opencontainers.image.revision={head}",
                "--label", "com.example.ci.run=4711", "-t", ref, ".")
    team.docker("push", ref)
    team.deployed.append(ref)
    team.forget_local_images()
    session.resolver.forget_local()
    events = _sync_with(session)
    warnings = [e.message for e in events if isinstance(e, Warning_)]
    assert any("ends with steps of its own" in w for w in warnings), warnings
    assert len(sent) == 1
    labels = _inspect(team, session.project.image("app").tag)["Config"]["Labels"]
    assert "com.example.ci.run" not in labels
