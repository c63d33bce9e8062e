"""devsync.prompt.statestore: where state lives (platformdirs' answer, without platformdirs),
the prompt's JSON read without `json`, and the one locked read-modify-write."""

from __future__ import annotations

import json
import math
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.prompt import statestore
from tests.support.startup import imported_modules

# -- where state lives ---------------------------------------------------------------------

_HOMES = ["/home/ana", "/home/ana/", "/", "relative/home", "", None]
_XDGS = [None, "", "/tmp/some-xdg-state", "/tmp/trailing/", "relative/ignored"]


@pytest.mark.parametrize("home", _HOMES)
@pytest.mark.parametrize("xdg", _XDGS)
@pytest.mark.parametrize("convention", ["linux", "darwin"])
def test_default_state_dir_is_platformdirs_answer(
    monkeypatch: pytest.MonkeyPatch, convention: str, home: str | None, xdg: str | None
) -> None:
    from platformdirs.macos import MacOS
    from platformdirs.unix import Unix

    for name, value in (("HOME", home), ("XDG_STATE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    expected = (Unix if convention == "linux" else MacOS)("devsync").user_state_dir
    assert statestore.default_state_dir(os.environ, convention) == expected


def test_state_dir_is_the_platform_default_unless_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import platformdirs

    monkeypatch.delenv("DEVSYNC_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert statestore.state_dir() == platformdirs.user_state_dir("devsync")
    monkeypatch.setenv("DEVSYNC_STATE_DIR", "rel/state")
    assert statestore.state_dir() == os.path.abspath("rel/state")


def test_no_home_at_all_is_an_os_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "relative")
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    with pytest.raises(OSError, match="home directory"):
        statestore.default_state_dir(os.environ, "linux")


def test_reading_state_imports_no_json_and_no_platformdirs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    env = dict(os.environ, DEVSYNC_STATE_DIR=str(tmp_path / "state"))
    statestore_doc = {"app": {"watched": {}}}
    code = ("import sys; from devsync.prompt import statestore as s; "
            f"s.update_raw(sys.argv[1], lambda d: d.update(images={statestore_doc!r}), "
            "timeout=None)")
    subprocess.run([sys.executable, "-c", code, str(root)], env=env, check=True)
    code = ("import sys; from devsync.prompt import statestore as s; "
            "doc, problem = s.read_raw(sys.argv[1]); assert problem is None, problem; "
            f"assert doc['images'] == {statestore_doc!r}, doc")
    loaded = imported_modules(code, str(root), env=env)
    assert "devsync.prompt.statestore" in loaded
    for heavy in ("json", "re", "enum", "typing", "platformdirs", "contextlib", "fcntl",
                  "hashlib", "collections"):
        assert heavy not in loaded, loaded


# -- decoding without `json` ---------------------------------------------------------------

_DOCS = [
    {"version": 1, "root": "/r", "images": {}},
    {"version": 1, "x": [1, 2.5, -3e-7, True, False, None, "é\u2028\U0001f600", {"a": []}],
     "big": 10**30, "esc": "quote \" backslash \\ tab \t nul \x00"},
    {"version": 1, "nan": math.inf},
]


@pytest.mark.parametrize("doc", _DOCS)
def test_decode_reads_what_encode_and_json_write(doc: dict[str, object]) -> None:
    for data in (statestore.encode(doc), json.dumps(doc).encode(),
                 json.dumps(doc, ensure_ascii=False).encode(), b"\n " + json.dumps(doc).encode()
                 + b" \r\n"):
        assert statestore.decode(data) == (json.loads(data), None)


@pytest.mark.parametrize("data", [
    b"", b"{", b'{"version": 1', b'{"version": 1} trailing', b'{"version": 1}{}', b"[1]",
    b'"text"', b"\xff\xfe", b'{"version": "1"}', b'{"version": 0}', b"[" * 100_000,
    b'{"version": 1, "a": tru}', b'{"version": 1, "a": 01}', b"\xef\xbb\xbf{}",
])
def test_decode_says_corrupt_like_json_would(data: bytes) -> None:
    assert statestore.decode(data) == (None, statestore.CORRUPT)


_MORE_DOCS = [
    {}, {"version": 1, "e": {}, "l": [], "t": (1, "a"), "n": [[], [{}], [[1]]]},
    {"version": 1, "f": [0.1, 1e100, -0.0, 5e-324, float("nan"), float("-inf"), 2**70, -1]},
    {"version": 1, "z": 1, "a": {"b": {"c": {"d": ["deep", {"e": None}]}}}, "M": "upper"},
    {"version": 1, "keys": {"\u00e9": 1, "\x00": 2, "": 3, "a\"b": 4}},
]


@pytest.mark.parametrize("doc", _DOCS + _MORE_DOCS)
def test_encode_is_json_dumps_byte_for_byte(doc: dict[str, object]) -> None:
    assert statestore.encode(doc) == (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


@pytest.mark.parametrize("doc", [{"version": 1, "k": {1: "int key"}}, {"version": 1, "s": {1}}])
def test_encode_leaves_what_json_would_refuse_or_convert_to_json(doc: dict[str, object]) -> None:
    try:
        expected: bytes | type[Exception] = (json.dumps(doc, indent=2, sort_keys=True)
                                             + "\n").encode()
    except TypeError:
        expected = TypeError
    if expected is TypeError:
        with pytest.raises(TypeError):
            statestore.encode(doc)
    else:
        assert statestore.encode(doc) == expected


def test_decode_refuses_a_newer_schema() -> None:
    assert statestore.decode(b'{"version": 99}') == (None, statestore.FUTURE)


# -- the one read-modify-write --------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    r = tmp_path / "repo"
    r.mkdir()
    return r


def test_update_raw_starts_a_missing_document(root: Path) -> None:
    doc = statestore.update_raw(root, lambda d: d.update(notes={"n": 1}), timeout=0)
    assert doc["version"] == statestore.SCHEMA_VERSION
    assert doc["root"] == os.path.realpath(root)
    assert isinstance(doc["updated_at"], float) and doc["notes"] == {"n": 1}
    path = Path(statestore.state_path(root))
    assert json.loads(path.read_bytes()) == doc
    assert path.read_bytes() == statestore.encode(doc)
    assert path.stat().st_mode & 0o777 == 0o600


def test_update_raw_keeps_what_it_does_not_know(root: Path) -> None:
    statestore.update_raw(root, lambda d: d.update(future_key={"a": [1]}), timeout=0)
    doc = statestore.update_raw(root, lambda d: d.update(other=2), timeout=0)
    assert doc["future_key"] == {"a": [1]} and doc["other"] == 2


def test_update_raw_writes_nothing_when_mutate_raises(root: Path) -> None:
    statestore.update_raw(root, lambda d: d.update(n=1), timeout=0)
    path = Path(statestore.state_path(root))
    before = path.read_bytes()

    def boom(doc: dict[str, object]) -> None:
        doc["n"] = 2
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        statestore.update_raw(root, boom, timeout=0)
    assert path.read_bytes() == before


def test_update_raw_moves_a_corrupt_file_aside(root: Path) -> None:
    path = Path(statestore.state_path(root))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{not json")
    doc = statestore.update_raw(root, lambda d: None, timeout=0)
    assert set(doc) == {"version", "root", "updated_at"}
    moved = [p for p in path.parent.iterdir() if ".corrupt-" in p.name]
    assert len(moved) == 1 and moved[0].read_bytes() == b"{not json"


def test_update_raw_leaves_a_newer_devsyncs_file_alone(root: Path) -> None:
    path = Path(statestore.state_path(root))
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"version": 99}')
    with pytest.raises(statestore.FutureState):
        statestore.update_raw(root, lambda d: d.update(n=1), timeout=0)
    assert path.read_bytes() == b'{"version": 99}'


def test_update_raw_does_not_wait_when_told_not_to(root: Path) -> None:
    with statestore.flocked(statestore.lock_path(root), timeout=None, holder={"pid": 1}):
        with pytest.raises(statestore.LockBusy) as busy:
            statestore.update_raw(root, lambda d: None, timeout=0)
        assert busy.value.holder == {"pid": 1}
    statestore.update_raw(root, lambda d: None, timeout=0)
