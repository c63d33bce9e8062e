"""Local images as the engine describes them, and their config history worked out exactly.

The Engine API does not hand out an image's raw config. `inspect_image` gives `RootFS.Layers`
(diff IDs) but no history; `GET /images/{id}/history` gives every config history entry, empty
layers included (`CreatedBy`, `Created` in whole seconds, `Size`, `Comment`, `Id` or
"<missing>"), newest first, but no `empty_layer` flag. `local_image` returns the entries oldest
first and works `empty_layer` out (see `_history`): metadata instructions never make a layer,
entries with bytes always do, and a 0-byte RUN/COPY/WORKDIR (the engine keeps a layer only when
the step's diff is not empty) is settled by the layer counts of the intermediate images that
locally built steps name, else by the total. Each layer entry then gets its `diff_id`; if
something had to be guessed, `LocalImage.history_exact` is False and no `diff_id` is assigned.
For a pulled image the registry's config blob is exact.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devsync.model.images import ImageInfo


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of an image config's history, oldest first (see the module doc)."""

    created_by: str
    empty_layer: bool
    size: int
    id: str  # image ID of that step for locally built images, "<missing>" otherwise
    created: int = 0  # unix seconds
    comment: str = ""
    diff_id: str | None = None  # the layer this entry made (None if empty or unknown)


@dataclass(frozen=True)
class LocalImage:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    labels: dict[str, str]
    created: str  # RFC 3339 as the engine reports it
    size: int
    diff_ids: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    history_exact: bool = True  # empty_layer/diff_id alignment checked against diff_ids
    architecture: str = ""
    os: str = ""
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # inspect's "Config"

    def digest_for(self, repository: str) -> str | None:
        """The manifest digest this image has in `repository` (from RepoDigests), if any."""
        for entry in self.repo_digests:
            repo, _, digest = entry.rpartition("@")
            if repo == repository:
                return digest
        return None

    def to_image_info(self, reference: str) -> ImageInfo:
        """The shape `devsync.model.images` compares (origin "local", whole-second timestamps)."""
        from devsync.model.images import HistoryEntry as InfoHistory
        from devsync.model.images import ImageInfo

        cfg = self.config
        repo = split_tag(reference.split("@", 1)[0])[0]
        return ImageInfo(
            reference=reference,
            image_id=self.id,
            history=tuple(
                InfoHistory(created=h.created, created_by=h.created_by, comment=h.comment,
                            empty_layer=h.empty_layer)
                for h in self.history
            ),
            diff_ids=self.diff_ids,
            env=list(cfg.get("Env") or []),
            shell=list(cfg["Shell"]) if cfg.get("Shell") else None,
            onbuild=list(cfg.get("OnBuild") or []),
            workdir=cfg.get("WorkingDir") or "",
            labels=dict(self.labels),
            origin="local",
            size=self.size,
            digest=self.digest_for(repo),
        )


def local_image(data: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                layers_at: Callable[[str], int | None]) -> LocalImage:
    rootfs = data.get("RootFS") or {}
    diff_ids = tuple(str(d) for d in (rootfs.get("Layers") or []))
    history, exact = _history(rows, diff_ids, layers_at)
    cfg = data.get("Config") or {}
    return LocalImage(
        id=str(data["Id"]),
        repo_tags=tuple(data.get("RepoTags") or ()),
        repo_digests=tuple(data.get("RepoDigests") or ()),
        labels=dict(cfg.get("Labels") or {}),
        created=str(data.get("Created") or ""),
        size=int(data.get("Size") or 0),
        diff_ids=diff_ids,
        history=history,
        history_exact=exact,
        architecture=str(data.get("Architecture") or ""),
        os=str(data.get("Os") or ""),
        config=dict(cfg),
    )


