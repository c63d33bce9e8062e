"""What every fault case needs: devsync run as a user runs it, the checks that nothing was lost,
and the machinery that injects faults for real (a daemon to kill, a registry proxy that fails
or stalls, a socket that never answers).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devsync.devtools import sandbox
from devsync.devtools.sandbox import silent_socket
from devsync.prompt import statestore
from tests.support.cli import devsync
from tests.support.teamrepo import git

__all__ = [
    "DEVSYNC_TIMEOUT", "UNPRIVILEGED", "FlakyProxy", "ShortLivedEngine", "StateDir", "Streamed",
    "clone", "devsync", "devsync_env", "devsync_unprivileged", "expect_error", "expect_ok",
    "foreign_escapes", "git", "registry_link", "silent_socket", "stream_devsync",
    "tagged_images", "tree_snapshot",
]

DEVSYNC_TIMEOUT = 300


# --------------------------------------------------------------------------- running devsync


def devsync_env(*, engine: sandbox.PrivateEngine | None = None, state: Path | None = None,
                env: dict[str, str] | None = None, colour: bool = False) -> dict[str, str]:
    """The environment tests.test_cli.devsync builds, for runs that need a Popen."""
    full = dict(os.environ)
    if engine is not None:
        full.update(engine.env())
    full["DEVSYNC_NO_REFRESH"] = "1"
    if colour:
        full.pop("NO_COLOR", None)
    else:
        full["NO_COLOR"] = "1"
    if state is not None:
        full["DEVSYNC_STATE_DIR"] = str(state)
    full.update(env or {})
    return full


@dataclass
class Streamed:
    """A devsync run whose JSON event stream the test watched (and acted on) line by line."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)


def stream_devsync(cwd: Path, *args: str, env: dict[str, str],
                   on_event: Callable[[dict[str, Any], subprocess.Popen[str]], None]
                   ) -> Streamed:
    """Run `devsync ARGS` (with --json) and call `on_event(event, process)` for each event as
    it arrives: the test injects its fault at the exact point of the run it wants."""
    proc = subprocess.Popen([sys.executable, "-m", "devsync", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    events: list[dict[str, Any]] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            events.append(event)
            on_event(event, proc)
        _, err = proc.communicate(timeout=DEVSYNC_TIMEOUT)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Streamed(proc.returncode, "".join(lines), err, events)


# root reads anything: drop the two capabilities that let it, as an ordinary user has them
UNPRIVILEGED = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                "--bounding-set=-dac_override,-dac_read_search", "--"]


def devsync_unprivileged(cwd: Path, *args: str, engine: sandbox.PrivateEngine | None = None,
                         state: Path | None = None, env: dict[str, str] | None = None
                         ) -> subprocess.CompletedProcess[str]:
    """devsync as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH: mode 000 stops it."""
    full = devsync_env(engine=engine, state=state, env=env)
    return subprocess.run([*UNPRIVILEGED, sys.executable, "-m", "devsync", *args], cwd=cwd,
                          env=full, capture_output=True, text=True, timeout=DEVSYNC_TIMEOUT)


# --------------------------------------------------------------------------- checks


def expect_error(result: Any, exit_code: int, *, contains: str = "") -> str:
    """One clear `devsync: error:` line (hints and warnings aside), `exit_code`, no traceback.

    Returns the error line.
    """
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("devsync: error:")]
    assert len(errors) == 1, result.stderr
    others = [ln for ln in lines if ln not in errors]
    # besides the error: its hint, and warnings said on the way
    assert all(ln.startswith(("  hint: ", "devsync: warning: ")) for ln in others), result.stderr
    line = errors[0]
    assert len(line) < 400, line
    assert contains in line, line
    return line


def expect_ok(result: Any) -> None:
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "devsync: error:" not in result.stderr, result.stderr


