"""Finding images without pulling them: local ones through the engine, remote ones through
their registry's v2 API (manifest and config blob only).

Offline days: when a registry cannot be asked at all (down, unreachable, failing), what the
engine already holds stands in for it: the newest local tag of a deployed repository, the
local copy of a tag. `unchecked` then says which registries could not be checked and why;
with nothing local to use the registry's error is raised as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devsync.errors import DevsyncError, RegistryError, RegistryUnreachableError
from devsync.model.images import ImageInfo
from devsync.model.versions import latest_version_tag, registry_of, split_reference

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.registry import RegistryClient


def repository_path(repository: str) -> str:
    """`localhost:5000/team/app` -> `team/app` (the path inside its registry)."""
    host = registry_of(repository)
    if repository.startswith(host + "/"):
        return repository[len(host) + 1:]
    if host == "docker.io" and "/" not in repository:
        return f"library/{repository}"
    return repository


@dataclass
class Resolver:
    engine: Engine | None
    insecure_registries: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # registry host -> why it could not be asked; images of it were taken from the engine
    unchecked: dict[str, str] = field(default_factory=dict)
    # every registry host that could not be asked at all, with or without a local stand-in
    # (a view asks them again, cheaply, until they answer)
    unreachable: set[str] = field(default_factory=set)
    _clients: dict[str, RegistryClient] = field(default_factory=dict)
    _remote: dict[str, ImageInfo | None] = field(default_factory=dict)
    _local: dict[str, ImageInfo | None] = field(default_factory=dict)
    _tags: dict[str, list[str]] = field(default_factory=dict)

    def client(self, repository: str) -> RegistryClient:
        from devsync.adapters.registry import RegistryClient

        host = registry_of(repository)
        if host not in self._clients:
            self._clients[host] = RegistryClient(host, insecure=host in self.insecure_registries)
        return self._clients[host]

    # -- remote ---------------------------------------------------------------------------

    def tags(self, repository: str) -> list[str]:
        if repository not in self._tags:
            try:
                found = self.client(repository).tags(repository_path(repository))
            except RegistryUnreachableError:
                self.unreachable.add(registry_of(repository))
                raise
            self._tags[repository] = found
        return self._tags[repository]

    def latest_deployed(self, deployed: str) -> str | None:
        """`repo` -> `repo:<highest semver tag>` (else `repo:latest` when it exists);
        `repo:tag` is pinned and returned as is."""
        repo, tag, digest = split_reference(deployed)
        if tag or digest:
            return deployed
        try:
            tags = self.tags(repo)
        except RegistryUnreachableError as exc:
            # offline: the newest deployment this engine holds (nothing local: the error)
            tags = self._local_tags(repo)
            if latest_version_tag(tags) is None and "latest" not in tags:
                raise
            self._unchecked(repo, exc)
        except RegistryError as exc:
            from devsync.adapters.registry import RegistryNotFound

            if isinstance(exc, RegistryNotFound):
                return None
            raise
        best = latest_version_tag(tags)
        if best is None and "latest" in tags:
            best = "latest"
        return f"{repo}:{best}" if best else None

    def remote(self, ref: str) -> ImageInfo | None:
        """The image's config from its registry, or None when the tag does not exist."""
        if ref in self._remote:
            return self._remote[ref]
        from devsync.adapters.registry import RegistryNotFound

        repo, tag, digest = split_reference(ref)
        try:
            info = self.client(repo).image_config(repository_path(repo), digest or tag or "latest")
        except RegistryNotFound:
            self._remote[ref] = None
            return None
        except RegistryUnreachableError as exc:
            self.unreachable.add(registry_of(repo))
            # offline: the engine's copy of the tag stands in for the registry's
            local = self.local(ref)
            if local is None:
                raise
            self._unchecked(repo, exc)
            self._remote[ref] = local
            return local
        image = ImageInfo.from_config(
            info.config, reference=ref, image_id=info.config_digest, origin="registry",
            digest=info.digest, size=info.total_size,
            layer_sizes=tuple(size for _d, size in info.manifest.layers),
            layer_digests=tuple(digest for digest, _s in info.manifest.layers),
        )
        self._remote[ref] = image
        return image

    def registry_cache(self, ref: str) -> dict[str, Any] | None:
        """The config of the BuildKit registry cache `ref` (decoded JSON), None when there is
        no such tag or it is not a registry cache. Only the manifest and the config blob are
        fetched."""
        from devsync.adapters.registry import RegistryNotFound

        repo, tag, digest = split_reference(ref)
        try:
            return self.client(repo).cache_config(repository_path(repo), digest or tag or "latest")
        except RegistryNotFound:
            return None

    def _unchecked(self, repository: str, exc: RegistryError) -> None:
        self.unchecked.setdefault(registry_of(repository), exc.message)

    # -- local ----------------------------------------------------------------------------

    def _local_tags(self, repository: str) -> list[str]:
        if self.engine is None:
            return []
        try:
            return self.engine.local_tags(repository)
        except DevsyncError:
            return []

    def local(self, ref: str) -> ImageInfo | None:
        if self.engine is None:
            return None
        if ref not in self._local:
            self._local[ref] = _local_info(self.engine, ref)
        return self._local[ref]

    def built_on_locally(self, ref: str) -> bool:
        """Whether the engine holds images built on the image `ref` names (see
        Engine.has_children). Also when `ref` is not local: a pull brings back the same image
        ID, and images built on it before its tag was removed may still be there."""
        if self.engine is None:
            return False
        try:
            info = self.base(ref)
        except DevsyncError:
            return False
        if info is None or not info.image_id:
            return False
        return self.engine.has_children(info.image_id)

    def forget_local(self) -> None:
        """Drop what was learnt about local images (after a pull or build changed them)."""
        self._local.clear()

    def base(self, ref: str) -> ImageInfo | None:
        """What a build's FROM will use: the local image when there is one (the builder
        never pulls when a tag is local), else the registry's (sync pulls it first)."""
        local = self.local(ref)
        if local is not None:
            # a pulled image is the registry's: prefer its exact config
            if local.digest:
                try:
                    remote = self.remote(ref)
                except DevsyncError:
                    remote = None
                if remote is not None and remote.image_id == local.image_id:
                    remote.origin = "local"
                    return remote
            return local
        try:
            return self.remote(ref)
        except RegistryUnreachableError as exc:
            self.problems.append(str(exc))
            raise RegistryUnreachableError(f"{ref} is not on this machine and {exc.message}",
                                           hint=exc.hint) from None
        except DevsyncError as exc:
            self.problems.append(str(exc))
            raise


def _local_info(engine: Engine, ref: str) -> ImageInfo | None:
    image = engine.image(ref)
    return image.to_image_info(ref) if image is not None else None
