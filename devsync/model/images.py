"""What devsync knows about an image without its layers: config, history and layer diff IDs.

The same shape is filled from a registry config blob (exact) or from the local engine (exact
when the engine hands out the raw config, approximate history otherwise). The cache
simulation compares these the way the classic builder does (moby `image/cache`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BUILDKIT_MARKER = "# buildkit"
INLINE_CACHE_KEY = "moby.buildkit.cache.v0"


@dataclass(frozen=True)
class HistoryEntry:
    created: int  # unix seconds: the engine's /history API has no finer grain
    created_by: str
    comment: str = ""
    empty_layer: bool = False

    @property
    def is_buildkit(self) -> bool:
        # RUN/COPY end in "# buildkit"; ENV, ARG and the like carry only the comment
        return (self.created_by.rstrip().endswith(BUILDKIT_MARKER)
                or self.comment.startswith("buildkit."))


@dataclass
class ImageInfo:
    reference: str
    image_id: str | None  # sha256 of the config (the engine's image ID)
    history: tuple[HistoryEntry, ...]
    diff_ids: tuple[str, ...]
    env: list[str] = field(default_factory=list)
    shell: list[str] | None = None
    onbuild: list[str] = field(default_factory=list)
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    origin: str = "registry"  # "registry" or "local"
    size: int | None = None  # compressed (registry) or unpacked (local) bytes
    layer_sizes: tuple[int, ...] = ()
    digest: str | None = None  # manifest digest (registry) / repo digest (local)
    layer_digests: tuple[str, ...] = ()  # the manifest's layer blobs (registry), base first
    # BuildKit's inline cache (the config's `moby.buildkit.cache.v0`, base64), "" when none
    inline_cache: str = field(default="", repr=False)

    @property
    def built_with_buildkit(self) -> bool:
        """Whether any of its history (its base's too) was built with BuildKit."""
        return any(h.is_buildkit for h in self.history)

    @property
    def last_built_with_buildkit(self) -> bool:
        """Whether the image itself (its last build, not its base) was built with BuildKit:
        its last history entry is BuildKit's. A classic build FROM a BuildKit base is not."""
        return bool(self.history) and self.history[-1].is_buildkit

    def layers_in(self, n_history: int) -> int:
        """How many diff IDs belong to the first `n_history` history entries."""
        return sum(1 for h in self.history[:n_history] if not h.empty_layer)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, reference: str, image_id: str | None,
                    origin: str = "registry", digest: str | None = None,
                    size: int | None = None, layer_sizes: tuple[int, ...] = (),
                    layer_digests: tuple[str, ...] = ()) -> ImageInfo:
        cfg = config.get("config") or {}
        history = tuple(
            HistoryEntry(
                created=_unix(h.get("created")),
                created_by=h.get("created_by", "") or "",
                comment=h.get("comment", "") or "",
                empty_layer=bool(h.get("empty_layer", False)),
            )
            for h in (config.get("history") or [])
        )
        rootfs = config.get("rootfs") or {}
        return cls(
            reference=reference,
            image_id=image_id,
            history=history,
            diff_ids=tuple(rootfs.get("diff_ids") or []),
            env=list(cfg.get("Env") or []),
            shell=list(cfg["Shell"]) if cfg.get("Shell") else None,
            onbuild=list(cfg.get("OnBuild") or []),
            workdir=cfg.get("WorkingDir") or "",
            labels=dict(cfg.get("Labels") or {}),
            origin=origin,
            size=size,
            layer_sizes=layer_sizes,
            digest=digest,
            layer_digests=layer_digests,
            inline_cache=str(config.get(INLINE_CACHE_KEY) or ""),
        )


def _unix(value: Any) -> int:
    if not value:
        return 0
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    # RFC 3339 with up to nanoseconds; Python takes microseconds at most
    if "." in text:
        head, _, tail = text.partition(".")
        frac = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(frac):]
        text = f"{head}.{frac[:6]}{zone}"
    text = text.replace("Z", "+00:00")
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0
