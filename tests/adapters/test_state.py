"""devsync.adapters.state: layout, tolerant loading, atomic locked updates, the operation lock."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devsync.adapters import state
from devsync.errors import StateLockedError
from devsync.prompt import statestore


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(d))
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    return r


def _image(name: str = "app") -> state.ImageRecord:
    return state.ImageRecord(
        name=name, tag=f"{name}:dev", dockerfile="Dockerfile", deployed_ref=f"reg/{name}:1.0.7",
        deployed_digest="sha256:" + "a" * 64, local_image_id="sha256:" + "b" * 64,
        synced_revision="c" * 40, synced_at=1700000000.5, status=state.STATUS_IN_SYNC,
        reason="synced", line="", watched={"Dockerfile": "d" * 64},
    )


# -- where state lives ---------------------------------------------------------------------


def test_state_dir_override_and_layout(root: Path, state_dir: Path) -> None:
    assert statestore.state_dir() == str(state_dir)
    state.update(root, lambda s: s.images.update(app=_image()))
    key = statestore.repo_key(root)
    assert len(key) == 16
    assert (state_dir / "repos" / f"{key}.json").is_file()
    assert (state_dir / "locks" / f"{key}.lock").exists()
    assert (state_dir / "repos").stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (state_dir / "repos").iterdir()) == [f"{key}.json"]


def test_key_uses_real_path(root: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(root)
    assert statestore.repo_key(link) == statestore.repo_key(root)
    assert statestore.repo_key(root) != statestore.repo_key(tmp_path)


# -- loading -------------------------------------------------------------------------------


def test_missing_file_is_empty_state(root: Path) -> None:
    result = state.load(root)
    assert result.problem is None and not result.read_only
    assert result.state.images == {} and result.state.check is None
    assert result.state.root == os.path.realpath(root)
    assert not Path(statestore.state_path(root)).exists()  # loading writes nothing


def test_round_trip_and_unknown_keys_survive(root: Path) -> None:
    check = state.CheckRecord(fingerprint="f", stats={"Dockerfile": [1, 2, 3]},
                              line="devsync: x", stale=True, computed_at=5.0)

    def mutate(s: state.RepoState) -> None:
        s.images["app"] = _image()
        s.notes["last"] = {"k": 1}

    state.update(root, mutate)
    state.update(root, lambda s: setattr(s, "check", check))
    path = Path(statestore.state_path(root))
    doc = json.loads(path.read_text())
    doc["from_the_future"] = [1, 2]
    doc["images"]["app"]["new_field"] = "kept"
    path.write_text(json.dumps(doc))

    loaded = state.load(root).state
    assert loaded.images["app"].watched == {"Dockerfile": "d" * 64}
    assert loaded.images["app"].synced_at == 1700000000.5
    assert loaded.check == check
    assert loaded.notes == {"last": {"k": 1}}

    state.update(root, lambda s: setattr(s, "registry_checked_at", 9.0))
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert doc["from_the_future"] == [1, 2]
    assert doc["images"]["app"]["new_field"] == "kept"
    assert doc["registry_checked_at"] == 9.0


@pytest.mark.parametrize("content", [
    b"{not json",
    b"",
    b"\xff\xfe garbage",
    b"[1, 2, 3]",
    b'{"version": "1"}',
    b'{"version": 1, "images": []}',
    b'{"version": 1, "images": {"app": {"watched": {"Dockerfile": 5}}}}',
    b'{"version": 1, "check": {"fingerprint": "x", "stats": {"a": [1, 2]}}}',
])
def test_corrupt_file_is_moved_aside(root: Path, content: bytes) -> None:
    path = Path(statestore.state_path(root))
    path.parent.mkdir(parents=True)
    path.write_bytes(content)

    result = state.load(root)
    assert result.problem is not None and "moved it to" in result.problem
    assert not result.read_only
    assert result.state.images == {}
    assert not path.exists()
    aside = list(path.parent.glob(path.name + ".corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content  # nothing lost

    state.update(root, lambda s: s.images.update(app=_image()))
    assert state.load(root).state.images["app"].name == "app"


def test_update_moves_corrupt_file_aside_too(root: Path) -> None:
    path = Path(statestore.state_path(root))
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    state.update(root, lambda s: s.images.update(app=_image()))
    assert len(list(path.parent.glob("*.corrupt-*"))) == 1
    assert state.load(root).problem is None


def test_future_version_is_read_only(root: Path) -> None:
    path = Path(statestore.state_path(root))
    path.parent.mkdir(parents=True)
    future = json.dumps({"version": 2, "images": "a new shape"}).encode()
    path.write_bytes(future)

    result = state.load(root)
    assert result.read_only
    assert result.problem is not None and "newer devsync" in result.problem
    assert result.state.images == {}
    with pytest.raises(state.StateReadOnlyError):
        state.update(root, lambda s: s.images.update(app=_image()))
    assert path.read_bytes() == future
    assert list(path.parent.iterdir()) == [path]


def test_failed_mutation_writes_nothing(root: Path) -> None:
    state.update(root, lambda s: s.images.update(app=_image()))
    before = Path(statestore.state_path(root)).read_bytes()

    def boom(s: state.RepoState) -> None:
        s.images.clear()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        state.update(root, boom)
    assert Path(statestore.state_path(root)).read_bytes() == before


def test_image_changes_drop_the_cached_prompt_answer(root: Path) -> None:
    check = state.CheckRecord(fingerprint="f", stats={}, line="", stale=False, computed_at=1.0)
    state.update(root, lambda s: s.images.update(app=_image()))
    state.update(root, lambda s: setattr(s, "check", check))
    state.update(root, lambda s: setattr(s, "registry_checked_at", 3.0))
    assert state.load(root).state.check == check  # unrelated change keeps it

    def newer_deployed(s: state.RepoState) -> None:
        s.images["app"].line = "devsync: app 1.0.8 is deployed, you have 1.0.7 - run devsync sync"

    state.update(root, newer_deployed)
    assert state.load(root).state.check is None


# -- locking -------------------------------------------------------------------------------

_HAMMER = textwrap.dedent("""
    import json, sys
    from devsync.adapters import state
    from devsync.prompt import statestore
    root, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def mutate(s):
        s.notes["count"] = s.notes.get("count", 0) + 1
        s.notes.setdefault("seen", []).append(who)
    for i in range(n):
        state.update(root, mutate, timeout=60)
        doc, problem = statestore.read_raw(root)  # readers never see a partial file
        assert problem is None and doc["notes"]["count"] >= i + 1, problem
