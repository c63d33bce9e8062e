"""A BuildKit registry cache (`type=registry,mode=max`), composed from inline caches.

dockerd 20.10's embedded BuildKit exports only an inline cache: the records of the built
stage, in the image config's `moby.buildkit.cache.v0`. Records of the other stages come
without layers, so a build whose final stage changes early reruns every earlier stage. It does
import registry caches, though, and one can be written from several inline caches: build each
intermediate stage on its own (`--target STAGE`, inline cache on), push those images next to
the final one, then merge their records into one cache. Records are the same in every such
build, because a stage's LLB does not depend on which target is built.

The format (buildkit v0.8 `cache/remotecache/v1/spec.go`):
  index   an OCI index whose `manifests` are the layer blobs, each with the annotation
          `containerd.io/uncompressed: <diff ID>` (without it BuildKit fails to load the
          layer, "missing uncompressed digest", and silently runs the step), and one
          descriptor of the cache config (media type `CACHE_CONFIG_MEDIA_TYPE`);
  config  `{"layers": [{"blob", "parent"}], "records": [{"digest", "layers": [{"layer"}],
          "inputs": [[{"link", "selector"}]]}]}`: a record's result is the chain of layers
          ending at `layer` (following `parent`; -1 ends it). Go leaves zero fields out, so a
          missing `parent` or `link` means 0: this writer always writes both.
The importer keeps root records by digest and does not merge duplicates (a second copy
would lose the first one's links): records are merged here, by digest and inputs.
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
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
UNCOMPRESSED_ANNOTATION = "containerd.io/uncompressed"
# where `devsync publish --registry-cache` keeps a repository's cache: REPO:buildcache, and
# the images of the intermediate stages it was made from as REPO:buildcache-STAGE
REGISTRY_CACHE_TAG = "buildcache"


def registry_cache_ref(repository: str) -> str:
    """The registry cache `devsync publish --registry-cache` writes for `repository`."""
    return f"{repository}:{REGISTRY_CACHE_TAG}"


def stage_cache_ref(repository: str, stage: str) -> str:
    """Where the image of intermediate stage `stage` goes for the registry cache."""
    return f"{repository}:{REGISTRY_CACHE_TAG}-{stage}"


class CacheMetadataError(ValueError):
    """An image's inline cache cannot be read or does not fit its manifest."""


