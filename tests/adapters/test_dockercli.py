"""Which docker CLI builds with BuildKit, and its builds run as devsync's own (fake CLIs here;
the real ones build in tests/ops/test_buildkit_sync.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsync.adapters.engine import Engine, find_buildkit_cli
from devsync.adapters.engine._dockercli import (
    ENV_VAR,
    CLIBuild,
    CLIBuildRequest,
    DockerCLI,
    cli_build_argv,
    forget_found,
)
from devsync.errors import InterruptedError_
from devsync.model.config import load_config


def fake_docker(folder: Path, version: str, *, buildx: str | None = None) -> Path:
    """A `docker` that answers --version (and `buildx version` when it has the plugin)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "docker"
    buildx_line = (f'if [ "$1" = buildx ] && [ "$2" = version ]; then '
                   f'echo "github.com/docker/buildx v{buildx} abcdef"; exit 0; fi'
                   if buildx else
                   'if [ "$1" = buildx ]; then echo "docker: unknown command: docker buildx" >&2;'
                   ' exit 1; fi')
    exe.write_text(f"""#!/bin/sh
if [ "$1" = --version ]; then echo "Docker version {version}, build 1234567"; exit 0; fi
{buildx_line}
exit 2
""")
    exe.chmod(0o755)
    return exe


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    forget_found()
    yield
    forget_found()


def _path(*folders: Path) -> str:
    return os.pathsep.join(str(f) for f in folders)


