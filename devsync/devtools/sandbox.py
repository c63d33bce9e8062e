"""A private Docker engine and registry on loopback, for tests, benchmarks, screenshots and demos.

Nothing here touches the user's own engine: each `PrivateEngine` has its own data root, exec
root, pidfile and unix socket, and each `PrivateRegistry` its own storage directory and a port
on 127.0.0.1. Only the processes started here are stopped here (by the pids recorded at start).
Starting an engine needs root and Debian's `docker.io`; the registry needs `docker-registry`.

Each engine gets a network bridge of its own (`PrivateBridge`): BuildKit's `RUN` needs a network,
and `dockerd --bridge=none` makes it fail ("network bridge not found"). The bridge has a name
and a /24 no other interface or route on the machine uses (several test sessions run side by
side), the daemon runs with `--iptables=false --ip-masq=false --ip-forward=false`, and only
that bridge is deleted when the engine stops: the host's `docker0`, firewall and sysctls are
never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_PACKAGES = ("docker.io", "docker-registry", "busybox-static", "iproute2")
# Debian's docker-compose 1.29.2: the Compose tests run the real tool against the engine
COMPOSE_PACKAGE = "docker-compose"


class SandboxUnavailable(RuntimeError):
    """The private engine or registry cannot be started on this machine."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise SandboxUnavailable(f"{what} did not come up within {timeout:.0f}s{tail}")