""")


def test_concurrent_writers_lose_nothing(root: Path, tmp_path: Path) -> None:
    writers, rounds = 5, 40
    script = tmp_path / "hammer.py"
    script.write_text(_HAMMER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(root), f"w{i}", str(rounds)],
                         stderr=subprocess.PIPE)
        for i in range(writers)
    ]
    path = Path(statestore.state_path(root))
    reads = 0
    while any(p.poll() is None for p in procs):
        if path.exists():
            json.loads(path.read_bytes())  # always complete, valid JSON
            reads += 1
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err.decode()
    notes = state.load(root).state.notes
    assert notes["count"] == writers * rounds
    assert sorted(set(notes["seen"])) == [f"w{i}" for i in range(writers)]
    assert all(notes["seen"].count(f"w{i}") == rounds for i in range(writers))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    assert reads > 0


def test_update_does_not_wait_when_told_not_to(root: Path) -> None:
    with (statestore.flocked(statestore.lock_path(root), timeout=None),
          pytest.raises(StateLockedError)):
        state.update(root, lambda s: None, timeout=0)
    state.update(root, lambda s: None, timeout=0)


_HOLDER = textwrap.dedent("""
    import sys, time
    from devsync.adapters import state
    root, seconds = sys.argv[1], float(sys.argv[2])
    with state.operation_lock(root, "syncing"):
        print("locked", flush=True)
        time.sleep(seconds)
""")


def _start_holder(root: Path, tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_operation_lock_names_the_holder(root: Path, tmp_path: Path) -> None:
    holder = _start_holder(root, tmp_path, 60)
    try:
        with pytest.raises(StateLockedError) as info, state.operation_lock(root, "syncing"):
            pytest.fail("got a lock another process holds")
        message = info.value.message
        assert message.startswith("another devsync is already syncing this repository (pid ")
        assert f"pid {holder.pid}, started " in message
        assert re.search(r"started \d\d:\d\d\)$", message), message
        assert info.value.hint is not None and str(holder.pid) in info.value.hint
        # the short state lock is separate: updates still work during a long sync
        state.update(root, lambda s: s.notes.update(during="sync"))
    finally:
        holder.kill()
        holder.wait()


def test_operation_lock_waits_for_the_holder(root: Path, tmp_path: Path) -> None:
    holder = _start_holder(root, tmp_path, 0.3)
    try:
        with state.operation_lock(root, "syncing", wait=60):
            got_it = True
        assert got_it
        assert holder.wait() == 0
    finally:
        holder.kill()
        holder.wait()


def test_dead_holder_does_not_block(root: Path, tmp_path: Path) -> None:
    holder = _start_holder(root, tmp_path, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with state.operation_lock(root, "syncing"):
        pass


def test_operation_lock_in_one_process_is_exclusive(root: Path) -> None:
    with (state.operation_lock(root, "syncing"),
          pytest.raises(StateLockedError, match="already syncing"),
          state.operation_lock(root, "refreshing")):
        pytest.fail("got a lock this process already holds")
    with state.operation_lock(root, "refreshing"):
        pass


def test_operation_names_read_naturally(root: Path) -> None:
    with (state.operation_lock(root, "sync"), pytest.raises(StateLockedError) as info,
          state.operation_lock(root, "refresh")):
        pytest.fail("got a lock this process already holds")
    assert info.value.message.startswith("another devsync is already syncing this repository")


def test_errors_inside_the_lock_propagate(root: Path) -> None:
    with pytest.raises(KeyError), state.operation_lock(root, "syncing"):
        raise KeyError("x")
    with state.operation_lock(root, "syncing"):
        pass
