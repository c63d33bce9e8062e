"""The project model: which images a repository builds, from which Dockerfiles, and where the
deployed ones live. Zero configuration for the common layouts; `.devsync.toml` overrides.

Docker Compose: the services of the repository's Compose files that `build:` are served by
these images (`model.compose`): an image whose Dockerfile a service builds takes the service's
context, args, target and `cache_from`, and is also tagged with the name Compose runs it by;
a service whose build no image covers gets an image of its own. In `.devsync.toml` the keys
set there win, and `compose_services` says which services an image serves.

Common layout: `Dockerfile` starts `FROM REPO:base-<version>` (`base-1.2.0`, `base-1.1`,
`base-2024.05`: any `base-` tag, see `versions`); `Dockerfile.base` (or another Dockerfile,
e.g. `build/Dockerfile`) builds that base. The deployed app image is the highest
semantic-version tag of REPO that does not start with `base-`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from devsync.errors import ConfigError, DockerfileError, NotARepoError
from devsync.model.compose import ComposeBuild, ComposeProject, load_compose
from devsync.model.config import DevsyncConfig, load_config
from devsync.model.dockerfiles import Dockerfile, parse_file
from devsync.model.shellwords import Lexer
from devsync.model.states import ROLE_APP, ROLE_BASE
from devsync.model.versions import is_base_tag, split_reference

_SKIP_DIRS = {".git", "node_modules", "vendor", ".venv", "venv", "__pycache__", ".tox", "dist",
              "build-output", "target"}
_DOCKERFILE_NAME = re.compile(r"^(Dockerfile|Containerfile)(\..+)?$|^.+\.(Dockerfile|dockerfile)$")


@dataclass
class ImageSpec:
    name: str
    role: str  # ROLE_APP or ROLE_BASE
    dockerfile: Path  # absolute
    context: Path  # absolute
    tag: str  # the local tag devsync builds (for a base: the FROM tag itself)
    deployed: str | None  # repository (latest semver tag wins) or "repo:tag" pinned
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    base_ref: str | None = None  # app images: the expanded FROM of the final stage
    cache_from: list[str] = field(default_factory=list)  # more cache sources (Compose's)
    compose_services: list[str] = field(default_factory=list)  # the Compose services served
    compose_tags: list[str] = field(default_factory=list)  # the names Compose runs it by
    builder: str | None = None  # .devsync.toml's images.NAME.builder; None: [devsync] builder

    def rel_dockerfile(self, root: Path) -> str:
        return _rel(self.dockerfile, root)

    def rel_context(self, root: Path) -> str:
        return _rel(self.context, root) or "."

    @property
    def deployed_repository(self) -> str | None:
        if not self.deployed:
            return None
        repo, _tag, _digest = split_reference(self.deployed)
        return repo

    @property
    def deployed_pinned_tag(self) -> str | None:
        if not self.deployed:
            return None
        _repo, tag, _digest = split_reference(self.deployed)
        return tag


@dataclass
class Project:
    root: Path
    config: DevsyncConfig
    images: list[ImageSpec]
    dockerfiles: dict[Path, Dockerfile] = field(default_factory=dict)
    compose: ComposeProject | None = None

    @property
    def warnings(self) -> list[str]:
        """What the user should hear but that stops nothing (config and Compose files)."""
        return [*self.config.warnings, *(self.compose.warnings if self.compose else [])]

    def image(self, name: str) -> ImageSpec:
        """The image named `name`, else the one serving the Compose service `name`."""
        for img in self.images:
            if img.name == name:
                return img
        for img in self.images:
            if name in img.compose_services:
                return img
        known = ", ".join(i.name for i in self.images) or "none"
        raise ConfigError(f"no image named {name!r} in this project (images: {known})")

    def dockerfile(self, spec: ImageSpec) -> Dockerfile:
        if spec.dockerfile not in self.dockerfiles:
            self.dockerfiles[spec.dockerfile] = parse_file(
                spec.dockerfile, display=spec.rel_dockerfile(self.root))
        return self.dockerfiles[spec.dockerfile]

    @property
    def base_images(self) -> list[ImageSpec]:
        return [i for i in self.images if i.role == ROLE_BASE]

    @property
    def app_images(self) -> list[ImageSpec]:
        return [i for i in self.images if i.role == ROLE_APP]


def _rel(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
    return "" if rel == "." else rel


def find_repo_root(start: Path) -> Path:
    """The git work tree containing `start` (fast: no git process)."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    raise NotARepoError(f"not a git repository: {start}",
                        hint="run devsync inside a git checkout of your project")