def test_a_cli_older_than_23_builds_with_its_own_client(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    new = fake_docker(tmp_path / "local", "28.1.1")
    old = fake_docker(tmp_path / "usr", "20.10.24+dfsg1")
    monkeypatch.setenv("PATH", _path(new.parent, old.parent))
    choice = find_buildkit_cli()
    assert choice.cli == DockerCLI(str(old), "20.10.24+dfsg1")
    assert choice.cli.kind == "builtin" and choice.cli.progress == "plain"


def test_buildx_anywhere_on_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_docker(tmp_path / "a", "20.10.24")
    bx = fake_docker(tmp_path / "b", "28.1.1", buildx="0.12.1")
    monkeypatch.setenv("PATH", _path(old.parent, bx.parent))
    cli = find_buildkit_cli().cli
    assert cli is not None and cli.path == str(bx) and cli.buildx == "0.12.1"
    assert cli.kind == "buildx" and cli.progress == "rawjson"


def test_an_old_buildx_prints_plain_progress(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bx = fake_docker(tmp_path / "b", "24.0.0", buildx="0.10.4")
    monkeypatch.setenv("PATH", _path(bx.parent))
    cli = find_buildkit_cli().cli
    assert cli is not None and cli.progress == "plain"


def test_none_found_says_why_for_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    new = fake_docker(tmp_path / "local", "28.1.1")
    monkeypatch.setenv("PATH", _path(new.parent))
    choice = find_buildkit_cli()
    assert choice.cli is None
    assert "no docker CLI on PATH can build with BuildKit" in choice.reason
    assert f"{new}: docker 28.1.1 builds with BuildKit only through buildx" in choice.reason
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    forget_found()
    assert find_buildkit_cli().reason == "there is no docker CLI on PATH"


def test_the_environment_wins_over_the_config_and_none_means_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_docker(tmp_path / "usr", "20.10.24")
    other = fake_docker(tmp_path / "opt", "19.03.15")
    monkeypatch.setenv("PATH", _path(old.parent))
    cli = find_buildkit_cli(str(other)).cli
    assert cli is not None and cli.path == str(other)
    monkeypatch.setenv(ENV_VAR, str(old))
    cli = find_buildkit_cli(str(other)).cli
    assert cli is not None and cli.path == str(old)
    monkeypatch.setenv(ENV_VAR, "none")
    choice = find_buildkit_cli(str(other))
    assert choice.cli is None
    assert choice.reason == f"{ENV_VAR} says not to build through a docker CLI"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    assert "which is not an executable" in find_buildkit_cli().reason
    monkeypatch.setenv(ENV_VAR, str(fake_docker(tmp_path / "new", "27.0.0")))
    assert "builds with BuildKit only through buildx" in find_buildkit_cli().reason


def test_the_config_names_the_cli(tmp_path: Path) -> None:
    (tmp_path / ".devsync.toml").write_text('[devsync]\ndocker_cli = "/usr/bin/docker"\n')
    config = load_config(tmp_path)
    assert config.docker_cli == "/usr/bin/docker" and not config.warnings


@pytest.mark.skipif(not Path("/usr/bin/docker").exists(), reason="Debian's docker.io CLI")
def test_debian_docker_io_cli_has_builtin_buildkit() -> None:
    cli = find_buildkit_cli("/usr/bin/docker").cli
    assert cli is not None and cli.kind == "builtin" and cli.version.startswith("20.10")


def test_argv_never_tags_and_passes_everything(tmp_path: Path) -> None:
    request = CLIBuildRequest(tmp_path, tmp_path / "Dockerfile", cache_from=["r/app:1"],
                              build_args={"A": "1"}, labels={"l": "v w"}, target="prod")
    argv = cli_build_argv(DockerCLI("/usr/bin/docker", "20.10.24"), request, tmp_path / "iid")
    assert argv == ["/usr/bin/docker", "build", "--progress=plain", "--iidfile",
                    str(tmp_path / "iid"), "-f", str(tmp_path / "Dockerfile"),
                    "--cache-from", "r/app:1", "--build-arg", "A=1", "--label", "l=v w",
                    "--target", "prod", str(tmp_path)]
    assert "-t" not in argv
    bx = cli_build_argv(DockerCLI("/x/docker", "28", "0.12.1"), request, tmp_path / "iid",
                        builder="ctx")
    assert bx[:6] == ["/x/docker", "buildx", "build", "--builder", "ctx", "--load"]
    assert "--progress=rawjson" in bx


def test_cli_environment_names_the_engine_devsync_talks_to() -> None:
    engine = Engine(None, host="unix:///tmp/x.sock", source="DOCKER_HOST",
                    make_client=lambda: None)  # type: ignore[arg-type, return-value]
    env = engine.cli_environment({"DOCKER_CONTEXT": "other", "PATH": "/bin"})
    assert env == {"DOCKER_HOST": "unix:///tmp/x.sock", "PATH": "/bin"}
    engine = Engine(None, host="tcp://h:2376", source="context remote", context_name="remote",
                    make_client=lambda: None)  # type: ignore[arg-type, return-value]
    env = engine.cli_environment({"DOCKER_HOST": "unix:///nope", "PATH": "/bin"})
    assert env == {"DOCKER_CONTEXT": "remote", "PATH": "/bin"}


def _script(tmp_path: Path, body: str) -> list[str]:
    exe = tmp_path / "build.sh"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return [str(exe)]


def test_cli_build_streams_lines(tmp_path: Path) -> None:
    build = CLIBuild(_script(tmp_path, "echo one; echo two >&2; exit 3\n"), os.environ,
                     cancel=None)
    assert list(build.lines()) == ["one", "two"]
    assert build.returncode == 3


def test_cancel_stops_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    argv = _script(tmp_path, f"sleep 60 & echo $! > {pids}; echo started; wait\n")
    cancel = threading.Event()
    build = CLIBuild(argv, os.environ, cancel=cancel)
    lines = build.lines()
    assert next(lines) == "started"
    child = int(pids.read_text())
    cancel.set()
    t0 = time.monotonic()
    with pytest.raises(InterruptedError_):
        next(lines)
    assert time.monotonic() - t0 < 10
    assert build.returncode is not None
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the build's child process outlived the cancel")


def test_ctrl_c_while_reading_stops_the_build(tmp_path: Path) -> None:
    build = CLIBuild(_script(tmp_path, "echo started; sleep 60\n"), os.environ, cancel=None)
    lines = build.lines()
    assert next(lines) == "started"
    lines.close()  # what a KeyboardInterrupt in the consumer does to the generator
    assert build.returncode is not None


def test_a_probe_is_remembered_on_disk_until_the_cli_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSYNC_CACHE_DIR", str(tmp_path / "cache"))
    exe = fake_docker(tmp_path / "usr", "20.10.24")
    runs = tmp_path / "runs"
    text = exe.read_text().replace("#!/bin/sh\n", f"#!/bin/sh\necho x >> {runs}\n", 1)
    exe.write_text(text)
    monkeypatch.setenv("PATH", str(exe.parent))
    assert find_buildkit_cli().cli == DockerCLI(str(exe), "20.10.24")
    probed = runs.read_text().count("x")
    assert probed >= 1
    forget_found()  # (a new process)
    assert find_buildkit_cli().cli == DockerCLI(str(exe), "20.10.24")
    assert runs.read_text().count("x") == probed  # not run again
    # the CLI replaced (another size and mtime): asked again
    exe.write_text(text.replace("20.10.24", "28.1.1"))
    forget_found()
    assert find_buildkit_cli().cli is None
    assert runs.read_text().count("x") > probed
