"""The builder decision (devsync.ops.builders.decide): which builder, which way, and what is
said when the chosen builder cannot reuse the deployed image. No engine: the facts it asks
for are given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from devsync.model.images import HistoryEntry, ImageInfo
from devsync.ops.builders import API, TRANSPORT_LABEL, BuilderChoice, builder_of, decide

REF = "reg.example:5000/app:1.0.0"


def image(kind: str, *, inline: bool = True, labels: dict[str, str] | None = None) -> ImageInfo:
    """"buildkit" (CI's CLI build, with or without inline cache) or "classic"."""
    created_by = ("RUN /bin/sh -c make # buildkit" if kind == "buildkit"
                  else "/bin/sh -c make")
    return ImageInfo(reference=REF, image_id="sha256:1",
                     history=(HistoryEntry(0, created_by),), diff_ids=("sha256:a",),
                     labels=dict(labels or {}),
                     inline_cache="eyJ9" if inline and kind == "buildkit" else "")


def asked(answer: bool, calls: list[str], name: str) -> Callable[[], bool]:
    def ask() -> bool:
        calls.append(name)
        return answer
    return ask


def choose(configured: str, reference: ImageInfo | None, *, cli: bool = True,
           login: bool = False, calls: list[str] | None = None) -> BuilderChoice:
    calls = [] if calls is None else calls
    return decide(configured, reference=reference, cli_found=asked(cli, calls, "cli"),
                  needs_login=asked(login, calls, "login"))


@pytest.mark.parametrize(("configured", "reference", "cli", "login", "expected"), [
    # auto follows the deployed image
    ("auto", "buildkit", True, False, ("buildkit", "cli")),  # CI's CLI build: same way
    ("auto", "buildkit", True, True, ("buildkit", "cli")),
    ("auto", "buildkit", False, False, ("buildkit", "api")),  # no CLI: the Engine API
    ("auto", "buildkit", False, True, ("buildkit", "api")),  # (which pulls first)
    ("auto", "classic", True, False, ("classic", None)),
    ("auto", None, True, False, ("classic", None)),  # nothing to follow
    # what the file says wins
    ("classic", "buildkit", True, False, ("classic", None)),
    ("buildkit", "classic", True, False, ("buildkit", "api")),  # not CLI-built, no login
    ("buildkit", "classic", True, True, ("buildkit", "cli")),  # a login: only a session
    ("buildkit", None, True, False, ("buildkit", "api")),
    ("buildkit", None, False, True, ("buildkit", "api")),
])
def test_decision_table(configured: str, reference: str | None, cli: bool, login: bool,
                        expected: tuple[str, str | None]) -> None:
    info = image(reference) if reference else None
    choice = choose(configured, info, cli=cli, login=login)
    assert (choice.builder, choice.transport) == expected
    assert choice.why


def test_an_image_devsync_built_through_the_engine_api_is_built_that_way_again() -> None:
    info = image("buildkit", labels={TRANSPORT_LABEL: API})
    assert (choose("auto", info).builder, choose("auto", info).transport) == ("buildkit", "api")
    # but a registry that asks for a login still needs the CLI's session
    assert choose("auto", info, login=True).transport == "cli"


def test_the_classic_builder_asks_nothing_of_the_cli_or_the_registry() -> None:
    calls: list[str] = []
    choose("classic", image("buildkit"), calls=calls)
    choose("auto", image("classic"), calls=calls)
    choose("auto", None, calls=calls)
    assert calls == []


def test_classic_on_a_buildkit_image_says_how_to_reuse_it() -> None:
    (note,) = choose("classic", image("buildkit")).notes
    assert 'builder = "buildkit"' in note and "DOCKER_BUILDKIT=0" in note
    assert choose("auto", image("classic")).notes == ()
    assert choose("auto", image("buildkit")).notes == ()


def test_builder_of_needs_no_cli_probe() -> None:
    from types import SimpleNamespace

    class Project:
        class config:
            builder = "auto"

        def dockerfile(self, spec: object) -> object:
            return SimpleNamespace(buildkit_only=lambda: None)

    class Spec:
        builder: str | None = None

    assert builder_of(Project(), Spec(), image("buildkit")) == "buildkit"  # type: ignore[arg-type]
    assert builder_of(Project(), Spec(), None) == "classic"  # type: ignore[arg-type]
    Spec.builder = "buildkit"
    assert builder_of(Project(), Spec(), None) == "buildkit"  # type: ignore[arg-type]


@pytest.mark.parametrize(("configured", "reference", "expected"), [
    ("auto", None, ("buildkit", "api")),  # nothing to follow: what the file needs decides
    ("auto", "classic", ("buildkit", "api")),  # the classic builder would reject it
    ("auto", "buildkit", ("buildkit", "cli")),
    ("classic", None, ("classic", None)),  # said in the file: its plan says what fails
])
def test_a_dockerfile_only_buildkit_builds_takes_buildkit_on_auto(
        configured: str, reference: str | None, expected: tuple[str, str | None]) -> None:
    info = image(reference) if reference else None
    choice = decide(configured, reference=info, cli_found=lambda: True,
                    needs_login=lambda: False, buildkit_only="RUN --mount=type=cache (line 4)")
    assert (choice.builder, choice.transport) == expected
    if configured == "auto" and reference != "buildkit":
        assert "RUN --mount=type=cache (line 4) needs BuildKit" in choice.why


def test_with_nothing_deployed_auto_follows_the_teams_base_then_the_last_sync_here(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVSYNC_DOCKER_CLI", raising=False)
    from types import SimpleNamespace

    from devsync.ops.bkinputs import INPUTS_LABEL
    from devsync.ops.builders import choose_builder

    class Resolver:
        def __init__(self, base: ImageInfo | None, local: ImageInfo | None) -> None:
            self._base, self._local = base, local

        def base(self, ref: str) -> ImageInfo | None:
            return self._base

        def local(self, ref: str) -> ImageInfo | None:
            return self._local

        def client(self, repository: str) -> Any:
            return SimpleNamespace(asks_for_login=False, head_digest=lambda *a: None)

    base_ref = "reg.example:5000/app:base-1.0.0"
    spec = SimpleNamespace(builder=None, base_ref=base_ref, tag="reg.example:5000/app:dev",
                           deployed=None)
    project = SimpleNamespace(config=SimpleNamespace(builder="auto", docker_cli="none"),
                              dockerfile=lambda spec: SimpleNamespace(buildkit_only=lambda: None),
                              base_images=[SimpleNamespace(tag=base_ref)])

    def chosen(base: ImageInfo | None, local: ImageInfo | None) -> tuple[str, str | None]:
        choice = choose_builder(project, spec, Resolver(base, local),  # type: ignore[arg-type]
                                deployed=None)
        return choice.builder, choice.transport

    registry_base = image("buildkit", inline=True)
    assert chosen(registry_base, None) == ("buildkit", "api")  # (no CLI: docker_cli none)
    assert chosen(image("classic"), None) == ("classic", None)
    # offline, say: the image the last sync built here with BuildKit tells
    synced = image("buildkit", labels={INPUTS_LABEL: "sha256:1"})
    object.__setattr__(synced, "origin", "local")
    assert chosen(None, synced) == ("buildkit", "api")
    assert chosen(None, image("buildkit")) == ("classic", None)  # (not devsync's build)
    assert chosen(None, None) == ("classic", None)
