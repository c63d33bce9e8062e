"""What a running view's last snapshot rests on outside the repository, looked at cheaply
every few seconds: whether the engine answers, which image each tag names there, and whether
a registry that could not be asked answers again.

The TUI watches the repository's files, but a sync made in another terminal changes only the
engine's images, and an engine or registry coming back changes nothing on disk: without this
the dashboard would go on saying "unknown" or "stale" until the next registry check, minutes
later. One ping, one inspect per image tag and one `/v2/` per offline registry cost a few
milliseconds; the full status is computed again only when one of them changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devsync.errors import DevsyncError

if TYPE_CHECKING:
    from devsync.ops.status import ImageStatus

PULSE_SECONDS = 2.0
_PULSE_TIMEOUT = 2.0  # an engine or registry slower than this is not "back" yet

# what look_again answers: nothing changed; ask the engine again (the status with what the
# registry said kept); ask the registries again too
STILL = ""
LOOK_LOCAL = "local"
LOOK_REGISTRY = "registry"


@dataclass(frozen=True)
class Pulse:
    engine_up: bool
    local_ids: Mapping[str, str | None] = field(default_factory=dict)  # tag -> image ID
    registries_back: tuple[str, ...] = ()  # offline registries that answer again


def take_pulse(tags: Sequence[str], offline_registries: Sequence[str] = (),
               insecure_registries: Sequence[str] = ()) -> Pulse:
    """Ping the engine (as the docker CLI would find it), inspect each tag, and ask each
    registry in `offline_registries` for its `/v2/`. Never raises for the world being down."""
    from devsync.adapters.engine import Engine

    try:
        engine = Engine.connect(timeout=_PULSE_TIMEOUT)
    except DevsyncError:
        return Pulse(engine_up=False, registries_back=_answering(offline_registries,
                                                                 insecure_registries))
    try:
        ids = {tag: engine.image_id(tag) for tag in tags}
    except DevsyncError:
        return Pulse(engine_up=False)
    finally:
        engine.close()
    return Pulse(engine_up=True, local_ids=ids,
                 registries_back=_answering(offline_registries, insecure_registries))


def _answering(hosts: Sequence[str], insecure: Sequence[str]) -> tuple[str, ...]:
    from devsync.adapters.registry import RegistryClient

    back = []
    for host in hosts:
        try:
            RegistryClient(host, insecure=host in insecure, timeout=_PULSE_TIMEOUT).ping()
        except DevsyncError:
            continue
        back.append(host)
    return tuple(back)


def look_again(statuses: Sequence[ImageStatus], engine_problem: str | None,
               pulse: Pulse) -> str:
    """Whether the snapshot `statuses` (taken with `engine_problem`) still holds, given
    `pulse`: STILL, LOOK_LOCAL (the engine came or went, or a tag names another image, as
    after a sync in another terminal) or LOOK_REGISTRY (an offline registry answers again)."""
    if pulse.registries_back:
        return LOOK_REGISTRY
    if pulse.engine_up != (engine_problem is None):
        return LOOK_LOCAL
    if not pulse.engine_up:
        return STILL
    for status in statuses:
        if status.tag in pulse.local_ids and pulse.local_ids[status.tag] != status.local_id:
            return LOOK_LOCAL
    return STILL
