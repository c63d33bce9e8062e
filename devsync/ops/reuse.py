"""Don't build what the plan proves cached: the classic builder's result is then that image.

When every step of a build is reused from one cache source (the plan's `WholeReuse`), the
classic builder ends on that image's layers and writes one more image for the OCI labels:
sending a large context only for the engine to hash it again and find every step cached costs
seconds. Instead the engine builds `FROM <that image's ID>` plus the same `LABEL` step from a
context of one small Dockerfile. That image has the full build's config and layers
(tests/ops/test_reuse.py builds both and compares them); what differs is what any two builds
differ in (creation times, the ID of the parent it was committed on) and, when the cache
source ends with label steps of its own (CI's `--label`, devsync's last sync), those empty
history entries, which stay.

Every condition is checked against the engine before anything is made, and whatever does not
hold sends the sync to a real build, saying why:
- the source is the very image the plan read (same ID), its layers end where the build would,
  and what follows in its history is only `LABEL` steps whose keys the new labels set again
  (else its config would carry labels the full build drops); no `ONBUILD` triggers (a `FROM`
  would run them);
- the prediction, made again just before (a fresh scan of the context, the Dockerfile read
  again, racy files hashed again), still says so: an edit made during the pull counts;
- the image made has exactly the predicted layers and the labels.
Only the classic builder: a BuildKit build is left to BuildKit (the equivalence is not proven
there).
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError
from devsync.events import Event, ImageBuilt, LogLine, StepFinished, StepStarted, Warning_

if TYPE_CHECKING:
    from devsync.adapters.engine import Engine
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import ImageSpec, Project
    from devsync.ops.plan import ImagePlan, PlanStep

_LABEL_STEP = "#(nop)  LABEL "


class _NotProven(Exception):
    """The image cannot be made without a build (the message says why)."""


def reuse_whole(project: Project, spec: ImageSpec, plan: ImagePlan, *, engine: Engine,
                resolver: Resolver, labels: Mapping[str, str], labels_in_dockerfile: bool,
                tag: str, cancel: threading.Event | None = None
                ) -> Generator[Event, None, ImageBuilt | None]:
    """Make `tag` from the image `plan.reuse` names, with `labels`, without a build of the
    context; the plan's steps are reported cached. Returns the ImageBuilt, or None (after a
    Warning_ saying why) when a real build must run instead."""
    reuse = plan.reuse
    if reuse is None or plan.builder == "buildkit":
        return None
    try:
        source_id = _check_source(engine, plan, labels)
        _check_prediction(project, spec, plan, resolver)
        image_id, label_events = _make(engine, spec, source_id, labels, labels_in_dockerfile,
                                       len(_built_steps(plan)), cancel)
        _check_result(engine, image_id, reuse.layers, labels)
    except _NotProven as exc:
        yield Warning_(spec.name, f"{exc}: building it")
        return None
    if tag:
        engine.tag(image_id, tag)
    steps = _built_steps(plan)
    total = len(steps) + sum(1 for e in label_events if isinstance(e, StepStarted))
    yield LogLine(spec.name, f"every step is cached from {reuse.ref}: {tag or 'the image'} is "
                  "made from it and the labels, the build context is not sent")
    for index, step in enumerate(steps):
        yield StepStarted(spec.name, index, total, step.instruction, step.line)
        yield StepFinished(spec.name, index, True, True)
    yield from label_events
    built = ImageBuilt(spec.name, tag, image_id, len(steps), total)
    yield built
    return built


def _built_steps(plan: ImagePlan) -> list[PlanStep]:
    # the builder numbers the ARGs before FROM and every instruction of the stages it builds
    return [s for s in plan.steps if s.kind != "skip"]


def _check_source(engine: Engine, plan: ImagePlan, labels: Mapping[str, str]) -> str:
    reuse = plan.reuse
    assert reuse is not None
    local = engine.image(reuse.ref)
    if local is None:
        raise _NotProven(f"{reuse.ref} is not here")
    if local.id != reuse.image_id:
        raise _NotProven(f"the local {reuse.ref} is not the image the plan read")
    if local.diff_ids != reuse.layers or len(local.history) < reuse.history_len:
        raise _NotProven(f"{reuse.ref} has other layers than the build would end on")
    for entry in local.history[reuse.history_len:]:
        keys = _label_keys(entry.created_by)
        if keys is None or not keys <= set(labels):
            raise _NotProven(f"{reuse.ref} ends with steps of its own ({entry.created_by!r})")
    if local.config.get("OnBuild"):
        raise _NotProven(f"{reuse.ref} has ONBUILD triggers, which a FROM would run")
    return local.id


def _label_keys(created_by: str) -> set[str] | None:
    """The keys a `LABEL` history entry sets; None when it is something else or unclear. (A
    value with a space could make a word look like another key: never one key fewer.)"""
    _shell, sep, rest = created_by.partition(_LABEL_STEP)
    if not sep:
        return None
    words = rest.strip().split(" ")
    if not words or any("=" not in w for w in words):
        return None
    return {w.split("=", 1)[0].strip('"') for w in words}


def _check_prediction(project: Project, spec: ImageSpec, plan: ImagePlan,
                      resolver: Resolver) -> None:
    """The plan made again, as the build would make it now: same steps, all cached, ending
    on the same image."""
    from devsync.model.classic import BuildSimulator
    from devsync.model.dockerfiles import parse_file
    from devsync.ops.contexts import save_digests, scan_with_cache

    reuse = plan.reuse
    assert reuse is not None
    try:
        context = scan_with_cache(spec)
        df = parse_file(spec.dockerfile, spec.rel_dockerfile(project.root))
        sim = BuildSimulator(df, context=context, images=resolver.base,
                             sources=[reuse.source], build_args=spec.build_args,
                             target=spec.target, flavor=plan.flavor,
                             hash_after_miss=False).run()
    except DevsyncError as exc:
        raise _NotProven(f"the plan cannot be made again ({exc.message})") from exc
    save_digests(context)
    planned = [s.created_by for s in plan.steps if s.kind not in ("skip", "meta")]
    now = [s.created_by for s in sim.steps]
    if sim.whole_reuse({reuse.ref: reuse.source}) != reuse or now != planned:
        raise _NotProven("the files or the Dockerfile changed since the plan")


def _make(engine: Engine, spec: ImageSpec, source_id: str, labels: Mapping[str, str],
          labels_in_dockerfile: bool, first_label_index: int,
          cancel: threading.Event | None) -> tuple[str, list[Event]]:
    """Build `FROM source_id` + the labels from a one-file context, untagged: its ID and the
    events of its label steps, numbered after the Dockerfile's own steps (and the engine's
    warnings, as a full build would say them)."""
    from devsync.model.labelstep import label_instruction

    lines = [f"FROM {source_id}"]
    if labels_in_dockerfile:
        lines.append(label_instruction(labels))
    tar = _one_file_tar("Dockerfile", ("\n".join(lines) + "\n").encode())
    label_events: list[Event] = []
    built: ImageBuilt | None = None
    try:
        for event in engine.build(tar, dockerfile="Dockerfile", tag="",
                                  labels=None if labels_in_dockerfile else labels,
                                  image_name=spec.name, cancel=cancel):
            if isinstance(event, StepStarted) and event.index > 0:
                label_events.append(StepStarted(
                    event.image, first_label_index + event.index - 1,
                    first_label_index + event.total - 1, event.instruction, event.line))
            elif isinstance(event, StepFinished) and event.index > 0:
                label_events.append(StepFinished(event.image,
                                                 first_label_index + event.index - 1,
                                                 event.cached, None))
            elif isinstance(event, Warning_):
                label_events.append(event)  # (what the engine says of any build's commit)
            elif isinstance(event, ImageBuilt):
                built = event
    except DevsyncError as exc:
        if cancel is not None and cancel.is_set():
            raise
        raise _NotProven(f"the engine could not make it ({exc.message})") from exc
    if built is None:
        raise _NotProven("the engine made no image")
    return built.image_id, label_events


def _check_result(engine: Engine, image_id: str, layers: tuple[str, ...],
                  labels: Mapping[str, str]) -> None:
    made = engine.image(image_id)
    if made is None or made.diff_ids != layers:
        raise _NotProven("the image made has other layers than the plan predicted")
    if any(made.labels.get(k) != v for k, v in labels.items()):
        raise _NotProven(f"the image made lacks the labels ({json.dumps(made.labels)})")


def _one_file_tar(name: str, content: bytes) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(content))
    buf.seek(0)
    return buf