def load_project(start: Path) -> Project:
    root = find_repo_root(start)
    config = load_config(root)
    project = Project(root=root, config=config, images=[])
    if config.compose_files != []:
        project.compose = load_compose(root, config.compose_files)
    builds = project.compose.builds if project.compose else []
    if config.images:
        project.images = _configured_images(project)
        _serve_configured(project, builds)
    else:
        project.images = _discover_images(project, [b.dockerfile for b in builds])
        _serve_discovered(project, builds)
    return project


def _configured_images(project: Project) -> list[ImageSpec]:
    root, config = project.root, project.config
    images: list[ImageSpec] = []
    for name, ic in config.images.items():
        dockerfile = root / (ic.dockerfile or "Dockerfile")
        if not dockerfile.is_file():
            raise config.error(f"images.{name}.dockerfile",
                               f"no such file: {_rel(dockerfile, root)}")
        context = root / (ic.context or _default_context(root, dockerfile))
        if not context.is_dir():
            raise config.error(f"images.{name}.context",
                               f"no such directory: {_rel(context, root)}")
        spec = ImageSpec(name=name, role=ic.role or ROLE_APP, dockerfile=dockerfile,
                         context=context, tag="", deployed=ic.deployed, target=ic.target,
                         build_args=dict(ic.build_args or {}), builder=ic.builder)
        df = project.dockerfile(spec)
        spec.base_ref = final_base(df, spec.build_args, spec.target)
        if ic.tag:
            spec.tag = ic.tag
        elif spec.role == ROLE_BASE and spec.deployed and split_reference(spec.deployed)[1]:
            spec.tag = spec.deployed
        else:
            repo = spec.deployed_repository or f"devsync/{name}"
            spec.tag = f"{repo}:dev"
        images.append(spec)
    # a base image configured without `deployed`: the app's FROM names it
    for spec in images:
        if spec.role == ROLE_BASE and not spec.deployed:
            for app in images:
                if app.role == ROLE_APP and app.base_ref:
                    spec.deployed = app.base_ref
                    if not config.images[spec.name].tag:
                        spec.tag = app.base_ref
                    break
    return images


def final_base(df: Dockerfile, build_args: dict[str, str], target: str | None) -> str:
    """The expanded FROM reference of the stage that is built (meta ARGs applied)."""
    lexer = Lexer(df.escape)
    meta: dict[str, str] = {}
    for ins in df.meta_args:
        raw = ins.value[0] if ins.value else ""
        key, _, value = raw.partition("=")
        env = [f"{k}={v}" for k, v in meta.items()]
        if key in build_args:
            meta[key] = build_args[key]
        elif "=" in raw:
            meta[key] = lexer.process_word(value, env)
    stage = df.stages[-1]
    if target:
        found = df.stage_named(target)
        if found is None:
            raise DockerfileError(f"{df.path.name}: no build stage named {target!r}")
        stage = found
    seen = set()
    while True:
        base = lexer.process_word(stage.base, [f"{k}={v}" for k, v in meta.items()])
        prev = df.stage_named(base)
        if prev is None or prev.index >= stage.index or prev.index in seen:
            return base
        seen.add(prev.index)
        stage = prev


def _walk_dockerfiles(root: Path, max_depth: int = 3) -> list[Path]:
    """The Dockerfiles under `root`, walked as the docker CLI walks a build context: every
    entry is lstat'ed and no link is followed, so a link to a directory (a loop, a link to a
    parent, one out of the repository) is only a name, and a dangling one is nothing.
    Unreadable directories are skipped, and only regular files are ever read: a FIFO named
    `Dockerfile` would block the read forever. A link named like a Dockerfile counts when it
    resolves to a regular file inside the repository, as `docker build -f` would read it."""
    found: list[Path] = []
    real_root = os.path.realpath(root)

    def walk(directory: str, depth: int) -> None:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            name = entry.name
            candidate = _DOCKERFILE_NAME.match(name) is not None and not name.endswith(
                (".dockerignore", ".md", ".orig", ".bak", ".swp"))
            if not candidate and (depth >= max_depth or name in _SKIP_DIRS
                                  or name.startswith(".")):
                continue  # neither entered nor a Dockerfile: no need to ask what it is
            try:
                # (the directory entry's type, no system call where the file system gives
                # it; an lstat where it does not)
                if not candidate:
                    if entry.is_dir(follow_symlinks=False):
                        walk(entry.path, depth + 1)
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue  # vanished meanwhile
            if stat.S_ISDIR(mode):
                if depth < max_depth and name not in _SKIP_DIRS and not name.startswith("."):
                    walk(entry.path, depth + 1)
            elif stat.S_ISREG(mode) or (stat.S_ISLNK(mode)
                                        and _regular_file_inside(entry.path, real_root)):
                found.append(Path(entry.path))

    walk(str(root), 0)
    # the root Dockerfile first, then by depth and name
    return sorted(found, key=lambda p: (len(p.relative_to(root).parts), p.name != "Dockerfile",
                                        str(p)))


