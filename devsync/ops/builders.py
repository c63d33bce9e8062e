"""Which builder an image is built (and predicted) with, and which way a BuildKit build goes.

The builder: `.devsync.toml`'s `builder` (`[images.NAME]` over `[devsync]`), "classic",
"buildkit" or "auto" (the default). On "auto" it is the builder the deployed image was built
with (for a base, the registry's base; for an app with no deployed image, the registry's base
it is FROM, else the image the last sync built here with BuildKit), and classic when there is
no such image: each builder reuses only its own layers (NOTES.md, "BuildKit").

The way (`transport`, BuildKit only; see devsync.ops.buildkit): "cli", the docker CLI's
session, when a docker CLI with a BuildKit client is found and either the registry asks for a
login (only a session carries Docker's credentials to BuildKit) or the deployed image was
built through a CLI, as CI builds (`docker build`, buildx, build-push-action): only the same
way hits its `COPY .` layers. Else "api": the Engine API with the context in the request body
(it pulls first what needs a login). An image devsync published through the Engine API says
so in a label (`TRANSPORT_LABEL`), so the next sync builds the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError
from devsync.model.versions import split_reference

if TYPE_CHECKING:
    from devsync.adapters.resolver import Resolver
    from devsync.model.images import ImageInfo
    from devsync.model.project import ImageSpec, Project

CLASSIC, BUILDKIT = "classic", "buildkit"
CLI, API = "cli", "api"
# on an image devsync built with BuildKit through the Engine API (not through a CLI)
TRANSPORT_LABEL = "dev.devsync.buildkit.transport"


@dataclass(frozen=True)
class BuilderChoice:
    builder: str  # CLASSIC or BUILDKIT
    transport: str | None  # BuildKit: CLI or API; None for the classic builder
    why: str  # in words: what decided it
    # the classic builder on a BuildKit image: it cannot reuse it, and the fix (what BuildKit
    # cannot reuse, the BuildKit plan says: devsync.ops.plan_buildkit)
    notes: tuple[str, ...] = ()

    @property
    def buildkit(self) -> bool:
        return self.builder == BUILDKIT


def configured_builder(project: Project, spec: ImageSpec) -> str:
    """`builder` from `.devsync.toml`: the image's own, else the project's ("auto")."""
    return spec.builder or getattr(project.config, "builder", "auto") or "auto"


def built_through_cli(image: ImageInfo | None) -> bool:
    """Whether a BuildKit image was built through a docker CLI's session (as CI builds),
    not by devsync through the Engine API."""
    return image is not None and image.last_built_with_buildkit \
        and image.labels.get(TRANSPORT_LABEL) != API


def decide(configured: str, *, reference: ImageInfo | None, reference_name: str = "",
           cli_found: Callable[[], bool], needs_login: Callable[[], bool],
           buildkit_only: str | None = None) -> BuilderChoice:
    """The decision table. `reference`: the image "auto" follows (None: none is known).
    `cli_found` and `needs_login` are asked only for a BuildKit build. `buildkit_only`: what
    in the Dockerfile only BuildKit builds (e.g. "RUN --mount=... (line 4)"): on "auto" that
    decides, since the classic builder would reject it."""
    name = reference_name or (reference.reference if reference is not None else "")
    if configured == CLASSIC:
        notes: tuple[str, ...] = ()
        if reference is not None and reference.last_built_with_buildkit:
            notes = (f"{name} was built with BuildKit, and .devsync.toml says builder = "
                     '"classic": the classic builder cannot reuse its layers. Set builder = '
                     '"buildkit" (or "auto") to build with BuildKit and reuse them, or build it '
                     "in CI with the classic builder (DOCKER_BUILDKIT=0 docker build ...).",)
        return BuilderChoice(CLASSIC, None, 'builder = "classic" in .devsync.toml', notes)
    return _buildkit_or_classic(configured, reference, name, cli_found, needs_login,
                                buildkit_only)


def _buildkit_or_classic(configured: str, reference: ImageInfo | None, name: str,
                         cli_found: Callable[[], bool], needs_login: Callable[[], bool],
                         buildkit_only: str | None) -> BuilderChoice:
    if configured == BUILDKIT:
        why = 'builder = "buildkit" in .devsync.toml'
    elif reference is not None and reference.last_built_with_buildkit:
        why = f"{name} was built with BuildKit"
    elif buildkit_only is not None:
        # (the classic builder rejects the Dockerfile: whatever it reuses, only BuildKit
        # builds it; a classic deployed image is then no cache source, and the plan says so)
        why = f"the Dockerfile's {buildkit_only} needs BuildKit"
    elif reference is not None:
        return BuilderChoice(CLASSIC, None, f"{name} was built with the classic builder")
    else:
        return BuilderChoice(CLASSIC, None, "no deployed image to follow: the classic builder "
                             '(set builder = "buildkit" in .devsync.toml to build with BuildKit)')
    if not cli_found():
        return BuilderChoice(BUILDKIT, API, f"{why}; no docker CLI with BuildKit: through the "
                             "Engine API")
    if needs_login():
        return BuilderChoice(BUILDKIT, CLI, f"{why}; its registry asks for a login: through "
                             "the docker CLI")
    if built_through_cli(reference):
        return BuilderChoice(BUILDKIT, CLI, f"{why}; built through a docker CLI: through the "
                             "docker CLI too")
    return BuilderChoice(BUILDKIT, API, f"{why}; through the Engine API")


def builder_of(project: Project, spec: ImageSpec, deployed: ImageInfo | None) -> str:
    """The builder alone, from the deployed image (no CLI probe, no registry asked)."""
    return decide(configured_builder(project, spec), reference=deployed,
                  cli_found=lambda: False, needs_login=lambda: False,
                  buildkit_only=_buildkit_only(project, spec)).builder


def choose_builder(project: Project, spec: ImageSpec, resolver: Resolver, *,
                   deployed: ImageInfo | None, deployed_ref: str | None = None) -> BuilderChoice:
    """The builder and way for `spec`, given its deployed image as the plan read it."""
    configured = configured_builder(project, spec)
    reference, name = _reference(project, spec, resolver, deployed, deployed_ref or "",
                                 configured)

    def cli_found() -> bool:
        from devsync.adapters.engine import find_buildkit_cli

        return find_buildkit_cli(project.config.docker_cli).cli is not None

    def needs_login() -> bool:
        # (the team's registry: a FROM of Docker Hub's is not asked)
        refs = [r for r in (deployed_ref, spec.deployed, name) if r]
        for ref in dict.fromkeys(refs):
            try:
                if resolver.client(split_reference(ref)[0]).asks_for_login:
                    return True
            except DevsyncError:
                continue
        return False

    return decide(configured, reference=reference, reference_name=name, cli_found=cli_found,
                  needs_login=needs_login, buildkit_only=_buildkit_only(project, spec))


def _buildkit_only(project: Project, spec: ImageSpec) -> str | None:
    """What in the image's Dockerfile only BuildKit builds, in words (None: nothing, or the
    Dockerfile cannot be read: the plan reports that itself)."""
    try:
        found = project.dockerfile(spec).buildkit_only()
    except DevsyncError:
        return None
    if found is None:
        return None
    flags = " ".join(f for f in found.flags if f.startswith(("--mount", "--network",
                                                                "--security", "--chmod")))
    return f"{found.cmd} {flags} (line {found.line})"


def _reference(project: Project, spec: ImageSpec, resolver: Resolver,
               deployed: ImageInfo | None, deployed_ref: str, configured: str
               ) -> tuple[ImageInfo | None, str]:
    """The image "auto" follows, and its name: the deployed image; else, for an app not
    deployed yet, the registry's team base it is FROM; else (the registry out of reach, say)
    the image the last sync built here, when devsync built it with BuildKit (its inputs
    label), which tells how the last sync built."""
    if deployed is not None or configured != "auto":
        return deployed, deployed_ref
    if spec.base_ref and any(b.tag == spec.base_ref for b in project.base_images):
        try:
            base = resolver.base(spec.base_ref)
        except DevsyncError:
            base = None
        if base is not None and base.origin == "registry":  # (one built here says nothing)
            return base, spec.base_ref
    from devsync.ops.bkinputs import INPUTS_LABEL

    try:
        local = resolver.local(spec.tag)
    except DevsyncError:
        local = None
    if local is not None and local.last_built_with_buildkit and INPUTS_LABEL in local.labels:
        return local, spec.tag
    return None, deployed_ref


__all__ = ["API", "BUILDKIT", "CLASSIC", "CLI", "TRANSPORT_LABEL", "BuilderChoice", "builder_of",
           "built_through_cli", "choose_builder", "configured_builder",
           "decide"]