def _history(rows: Sequence[Mapping[str, Any]], diff_ids: tuple[str, ...],
             layers_at: Callable[[str], int | None]) -> tuple[tuple[HistoryEntry, ...], bool]:
    """Config history oldest first, with `empty_layer` worked out (see the module doc).

    The engine marks a step `empty_layer` when its diff is empty (moby image.NewChildImage):
    a metadata step always, a `RUN true` too, while `WORKDIR /new` or `RUN mkdir` make a
    0-byte layer. So a 0-byte entry that is not pure metadata is undecided by itself. Rows of
    locally built images carry the ID of the image that step produced: its layer count pins
    down how many layers the history has up to there. Between two such checkpoints, the
    undecided entries are all layers or all empty when the count says so; otherwise they are
    guessed (COPY/ADD, then WORKDIR, then RUN) and the result is marked inexact.
    """
    entries = list(reversed(rows))
    n = len(entries)
    sizes = [int(r.get("Size") or 0) for r in entries]
    kinds = [_layer_kind(str(r.get("CreatedBy") or "")) for r in entries]
    layer: list[bool] = [size > 0 or kind == "layer" for size, kind in zip(sizes, kinds,
                                                                             strict=True)]
    undecided = [sizes[i] == 0 and kinds[i] != "meta" and kinds[i] != "layer" for i in range(n)]
    exact = True
    if any(undecided):
        checkpoints: list[tuple[int, int]] = [(-1, 0)]
        for i, row in enumerate(entries[:-1]):
            image_id = str(row.get("Id") or "")
            if image_id.startswith("sha256:"):
                count = layers_at(image_id)
                if count is not None:
                    checkpoints.append((i, count))
        checkpoints.append((n - 1, len(diff_ids)))
        for (a, count_a), (b, count_b) in itertools.pairwise(checkpoints):
            span = range(a + 1, b + 1)
            open_rows = [i for i in span if undecided[i]]
            need = count_b - count_a - sum(1 for i in span if sizes[i] > 0)
            if need == len(open_rows):
                chosen = set(open_rows)
            elif need == 0:
                chosen = set()
            else:
                exact = False
                ranked = sorted(open_rows, key=lambda i: _GUESS_ORDER.get(kinds[i], 9))
                chosen = set(ranked[: max(need, 0)])
            for i in open_rows:
                layer[i] = i in chosen
    if sum(layer) != len(diff_ids):
        exact = False
    out: list[HistoryEntry] = []
    layer_index = 0
    for row, makes_layer in zip(entries, layer, strict=True):
        diff_id = None
        if makes_layer and exact:
            diff_id = diff_ids[layer_index]
            layer_index += 1
        out.append(HistoryEntry(
            created_by=str(row.get("CreatedBy") or ""),
            empty_layer=not makes_layer,
            size=int(row.get("Size") or 0),
            id=str(row.get("Id") or "<missing>"),
            created=int(row.get("Created") or 0),
            comment=str(row.get("Comment") or ""),
            diff_id=diff_id,
        ))
    return tuple(out), exact


_NOP_RE = re.compile(r"#\(nop\) +([A-Za-z]+)")
# instructions that only change the config: their commit has an empty diff
_META = frozenset({
    "ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "USER", "ARG", "VOLUME", "STOPSIGNAL",
    "HEALTHCHECK", "SHELL", "ONBUILD", "MAINTAINER",
})
_GUESS_ORDER = {"copy": 0, "workdir": 1, "run": 2}


def _layer_kind(created_by: str) -> str:
    """"meta" (never a layer), "copy", "workdir" or "run" (a layer unless nothing changed)."""
    text = created_by.strip()
    m = _NOP_RE.search(text)
    if m:
        prefix = text[: m.start()].split()
        # classic builder: "<shell> <flag> #(nop) INSTR ..."; anything else is a RUN whose
        # command happens to contain "#(nop)"
        if not text.startswith("|") and prefix and prefix[-1].startswith(("-", "/")):
            word = m.group(1).upper()
            if word in ("COPY", "ADD"):
                return "copy"
            return "workdir" if word == "WORKDIR" else "meta"
        return "run"
    word = text.split(None, 1)[0] if text else ""
    if word in _META:  # BuildKit writes "INSTRUCTION args"
        return "meta"
    if word in ("COPY", "ADD"):
        return "copy"
    # classic RUN ("/bin/sh -c ...", "|N A=b /bin/sh -c ...", exec form), BuildKit RUN,
    # `docker import` (empty CreatedBy) and `docker commit`
    return "workdir" if word == "WORKDIR" else "run"


def split_tag(ref: str) -> tuple[str, str | None]:
    """("host:5000/name", "tag") from "host:5000/name:tag"; a digest stays in the name."""
    if "@" in ref:
        return ref, None
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, None