def _stop_pid(pid: int, timeout: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # reap if it is our child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def ensure_system_packages() -> None:
    """Install the engine, registry and busybox from Debian when missing (needs root and apt)."""
    missing = [
        exe for exe in ("dockerd", "docker-registry", "busybox", "ip")
        if shutil.which(exe) is None
    ]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SandboxUnavailable(
            f"missing {', '.join(missing)}; install as root: "
            f"apt-get install -y {' '.join(SYSTEM_PACKAGES)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-q", *SYSTEM_PACKAGES],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SandboxUnavailable(f"apt-get install failed:\n{proc.stdout[-2000:]}{proc.stderr}")

# Private bridges: names start with this, /24s are taken from this range (10.213.0.0/16), and
# a lock file shared by every session on the machine makes "find a free one, create it" atomic.
_BRIDGE_PREFIX = "dsb"
_BRIDGE_RANGE = ipaddress.IPv4Network("10.213.0.0/16")
_BRIDGE_LOCK = Path("/tmp/devsync-sandbox-bridges.lock")
_IFNAMSIZ = 15  # Linux interface names: at most 15 bytes


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ip")
    if exe is None:
        raise SandboxUnavailable("the `ip` tool is missing (apt-get install iproute2)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise SandboxUnavailable(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network an interface address or a route on this machine covers."""
    out: list[ipaddress.IPv4Network] = []
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        words = line.split()
        if "inet" in words:
            with contextlib.suppress(ValueError):
                out.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    for line in _ip("-o", "-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        # "local 127.0.0.0/8 dev lo ...", "192.0.2.0/24 dev eth0 ...", "default via ..."
        if len(words) > 1 and not any(ch.isdigit() for ch in words[0]) \
                and words[0] != "default":
            words = words[1:]
        dest = words[0] if words else ""
        if dest and dest != "default":
            with contextlib.suppress(ValueError):
                out.append(ipaddress.IPv4Network(dest, strict=False))
    return out


def _link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


@dataclass
class PrivateBridge:
    """A Linux bridge of one private engine: its own name and its own /24."""

    name: str
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{next(self.subnet.hosts())}/{self.subnet.prefixlen}")

    @classmethod
    def create(cls, owner: Path) -> PrivateBridge:
        """Make a bridge for the engine rooted at `owner`, its name derived from that path and
        its /24 one that nothing on the machine uses (checked under a machine-wide lock)."""
        seed = hashlib.sha256(str(owner.resolve()).encode()).hexdigest()
        with open(_BRIDGE_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            name = next(
                (n for n in _bridge_names(seed) if not _link_exists(n)), None)
            if name is None:
                raise SandboxUnavailable("no free name for a private bridge")
            used = _networks_in_use()
            start = int(seed[:8], 16)
            subnets = list(_BRIDGE_RANGE.subnets(new_prefix=24))
            for i in range(len(subnets)):
                subnet = subnets[(start + i) % len(subnets)]
                if not any(subnet.overlaps(n) for n in used):
                    break
            else:
                raise SandboxUnavailable(f"no free /24 left in {_BRIDGE_RANGE} for a bridge")
            bridge = cls(name, subnet)
            _ip("link", "add", "name", name, "type", "bridge")
            try:
                _ip("addr", "add", str(bridge.gateway), "dev", name)
                _ip("link", "set", "dev", name, "up")
            except SandboxUnavailable:
                bridge.delete()
                raise
        return bridge

    def delete(self) -> None:
        """Delete this bridge (and nothing else); gone already is fine."""
        if _link_exists(self.name):
            _ip("link", "delete", "dev", self.name, "type", "bridge", check=False)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "subnet": str(self.subnet)})

    @classmethod
    def from_json(cls, text: str) -> PrivateBridge | None:
        try:
            data = json.loads(text)
            return cls(str(data["name"]), ipaddress.IPv4Network(data["subnet"]))
        except (ValueError, KeyError, TypeError):
            return None


def _bridge_names(seed: str) -> Iterator[str]:
    """`dsb` + 10 hex digits of the engine root's hash, then variants of it."""
    stem = _BRIDGE_PREFIX + seed[:_IFNAMSIZ - len(_BRIDGE_PREFIX)]
    yield stem[:_IFNAMSIZ - 2]
    for i in range(1, 256):
        yield stem[:_IFNAMSIZ - 2] + f"{i:02x}"



@dataclass
class PrivateEngine:
    root: Path
    pid: int = 0
    socket_path: Path = field(init=False)
    bridge: PrivateBridge | None = None

    def __post_init__(self) -> None:
        self.socket_path = self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def env(self) -> dict[str, str]:
        """Environment for a `docker` CLI or devsync subprocess that talks to this engine."""
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.url
        env["DOCKER_BUILDKIT"] = "0"
        env.pop("DOCKER_CONTEXT", None)
        return env

    def start(self, timeout: float = 60.0) -> PrivateEngine:
        if os.geteuid() != 0:
            raise SandboxUnavailable("starting a private dockerd needs root")
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise SandboxUnavailable("dockerd is not installed (apt-get install docker.io)")
        # unix socket paths are limited to ~107 bytes
        if len(str(self.socket_path)) > 100:
            raise SandboxUnavailable(f"socket path too long: {self.socket_path}")
        self.root.mkdir(parents=True, exist_ok=True)
        bridge = self._own_bridge()
        log = self.root / "dockerd.log"
        cmd = [
            dockerd,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "dockerd.pid"),
            "-H", self.url,
            # a bridge of its own (BuildKit's RUN needs one); the host's firewall and
            # forwarding settings are left alone
            "--bridge", bridge.name,
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--storage-driver=overlay2",
        ]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = proc.pid
        try:
            _wait_for(self._answers, timeout, "private dockerd", log)
        except SandboxUnavailable:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect(str(self.socket_path))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b"200 OK" in s.recv(256)
        except OSError:
            return False

    def _own_bridge(self) -> PrivateBridge:
        """This engine's bridge: the one recorded under its root when it still exists (a
        restart after a crash), else a new one."""
        record = self.root / "bridge.json"
        if self.bridge is None and record.exists():
            self.bridge = PrivateBridge.from_json(record.read_text())
        if self.bridge is None or not _link_exists(self.bridge.name):
            self.bridge = PrivateBridge.create(self.root)
            record.write_text(self.bridge.to_json())
        return self.bridge

    def stop(self) -> None:
        if self.pid:
            _stop_pid(self.pid)
            self.pid = 0
        record = self.root / "bridge.json"
        if self.bridge is None and record.exists():
            self.bridge = PrivateBridge.from_json(record.read_text())
        if self.bridge is not None:
            self.bridge.delete()
            self.bridge = None
            record.unlink(missing_ok=True)


@dataclass
class PrivateRegistry:
    root: Path
    port: int = 0
    htpasswd: Path | None = None
    pid: int = 0
    # "info" logs every request ("response completed", with the bytes written) in
    # ROOT/registry.log: what a test or benchmark counts fetched blobs with
    log_level: str = "warn"

    @property
    def host(self) -> str:
        """`host:port` as used in image references (loopback needs no TLS)."""
        return f"localhost:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrivateRegistry:
        exe = shutil.which("docker-registry")
        if exe is None:
            raise SandboxUnavailable(
                "docker-registry is not installed (apt-get install docker-registry)")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        config = self.root / "config.yml"
        lines = [
            "version: 0.1",
            "log:",
            f"  level: {self.log_level}",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
        ]
        if self.htpasswd is not None:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: devsync-test",
                f"    path: {self.htpasswd}",
            ]
        config.write_text("\n".join(lines) + "\n")
        log = self.root / "registry.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [exe, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid = proc.pid
        _wait_for(self._answers, timeout, "private registry", log)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                head = s.recv(64)
                return head.startswith(b"HTTP/1.") and (b" 200" in head or b" 401" in head)
        except OSError:
            return False

    def stop(self) -> None:
        if self.pid:
            _stop_pid(self.pid)
            self.pid = 0


BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""


def busybox_context(directory: Path) -> Path:
    """Write a build context for a tiny image with a shell (no Docker Hub needed)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SandboxUnavailable("busybox is not installed (apt-get install busybox-static)")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, directory / "busybox")
    (directory / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    return directory


def docker_cli(engine: PrivateEngine, *args: str, check: bool = True,
               cwd: Path | None = None, cli: str = "docker") -> subprocess.CompletedProcess[str]:
    """Run the real docker CLI against `engine` (classic builder, as CI does for `docker build`)."""
    exe = shutil.which(cli) if "/" not in cli else cli
    if exe is None:
        raise SandboxUnavailable(f"the docker CLI ({cli}) is not installed")
    proc = subprocess.run(
        [exe, *args], env=engine.env(), cwd=cwd, capture_output=True, text=True, timeout=600,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def compose_cli() -> str:
    """The path of Debian's `docker-compose`, installed first when missing (root and apt)."""
    exe = shutil.which("docker-compose")
    if exe is not None:
        return exe
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SandboxUnavailable(f"docker-compose is not installed; install as root: "
                                 f"apt-get install -y {COMPOSE_PACKAGE}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    proc = subprocess.run(["apt-get", "install", "-y", "-q", COMPOSE_PACKAGE], env=env,
                          capture_output=True, text=True)
    exe = shutil.which("docker-compose")
    if proc.returncode != 0 or exe is None:
        raise SandboxUnavailable(f"apt-get install {COMPOSE_PACKAGE} failed:\n"
                                 f"{proc.stdout[-2000:]}{proc.stderr}")
    return exe


def docker_compose(engine: PrivateEngine, *args: str, cwd: Path, check: bool = True,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `docker-compose` (1.x) against `engine` in the project at `cwd`."""
    full = engine.env()
    full.pop("COMPOSE_PROJECT_NAME", None)
    full.pop("COMPOSE_FILE", None)
    full.update(env or {})
    proc = subprocess.run([compose_cli(), *args], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker-compose {' '.join(args)} failed:\n{proc.stdout}\n"
                           f"{proc.stderr}")
    return proc


@contextlib.contextmanager
def silent_socket(path: Path) -> Iterator[list[socket.socket]]:
    """A unix socket that accepts every connection and never says a word (a hung daemon).

    Yields the list of accepted connections, so a test can tell whether anyone connected."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