def tagged_images(docker: sandbox.PrivateEngine | str) -> dict[str, str]:
    """The engine's tagged images, `repo:tag` -> image ID: what a user calls their images."""
    url = docker if isinstance(docker, str) else docker.url
    env = dict(os.environ, DOCKER_HOST=url)
    env.pop("DOCKER_CONTEXT", None)
    out = subprocess.run(["docker", "images", "--no-trunc", "--format",
                          "{{.Repository}}:{{.Tag}} {{.ID}}"], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    images = {}
    for line in out.splitlines():
        ref, _, image_id = line.partition(" ")
        if "<none>" not in ref:
            images[ref] = image_id
    return images


@dataclass
class StateDir:
    """devsync's state directory of one test: snapshots and validity."""

    path: Path

    def files(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        if not self.path.exists():
            return out
        for p in sorted(self.path.rglob("*")):
            if p.is_file() and p.parent.name != "locks":
                out[p.relative_to(self.path).as_posix()] = p.read_bytes()
        return out

    def documents(self) -> dict[str, bytes]:
        return {k: v for k, v in self.files().items()
                if k.startswith("repos/") and k.endswith(".json")}

    def valid(self) -> bool:
        """Every state document parses and has a version devsync understands."""
        docs = self.documents()
        return bool(docs) and all(statestore.decode(data)[1] is None for data in docs.values())

    def repo_file(self, root: Path) -> Path:
        return self.path / "repos" / f"{statestore.repo_key(root)}.json"


def tree_snapshot(root: Path, *, exclude: tuple[Path, ...] = ()) -> dict[str, str]:
    """Every path under `root` with a hash of its content (links by target), `exclude`d
    subtrees aside: to prove that nothing was written there."""
    out: dict[str, str] = {}
    skip = tuple(os.path.realpath(p) for p in exclude)
    for dirpath, dirnames, filenames in os.walk(root):
        real = os.path.realpath(dirpath)
        if real.startswith(skip):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.realpath(path).startswith(skip):
                continue
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = "link:" + os.readlink(path)
            elif os.path.isfile(path) and not os.path.realpath(path).startswith(skip):
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest() + f" {st.st_mode:o}"
            elif os.path.isdir(path):
                out[rel] = f"dir {st.st_mode:o}"
            else:
                out[rel] = f"special {st.st_mode:o}"
    return out


def clone(src: Path | str, dest: Path, *args: str) -> Path:
    """`git clone` of a team repository: a developer's own checkout."""
    subprocess.run(["git", "clone", "-q", *args, str(src), str(dest)], check=True,
                   capture_output=True, env=dict(os.environ, GIT_CONFIG_NOSYSTEM="1",
                                                 GIT_CONFIG_GLOBAL=os.devnull))
    git(dest, "config", "user.name", "Dev")
    git(dest, "config", "user.email", "dev@example.com")
    return dest


# --------------------------------------------------------------------------- engine faults


class ShortLivedEngine:
    """A dockerd of one test module, to kill, starve of disk and restart (never the shared one).

    With `data_mb` its --data-root is a tmpfs of that size: the engine runs out of disk as a
    developer's laptop does, and `grow()` is the developer freeing space.
    """

    def __init__(self, *, data_mb: int | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="dsf-", dir="/tmp"))  # short socket path
        self.data_mb = data_mb
        self.engine = sandbox.PrivateEngine(self.base / "e")
        self._mounted = False
        self._children: list[int] = []

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def data_root(self) -> Path:
        return self.engine.root / "data"

    def start(self) -> ShortLivedEngine:
        if self.data_mb is not None and not self._mounted:
            self.data_root.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.data_mb}m", "tmpfs",
                            str(self.data_root)], check=True, capture_output=True)
            self._mounted = True
        self.engine = sandbox.PrivateEngine(self.base / "e").start()
        children = Path(f"/proc/{self.engine.pid}/task/{self.engine.pid}/children")
        with contextlib.suppress(OSError):
            self._children += [int(p) for p in children.read_text().split()]
        return self

    def kill(self) -> None:
        """What a crash does: the daemon stops mid-sentence (SIGSTOP so that nothing more
        gets written, then SIGKILL). Its containerd dies with it (dockerd starts it with a
        parent-death signal)."""
        pid = self.engine.pid
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.engine.pid = 0
        self._stop_children()
        # an unreaped containerd still answers kill(pid, 0): the next dockerd would take its
        # pidfile for a live containerd and wait for it forever
        with contextlib.suppress(FileNotFoundError):
            (self.engine.root / "exec" / "containerd" / "containerd.pid").unlink()

    def restart(self) -> None:
        self.kill()
        self.start()

    def grow(self, data_mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={data_mb}m", str(self.data_root)],
                       check=True, capture_output=True)

    def close(self) -> None:
        self.engine.stop()
        self._stop_children()
        self._stop_shims()
        self._unmount_leftovers()
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.data_root)], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def _stop_children(self) -> None:
        for pid in self._children:
            _stop(pid)
        self._children = []

    def _stop_shims(self) -> None:
        # containerd shims of containers this engine ran (a build's RUN step interrupted by
        # a crash): found by this engine's own root in their command line
        marker = str(self.engine.root).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and b"containerd-shim" in cmdline:
                _stop(int(entry.name))

    def _unmount_leftovers(self) -> None:
        # overlay and bind mounts a killed daemon leaves under its roots (never our tmpfs)
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        prefix = str(self.engine.root) + "/"
        points = [m.split()[1] for m in mounts if m.split()[1].startswith(prefix)]
        for point in sorted(points, key=len, reverse=True):
            if self._mounted and point == str(self.data_root):
                continue
            subprocess.run(["umount", "-l", point], capture_output=True)


