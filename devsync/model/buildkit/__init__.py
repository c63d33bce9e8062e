"""BuildKit's cache, predicted: the cache keys dockerd 20.10's embedded BuildKit (v0.8) gives
each vertex of a Dockerfile build, and which of them an imported cache lets it reuse.

  _steps     how the Dockerfile frontend names a step's vertex (`[stage i/N] ...`)
  _cache     the cache metadata (inline or registry cache) as a graph of records
  _keys      the keys computable before building: FROM's, and COPY's content keys
  _predict   the walk of a Dockerfile's vertices down the records of a cache source

Only `_steps` is imported with the package (the engine's progress reader needs it and no
more); the rest when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from devsync.model.buildkit._steps import StepRef, parse_step_name

if TYPE_CHECKING:
    from devsync.model.buildkit._cache import (
        CACHE_CONFIG_MEDIA_TYPE,
        INLINE_CACHE_KEY,
        CacheGraph,
        CacheGraphError,
        CacheRecord,
    )
    from devsync.model.buildkit._keys import (
        ContentHasher,
        Selection,
        SelectionError,
        chain_id,
        content_key,
        from_key,
        record_digest,
    )
    from devsync.model.buildkit._predict import (
        BKStep,
        BuildKitPredictor,
        CacheSource,
        history_entries,
    )

_LAZY = {
    "_cache": ("CACHE_CONFIG_MEDIA_TYPE", "INLINE_CACHE_KEY", "CacheGraph", "CacheGraphError",
               "CacheRecord"),
    "_keys": ("ContentHasher", "Selection", "SelectionError", "chain_id", "content_key",
              "from_key", "record_digest"),
    "_predict": ("BKStep", "BuildKitPredictor", "CacheSource", "history_entries"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CACHE_CONFIG_MEDIA_TYPE",
    "INLINE_CACHE_KEY",
    "BKStep",
    "BuildKitPredictor",
    "CacheGraph",
    "CacheGraphError",
    "CacheRecord",
    "CacheSource",
    "ContentHasher",
    "Selection",
    "SelectionError",
    "StepRef",
    "chain_id",
    "content_key",
    "from_key",
    "history_entries",
    "parse_step_name",
    "record_digest",
]
