"""The docker CLI that builds with BuildKit, and running its builds as devsync's own.

BuildKit keys `COPY .` by the context root as it reached the daemon, and the docker CLI's
session gives another root than the Engine API's request body (FINDINGS 3.4): a deployed
image built with the CLI (or buildx, or build-push-action) has its `COPY .` reused only by a
build that goes through the CLI as well. Two kinds of CLI can do that:

* any docker CLI with a working buildx plugin: `docker buildx build --load`;
* a docker CLI older than 23 (Debian's docker.io 20.10 is one): its built-in BuildKit client,
  `DOCKER_BUILDKIT=1 docker build`. From 23 on, `docker build` needs buildx for BuildKit.

`find_buildkit_cli` picks one: the CLI named by `DEVSYNC_DOCKER_CLI`, else by `.devsync.toml`
(`[devsync] docker_cli`), else the first `docker` on PATH with buildx, else the first one
older than 23. `CLIBuild` runs one build in a process group of its own, so that a cancel, or
Ctrl-C in the terminal (which reaches devsync only), stops it and everything it started.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devsync.errors import InterruptedError_

ENV_VAR = "DEVSYNC_DOCKER_CLI"
_NONE = ("none", "off", "no")  # DEVSYNC_DOCKER_CLI=none: never build through a CLI
_PROBE_TIMEOUT = 10.0
_VERSION = re.compile(r"version\s+v?(\d+)\.(\d+)(?:\.(\d+))?", re.IGNORECASE)
_BUILDX_VERSION = re.compile(r"\bv?(\d+)\.(\d+)(?:\.(\d+))?")
# buildx prints its progress as JSON lines (`--progress=rawjson`) from this version on
_RAWJSON_SINCE = (0, 12)
# how long a cancelled CLI build gets to stop its session before it is killed
_STOP_GRACE = 5.0


@dataclass(frozen=True)
class DockerCLI:
    """A docker CLI that can build with BuildKit: `buildx` is its plugin's version, or ""
    when it builds with its built-in client (`DOCKER_BUILDKIT=1 docker build`)."""

    path: str
    version: str
    buildx: str = ""

    @property
    def kind(self) -> str:
        return "buildx" if self.buildx else "builtin"

    @property
    def progress(self) -> str:
        """The `--progress` mode devsync reads: JSON lines where buildx has them, else the
        plain text every BuildKit client prints."""
        if self.buildx and _version_tuple(self.buildx, _BUILDX_VERSION) >= _RAWJSON_SINCE:
            return "rawjson"
        return "plain"

    def describe(self) -> str:
        what = f"buildx {self.buildx}" if self.buildx else "built-in BuildKit"
        return f"{self.path} {self.version} ({what})"


@dataclass(frozen=True)
class CLIChoice:
    """What `find_buildkit_cli` found: the CLI, or None and why not (one line)."""

    cli: DockerCLI | None
    reason: str = ""


def find_buildkit_cli(configured: str | None = None) -> CLIChoice:
    """The docker CLI devsync builds through for a BuildKit build that needs a session.

    `configured` is `.devsync.toml`'s `docker_cli`; `DEVSYNC_DOCKER_CLI` wins over it. Either
    may name a program on PATH or a path, or say "none". Answers are remembered for the
    process (each probe runs the CLI once or twice).
    """
    override = os.environ.get(ENV_VAR, "").strip()
    source = ENV_VAR
    if not override and configured:
        override, source = configured.strip(), ".devsync.toml docker_cli"
    return _find(override, source, os.environ.get("PATH", ""))


_found: dict[tuple[str, str, str], CLIChoice] = {}
_found_lock = threading.Lock()


def _find(override: str, source: str, path_env: str) -> CLIChoice:
    key = (override, source, path_env)
    with _found_lock:
        if key in _found:
            return _found[key]
    choice = _search(override, source, path_env)
    with _found_lock:
        _found[key] = choice
    return choice


def forget_found() -> None:
    """Forget what `find_buildkit_cli` found (tests change PATH and the CLIs on it)."""
    with _found_lock:
        _found.clear()


def _search(override: str, source: str, path_env: str) -> CLIChoice:
    if override:
        if override.lower() in _NONE:
            return CLIChoice(None, f"{source} says not to build through a docker CLI")
        exe = shutil.which(override, path=path_env) if "/" not in override else override
        if exe is None or not os.access(exe, os.X_OK):
            return CLIChoice(None, f"{source} names {override}, which is not an executable")
        cli, why = _probe(exe)
        return CLIChoice(cli, "" if cli else f"{source} names {override}: {why}")
    candidates = _on_path("docker", path_env)
    if not candidates:
        return CLIChoice(None, "there is no docker CLI on PATH")
    probed = [(exe, *_probe(exe)) for exe in candidates]
    for wanted in ("buildx", "builtin"):
        for _exe, cli, _why in probed:
            if cli is not None and cli.kind == wanted:
                return CLIChoice(cli)
    reasons = "; ".join(f"{exe}: {why}" for exe, _cli, why in probed)
    return CLIChoice(None, f"no docker CLI on PATH can build with BuildKit ({reasons})")


def _on_path(name: str, path_env: str) -> list[str]:
    """Every executable `name` on PATH, in PATH order, each file once."""
    out: list[str] = []
    seen: set[str] = set()
    for folder in path_env.split(os.pathsep):
        if not folder:
            continue
        exe = os.path.join(folder, name)
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            real = os.path.realpath(exe)
            if real not in seen:
                seen.add(real)
                out.append(exe)
    return out


# where a docker CLI finds its plugins (buildx): a plugin added or removed changes the answer
_PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
                "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
                "/usr/libexec/docker/cli-plugins")
_PROBES_FILE = "docker-cli-probes.json"


def _probe(exe: str) -> tuple[DockerCLI | None, str]:
    """`_run_probe`, remembered on disk (devsync's cache dir) while the executable and the
    plugin folders are unchanged: a probe runs the CLI twice, some 0.2-0.4 s."""
    import json

    from devsync.adapters.hashcache import cache_dir

    try:
        st = os.stat(exe)
        dirs = [os.path.expanduser(d) for d in _PLUGIN_DIRS]
        if os.environ.get("DOCKER_CONFIG"):
            dirs.append(os.path.join(os.environ["DOCKER_CONFIG"], "cli-plugins"))
        plugins = [os.stat(d).st_mtime_ns if os.path.isdir(d) else 0 for d in dirs]
    except OSError:
        return _run_probe(exe)
    key = json.dumps([os.path.realpath(exe), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev,
                      dirs, plugins])
    path = os.path.join(cache_dir(), _PROBES_FILE)
    known: dict[str, list[str]] = {}
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f)
        if isinstance(loaded, dict):
            known = loaded
    found = known.get(key)
    if isinstance(found, list) and len(found) == 3 and all(isinstance(x, str) for x in found):
        kind, first, second = found
        if kind == "cli":
            return DockerCLI(exe, first, second), ""
        if kind == "none":
            return None, first
    cli, why = _run_probe(exe)
    known.pop(key, None)
    known[key] = ["cli", cli.version, cli.buildx] if cli else ["none", why, ""]
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(dict(list(known.items())[-20:]), f)
        os.replace(tmp, path)
    return cli, why


def _run_probe(exe: str) -> tuple[DockerCLI | None, str]:
    """(the CLI, "") when `exe` builds with BuildKit, else (None, why not)."""
    version_text = _run_quiet([exe, "--version"])
    if version_text is None:
        return None, "does not run"
    version = _VERSION.search(version_text)
    if version is None:
        return None, f"is not a docker CLI ({version_text.strip()[:60]!r})"
    client = version_text.split("version", 1)[-1].strip().split(",", 1)[0].strip()
    buildx_text = _run_quiet([exe, "buildx", "version"])
    if buildx_text:
        found = _BUILDX_VERSION.search(buildx_text.split(" ", 1)[-1])
        return DockerCLI(exe, client, found.group(0).lstrip("v") if found else "?"), ""
    major = int(version.group(1))
    if 18 <= major < 23:
        return DockerCLI(exe, client), ""
    if major >= 23:
        return None, f"docker {client} builds with BuildKit only through buildx, not installed"
    return None, f"docker {client} is too old for BuildKit"


def _run_quiet(argv: Sequence[str]) -> str | None:
    """The output of a probe; None when it fails. The CLI must not pick up a builder
    setting of the environment: only its answer matters."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_BUILDKIT"}
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=env,
                              timeout=_PROBE_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout


def _version_tuple(text: str, pattern: re.Pattern[str]) -> tuple[int, int]:
    m = pattern.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class CLIBuildRequest:
    """One `docker build` as devsync runs it: never tagged by the CLI (`--iidfile` says what
    was built; the caller tags it once the whole build succeeded)."""

    context_dir: Path
    dockerfile: Path
    cache_from: Sequence[str] = ()
    build_args: Mapping[str, str] | None = None
    labels: Mapping[str, str] | None = None
    target: str | None = None


def cli_build_argv(cli: DockerCLI, request: CLIBuildRequest, iidfile: Path, *,
                   builder: str = "default") -> list[str]:
    """The command line; `builder` is the buildx builder of the engine devsync talks to (the
    docker driver is named after the Docker context)."""
    if cli.buildx:
        argv = [cli.path, "buildx", "build", "--builder", builder, "--load"]
    else:
        argv = [cli.path, "build"]
    argv += [f"--progress={cli.progress}", "--iidfile", str(iidfile),
             "-f", str(request.dockerfile)]
    for ref in request.cache_from:
        argv += ["--cache-from", ref]
    for name, value in (request.build_args or {}).items():
        argv += ["--build-arg", f"{name}={value}"]
    for name, value in (request.labels or {}).items():
        argv += ["--label", f"{name}={value}"]
    if request.target:
        argv += ["--target", request.target]
    argv.append(str(request.context_dir))
    return argv