def _regular_file_inside(link: str, real_root: str) -> bool:
    try:
        target = os.stat(link)  # ELOOP for a loop, ENOENT when dangling
    except OSError:
        return False
    real = os.path.realpath(link)
    return stat.S_ISREG(target.st_mode) and real.startswith(real_root + os.sep)


def _image_name(path: Path, root: Path, taken: set[str]) -> str:
    name = path.name
    stem = ""
    if name in ("Dockerfile", "Containerfile"):
        rel_parent = path.parent.relative_to(root)
        stem = rel_parent.name if rel_parent.parts else "app"
    elif name.startswith(("Dockerfile.", "Containerfile.")):
        stem = name.split(".", 1)[1]
    else:
        stem = name.rsplit(".", 1)[0]
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-.") or "app"
    candidate, n = stem, 2
    while candidate in taken:
        candidate, n = f"{stem}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _default_context(root: Path, dockerfile: Path) -> str:
    """The Dockerfile's own directory when its COPY sources live there, else the repo root."""
    if dockerfile.parent == root:
        return "."
    try:
        df = parse_file(dockerfile)
    except DockerfileError:
        return "."
    sources = [
        v for stage in df.stages for ins in stage.instructions
        if ins.cmd in ("COPY", "ADD") and not ins.flag("from")
        for v in ins.value[:-1] if "$" not in v and "*" not in v and "://" not in v
    ]
    if sources and all((dockerfile.parent / s.lstrip("/")).exists() for s in sources):
        return _rel(dockerfile.parent, root)
    return "."


def _discover_images(project: Project, also: list[Path]) -> list[ImageSpec]:
    """`also`: Dockerfiles found elsewhere (Compose's) that the walk may not reach."""
    root = project.root
    candidates = _walk_dockerfiles(root)
    candidates += [p for p in dict.fromkeys(also) if p not in candidates]
    if not candidates:
        raise ConfigError(f"no Dockerfile found in {root}",
                          hint="add a Dockerfile, or describe your images in .devsync.toml")
    parsed: dict[Path, Dockerfile] = {}
    for path in candidates:
        parsed[path] = parse_file(path, display=_rel(path, root))
    project.dockerfiles.update(parsed)
    bases: dict[Path, str] = {p: final_base(df, {}, None) for p, df in parsed.items()}

    taken: set[str] = set()
    apps: list[ImageSpec] = []
    base_refs: dict[str, list[Path]] = {}
    for path in candidates:
        ref = bases[path]
        repo, tag, _digest = split_reference(ref)
        if tag and is_base_tag(tag):
            base_refs.setdefault(ref, []).append(path)
    app_paths = [p for refs in base_refs.values() for p in refs]
    others = [p for p in candidates if p not in app_paths]

    images: list[ImageSpec] = []
    used_base_files: set[Path] = set()
    for ref, paths in base_refs.items():
        repo, _tag, _digest = split_reference(ref)
        base_file = _pick_base_dockerfile(others, used_base_files)
        if base_file is not None:
            used_base_files.add(base_file)
            images.append(ImageSpec(
                name=_image_name_for_base(taken), role=ROLE_BASE, dockerfile=base_file,
                context=root / _default_context(root, base_file), tag=ref, deployed=ref,
                base_ref=bases[base_file],
            ))
        for i, path in enumerate(paths):
            name = _image_name(path, root, taken)
            deployed = repo if i == 0 else None
            tag = f"{repo}:dev" if i == 0 else f"{repo}:dev-{name}"
            apps.append(ImageSpec(name=name, role=ROLE_APP, dockerfile=path,
                                  context=root / _default_context(root, path), tag=tag,
                                  deployed=deployed, base_ref=ref))
    if not base_refs:
        # no base-image layout: every Dockerfile is an app image; deployed repos unknown
        for path in others:
            name = _image_name(path, root, taken)
            apps.append(ImageSpec(name=name, role=ROLE_APP, dockerfile=path,
                                  context=root / _default_context(root, path),
                                  tag=f"devsync/{name}:dev", deployed=None,
                                  base_ref=bases[path]))
    return images + apps


