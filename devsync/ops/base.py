"""The base-image workflow: build and push a new base, bump the app's FROM line, publish an app
image, and advice on when a new base pays off. No UI here: generators of events and plain
results that the CLI and the TUI render."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devsync.errors import ConfigError, DevsyncError
from devsync.events import Event, PhaseStarted
from devsync.model.dockerfiles import cache_busting_order
from devsync.model.project import ROLE_APP, ROLE_BASE, ImageSpec, Project
from devsync.model.versions import latest_base_tag, next_version, parse_version, split_reference
from devsync.ops.plan import plan_image
from devsync.ops.sync import build_image, pull_missing

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import GitRepo
    from devsync.adapters.resolver import Resolver

OVERLAY2_MAX_LAYERS = 127


def base_spec(project: Project) -> ImageSpec:
    bases = project.base_images
    if not bases:
        raise ConfigError("this project has no base image (no Dockerfile.base, and no image "
                          "with role = \"base\" in .devsync.toml)")
    return bases[0]


def next_base_tag(spec: ImageSpec, resolver: Resolver, version: str | None) -> str:
    repo, current_tag, _digest = split_reference(spec.tag)
    if version:
        if parse_version(version) is None:
            raise ConfigError(f"--version {version}: not a semantic version (X.Y.Z)")
        return f"{repo}:base-{version.removeprefix('v')}"
    try:
        tags = resolver.tags(repo)
    except DevsyncError:
        tags = []
    latest = latest_base_tag(tags) or current_tag or "base-0.0.0"
    return f"{repo}:base-{next_version(latest.removeprefix('base-'), 'minor')}"


def base_build(project: Project, *, engine: Engine, resolver: Resolver, git: GitRepo | None,
               version: str | None = None, push: bool = False,
               cancel: threading.Event | None = None) -> Iterator[Event]:
    from devsync.adapters.state import operation_lock

    spec = base_spec(project)
    with operation_lock(project.root, "building the base"):
        tag = next_base_tag(spec, resolver, version)
        plan = plan_image(project, spec, resolver, git)
        yield PhaseStarted(spec.name, "build", f"{tag}: {plan.summary}")
        if plan.deployed:
            yield from pull_missing(engine, [plan.deployed], cancel)
        yield from build_image(project, spec, plan, engine=engine, git=git, tag=tag,
                               version=split_reference(tag)[1], cancel=cancel)
        if push:
            yield PhaseStarted(spec.name, "push", tag)
            yield from engine.push(tag, cancel=cancel)




@dataclass
class BumpResult:
    changed: list[str] = field(default_factory=list)  # repo-relative files rewritten
    old: str = ""
    new: str = ""


def base_bump(project: Project, resolver: Resolver, to_tag: str | None = None) -> BumpResult:
    """Point every app Dockerfile's FROM (or the ARG default that feeds it) at the newest
    base tag, changing nothing but that tag's bytes."""
    spec = base_spec(project)
    repo, old_tag, _digest = split_reference(spec.tag)
    if to_tag is None:
        latest = latest_base_tag(resolver.tags(repo))
        if latest is None:
            raise ConfigError(f"no base-X.Y.Z tag in {repo}: build and push one first "
                              "(devsync base build --push)")
        to_tag = latest
    to_tag = to_tag.split(":")[-1]
    result = BumpResult(old=old_tag or "", new=to_tag)
    if to_tag == old_tag:
        return result
    for app in project.images:
        if app.role != ROLE_APP:
            continue
        raw = app.dockerfile.read_bytes()
        df = project.dockerfile(app)
        lines = raw.split(b"\n")
        # the lines that can hold the tag: FROM lines, and ARGs before the first FROM
        candidates = [s.from_instruction for s in df.stages] + list(df.meta_args)
        touched = False
        for ins in candidates:
            for n in range(ins.line - 1, ins.end_line):
                line = lines[n]
                old_bytes = (old_tag or "").encode()
                if old_bytes and old_bytes in line:
                    lines[n] = line.replace(old_bytes, to_tag.encode())
                    touched = True
        if touched:
            app.dockerfile.write_bytes(b"\n".join(lines))
            result.changed.append(app.rel_dockerfile(project.root))
    return result


@dataclass
class Advice:
    base_bytes: int
    app_bytes: int  # layers of the deployed app image above its base
    layers: int
    warnings: list[str]

    @property
    def drift(self) -> float:
        return self.app_bytes / self.base_bytes if self.base_bytes else 0.0


def advice(project: Project, resolver: Resolver) -> Advice:
    spec = base_spec(project)
    cfg = project.config
    base = resolver.remote(spec.tag)
    warnings: list[str] = []
    app_bytes = layers = 0
    base_bytes = base.size or 0 if base is not None else 0
    for app in project.app_images:
        deployed_ref = resolver.latest_deployed(app.deployed) if app.deployed else None
        deployed = resolver.remote(deployed_ref) if deployed_ref else None
        if deployed is None or base is None:
            continue
        n_base = len(base.diff_ids)
        app_bytes = sum(deployed.layer_sizes[n_base:])
        layers = len(deployed.diff_ids)
        if base_bytes and app_bytes / base_bytes >= cfg.base_drift_threshold:
            warnings.append(
                f"{app.name}: the layers above the base are {app_bytes / 1e6:.1f} MB, "
                f"{app_bytes / base_bytes:.0%} of the base ({base_bytes / 1e6:.1f} MB): "
                "moving the dependency installs into a new base would pay off "
                "(devsync base build --push && devsync base bump)")
        if layers >= cfg.layer_warning:
            warnings.append(
                f"{app.name}: {layers} layers; overlay2 refuses images deeper than "
                f"{OVERLAY2_MAX_LAYERS + 1}: squash steps or rebuild the base")
        warnings.extend(order_warnings(project, app))
    return Advice(base_bytes=base_bytes, app_bytes=app_bytes, layers=layers,
                  warnings=warnings)


def order_warnings(project: Project, spec: ImageSpec) -> list[str]:
    return cache_busting_order(project.dockerfile(spec), spec.rel_dockerfile(project.root))


def publish(project: Project, version: str, *, engine: Engine, resolver: Resolver,
            git: GitRepo | None, image: str | None = None,
            cancel: threading.Event | None = None) -> Iterator[Event]:
    """The CI deploy step: build the app with the OCI labels and push REPO:VERSION."""
    from devsync.adapters.state import operation_lock

    if parse_version(version) is None and version != "latest":
        raise ConfigError(f"{version}: not a semantic version (X.Y.Z)")
    specs = [project.image(image)] if image else project.app_images
    with operation_lock(project.root, "publishing"):
        for spec in specs:
            if spec.role == ROLE_BASE or not spec.deployed_repository:
                continue
            ref = f"{spec.deployed_repository}:{version}"
            plan = plan_image(project, spec, resolver, git)
            yield PhaseStarted(spec.name, "pull")
            if plan.deployed:
                yield from pull_missing(engine, [plan.deployed], cancel)
            yield PhaseStarted(spec.name, "build", ref)
            yield from build_image(project, spec, plan, engine=engine, git=git, tag=ref,
                                   version=version, cancel=cancel)
            yield PhaseStarted(spec.name, "push", ref)
            yield from engine.push(ref, cancel=cancel)