def _alive(pid: int) -> bool:
    """Running (a zombie, which nobody here may reap, counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def _stop(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`: one process this test started, by its pid."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- registry faults

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authenticate", "proxy-authorization", "content-length"}


class FlakyProxy:
    """A tiny stdlib HTTP server in a thread, in front of a real registry.

    `mode`: "ok" forwards every request; "500" answers HTTP 500 to everything; "slow" accepts
    and answers nothing for `stall` seconds; "lag" forwards, `lag` seconds late. `before` is
    called with (method, path, headers) ahead of forwarding a request: a fault that strikes at
    one exact request (say, the engine's first manifest fetch).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "ok"
        self.lag = 1.0
        self.stall = 120.0
        self.before: Callable[[str, str, dict[str, str]], None] | None = None
        self.requests: list[tuple[str, str, str]] = []  # (method, path, user agent)
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"

    def start(self) -> FlakyProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_GET
            do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host",)}
        self.requests.append((h.command, h.path, headers.get("User-Agent", "")))
        mode = self.mode
        if mode == "slow":
            self._stop.wait(self.stall)
            return
        if mode == "500":
            body = json.dumps({"errors": [{"code": "UNKNOWN",
                                           "message": "internal server error"}]}).encode()
            h.send_response(500)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            return
        if mode == "lag":
            self._stop.wait(self.lag)
        if self.before is not None:
            self.before(h.command, h.path, headers)
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            conn.request(h.command, h.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            h.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    h.send_header(name, value)
            length = resp.getheader("Content-Length") if h.command == "HEAD" else None
            h.send_header("Content-Length", length or str(len(body)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
        except OSError:
            pass  # the client went away (a daemon killed mid-request): nothing to answer
        finally:
            conn.close()


def registry_link(registry: sandbox.PrivateRegistry, repository: str, digest: str) -> Path:
    """Where distribution's filesystem storage keeps the link that makes a manifest exist in a
    repository: delete it and the manifest is gone while its tag is still listed."""
    algo, _, hexpart = digest.partition(":")
    return (registry.root / "data" / "docker" / "registry" / "v2" / "repositories" / repository
            / "_manifests" / "revisions" / algo / hexpart / "link")


_ALLOWED_ESCAPES = re.compile(r"\x1b\[(?:0|1|2|31|32|33)m|\r\x1b\[2K")


def foreign_escapes(text: str) -> list[str]:
    """Escape and C1 control characters in `text` that are not devsync's own colours."""
    rest = _ALLOWED_ESCAPES.sub("", text)
    return [f"{m.start()}:{rest[m.start():m.start() + 12]!r}"
            for m in re.finditer(r"[\x1b\x80-\x9f\x07]", rest)]

BIG_DOCKERFILE = """\
FROM {busybox}
RUN head -c 24000000 /dev/urandom > /big
WORKDIR /app
COPY . /app
RUN sleep 2 && ls -R /app > /files.txt
"""

BIG_CONFIG = """\
[images.app]
dockerfile = "Dockerfile"
deployed = "{repo}"
tag = "{repo}:dev"
"""


@dataclass
class BigShop:
    path: Path
    repo: str  # localhost:PORT/bigshop
    deployed: str  # repo:1.0.0


SMALL_DOCKERFILE = """\
FROM {busybox}
WORKDIR /app
COPY . /app
RUN ls -R /app > /files.txt
"""


def small_repo(path: Path, busybox: str, deployed_repo: str) -> Path:
    """A one-image repository whose deployed images live in `deployed_repo` (.devsync.toml)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile").write_text(SMALL_DOCKERFILE.format(busybox=busybox))
    (path / ".devsync.toml").write_text(BIG_CONFIG.format(repo=deployed_repo))
    (path / ".dockerignore").write_text(".git\n")
    (path / "main.sh").write_text("echo hello\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Initial commit")
    return path


def ci_deploy(engine: sandbox.PrivateEngine, path: Path, ref: str,
              docker_config: Path | None = None) -> str:
    """The team's CI: plain `docker build` with the revision label, then `docker push`."""
    head = git(path, "rev-parse", "HEAD").strip()
    sandbox.docker_cli(engine, "build", "-q", "--label",
                       f"org.opencontainers.image.revision={head}", "-t", ref, ".", cwd=path)
    config = ["--config", str(docker_config)] if docker_config else []
    sandbox.docker_cli(engine, *config, "push", ref)
    return ref


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    """A Docker client config dir (`DOCKER_CONFIG`) holding a login for `host`."""
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


AUTH_USER = "alice"
AUTH_PASSWORD = "Zq7-known-password-for-devsync-faults"
AUTH_WRONG = "Wr0ng-password-for-devsync-faults"


@dataclass
class AuthShop:
    registry: sandbox.PrivateRegistry
    path: Path
    repo: str
    right: Path  # DOCKER_CONFIG with the right password
    wrong: Path  # ... with a wrong one
