"""A registry cache composed from inline caches (the format; BuildKit reading one back is
tested against the real engine in tests/ops/test_buildkit_publish.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devsync.model.registrycache import (
    CACHE_CONFIG_MEDIA_TYPE,
    INLINE_CACHE_KEY,
    CacheMetadataError,
    InlineCache,
    compose,
    registry_cache_ref,
    stage_cache_ref,
)

LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def image(name: str, blobs: list[str], records: list[dict[str, Any]]) -> InlineCache:
    manifest = {"layers": [{"mediaType": LAYER, "digest": b, "size": 10 + i}
                           for i, b in enumerate(blobs)]}
    config = {"rootfs": {"diff_ids": [f"diff-{b}" for b in blobs]},
              INLINE_CACHE_KEY: base64.b64encode(json.dumps(records).encode()).decode()}
    return InlineCache.from_image(name, manifest, config)


# a stage: FROM (root, no layers), WORKDIR (layer 1), RUN (layer 2)
VENDOR = [
    {"digest": "from"},
    {"digest": "workdir", "layers": [{"layer": 1, "createdAt": "t1"}],
     "inputs": [[{"link": 0}]]},
    {"digest": "install", "layers": [{"layer": 2}], "inputs": [[{"link": 1}]]},
]
# the final image: the same FROM and WORKDIR (its inline cache has them without layers when
# they come from another stage's build), then a COPY --from the vendor stage's RUN
FINAL = [
    {"digest": "from"},
    {"digest": "workdir", "layers": [{"layer": 1}], "inputs": [[{"link": 0}]]},
    {"digest": "install", "inputs": [[{"link": 1}]]},
    {"digest": "copy", "layers": [{"layer": 2}],
     "inputs": [[{"link": 1}], [{"link": 2, "selector": "sha256:sel"}]]},
]


def test_records_and_layers_of_every_image_merge_into_one_cache() -> None:
    vendor = image("r:buildcache-vendor", ["base", "wd", "vend"], VENDOR)
    final = image("r:1.0.0", ["base", "wd", "app"], FINAL)
    composed = compose([vendor, final])
    config = json.loads(composed.config)
    # chains: base, base+wd, base+wd+vend, base+wd+app; every one names its parent, -1 at
    # the root (Go would read a missing parent as 0)
    assert config["layers"] == [{"blob": "base", "parent": -1}, {"blob": "wd", "parent": 0},
                                {"blob": "vend", "parent": 1}, {"blob": "app", "parent": 1}]
    records = config["records"]
    by_digest = {r["digest"]: r for r in records}
    assert len(records) == 4  # "from", "workdir", "install" once each, and "copy"
    assert by_digest["from"] == {"digest": "from"}
    assert by_digest["workdir"]["layers"] == [{"layer": 1, "createdAt": "t1"}]
    assert by_digest["install"]["layers"] == [{"layer": 2}]  # the vendor image's result
    copy = by_digest["copy"]
    assert copy["layers"] == [{"layer": 3}]
    assert [[records[link["link"]]["digest"] for link in slot] for slot in copy["inputs"]] \
        == [["workdir"], ["install"]]
    assert copy["inputs"][1][0]["selector"] == "sha256:sel"
    assert "selector" not in copy["inputs"][0][0]
    # links always point back at records written before
    for position, record in enumerate(records):
        for slot in record.get("inputs", []):
            assert all(link["link"] < position for link in slot)


def test_the_index_lists_every_blob_with_its_diff_id_and_the_config() -> None:
    composed = compose([image("r:1", ["a", "b"], VENDOR[:2])])
    index = json.loads(composed.index("sha256:cfg"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"][:2] == [
        {"mediaType": LAYER, "digest": "a", "size": 10,
         "annotations": {"containerd.io/uncompressed": "diff-a"}},
        {"mediaType": LAYER, "digest": "b", "size": 11,
         "annotations": {"containerd.io/uncompressed": "diff-b"}},
    ]
    assert index["manifests"][2] == {"mediaType": CACHE_CONFIG_MEDIA_TYPE,
                                     "digest": "sha256:cfg", "size": len(composed.config)}


def test_same_digest_other_inputs_stay_two_records() -> None:
    # one RUN text on two different parents: the same op digest, two different cache keys
    records = [{"digest": "p1"}, {"digest": "p2"},
               {"digest": "run", "inputs": [[{"link": 0}]], "layers": [{"layer": 0}]},
               {"digest": "run", "inputs": [[{"link": 1}]], "layers": [{"layer": 1}]}]
    config = json.loads(compose([image("r:1", ["x", "y"], records)]).config)
    assert [r["digest"] for r in config["records"]].count("run") == 2


def test_an_image_without_inline_cache_says_how_to_get_one() -> None:
    with pytest.raises(CacheMetadataError, match="BUILDKIT_INLINE_CACHE=1"):
        InlineCache.from_image("r:1", {"layers": []}, {"rootfs": {"diff_ids": []}})


def test_broken_inline_caches_are_refused() -> None:
    with pytest.raises(CacheMetadataError, match="do not match"):
        InlineCache.from_image("r:1", {"layers": [{}]}, {
            "rootfs": {"diff_ids": []},
            INLINE_CACHE_KEY: base64.b64encode(b"[]").decode()})
    with pytest.raises(CacheMetadataError, match="layer 5"):
        compose([image("r:1", ["a"], [{"digest": "d", "layers": [{"layer": 5}]}])])
    with pytest.raises(CacheMetadataError, match="loop"):
        compose([image("r:1", ["a"], [{"digest": "d", "inputs": [[{"link": 0}]]}])])


def test_where_the_cache_lives() -> None:
    assert registry_cache_ref("localhost:5000/shop") == "localhost:5000/shop:buildcache"
    assert stage_cache_ref("localhost:5000/shop", "vendor") \
        == "localhost:5000/shop:buildcache-vendor"
