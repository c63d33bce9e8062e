"""A pull's progress as `TransferProgress` sums the engine's per-layer status lines: the share
done follows what is really done, not the bytes of the layers the engine has sized so far."""

from __future__ import annotations

from devsync.adapters.engine._progress import TransferProgress
from devsync.events import PullProgress, PushProgress

MB = 1_000_000


def _feed(progress: TransferProgress, lines: list[tuple[str, str, int, int]]) -> None:
    for layer, status, current, total in lines:
        for _event in progress.feed(layer, status, {"current": current, "total": total}):
            pass


def test_layers_8_of_14_is_not_100_percent() -> None:
    """What a user saw: 8 of 14 layers there, the three being fetched downloaded but not
    unpacked, three more waiting unsized; bytes_done == bytes_total, the bar read 100%."""
    pull = TransferProgress.pull("shop:1.0.7")
    layers = [f"l{i:02}" for i in range(14)]
    _feed(pull, [(layer, "Pulling fs layer", 0, 0) for layer in layers])
    _feed(pull, [(layer, "Already exists", 0, 0) for layer in layers[:5]])
    for layer in layers[5:8]:
        _feed(pull, [(layer, "Downloading", 4 * MB, 4 * MB), (layer, "Download complete", 0, 0),
                     (layer, "Extracting", 4 * MB, 4 * MB), (layer, "Pull complete", 0, 0)])
    for layer in layers[8:11]:  # the big one among them
        size = 150 * MB if layer == "l08" else 2 * MB
        _feed(pull, [(layer, "Downloading", size, size), (layer, "Download complete", 0, 0)])
    _feed(pull, [(layer, "Waiting", 0, 0) for layer in layers[11:]])
    event = pull.final()
    assert isinstance(event, PullProgress)
    assert (event.layers_done, event.layers_total) == (8, 14)
    assert event.bytes_done == event.bytes_total  # what the bar used to show as 100%
    # sized: 3x4 MB done; 150+2+2 MB downloaded, not unpacked; 3 waiting at the mean (~27 MB)
    mean = (3 * 4 + 154) / 6
    expected = (12 + 154 / 2) / (12 + 154 + 3 * mean)
    assert abs(event.share_done - expected) < 1e-9
    assert 0.35 < event.share_done < 0.40

    # the big layer unpacks halfway, then everything completes: more, then exactly 100%
    _feed(pull, [("l08", "Extracting", 75 * MB, 150 * MB)])
    halfway = pull.final().share_done  # type: ignore[attr-defined]
    assert halfway > event.share_done
    _feed(pull, [(layer, "Pull complete", 0, 0) for layer in layers[8:11]])
    for layer in layers[11:]:
        _feed(pull, [(layer, "Downloading", 1 * MB, 1 * MB), (layer, "Pull complete", 0, 0)])
    done = pull.final()
    assert isinstance(done, PullProgress)
    assert done.layers_done == done.layers_total == 14 and done.share_done == 1.0


def test_a_pull_of_layers_already_here_is_done_only_when_they_all_are() -> None:
    pull = TransferProgress.pull("shop:1.0.7")
    _feed(pull, [("a", "Already exists", 0, 0), ("b", "Pulling fs layer", 0, 0)])
    assert pull.final().share_done == 0.0  # type: ignore[attr-defined]
    _feed(pull, [("b", "Downloading", 1 * MB, 2 * MB)])
    assert pull.final().share_done == 0.25  # type: ignore[attr-defined]


def test_a_push_counts_bytes_sent_and_layers_the_registry_has() -> None:
    push = TransferProgress.push("shop:1.0.8")
    _feed(push, [("a", "Preparing", 0, 0), ("b", "Preparing", 0, 0), ("c", "Preparing", 0, 0),
                 ("a", "Layer already exists", 0, 0), ("b", "Pushing", 3 * MB, 4 * MB)])
    event = push.final()
    assert isinstance(event, PushProgress)
    # b: 3 of 4 MB sent; c not started, counted at b's size
    assert event.share_done == 3 / 8
    _feed(push, [("b", "Pushed", 0, 0), ("c", "Pushed", 0, 0)])
    assert push.final().share_done == 1.0  # type: ignore[attr-defined]


def test_events_made_without_the_adapter_fall_back_to_bytes_then_layers() -> None:
    assert PullProgress("x", 1, 2, 5, 10).share_done == 0.5
    assert PullProgress("x", 1, 4, 0, 0).share_done == 0.25
