"""Registry manifests: the media types devsync reads, image manifests and configs, and the
choice of one platform's image in a multi-platform index.

An index (OCI) or manifest list (Docker) names one image manifest per platform;
`choose_platform` picks the local machine's (`local_platform`) the way the engine does when it
pulls, and leaves BuildKit's attestation entries ("unknown/unknown") aside. Schema 1
manifests (`MEDIA_SCHEMA1`) are not read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from devsync.errors import RegistryError

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_MANIFEST_TYPES = (MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST)
INDEX_TYPES = (MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_INDEX)
ACCEPT_MANIFESTS = ", ".join(
    (MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST)
)

DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")


@dataclass(frozen=True)
class Manifest:
    """One platform's image manifest (an index is resolved before this is built)."""

    repository: str
    reference: str
    digest: str  # of this image manifest: what `docker pull NAME@DIGEST` takes
    media_type: str
    config_digest: str
    config_size: int
    layers: list[tuple[str, int]]  # (digest, compressed size), base layer first
    platform: str | None = None  # "linux/amd64" when chosen from an index, else None
    index_digest: str | None = None  # the tag's index/list digest when there was one
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def total_size(self) -> int:
        """Compressed size of all layers: what a pull downloads at most."""
        return sum(size for _, size in self.layers)

    @property
    def tag_digest(self) -> str:
        """The digest the tag points at (the index when multi-platform): `head_digest()`."""
        return self.index_digest or self.digest


@dataclass(frozen=True)
class ImageConfigInfo:
    """An image's manifest and config blob, fetched without its layers."""

    manifest: Manifest
    config: dict[str, Any] = field(repr=False)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def config_digest(self) -> str:
        """The image ID an engine shows after pulling this image."""
        return self.manifest.config_digest

    @property
    def total_size(self) -> int:
        return self.manifest.total_size

    @property
    def history(self) -> list[dict[str, Any]]:
        value = self.config.get("history")
        return list(value) if isinstance(value, list) else []

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.get("rootfs")
        value = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        return [str(v) for v in value] if isinstance(value, list) else []

    @property
    def env(self) -> list[str]:
        cfg = self.config.get("config")
        value = cfg.get("Env") if isinstance(cfg, dict) else None
        return [str(v) for v in value] if isinstance(value, list) else []

    @property
    def platform(self) -> str:
        os_ = str(self.config.get("os") or "")
        arch = str(self.config.get("architecture") or "")
        variant = self.config.get("variant")
        return "/".join(p for p in (os_, arch, variant if isinstance(variant, str) else "") if p)


def local_platform() -> str:
    """The platform the local engine pulls by default: `linux/ARCH[/VARIANT]`.

    Always linux: Docker Desktop runs Linux containers in a VM on macOS and Windows.
    """
    import platform  # (a few ms to import; the tag lookup before a sync's pull needs none)

    machine = platform.machine().lower()
    arch = {
        "x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386",
        "aarch64": "arm64", "arm64": "arm64", "armv8l": "arm64",
        "armv7l": "arm/v7", "armv7": "arm/v7", "armv6l": "arm/v6",
        "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
    }.get(machine, machine)
    return f"linux/{arch}"


def digest_matches(digest: str, body: bytes) -> bool:
    algo, _, hexpart = digest.partition(":")
    try:
        hasher = hashlib.new(algo)
    except ValueError:
        return False
    hasher.update(body)
    return hasher.hexdigest() == hexpart


def image_manifest(
    repository: str, reference: str, digest: str, media_type: str, doc: dict[str, Any], *,
    platform: str | None, index_digest: str | None, where: str,
) -> Manifest:
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise RegistryError(f"{where} is not an image manifest (media type {media_type!r})")
    return Manifest(
        repository=repository,
        reference=reference,
        digest=digest,
        media_type=media_type or MEDIA_OCI_MANIFEST,
        config_digest=str(config.get("digest") or ""),
        config_size=int(config.get("size") or 0),
        layers=[
            (str(layer.get("digest") or ""), int(layer.get("size") or 0))
            for layer in layers
            if isinstance(layer, dict)
        ],
        platform=platform,
        index_digest=index_digest,
        raw=doc,
    )


def _split_platform(value: str) -> tuple[str, str, str]:
    parts = value.strip().lower().split("/")
    if len(parts) < 2 or not all(parts):
        raise RegistryError(f"invalid platform {value!r} (expected os/arch[/variant])")
    return parts[0], parts[1], parts[2] if len(parts) > 2 else ""


def platform_string(plat: object) -> str | None:
    if not isinstance(plat, dict):
        return None
    parts = [str(plat.get("os") or ""), str(plat.get("architecture") or "")]
    if plat.get("variant"):
        parts.append(str(plat["variant"]))
    return "/".join(parts)


def _real_entries(doc: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for entry in doc.get("manifests") or []:
        if not isinstance(entry, dict):
            continue
        plat = entry.get("platform")
        # BuildKit stores attestations as "unknown/unknown" entries: not images
        if isinstance(plat, dict) and plat.get("os") == "unknown":
            continue
        yield entry


def platforms_of(doc: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for entry in _real_entries(doc):
        name = platform_string(entry.get("platform"))
        if name and name not in seen:
            seen.append(name)
    return seen


def choose_platform(doc: dict[str, Any], wanted: str) -> dict[str, Any] | None:
    os_, arch, variant = _split_platform(wanted)
    best: tuple[int, dict[str, Any]] | None = None
    for entry in _real_entries(doc):
        plat = entry.get("platform")
        if not isinstance(plat, dict):
            continue
        if str(plat.get("os") or "").lower() != os_:
            continue
        if str(plat.get("architecture") or "").lower() != arch:
            continue
        have = str(plat.get("variant") or "").lower()
        if variant:
            # arm64 images usually leave their "v8" variant unsaid
            ok = have == variant or (arch == "arm64" and {have, variant} <= {"", "v8"})
            rank = 0 if have == variant else 1
        else:
            ok = True
            rank = 0 if not have else 1
        if ok and (best is None or rank < best[0]):
            best = (rank, entry)
    return best[1] if best else None
