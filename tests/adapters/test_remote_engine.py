"""Remote engines for real: a dockerd on tcp:// with mutual TLS and one behind a real sshd.

The issue asks devsync to reach the engine the way the docker CLI does: DOCKER_HOST with
DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, a docker context carrying TLS files, and ssh://. Context
resolution is unit-tested in test_dockerconfig.py; here a private dockerd listens on its unix
socket and on `tcp://127.0.0.1:PORT --tlsverify`, certificates come from the `openssl` CLI, the
context from the real `docker context create`, and ssh:// goes through OpenSSH's sshd and the
`ssh` client. Each check also compares the image ID devsync reports with the one the docker CLI
sees on the engine's unix socket, so "engine ok" cannot come from some other engine.

In CI (`CI=true`) a test that cannot get its daemons fails; elsewhere it is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devsync.devtools import sandbox
from tests.support.cli import devsync
from tests.support.teamrepo import git

pytestmark = pytest.mark.engine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TAG = "devsync/app:dev"  # what devsync builds for a repo with one root Dockerfile
# Every variable that picks an engine: each test states the ones it means, the rest are blank
# (the CLI and devsync treat a blank one as unset), so nothing leaks in from the caller.
_ENGINE_VARS = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_TLS",
                "DOCKER_CERT_PATH")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"remote engine test cannot get what it needs in CI: {reason}",
                    pytrace=False)
    pytest.skip(reason)


def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certs:
    server: Path  # ca.pem, cert.pem (SAN 127.0.0.1, localhost), key.pem for dockerd
    client: Path  # ca.pem cert.pem key.pem: what DOCKER_CERT_PATH names
    foreign_client: Path  # the right ca.pem, but a client pair signed by another CA
    untrusting: Path  # a good client pair, but another CA's ca.pem: the server is not trusted
    ca_only: Path  # the right ca.pem and no client pair at all
    other_ca: Path  # that other CA's certificate


def _key(path: Path) -> None:
    # P-256 keys: much faster to make than RSA, and both Go and OpenSSL speak them
    _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path))


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True)
    key, cert = directory / "ca-key.pem", directory / "ca.pem"
    _key(key)
    _run("openssl", "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={name}")
    return cert, key


def _signed(directory: Path, ca: tuple[Path, Path], cn: str, extensions: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, ext = directory / "key.pem", directory / "req.csr", directory / "ext.cnf"
    _key(key)
    _run("openssl", "req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
    ext.write_text(extensions)
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
         "-CAcreateserial", "-out", str(directory / "cert.pem"), "-days", "2",
         "-extfile", str(ext))
    csr.unlink()
    ext.unlink()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        _unavailable("the openssl CLI is needed to make TLS certificates")
    root = tmp_path_factory.mktemp("tls")
    ca = _ca(root / "ca", "devsync test CA")
    other = _ca(root / "other-ca", "some other CA")
    server = root / "server"
    _signed(server, ca, "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client_ext = "extendedKeyUsage=clientAuth\n"
    client, foreign, untrusting = root / "client", root / "foreign", root / "untrusting"
    _signed(client, ca, "developer", client_ext)
    _signed(foreign, other, "developer", client_ext)
    shutil.copytree(client, untrusting)
    for directory in (server, client, foreign):
        shutil.copy(ca[0], directory / "ca.pem")
    shutil.copy(other[0], untrusting / "ca.pem")
    ca_only = root / "ca-only"
    ca_only.mkdir()
    shutil.copy(ca[0], ca_only / "ca.pem")
    return Certs(server, client, foreign, untrusting, ca_only, other[0])


# --------------------------------------------------------------------------- the engine


@dataclass
class TlsEngine:
    engine: sandbox.PrivateEngine  # its unix socket: how the test itself looks inside
    port: int

    @property
    def tcp(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def image_id(self, ref: str) -> str:
        return sandbox.docker_cli(self.engine, "image", "inspect", "--format", "{{.Id}}",
                                  ref).stdout.strip()


@pytest.fixture(scope="module")
def tls_engine(certs: Certs) -> Iterator[TlsEngine]:
    try:
        sandbox.ensure_system_packages()
    except sandbox.SandboxUnavailable as exc:
        _unavailable(str(exc))
    real = shutil.which("dockerd")
    if real is None:
        _unavailable("dockerd is not installed (apt-get install docker.io)")
        return
    # short path: unix sockets are limited to ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="dsre-", dir="/tmp"))
    port = sandbox.free_port()
    # PrivateEngine starts whatever `dockerd` PATH names; this one adds the TLS listener.
    # (An `extra_args` field on PrivateEngine would make this shim unnecessary.)
    shim = root / "bin"
    shim.mkdir()
    (shim / "dockerd").write_text(
        f'#!/bin/sh\nexec {real} "$@" -H tcp://127.0.0.1:{port} --tlsverify'
        f" --tlscacert {certs.server / 'ca.pem'} --tlscert {certs.server / 'cert.pem'}"
        f" --tlskey {certs.server / 'key.pem'}\n")
    (shim / "dockerd").chmod(0o755)
    engine = sandbox.PrivateEngine(root / "e")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PATH", f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
            engine.start()
    except sandbox.SandboxUnavailable as exc:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(str(exc))
    try:
        yield TlsEngine(engine, port)
    finally:
        engine.stop()
        subprocess.run(["umount", "-R", str(root / "e")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def repo(tls_engine: TlsEngine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one Dockerfile, its image already built on the engine by the CLI."""
    path = tmp_path_factory.mktemp("remote-repo")
    git(path, "init", "-q")
    (path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (path / "hello.txt").write_text("hello\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "one image")
    sandbox.docker_cli(tls_engine.engine, "build", "-q", "-t", TAG, str(path))
    return path


def _env(**values: str) -> dict[str, str]:
    env = dict.fromkeys(_ENGINE_VARS, "")
    env.update(values)
    return env


def _tls_env(tls_engine: TlsEngine, cert_path: Path, certs: Certs) -> dict[str, str]:
    # A CA bundle meant for other tools must not replace the engine's own CA: requests lets
    # these beat the client's `verify` unless devsync prevents it (docker/docker-py#2433).
    return _env(DOCKER_HOST=tls_engine.tcp, DOCKER_TLS_VERIFY="1",
                DOCKER_CERT_PATH=str(cert_path), REQUESTS_CA_BUNDLE=str(certs.other_ca),
                CURL_CA_BUNDLE=str(certs.other_ca))


def _status(repo: Path, env: dict[str, str], state: Path) -> dict[str, Any]:
    out = devsync(repo, "status", "--json", env=env, state=state)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    doc = json.loads(out.stdout)
    assert isinstance(doc, dict)
    return doc


def _assert_reached(doc: dict[str, Any], engine: TlsEngine) -> None:
    assert doc["engine"] == "ok", doc["engine_problem"]
    (image,) = doc["images"]
    # the same image ID as the docker CLI sees on the engine's socket: the very same engine
    assert image["local_id"] == engine.image_id(TAG)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("devsync: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


# --------------------------------------------------------------------------- tcp:// + TLS


def test_tls_engine_from_docker_host(tls_engine: TlsEngine, certs: Certs, repo: Path,
                                     tmp_path: Path) -> None:
    env = _tls_env(tls_engine, certs.client, certs)
    _assert_reached(_status(repo, env, tmp_path / "state"), tls_engine)


def test_sync_over_tls_streams_a_build(tls_engine: TlsEngine, certs: Certs, repo: Path,
                                       tmp_path: Path) -> None:
    env = _tls_env(tls_engine, certs.client, certs)
    # (named: a plain sync would leave an image another test built here in sync alone)
    out = devsync(repo, "sync", "app", "--yes", env=env, state=tmp_path / "state")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert f"built {TAG}" in out.stdout
    revision = sandbox.docker_cli(
        tls_engine.engine, "image", "inspect", "--format",
        '{{index .Config.Labels "org.opencontainers.image.revision"}}', TAG).stdout.strip()
    assert revision == git(repo, "rev-parse", "HEAD").strip()


def test_tls_engine_from_a_docker_context(tls_engine: TlsEngine, certs: Certs, repo: Path,
                                          tmp_path: Path) -> None:
    cli = shutil.which("docker")
    if cli is None:
        _unavailable("the docker CLI is needed to create a context")
        return
    config = tmp_path / "docker-config"
    config.mkdir()
    cli_env = {**os.environ, **_env(DOCKER_CONFIG=str(config))}
    client = shutil.copytree(certs.client, tmp_path / "client-certs")
    _run(cli, "context", "create", "remote-tls", "--docker",
         f"host={tls_engine.tcp},ca={client / 'ca.pem'},cert={client / 'cert.pem'},"
         f"key={client / 'key.pem'}", env=cli_env)
    _run(cli, "context", "use", "remote-tls", env=cli_env)
    # the CLI itself gets through with that context: it is a sound one
    assert _run(cli, "version", "--format", "{{.Server.APIVersion}}", env=cli_env).stdout.strip()
    # the context store keeps its own copies of the TLS files: the originals may go
    shutil.rmtree(client)
    env = {**_env(DOCKER_CONFIG=str(config)), "REQUESTS_CA_BUNDLE": str(certs.other_ca)}
    _assert_reached(_status(repo, env, tmp_path / "state"), tls_engine)


@pytest.mark.parametrize(("which", "reason"), [
    # TLS 1.3: the engine's "bad certificate" alert races with its hang-up, and either may
    # arrive first; both messages name the client certificate
    ("foreign_client", "client certificate"),
    ("ca_only", "client certificate"),
    ("untrusting", "the engine's certificate is not trusted: unable to get local issuer"),
])
def test_tls_refusal_is_one_clear_line(tls_engine: TlsEngine, certs: Certs, repo: Path,
                                       tmp_path: Path, which: str, reason: str) -> None:
    env = _tls_env(tls_engine, getattr(certs, which), certs)
    out = devsync(repo, "sync", "--yes", env=env, state=tmp_path / "state")
    assert out.returncode == 6, out.stderr
    line = _one_error_line(out.stderr)
    assert line.startswith(f"devsync: error: cannot reach the Docker engine at {tls_engine.tcp}:"
                           " TLS handshake failed: "), line
    assert reason in line
    # status still answers, and says why the engine is out of reach
    doc = _status(repo, env, tmp_path / "state")
    assert doc["engine"] is None and reason in str(doc["engine_problem"])


# --------------------------------------------------------------------------- ssh://


@dataclass
class SshServer:
    port: int
    bin_dir: Path  # first on PATH: an `ssh` that reads the test's own ssh config

    @property
    def host(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def env(self, host: str | None = None) -> dict[str, str]:
        return {**_env(DOCKER_HOST=host or self.host),
                "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def _ensure_sshd() -> str:
    sshd = "/usr/sbin/sshd"
    if Path(sshd).exists():
        return sshd
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _unavailable("sshd is missing; install as root: apt-get install -y openssh-server")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server"], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not Path(sshd).exists():
        _unavailable(f"apt-get install openssh-server failed: {proc.stderr[-500:]}")
    return sshd


def _sshd_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture(scope="module")
def ssh_server(tls_engine: TlsEngine, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[SshServer]:
    """sshd on 127.0.0.1:PORT whose sessions find the private engine through DOCKER_HOST.

    ssh:// runs `docker system dial-stdio` on the remote; sshd's `SetEnv` (OpenSSH >= 8.7)
    points that docker CLI at the engine's unix socket.
    """
    if os.geteuid() != 0:
        _unavailable("a private sshd that logs root in needs root")
    sshd = _ensure_sshd()
    ssh = shutil.which("ssh")
    if ssh is None:
        _unavailable("the ssh client is not installed (apt-get install openssh-client)")
        return
    if shutil.which("docker") is None:
        _unavailable("the docker CLI is needed on the ssh remote for dial-stdio")
    root = tmp_path_factory.mktemp("ssh")
    for name in ("host_key", "id_ed25519"):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devsync-test",
             "-f", str(root / name))
    port = sandbox.free_port()
    remote_config = root / "remote-docker-config"
    remote_config.mkdir()
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}",
        f"HostKey {root / 'host_key'}",
        f"AuthorizedKeysFile {root / 'id_ed25519.pub'}",
        f"PidFile {root / 'sshd.pid'}",
        "StrictModes no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"SetEnv DOCKER_HOST={tls_engine.engine.url} DOCKER_CONFIG={remote_config}",
    ]) + "\n")
    # ssh reads ~/.ssh/config from the passwd entry's home, not $HOME: a wrapper names ours
    client_config = root / "ssh_config"
    client_config.write_text("\n".join([
        "Host *",
        f"  IdentityFile {root / 'id_ed25519'}",
        "  IdentitiesOnly yes",
        "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null",
        "  BatchMode yes",
        "  LogLevel ERROR",
    ]) + "\n")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nexec {ssh} -F {client_config} "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    # sshd refuses to start without its privilege separation directory
    privsep = Path("/run/sshd")
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, parents=True, exist_ok=True)
    check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        _unavailable(f"sshd rejects the test config (needs OpenSSH >= 8.7): {check.stderr}")
    log = root / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not _sshd_answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                _unavailable(f"sshd did not come up:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield SshServer(port, bin_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if made_privsep:
            with contextlib.suppress(OSError):
                privsep.rmdir()


def test_ssh_server_runs_the_remote_docker(ssh_server: SshServer, tls_engine: TlsEngine) -> None:
    """The set-up itself: `ssh` logs in with the key and the remote docker finds the engine."""
    out = _run("ssh", "-p", str(ssh_server.port), "root@127.0.0.1",
               "docker info --format '{{.DockerRootDir}}'", env={**os.environ, **ssh_server.env()})
    assert out.stdout.strip() == str(tls_engine.engine.root / "data")


def test_ssh_engine_from_docker_host(ssh_server: SshServer, tls_engine: TlsEngine, repo: Path,
                                     tmp_path: Path) -> None:
    _assert_reached(_status(repo, ssh_server.env(), tmp_path / "state"), tls_engine)


_PARAMIKO_ONLY_FOR_SSH = """
import sys
from devsync.adapters.engine import Engine
local = Engine.connect(sys.argv[1])
assert local.ping()
# the SDK imports paramiko whenever it can, though only ssh:// uses it: not on this path
assert "paramiko" not in sys.modules, "paramiko imported for a unix socket"
remote = Engine.connect(sys.argv[2])  # the same process, the SDK already imported
assert remote.ping()
print(remote.api_version)
"""


def test_paramiko_is_imported_only_for_ssh(ssh_server: SshServer, tls_engine: TlsEngine,
                                           tmp_path: Path) -> None:
    """paramiko (~0.12 s) stays off the path of every non-ssh command, and an ssh:// engine
    still works in a process whose SDK was imported without it (the TUI, or a test run)."""
    env = {**os.environ, **ssh_server.env()}
    proc = subprocess.run([sys.executable, "-c", _PARAMIKO_ONLY_FOR_SSH,
                           tls_engine.engine.url, ssh_server.host],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("1.")


def test_sync_over_ssh_exits_cleanly(ssh_server: SshServer, tls_engine: TlsEngine, repo: Path,
                                     tmp_path: Path) -> None:
    out = devsync(repo, "sync", "app", "--yes", env=ssh_server.env(), state=tmp_path / "state")
    assert out.returncode == 0, out.stderr
    # docker-py's ssh socket used to raise BrokenPipeError from a finalizer at exit
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
    assert f"built {TAG}" in out.stdout
    _assert_reached(_status(repo, ssh_server.env(), tmp_path / "state"), tls_engine)


def test_unreachable_ssh_host_is_one_clear_line(ssh_server: SshServer, repo: Path,
                                                tmp_path: Path) -> None:
    host = f"ssh://root@127.0.0.1:{sandbox.free_port()}"  # nothing listens there
    out = devsync(repo, "sync", "--yes", env=ssh_server.env(host), state=tmp_path / "state")
    assert out.returncode == 6, out.stderr
    # ssh says why on its own line (as under the docker CLI); devsync adds exactly one
    line = _one_error_line(out.stderr)
    assert line.startswith(f"devsync: error: cannot reach the Docker engine at {host}"), line