class CLIBuild:
    """A running CLI build: its output lines as they come, cancellable.

    The process runs in a session (and process group) of its own: Ctrl-C in the terminal
    reaches only devsync, which then stops the whole group; so does a set `cancel`. Stopping
    is SIGINT first (the CLI cancels its BuildKit session, and the daemon the build), SIGKILL
    after a grace period.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *,
                 cancel: threading.Event | None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self._cancel = cancel
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.tail: list[str] = []  # the last lines, for a failure's message
        self.proc = subprocess.Popen(
            self.argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="devsync-cli-build",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        finally:
            self._lines.put(None)

    def lines(self) -> Iterator[str]:
        """The output, line by line; raises InterruptedError_ once a cancel stopped it."""
        try:
            while True:
                if self._cancel is not None and self._cancel.is_set():
                    self.stop()
                    raise InterruptedError_("build cancelled; nothing was tagged")
                try:
                    line = self._lines.get(timeout=0.1)
                except queue.Empty:
                    continue
                if line is None:
                    break
                self.tail = [*self.tail[-39:], line]
                yield line
        except BaseException:
            self.stop()
            raise
        self.proc.wait()
        if self._cancel is not None and self._cancel.is_set():
            raise InterruptedError_("build cancelled; nothing was tagged")

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        """Stop the build and everything it started (idempotent)."""
        if self.proc.returncode is not None:
            return  # reaped: its process group id may belong to someone else by now
        self._signal_group(signal.SIGINT)
        deadline = time.monotonic() + _STOP_GRACE
        while not self._exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        # whatever is left of the group (until the leader is reaped, the id is still ours)
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=_STOP_GRACE)

    def _exited(self) -> bool:
        """Whether the CLI has exited, without reaping it."""
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
