"""The onboarding checklist: what this machine still needs before a sync can reuse the team's
work (the engine, the registry login, the base and deployed images, a local build). Each item
says what failed and the exact command or key that fixes it, for every view alike."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError, InterruptedError_, RegistryAuthError, RegistryError

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import ImageSpec, Project

# CheckItem.state values
CHECK_OK = "ok"
CHECK_FAIL = "fail"
CHECK_WARN = "warn"
CHECK_BLOCKED = "blocked"  # cannot be checked until an earlier item passes


@dataclass(frozen=True)
class CheckItem:
    """One line of the onboarding checklist."""

    key: str  # "engine", "registry", "base", "deployed", "local" (+ ":image" when several)
    title: str
    state: str  # CHECK_OK, CHECK_FAIL, CHECK_WARN or CHECK_BLOCKED
    detail: str = ""
    fix: str = ""  # the exact command or key that fixes it, when it failed


def checklist(root: Path, cancel: threading.Event) -> list[CheckItem]:
    """Every item, checked afresh (a cancelled `cancel` raises InterruptedError_)."""
    from devsync.adapters.engine import Engine
    from devsync.model.project import load_project

    project = load_project(root)
    items: list[CheckItem] = []
    engine: Engine | None = None
    try:
        engine = Engine.connect()
        items.append(CheckItem("engine", "Docker engine reachable", CHECK_OK,
                               f"{engine.host} (API {engine.api_version})"))
    except DevsyncError as exc:
        items.append(CheckItem("engine", "Docker engine reachable", CHECK_FAIL,
                               exc.message, exc.hint or "start Docker, then press r"))
    try:
        _check(cancel)
        items += _registry_checks(project)
        _check(cancel)
        items += _image_checks(project, engine)
    finally:
        if engine is not None:
            engine.close()
    return items


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise InterruptedError_("cancelled")


# -- the checks ----------------------------------------------------------------------


def _registry_checks(project: Project) -> list[CheckItem]:
    from devsync.adapters.dockerconfig import get_credentials
    from devsync.adapters.registry import RegistryClient, RegistryNotFound
    from devsync.adapters.resolver import repository_path
    from devsync.model.versions import registry_of

    repos: dict[str, list[str]] = {}
    for spec in project.images:
        repo = spec.deployed_repository
        if repo:
            repos.setdefault(registry_of(repo), []).append(repo)
    if not repos:
        return [CheckItem("registry", "Registry login", CHECK_WARN,
                          "no deployed image is configured, so there is no registry to log in to",
                          "set images.NAME.deployed in .devsync.toml")]
    items: list[CheckItem] = []
    insecure = list(project.config.insecure_registries)
    for host, names in repos.items():
        key = "registry" if len(repos) == 1 else f"registry:{host}"
        title = f"Registry login ({host})"
        try:
            creds = get_credentials(host)
            client = RegistryClient(host, insecure=host in insecure)
            client.tags(repository_path(names[0]))
        except RegistryNotFound:
            items.append(CheckItem(key, title, CHECK_WARN,
                                   f"{host} answers, but {names[0]} has no image yet",
                                   "publish one from CI (devsync publish VERSION)"))
            continue
        except RegistryAuthError as exc:
            items.append(CheckItem(key, title, CHECK_FAIL, exc.message, f"docker login {host}"))
            continue
        except RegistryError as exc:
            items.append(CheckItem(key, title, CHECK_FAIL, exc.message,
                                   exc.hint or f"check that {host} is reachable from here "
                                   "(VPN, proxy), then press r"))
            continue
        who = (f"logged in as {creds.username}" if creds is not None
               else "answers without a login")
        items.append(CheckItem(key, title, CHECK_OK, f"{host} {who}"))
    return items


def _image_checks(project: Project, engine: Engine | None) -> list[CheckItem]:
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import ROLE_APP, ROLE_BASE

    apps = [s for s in project.images if s.role == ROLE_APP]
    several = len(apps) > 1
    titles = {"base": "Base image pulled", "deployed": "Deployed image pulled",
              "local": "Local image built"}

    def item(kind: str, name: str, state: str, detail: str, fix: str = "") -> CheckItem:
        key = f"{kind}:{name}" if several else kind
        title = f"{titles[kind]} ({name})" if several else titles[kind]
        return CheckItem(key, title, state, detail, fix)

    items: list[CheckItem] = []
    if engine is None:
        for spec in apps:
            for kind in ("base", "deployed", "local"):
                items.append(item(kind, spec.name, CHECK_BLOCKED, "needs the Docker engine"))
        return items
    resolver = Resolver(engine, list(project.config.insecure_registries))
    base_tags = {s.tag for s in project.images if s.role == ROLE_BASE}
    for spec in apps:
        base = spec.base_ref
        lazy = _lazy_buildkit(project, spec, resolver)
        if lazy is not None:
            items.extend(item(kind, spec.name, state, detail, fix)
                         for kind, state, detail, fix in lazy)
        elif not base or base == "scratch":
            items.append(item("base", spec.name, CHECK_OK, "built FROM scratch: nothing to pull"))
        elif engine.has_image(base):
            items.append(item("base", spec.name, CHECK_OK, f"{base} is here"))
        else:
            fix = f"press s to sync (it pulls the base), or: docker pull {base}"
            if base in base_tags and _remote_missing(resolver, base):
                fix = (f"{base} is not in its registry yet: press b to build and push it "
                       "(devsync base build --push)")
            items.append(item("base", spec.name, CHECK_FAIL, f"{base} is not pulled yet", fix))
        deployed = None
        if lazy is not None:
            deployed = ""  # (said above: BuildKit fetches what it reuses as it builds)
        elif spec.deployed:
            try:
                deployed = resolver.latest_deployed(spec.deployed)
            except DevsyncError as exc:
                items.append(item("deployed", spec.name, CHECK_FAIL, exc.message,
                                  exc.hint or "fix the registry login above, then press r"))
                deployed = ""
        if deployed is None:
            items.append(item("deployed", spec.name, CHECK_WARN,
                              "no deployed image to reuse: the first build runs every step",
                              "publish one from CI (devsync publish VERSION)"))
        elif deployed:
            if engine.has_image(deployed):
                items.append(item("deployed", spec.name, CHECK_OK, f"{deployed} is here"))
            else:
                items.append(item("deployed", spec.name, CHECK_FAIL,
                                  f"{deployed} is not pulled yet",
                                  f"press s to sync (it pulls it), or: docker pull {deployed}"))
        local = engine.image(spec.tag)
        if local is not None:
            items.append(item("local", spec.name, CHECK_OK,
                              f"{spec.tag} is built ({local.id[7:19]})"))
        else:
            items.append(item("local", spec.name, CHECK_FAIL, f"{spec.tag} is not built yet",
                              "press s to sync (devsync sync): pull, then build what changed"))
    return items


def _lazy_buildkit(project: Project, spec: ImageSpec, resolver: Resolver
                   ) -> list[tuple[str, str, str, str]] | None:
    """The base and deployed items of an app a sync builds with BuildKit, which pulls
    nothing first: it fetches the base's layers and those it reuses from the deployed image
    as it builds, so "not pulled" is no fault. None for a classic build (or when the registry
    cannot say which: the classic items then say what is wrong)."""
    from devsync.ops.builders import CLASSIC, builder_of, configured_builder

    if configured_builder(project, spec) == CLASSIC:
        return None
    try:
        ref = resolver.latest_deployed(spec.deployed) if spec.deployed else None
        deployed = resolver.remote(ref) if ref else None
        if builder_of(project, spec, deployed) != "buildkit":
            return None
    except DevsyncError:
        return None
    base = spec.base_ref or "its base"
    out = [("base", CHECK_OK, f"BuildKit fetches {base} as it builds: nothing to pull first",
            "")]
    if deployed is None:
        out.append(("deployed", CHECK_WARN, "no deployed image to reuse: the first build runs "
                    "every step", "publish one from CI (devsync publish VERSION)"))
    elif not deployed.inline_cache and not _registry_cache(resolver, ref or ""):
        from devsync.ops.plan_buildkit import INLINE_FIX

        out.append(("deployed", CHECK_WARN, f"{ref} carries no BuildKit cache metadata, so "
                    "BuildKit reuses nothing from it", INLINE_FIX))
    else:
        out.append(("deployed", CHECK_OK, f"{ref}: BuildKit reuses its layers from the "
                    "registry as it builds (its cache metadata): nothing to pull first", ""))
    return out


def _registry_cache(resolver: Resolver, ref: str) -> bool:
    """Whether REPO:buildcache, a BuildKit registry cache, is beside the deployed image."""
    from devsync.model.registrycache import registry_cache_ref
    from devsync.model.versions import split_reference

    try:
        return resolver.registry_cache(registry_cache_ref(split_reference(ref)[0])) is not None
    except DevsyncError:
        return False


def _remote_missing(resolver: Resolver, ref: str) -> bool:
    try:
        return resolver.remote(ref) is None
    except DevsyncError:
        return False