@dataclass(frozen=True)
class InlineCache:
    """One pushed image's inline cache: its records, and the layers they point into."""

    name: str
    layers: tuple[Mapping[str, Any], ...]  # the manifest's layer descriptors, base first
    diff_ids: tuple[str, ...]
    records: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_image(cls, name: str, manifest: Mapping[str, Any],
                   config: Mapping[str, Any]) -> InlineCache:
        """From an image manifest and its config; CacheMetadataError when there is no inline
        cache, or BuildKit would ignore it (as many diff IDs as layers, or nothing)."""
        raw = config.get(INLINE_CACHE_KEY)
        if not isinstance(raw, str) or not raw:
            raise CacheMetadataError(f"{name} carries no inline cache (built without "
                                     "BUILDKIT_INLINE_CACHE=1)")
        try:
            records = json.loads(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise CacheMetadataError(f"{name}: its inline cache does not decode: {exc}") from None
        layers = manifest.get("layers")
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise CacheMetadataError(f"{name}: its inline cache is not a list of records")
        if not isinstance(layers, list) or not isinstance(diff_ids, list) \
                or len(layers) != len(diff_ids):
            raise CacheMetadataError(f"{name}: its layers and diff IDs do not match")
        return cls(name, tuple(layers), tuple(str(d) for d in diff_ids), tuple(records))


@dataclass(frozen=True)
class ComposedCache:
    """What to upload: the cache config blob, then the index (which names it)."""

    config: bytes
    layers: tuple[Mapping[str, Any], ...]  # descriptors for the index, annotated

    def index(self, config_digest: str) -> bytes:
        manifests = [*self.layers, {"mediaType": CACHE_CONFIG_MEDIA_TYPE,
                                    "digest": config_digest, "size": len(self.config)}]
        doc = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
        return json.dumps(doc, separators=(",", ":")).encode()


def compose(images: Sequence[InlineCache]) -> ComposedCache:
    """One registry cache holding every record and layer of `images`' inline caches."""
    builder = _Composer()
    for image in images:
        builder.add(image)
    config = {"layers": builder.layers, "records": builder.records}
    return ComposedCache(json.dumps(config, separators=(",", ":")).encode(),
                         tuple(builder.descriptors.values()))


# a record's identity: its digest and, per input, the identities of what it links to
_Identity = tuple[str, tuple[tuple[tuple[Any, str], ...], ...]]


class _Composer:
    def __init__(self) -> None:
        self.layers: list[dict[str, Any]] = []  # {"blob", "parent"}
        self.records: list[dict[str, Any]] = []
        self.descriptors: dict[str, dict[str, Any]] = {}
        self._chain_index: dict[tuple[str, ...], int] = {}
        self._record_index: dict[_Identity, int] = {}

    def add(self, image: InlineCache) -> None:
        chain = self._chains(image)
        identities: dict[int, _Identity] = {}
        for position in range(len(image.records)):
            self._emit(image, position, chain, identities, ())

    def _chains(self, image: InlineCache) -> list[int]:
        """Each of the image's layers as the index of its chain (it and all below) in the
        composed layer table."""
        out: list[int] = []
        digests: list[str] = []
        for i, layer in enumerate(image.layers):
            digest = str(layer.get("digest") or "")
            digests.append(digest)
            key = tuple(digests)
            if key not in self._chain_index:
                self._chain_index[key] = len(self.layers)
                self.layers.append({"blob": digest, "parent": out[-1] if out else -1})
            out.append(self._chain_index[key])
            if digest not in self.descriptors:
                self.descriptors[digest] = {
                    "mediaType": layer.get("mediaType"), "digest": digest,
                    "size": layer.get("size"),
                    "annotations": {UNCOMPRESSED_ANNOTATION: image.diff_ids[i]},
                }
        return out

    def _identity(self, image: InlineCache, position: int, identities: dict[int, _Identity],
                  visiting: tuple[int, ...]) -> _Identity:
        if position in identities:
            return identities[position]
        if position in visiting or not 0 <= position < len(image.records):
            raise CacheMetadataError(f"{image.name}: its inline cache links records in a loop "
                                     "or to nowhere")
        record = image.records[position]
        inputs = tuple(
            tuple(sorted(((self._identity(image, _link(link), identities, (*visiting, position)),
                           str(link.get("selector") or "")) for link in _links(slot)),
                         key=repr))
            for slot in _slots(record))
        identity = (str(record.get("digest") or ""), inputs)
        identities[position] = identity
        return identity

    def _emit(self, image: InlineCache, position: int, chain: list[int],
              identities: dict[int, _Identity], visiting: tuple[int, ...]) -> int:
        identity = self._identity(image, position, identities, visiting)
        index = self._record_index.get(identity)
        record = image.records[position]
        if index is None:
            inputs = [[{"link": self._emit(image, _link(link), chain, identities,
                                           (*visiting, position)),
                        **({"selector": link["selector"]} if link.get("selector") else {})}
                       for link in _links(slot)]
                      for slot in _slots(record)]
            out: dict[str, Any] = {"digest": identity[0]}
            if inputs:
                out["inputs"] = inputs
            index = self._record_index[identity] = len(self.records)
            self.records.append(out)
        results = self.records[index].setdefault("layers", [])
        for result in record.get("layers") or []:
            if not isinstance(result, Mapping):
                continue
            layer = result.get("layer")
            if not isinstance(layer, int) or not 0 <= layer < len(chain):
                raise CacheMetadataError(f"{image.name}: its inline cache names layer {layer}, "
                                         f"and the image has {len(chain)}")
            if not any(r["layer"] == chain[layer] for r in results):
                entry: dict[str, Any] = {"layer": chain[layer]}
                if result.get("createdAt"):
                    entry["createdAt"] = result["createdAt"]
                results.append(entry)
        if not results:
            del self.records[index]["layers"]
        return index


def _slots(record: Mapping[str, Any]) -> list[list[Any]]:
    inputs = record.get("inputs") or []
    return [slot if isinstance(slot, list) else [] for slot in inputs]


def _links(slot: list[Any]) -> list[Mapping[str, Any]]:
    return [link for link in slot if isinstance(link, Mapping)]


def _link(link: Mapping[str, Any]) -> int:
    value = link.get("link", 0)  # Go's omitempty: no link is link 0
    return value if isinstance(value, int) else -1
