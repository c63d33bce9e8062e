"""The simulator without an engine: what it computes, and what it may skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from devsync.errors import DockerfileError
from devsync.model.classic import BuildSimulator
from devsync.model.context import TarFlavor, scan_context
from devsync.model.dockerfiles import parse_file


def _context(tmp_path: Path, dockerfile: str) -> Path:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    return tmp_path


def _simulate(path: Path, *, hash_after_miss: bool):  # type: ignore[no-untyped-def]
    return BuildSimulator(parse_file(path / "Dockerfile"), context=scan_context(path),
                          images=lambda ref: None, sources=[], flavor=TarFlavor.CLI_MODERN,
                          hash_after_miss=hash_after_miss).run()


def test_copies_after_the_first_miss_go_unhashed_only_when_asked(tmp_path: Path) -> None:
    path = _context(tmp_path, "FROM scratch\nCOPY a.txt /a\nCOPY b.txt /b\n")
    exact = _simulate(path, hash_after_miss=True)
    lazy = _simulate(path, hash_after_miss=False)
    # no cache source: the first COPY misses, and the builder rebuilds the second whatever
    # its files hash to
    assert [s.cached for s in exact.steps[1:]] == [s.cached for s in lazy.steps[1:]] \
        == [False, False]
    assert exact.steps[1].created_by == lazy.steps[1].created_by
    assert "COPY file:" in (lazy.steps[1].created_by or "")
    assert "COPY file:" in (exact.steps[2].created_by or "")
    assert lazy.steps[2].created_by is None
    assert lazy.steps[2].sources == ("b.txt",)


def test_an_unhashed_copy_of_a_missing_file_still_fails_the_plan(tmp_path: Path) -> None:
    path = _context(tmp_path, "FROM scratch\nCOPY a.txt /a\nCOPY missing.txt /m\n")
    with pytest.raises(DockerfileError, match=r"Dockerfile:3: .*missing\.txt"):
        _simulate(path, hash_after_miss=False)


@pytest.mark.parametrize(("dockerfile", "line", "what"), [
    ("FROM scratch\nRUN --mount=type=cache,target=/c true\n", 2, "RUN --mount=type=cache"),
    ("FROM scratch\nCOPY --chmod=0755 a.txt /a\n", 2, "COPY --chmod needs BuildKit"),
])
def test_what_only_buildkit_builds_is_named_not_simulated(
        tmp_path: Path, dockerfile: str, line: int, what: str) -> None:
    """The classic builder rejects these (dockerd: "the --chmod option requires BuildKit"):
    the simulator says so with the line, and the Dockerfile model names the instruction
    (builder = "auto" then chooses BuildKit, devsync.ops.builders)."""
    path = _context(tmp_path, dockerfile)
    found = parse_file(path / "Dockerfile").buildkit_only()
    assert found is not None and found.line == line
    with pytest.raises(DockerfileError, match=rf"Dockerfile:{line}: {what}"):
        _simulate(path, hash_after_miss=True)
    plain = _context(tmp_path, "FROM scratch\nCOPY --chown=1:1 a.txt /a\nRUN true\n")
    assert parse_file(plain / "Dockerfile").buildkit_only() is None