def _image_name_for_base(taken: set[str]) -> str:
    name, n = "base", 2
    while name in taken:
        name, n = f"base-{n}", n + 1
    taken.add(name)
    return name


def _pick_base_dockerfile(others: list[Path], used: set[Path]) -> Path | None:
    free = [p for p in others if p not in used]
    named = [p for p in free if "base" in p.name.lower() or "base" in p.parent.name.lower()]
    if named:
        return named[0]
    return free[0] if len(free) == 1 else None


# -- Docker Compose ---------------------------------------------------------------------------


def _serve_discovered(project: Project, builds: list[ComposeBuild]) -> None:
    """Each Compose build is served by the image of its Dockerfile when that image builds it
    the same way (or has no service yet, and takes its way); else by a new image."""
    for build in builds:
        same_file = [s for s in project.images if s.dockerfile == build.dockerfile]
        spec = next((s for s in same_file if s.compose_services and _builds(s, build)), None)
        if spec is None:
            spec = next((s for s in same_file if not s.compose_services), None)
            if spec is not None:
                _adopt(project, spec, build, keep=set())
            else:
                spec = _new_compose_image(project, build, same_file[0] if same_file else None)
                project.images.append(spec)
        _serve(project, spec, build)


def _serve_configured(project: Project, builds: list[ComposeBuild]) -> None:
    """Configured images serve the services `compose_services` names, else those that build
    their Dockerfile the way the first of them does; keys set in .devsync.toml win."""
    config = project.config
    by_service = {b.service: b for b in builds}
    served: set[str] = set()
    for spec in project.images:
        ic = config.images[spec.name]
        keep = {k for k in ("context", "target") if getattr(ic, k) is not None}
        if ic.compose_services is not None:
            for service in ic.compose_services:
                build = by_service.get(service)
                if build is None:
                    known = ", ".join(by_service) or "none"
                    raise config.error(f"images.{spec.name}.compose_services",
                                       f"no Compose service {service!r} builds an image "
                                       f"(services that build: {known})")
                if not spec.compose_services:
                    _adopt(project, spec, build, keep=keep, args=ic.build_args)
                _serve(project, spec, build)
                served.add(service)
            continue
        for build in builds:
            if build.service in served or build.dockerfile != spec.dockerfile:
                continue
            if ("context" in keep and build.context != spec.context) or \
                    ("target" in keep and build.target != spec.target):
                continue
            first = next((b for b in builds if b.service in spec.compose_services), None)
            if first is not None and not first.same_build(build):
                continue
            if first is None:
                _adopt(project, spec, build, keep=keep, args=ic.build_args)
            _serve(project, spec, build)
            served.add(build.service)


def _builds(spec: ImageSpec, build: ComposeBuild) -> bool:
    return (spec.context, spec.build_args, spec.target) == (build.context, build.args,
                                                             build.target)


def _adopt(project: Project, spec: ImageSpec, build: ComposeBuild, *, keep: set[str],
           args: dict[str, str] | None = None) -> None:
    """`spec` builds the way Compose builds `build`, but for the fields in `keep` (and the
    build args in `args`), which .devsync.toml sets."""
    if "context" not in keep:
        spec.context = build.context
    if "target" not in keep:
        spec.target = build.target
    spec.build_args = {**build.args, **(args or {})}
    spec.cache_from = list(build.cache_from)
    if spec.role == ROLE_APP:
        spec.base_ref = final_base(project.dockerfile(spec), spec.build_args, spec.target)


def _serve(project: Project, spec: ImageSpec, build: ComposeBuild) -> None:
    assert project.compose is not None
    spec.compose_services.append(build.service)
    for name in project.compose.image_names(build):
        if name != spec.tag and name not in spec.compose_tags:
            spec.compose_tags.append(name)


def _new_compose_image(project: Project, build: ComposeBuild,
                       sibling: ImageSpec | None) -> ImageSpec:
    """An image for a Compose build no image covers: named after its service; beside an
    image of the same Dockerfile (another target, other args) it keeps that one's deployed
    repository when it builds the same target."""
    taken = {s.name for s in project.images}
    name = re.sub(r"[^a-z0-9._-]+", "-", build.service.lower()).strip("-.") or "app"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    repo = sibling.deployed_repository if sibling is not None else None
    deployed = sibling.deployed if sibling is not None and sibling.target == build.target \
        else None
    spec = ImageSpec(name=candidate, role=ROLE_APP, dockerfile=build.dockerfile,
                     context=build.context,
                     tag=f"{repo}:dev-{candidate}" if repo else f"devsync/{candidate}:dev",
                     deployed=deployed)
    _adopt(project, spec, build, keep=set())
    return spec
