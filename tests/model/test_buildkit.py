"""BuildKit's cache keys and cache metadata, pure: the records and digests below were measured
on dockerd 20.10.24's BuildKit, from an image the docker 20.10 CLI built with
`DOCKER_BUILDKIT=1 docker build --build-arg BUILDKIT_INLINE_CACHE=1` (the context and its
modes are recreated here byte for byte)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from devsync.model.buildkit import (
    BuildKitPredictor,
    CacheGraph,
    CacheGraphError,
    CacheSource,
    ContentHasher,
    chain_id,
    from_key,
    history_entries,
)
from devsync.model.context import scan_context
from devsync.model.dockerfiles import parse_file, parse_text
from devsync.model.images import ImageInfo

BUSYBOX_DIFF_IDS = [
    "sha256:fd5b91a8853c8e83730b5f00e97a98cd492a100a64d316cd66271e02abc9641a",
    "sha256:82143c01bdcb9ca483cb888cd48232b2d5f74c1ab9b994fc86823eb1fbffe66d",
]
DOCKERFILE = """\
FROM localhost:53737/busybox:1
ARG FLAGS=--no-dev
ENV APP_HOME=/app
WORKDIR /app
COPY composer.json ./
RUN echo "install $FLAGS" && cat composer.json > /vendor.txt
COPY . .
RUN ls -la /app > /files.txt
CMD ["cat", "/vendor.txt"]
"""
# the image's inline cache, decoded (moby.buildkit.cache.v0), createdAt left out
RECORDS = [
    {"layers": [{"layer": 5}], "digest": "sha256:0b7ec3a160616f50903923a3793cb906a4f6111d1a9191"
     "21fba0a2210be5b00c", "inputs": [[{"link": 7}], [{"link": 3}]]},
    {"layers": [{"layer": 6}], "digest": "sha256:0ff6b94926d334a9c04fbfba399e6630e85acbce2e12c5"
     "59e7704c2732a95f96", "inputs": [[{"link": 0}]]},
    {"layers": [{"layer": 3}], "digest": "sha256:27f867a26b48e4e4bbe37ea7341cbe048c18dc5acf4571"
     "968d3766e062f9b255", "inputs": [[{"link": 5}], [{"link": 4}]]},
    {"digest": "sha256:447ecf83dece2b2717d9dedfdf8fa1900a8f65542e4506ead2db7509e8197c51"},
    {"digest": "sha256:754446603fab3bcab3d26b69236137302798a4fcfb9ec51e1b43f9ced02dc9ca"},
    {"layers": [{"layer": 2}], "digest": "sha256:807b3e8722c68572736f54d83fd741a5b1d69ccbef218f"
     "ae52b4149a56d232ce", "inputs": [[{"link": 6}]]},
    {"digest": "sha256:88d575d861585148599e59a7757b092b7414fc767b09a7e236ed8ce7d4dfcac0"},
    {"layers": [{"layer": 4}], "digest": "sha256:babbfba12087675260180553b3dfbb30f14f390b0be3f5"
     "50ac5f3501a3cabf19", "inputs": [[{"link": 2}]]},
]
HISTORY = [
    "/bin/sh -c #(nop) COPY file:73e2b2d48642b21b357384b0cb81c1869cc5e0c48a00f61553756196058304"
    "b9 in /bin/busybox ",
    "/bin/busybox --install -s /bin",
    "ARG FLAGS=--no-dev",
    "ENV APP_HOME=/app",
    "WORKDIR /app",
    "COPY composer.json ./ # buildkit",
    'RUN |1 FLAGS=--no-dev /bin/sh -c echo "install $FLAGS" && cat composer.json > /vendor.txt'
    " # buildkit",
    "COPY . . # buildkit",
    "RUN |1 FLAGS=--no-dev /bin/sh -c ls -la /app > /files.txt # buildkit",
    'CMD ["cat" "/vendor.txt"]',
]
DIFF_IDS = [*BUSYBOX_DIFF_IDS, *(f"sha256:{i:064x}" for i in range(5))]


def inline(records: list[dict[str, object]]) -> str:
    return base64.b64encode(json.dumps(records).encode()).decode()


def make_context(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    files = {"Dockerfile": DOCKERFILE, "composer.json": '{"a":1}\n',
             "src/index.php": "<?php\n", ".dockerignore": ".git\n"}
    for rel, text in files.items():
        (root / rel).write_text(text)
        (root / rel).chmod(0o644)
    (root / "src").chmod(0o755)
    root.chmod(0o755)
    return root


def deployed(records: list[dict[str, object]] | None = None) -> ImageInfo:
    config = {"history": [{"created_by": h} for h in HISTORY],
              "rootfs": {"diff_ids": DIFF_IDS}}
    if records is not None:
        config["moby.buildkit.cache.v0"] = inline(records)
    return ImageInfo.from_config(config, reference="localhost:53737/app:1", image_id=None)


def busybox() -> ImageInfo:
    return ImageInfo.from_config({"history": [{"created_by": h} for h in HISTORY[:2]],
                                  "rootfs": {"diff_ids": BUSYBOX_DIFF_IDS}},
                                 reference="localhost:53737/busybox:1", image_id=None)


def predict(ctx: Path, image: ImageInfo | None = None, **kwargs: object) -> list[tuple[int, bool]]:
    image = image if image is not None else deployed(RECORDS)
    graph = CacheGraph.from_inline(image.inline_cache, len(image.diff_ids)) \
        if image.inline_cache else None
    steps = BuildKitPredictor(parse_file(ctx / "Dockerfile"), context=scan_context(ctx),
                              images=lambda ref: busybox(),
                              source=CacheSource(image.reference, graph, image, 2),
                              **kwargs).run()  # type: ignore[arg-type]
    return [(s.instruction.line, s.cached) for s in steps if s.vertex]


def test_from_key_is_the_root_record() -> None:
    assert from_key(BUSYBOX_DIFF_IDS) == RECORDS[6]["digest"]
    assert chain_id(BUSYBOX_DIFF_IDS[:1]) == BUSYBOX_DIFF_IDS[0]


def test_content_keys_of_a_file_and_of_the_root(tmp_path: Path) -> None:
    hasher = ContentHasher(scan_context(make_context(tmp_path / "app")))
    assert hasher.select(["composer.json"]).key == RECORDS[4]["digest"]
    assert hasher.select(["./composer.json"]).key == RECORDS[4]["digest"]
    assert hasher.select(["."]).key == RECORDS[3]["digest"]


def test_owner_and_mtime_do_not_count_mode_does(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "app")
    os.chown(ctx / "src" / "index.php", 1000, 1000)
    os.utime(ctx / "composer.json", (1, 1))
    hasher = ContentHasher(scan_context(ctx))
    assert hasher.select(["."]).key == RECORDS[3]["digest"]
    (ctx / "src" / "index.php").chmod(0o755)
    assert ContentHasher(scan_context(ctx)).select(["."]).key != RECORDS[3]["digest"]


def test_inline_graph() -> None:
    graph = CacheGraph.from_inline(inline(RECORDS), 7)
    assert graph.roots(from_key(BUSYBOX_DIFF_IDS)) == [6]
    assert graph.children(6) == [5]
    assert graph.children(5, content=RECORDS[4]["digest"]) == [2]
    assert graph.children(5, content="sha256:nothing") == []
    assert graph.records[0].results == (6,)  # layer index 5: a chain of 6 layers
    assert not graph.records[6].has_layers
    with pytest.raises(CacheGraphError):
        CacheGraph.from_inline(inline(RECORDS), 3)  # names layers the image does not have
    with pytest.raises(CacheGraphError):
        CacheGraph.from_inline("not base64!", 7)


def test_registry_cache_graph() -> None:
    config = {"layers": [{"blob": "sha256:a", "parent": -1}, {"blob": "sha256:b"}],
              "records": [{"digest": "sha256:root"},
                          {"digest": "sha256:x", "layers": [{"layer": 1}],
                           "inputs": [[{"link": 0}]]}]}
    graph = CacheGraph.from_cache_config(config)
    # layer 1's parent is 0 (Go's omitempty), whose parent is -1: a chain of 2
    assert graph.records[1].results == (2,)
    assert graph.children(0) == [1]


def test_history_entries() -> None:
    assert history_entries(deployed(RECORDS), 2) == [
        "ARG FLAGS=--no-dev", "ENV APP_HOME=/app", "WORKDIR /app", "COPY composer.json ./",
        HISTORY[6][: -len(" # buildkit")], "COPY . .", HISTORY[8][: -len(" # buildkit")]]


def test_prediction_unchanged(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "app")
    assert predict(ctx) == [(4, True), (5, True), (6, True), (7, True), (8, True)]


def test_prediction_edit_and_arg(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "app")
    (ctx / "src" / "index.php").write_text("<?php echo 1;\n")
    assert predict(ctx) == [(4, True), (5, True), (6, True), (7, False), (8, False)]
    ctx = make_context(tmp_path / "app2")
    assert predict(ctx, build_args={"FLAGS": "--dev"}) == \
        [(4, True), (5, True), (6, False), (7, False), (8, False)]


def test_prediction_without_metadata_or_layers(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "app")
    assert [c for _l, c in predict(ctx, deployed(None))] == [False] * 5
    stripped = [{k: v for k, v in r.items() if k != "layers"} for r in RECORDS]
    assert [c for _l, c in predict(ctx, deployed(stripped))] == [False] * 5


def test_records_without_layers_are_cached_until_a_later_step_needs_them(tmp_path: Path) -> None:
    """Records re-exported from an imported cache (CI chaining --cache-from) have no layers:
    unchanged, BuildKit loads the last step and never needs them (CACHED); after an edit
    further down, the step before the edit must be loaded, and it and its parents run."""
    ctx = make_context(tmp_path / "app")
    imported = {5, 2, 7}  # WORKDIR, COPY composer.json, the first RUN
    records = [{k: v for k, v in r.items() if not (k == "layers" and i in imported)}
               for i, r in enumerate(RECORDS)]
    assert [c for _l, c in predict(ctx, deployed(records))] == [True] * 5
    (ctx / "src" / "index.php").write_text("<?php echo 1;\n")
    assert [c for _l, c in predict(ctx, deployed(records))] == [False] * 5


def _steps(ctx: Path) -> dict[int, tuple[bool, bool]]:
    image = deployed(RECORDS)
    graph = CacheGraph.from_inline(image.inline_cache, len(image.diff_ids))
    steps = BuildKitPredictor(parse_file(ctx / "Dockerfile"), context=scan_context(ctx),
                              images=lambda ref: busybox(),
                              source=CacheSource(image.reference, graph, image, 2)).run()
    return {s.instruction.line: (s.cached, s.certain) for s in steps if s.vertex}


def test_what_the_history_cannot_tell_is_uncertain(tmp_path: Path) -> None:
    """RUN --network/--mount/--security and COPY --chown/--chmod are in the op, and no
    history entry says them: those steps are marked uncertain, not claimed."""
    ctx = make_context(tmp_path / "app")
    df = ctx / "Dockerfile"
    df.write_text(DOCKERFILE.replace("RUN echo", "RUN --network=none echo"))
    assert _steps(ctx)[6][1] is False
    df.write_text(DOCKERFILE.replace("COPY composer.json", "COPY --chown=1:1 composer.json"))
    assert _steps(ctx)[5][1] is False
    # after a step whose key is certainly not in the cache (the Dockerfile is in `COPY .`,
    # so line 7 misses), a flagged step misses too, certainly: its input's key is new
    df.write_text(DOCKERFILE.replace("RUN ls", "RUN --network=none ls"))
    assert _steps(ctx)[7] == (False, True)
    assert _steps(ctx)[8] == (False, True)


def _vouched_steps(ctx: Path, revision: str) -> dict[int, tuple[bool, bool, str | None]]:
    image = deployed(RECORDS)
    graph = CacheGraph.from_inline(image.inline_cache, len(image.diff_ids))
    df = parse_file(ctx / "Dockerfile")
    then = parse_text(revision, ctx / "Dockerfile")
    steps = BuildKitPredictor(df, context=scan_context(ctx), images=lambda ref: busybox(),
                              source=CacheSource(image.reference, graph, image, 2),
                              revision_stage=[i.text for i in then.stages[0].instructions]
                              ).run()
    return {s.instruction.line: (s.cached, s.certain, s.miss) for s in steps if s.vertex}


def test_the_dockerfile_at_the_revision_vouches_for_flags(tmp_path: Path) -> None:
    """The history leaves flags out; the deployed revision's Dockerfile tells them. Its COPY
    --chown is the deployed op (here the records were made without it, so the "same" line
    keys as the records say: the prediction follows the records, the revision only vouches)."""
    ctx = make_context(tmp_path / "app")
    df = ctx / "Dockerfile"
    chown = DOCKERFILE.replace("COPY composer.json", "COPY --chown=1:1 composer.json")
    df.write_text(chown)
    assert _vouched_steps(ctx, chown)[5][1] is True  # the same line, after the same lines
    other = chown.replace("--chown=1:1", "--chown=2:2")
    assert _vouched_steps(ctx, other)[5] == (False, True, "flags")  # another op, certainly
    above = chown.replace("ENV APP_HOME=/app\n", "ENV APP_HOME=/app\nUSER 0\n")
    assert _vouched_steps(ctx, above)[5][1] is False  # the lines above differ: no word
    variable = DOCKERFILE.replace("COPY composer.json", "COPY --chown=$UID composer.json")
    df.write_text(variable)
    assert _vouched_steps(ctx, variable)[5][1] is False  # its value is not its text
    bind = DOCKERFILE.replace("RUN echo", "RUN --mount=type=bind,target=/m echo")
    df.write_text(bind)
    assert _vouched_steps(ctx, bind)[6][1] is False  # a bind mount keys on what it mounts
    cache = DOCKERFILE.replace("RUN echo", "RUN --mount=type=cache,target=/c echo")
    df.write_text(cache)
    assert _vouched_steps(ctx, cache)[6][1] is True


def test_other_stages_and_copy_from_are_uncertain(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "app")
    (ctx / "Dockerfile").write_text(
        "FROM localhost:53737/busybox:1 AS build\nRUN echo hi > /x\n"
        "FROM localhost:53737/busybox:1\nCOPY --from=build /x /x\nRUN cat /x\n")
    steps = _steps(ctx)
    assert steps[2] == (False, False)  # another stage's RUN
    assert steps[4] == (False, False)  # COPY --from: the files it builds decide
    assert steps[5] == (False, False)  # after it, nothing is certain either


def test_wildcard_content_keys(tmp_path: Path) -> None:
    """Measured: `COPY composer.* ./` and `COPY src/*.php /src/` (two matches)."""
    ctx = tmp_path / "wc"
    (ctx / "src").mkdir(parents=True)
    for rel, text in {"composer.json": '{"a":1}\n', "src/index.php": "<?php\n",
                      "src/b.php": "<?php 2\n", ".dockerignore": ".git\n",
                      "Dockerfile": "FROM localhost:53737/busybox:1\nCOPY composer.* ./\n"
                                    "COPY src/*.php /src/\n"}.items():
        (ctx / rel).write_text(text)
        (ctx / rel).chmod(0o644)
    hasher = ContentHasher(scan_context(ctx))
    one = hasher.select(["composer.*"])
    assert one.exact and one.key == ("sha256:e4a98818d5280a02d7a9bb2a4532f29c9216dce42993e2ae"
                                     "6f3f250b36815e98")
    two = hasher.select(["src/*.php"])
    assert two.exact and two.key == ("sha256:90deb48a2b0a3dca34c561db14b7e08b60e46848d26e5935"
                                     "2886f3f2096ac66f")
    assert not hasher.select(["s*"]).exact  # a directory matched: not measured, not claimed


def test_a_vouched_stage_the_target_does_not_copy_directly_stays_uncertain(
        tmp_path: Path) -> None:
    """A stage walked down the records (`same_stages`) that only a stage devsync does not
    walk copies from: whether BuildKit needs it is not known, so nothing of it is claimed."""
    ctx = make_context(tmp_path / "app")
    (ctx / "Dockerfile").write_text(
        "FROM localhost:53737/busybox:1 AS a\nRUN echo hi > /x\n"
        "FROM localhost:53737/busybox:1 AS b\nARG X=1\nCOPY --from=a /x /x\n"
        "FROM localhost:53737/busybox:1\nCOPY --from=b /x /x\nRUN cat /x\n")
    image = deployed(RECORDS)
    graph = CacheGraph.from_inline(image.inline_cache, len(image.diff_ids))
    steps = BuildKitPredictor(parse_file(ctx / "Dockerfile"), context=scan_context(ctx),
                              images=lambda ref: busybox(),
                              source=CacheSource(image.reference, graph, image, 2),
                              same_stages=frozenset({0})).run()
    by_line = {s.instruction.line: (s.cached, s.certain) for s in steps if s.vertex}
    assert by_line[2] == (False, False)  # stage a: walked, but not reached
    assert by_line[5] == (False, False)  # stage b: not walked
    assert by_line[7] == (False, False) and by_line[8] == (False, False)


def test_a_vouched_stage_whose_base_cannot_be_read_stays_uncertain(tmp_path: Path) -> None:
    """Another stage's base that devsync cannot read (Docker Hub out of reach): the plan
    does not fail, the stage keeps the uncertain plan."""
    ctx = make_context(tmp_path / "app")
    (ctx / "Dockerfile").write_text(
        "FROM composer:2 AS vendor\nRUN echo hi > /x\n"
        "FROM localhost:53737/busybox:1\nCOPY --from=vendor /x /x\nRUN cat /x\n")
    image = deployed(RECORDS)
    graph = CacheGraph.from_inline(image.inline_cache, len(image.diff_ids))

    def images(ref: str) -> ImageInfo:
        if ref.startswith("composer"):
            raise RuntimeError("registry-1.docker.io is not reachable")
        return busybox()

    steps = BuildKitPredictor(parse_file(ctx / "Dockerfile"), context=scan_context(ctx),
                              images=images, source=CacheSource(image.reference, graph, image, 2),
                              same_stages=frozenset({0})).run()
    by_line = {s.instruction.line: (s.cached, s.certain) for s in steps if s.vertex}
    assert by_line == {2: (False, False), 4: (False, False), 5: (False, False)}


@pytest.mark.parametrize(("env", "first_run_miss"), [
    ([], None),  # (no environment recorded: nothing to compare)
    (["APP_HOME=/app"], None),  # (without PATH: BuildKit's default, as for the base)
    (["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP_HOME=/app"],
     None),
    (["APP_HOME=/app", "LANG=C.UTF-8"], "base-env"),  # the base had LANG then
])
def test_a_base_environment_other_than_cis_busts_the_runs(
        tmp_path: Path, env: list[str], first_run_miss: str | None) -> None:
    """The FROM key is the base's layers alone; a RUN's op takes the environment. When the
    deployed image's ENV lines are this build's and its environment is not what the base and
    those lines give, the base's environment changed: every RUN misses, certainly."""
    ctx = make_context(tmp_path / "app")
    image = deployed(RECORDS)
    image.env = env
    graph = CacheGraph.from_inline(image.inline_cache, len(image.diff_ids))
    steps = BuildKitPredictor(parse_file(ctx / "Dockerfile"), context=scan_context(ctx),
                              images=lambda ref: busybox(),
                              source=CacheSource(image.reference, graph, image, 2)).run()
    by_line = {s.instruction.line: s for s in steps if s.vertex}
    assert by_line[4].cached and by_line[5].cached  # WORKDIR, COPY: no environment in them
    run = by_line[6]
    assert run.miss == first_run_miss and run.certain
    if first_run_miss:
        assert not run.cached and run.detail == "LANG"
