"""BuildKit's cache metadata, as a deployed image or a registry cache carries it, read as a graph.

Two forms (buildkit v0.8 `cache/remotecache/v1/spec.go`, `cache/remotecache/inline`):
  inline    the image config's `moby.buildkit.cache.v0`: base64 of a JSON list of records
            `{digest, layers: [{layer: i}], inputs: [[{link, selector}]]}`, `layer` an index
            into the image manifest's layers (the result is the chain of layers 0..i);
  registry  a manifest (an index) whose config has media type
            `application/vnd.buildkit.cacheconfig.v0`: `{layers: [{blob, parent}], records}`,
            a record's `layer` an index into that table (the chain follows `parent`).

A record is one cache key. Its digest is `sha256("<op digest>@<output>")`; its inputs are,
per input of the operation, the records of the keys it was computed from: the previous
step's record and, for a COPY, a record whose digest is the content key of the files it
selected (with no inputs and no layers of its own). A record "with layers" is a result
BuildKit can load; one without (a root, a content key, or records re-exported from an
imported cache, moby/buildkit#1981) only matches keys. Go leaves zero fields out: a missing
`link` is 0. Pure: nothing here fetches or imports Docker.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

INLINE_CACHE_KEY = "moby.buildkit.cache.v0"
CACHE_CONFIG_MEDIA_TYPE = "application/vnd.buildkit.cacheconfig.v0"


class CacheGraphError(ValueError):
    """Cache metadata that does not decode, or does not fit the image it came with."""


@dataclass(frozen=True)
class CacheRecord:
    digest: str
    # the depth of each result's layer chain (1 = the first layer); empty: no loadable result
    results: tuple[int, ...]
    # per input of the operation, the (record index, selector) links
    inputs: tuple[tuple[tuple[int, str], ...], ...]

    @property
    def has_layers(self) -> bool:
        return bool(self.results)


@dataclass(frozen=True)
class CacheGraph:
    """Every record of one cache source, indexed by digest and by parent."""

    kind: str  # "inline" or "registry"
    records: tuple[CacheRecord, ...]

    @classmethod
    def from_inline(cls, raw: str, layer_count: int) -> CacheGraph:
        """From the config value `moby.buildkit.cache.v0` of an image with `layer_count`
        layers."""
        try:
            doc = json.loads(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise CacheGraphError(f"the inline cache does not decode: {exc}") from None
        if not isinstance(doc, list):
            raise CacheGraphError("the inline cache is not a list of records")
        return cls("inline", _records(doc, lambda i: i + 1 if 0 <= i < layer_count else None))

    @classmethod
    def from_cache_config(cls, doc: Mapping[str, Any]) -> CacheGraph:
        """From a registry cache's config blob (JSON already decoded)."""
        layers = doc.get("layers")
        records = doc.get("records")
        if not isinstance(layers, list) or not isinstance(records, list):
            raise CacheGraphError("the cache config has no layers or records list")
        depth: dict[int, int | None] = {}

        def chain(i: int, seen: tuple[int, ...] = ()) -> int | None:
            if i in depth:
                return depth[i]
            if not 0 <= i < len(layers) or i in seen or not isinstance(layers[i], Mapping):
                return None
            parent = layers[i].get("parent", 0)
            parent = parent if isinstance(parent, int) else -2
            below = 0 if parent == -1 else chain(parent, (*seen, i))
            depth[i] = None if below is None else below + 1
            return depth[i]

        return cls("registry", _records(records, chain))

    def merged(self, other: CacheGraph) -> CacheGraph:
        """Both sources' records, as BuildKit imports several cache sources into one store."""
        offset = len(self.records)
        moved = tuple(CacheRecord(r.digest, r.results,
                                  tuple(tuple((link + offset, sel) for link, sel in slot)
                                        for slot in r.inputs))
                      for r in other.records)
        kind = self.kind if self.kind == other.kind else "mixed"
        return CacheGraph(kind, self.records + moved)

    # -- queries

    def roots(self, digest: str) -> list[int]:
        """The records of key `digest` that have no inputs (a FROM's)."""
        return [i for i, r in enumerate(self.records) if r.digest == digest and not r.inputs]

    def children(self, parent: int, *, content: str | None = None) -> list[int]:
        """Records computed from `parent` as their first input; with `content`, only those
        whose second input is the content key `content` (a COPY's files)."""
        out = []
        for i, r in enumerate(self.records):
            if not r.inputs or not any(link == parent for link, _s in r.inputs[0]):
                continue
            if content is not None and content not in self.content_keys(i):
                continue
            out.append(i)
        return out

    def content_keys(self, record: int) -> list[str]:
        """The content keys a record's second input links to (what its COPY selected)."""
        r = self.records[record]
        if len(r.inputs) < 2:
            return []
        return [self.records[link].digest for link, _s in r.inputs[1]
                if 0 <= link < len(self.records)]

    def input_links(self, record: int, slot: int) -> list[int]:
        """The records input `slot` of a record links to (for a `COPY --from`, slot 1: the
        record of the copied stage's last vertex)."""
        r = self.records[record]
        return [link for link, _s in r.inputs[slot]] if slot < len(r.inputs) else []

    @property
    def loadable(self) -> int:
        return sum(1 for r in self.records if r.has_layers)


def _records(items: Sequence[Any], depth_of: Any) -> tuple[CacheRecord, ...]:
    out: list[CacheRecord] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise CacheGraphError("a cache record is not an object")
        digest = item.get("digest")
        if not isinstance(digest, str) or not digest:
            raise CacheGraphError("a cache record has no digest")
        results: list[int] = []
        for result in item.get("layers") or []:
            layer = result.get("layer", 0) if isinstance(result, Mapping) else None
            found = depth_of(layer) if isinstance(layer, int) else None
            if found is None:
                raise CacheGraphError(f"a cache record names layer {layer!r}, which is not there")
            results.append(found)
        inputs: list[tuple[tuple[int, str], ...]] = []
        for slot in item.get("inputs") or []:
            links = []
            for link in slot if isinstance(slot, list) else []:
                if not isinstance(link, Mapping):
                    continue
                target = link.get("link", 0)
                if not isinstance(target, int) or not 0 <= target < len(items):
                    raise CacheGraphError(f"a cache record links to {target!r}, not a record")
                links.append((target, str(link.get("selector") or "")))
            inputs.append(tuple(links))
        out.append(CacheRecord(digest, tuple(results), tuple(inputs)))
    return tuple(out)
