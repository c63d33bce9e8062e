"""The Registry v2 client against real registries (distribution 2.8) fed by the real docker CLI.

Three registries: the suite's open one (`registry` fixture), one with htpasswd Basic auth, and
one with token (Bearer, JWT RS256) auth whose token service runs in this file. JWTs are signed
with the `openssl` command (no `cryptography` package here); htpasswd bcrypt entries come from
the `bcrypt` package (a test dependency).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from devsync.adapters.dockerconfig import Credentials
from devsync.adapters.registry import (
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    Manifest,
    RegistryClient,
    RegistryNotFound,
    local_platform,
)
from devsync.devtools import sandbox
from devsync.errors import RegistryAuthError, RegistryError, RegistryUnreachableError
from tests.support.registry import (
    TOKEN_ISSUER,
    TOKEN_SERVICE,
    TokenServer,
    bcrypt_hash,
    write_docker_config,
)

MODERN_CLI = "/usr/local/bin/docker"  # `docker manifest` needs no experimental flag here
REPO = "devsync-reg/app"
TAGS = ["1", "2", "3", "4", "5"]
APP_DOCKERFILE = """\
FROM {base}
ENV APP_MODE=test GREETING=hello
WORKDIR /app
COPY hello.txt /app/hello.txt
RUN echo built > /app/built && cat /app/hello.txt
LABEL org.example.team=devsync
"""


@dataclass
class Pushed:
    registry: sandbox.PrivateRegistry
    repo: str
    ref: str  # host/repo:1
    inspect: dict[str, object]
    history: list[str]  # `docker history --no-trunc` CreatedBy, oldest first
    tags: list[str] = field(default_factory=list)


def _build(engine: sandbox.PrivateEngine, ctx: Path, base: str, tag: str, env: str = "") -> None:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "hello.txt").write_text("hello from devsync\n")
    dockerfile = APP_DOCKERFILE.format(base=base)
    if env:
        dockerfile += f"ENV EXTRA={env}\n"
    (ctx / "Dockerfile").write_text(dockerfile)
    sandbox.docker_cli(engine, "build", "-q", "-t", tag, str(ctx))


@pytest.fixture(scope="module")
def pushed(engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
           busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    ref = f"{registry.host}/{REPO}:1"
    _build(engine, tmp_path_factory.mktemp("app-ctx"), busybox_image, ref)
    for tag in TAGS:
        if tag != "1":
            sandbox.docker_cli(engine, "tag", ref, f"{registry.host}/{REPO}:{tag}")
        sandbox.docker_cli(engine, "push", f"{registry.host}/{REPO}:{tag}")
    inspect = json.loads(sandbox.docker_cli(engine, "image", "inspect", ref).stdout)[0]
    hist = sandbox.docker_cli(engine, "history", "--no-trunc", "--format", "{{.CreatedBy}}",
                              ref).stdout.splitlines()
    return Pushed(registry, REPO, ref, inspect, list(reversed(hist)), TAGS)


# --------------------------------------------------------------------------- open registry


def test_tags_lists_every_pushed_tag(pushed: Pushed) -> None:
    client = RegistryClient(pushed.registry.host)
    assert sorted(client.tags(pushed.repo)) == sorted(pushed.tags)


def test_tags_with_page_size_on_a_registry_that_ignores_it(pushed: Pushed) -> None:
    # distribution 2.8 ignores `n=` on tags/list (only v3 paginates): one page, no Link
    url = f"{pushed.registry.url}/v2/{pushed.repo}/tags/list?n=2"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert len(json.load(resp)["tags"]) == len(pushed.tags)
        assert resp.headers.get("Link") is None
    client = RegistryClient(pushed.registry.host)
    assert sorted(client.tags(pushed.repo, page_size=2)) == sorted(pushed.tags)


FAKE_AUTH = "Basic " + base64.b64encode(b"fake-user:fake-pass").decode()
CONFIG_BLOB = json.dumps({"architecture": "amd64", "os": "linux", "history": [],
                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG_BLOB).hexdigest()


class _FakeRegistry(BaseHTTPRequestHandler):
    """What the private registry cannot show: tag pagination as distribution v3, Docker Hub and
    GHCR do it (`n`, `last`, `Link`), a 503, and blobs redirected to another origin (S3-style).
    Everything needs Basic auth."""

    tags: ClassVar[list[str]] = [f"v{i}" for i in range(7)]
    seen: ClassVar[list[str]] = []
    blob_origin: ClassVar[str] = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        type(self).seen.append(self.path)
        if self.headers.get("Authorization") != FAKE_AUTH:
            return self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]},
                              {"WWW-Authenticate": 'Basic realm="fake"'})
        if parts.path == "/v2/":
            return self._send(200, {})
        if parts.path == "/v2/broken/tags/list":
            return self._send(503, {"errors": [{"code": "UNAVAILABLE",
                                                "message": "backend down"}]})
        if parts.path == f"/v2/team/app/blobs/{CONFIG_DIGEST}":
            return self._send(307, {}, {"Location": f"{self.blob_origin}/blob?sig=abc"})
        if parts.path != "/v2/team/app/tags/list":
            return self._send(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
        query = urllib.parse.parse_qs(parts.query)
        n = int(query.get("n", ["3"])[0])
        rest = [t for t in self.tags if t > query.get("last", [""])[0]]
        page = rest[:n]
        headers = {}
        if len(rest) > n:
            headers["Link"] = f'</v2/team/app/tags/list?last={page[-1]}&n={n}>; rel="next"'
        self._send(200, {"name": "team/app", "tags": page}, headers)

    def _send(self, status: int, body: dict[str, object],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _BlobStore(BaseHTTPRequestHandler):
    auth_seen: ClassVar[list[str | None]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).auth_seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", str(len(CONFIG_BLOB)))
        self.end_headers()
        self.wfile.write(CONFIG_BLOB)


@contextlib.contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


FAKE_CREDS = Credentials("fake-user", "fake-pass")


def test_tags_follow_link_pagination() -> None:
    with _serve(_FakeRegistry) as host:
        _FakeRegistry.seen = []
        client = RegistryClient(host, credentials=FAKE_CREDS)
        assert client.tags("team/app", page_size=3) == _FakeRegistry.tags
        assert [p for p in _FakeRegistry.seen if "tags" in p] == [
            "/v2/team/app/tags/list?n=3",  # Basic sent at once: the ping learned the challenge
            "/v2/team/app/tags/list?last=v2&n=3",
            "/v2/team/app/tags/list?last=v5&n=3",
        ]
        assert client.tags("team/app") == _FakeRegistry.tags  # server-chosen page size


def test_server_errors_name_the_status() -> None:
    with _serve(_FakeRegistry) as host:
        client = RegistryClient(host, credentials=FAKE_CREDS)
        with pytest.raises(RegistryError) as info:
            client.tags("broken")
        assert not isinstance(info.value, (RegistryNotFound, RegistryAuthError))
        assert "HTTP 503" in str(info.value) and "UNAVAILABLE: backend down" in str(info.value)


def test_redirected_blob_gets_no_credentials() -> None:
    with _serve(_BlobStore) as blob_host, _serve(_FakeRegistry) as host:
        _FakeRegistry.blob_origin = f"http://{blob_host}"
        _BlobStore.auth_seen = []
        client = RegistryClient(host, credentials=FAKE_CREDS)
        man = Manifest(repository="team/app", reference="x", digest="sha256:" + "0" * 64,
                       media_type=MEDIA_DOCKER_MANIFEST, config_digest=CONFIG_DIGEST,
                       config_size=len(CONFIG_BLOB), layers=[])
        assert client.config("team/app", man)["os"] == "linux"
        assert _BlobStore.auth_seen == [None]


def test_registry_that_never_answers() -> None:
    import socket

    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(RegistryError) as info:
            RegistryClient(host, timeout=0.5).tags("x")
        assert str(info.value) == f"registry {host} is not reachable: no answer within 0.5s"
        assert isinstance(info.value, RegistryUnreachableError)  # (local images may stand in)


def test_manifest_and_config_match_the_engine(pushed: Pushed) -> None:
    client = RegistryClient(pushed.registry.host)
    info = client.image_config(pushed.repo, "1")
    inspect = pushed.inspect
    assert info.manifest.media_type == MEDIA_DOCKER_MANIFEST  # what dockerd 20.10 pushes
    assert info.config_digest == inspect["Id"]
    assert info.diff_ids == inspect["RootFS"]["Layers"]  # type: ignore[index]
    assert len(info.manifest.layers) == len(info.diff_ids)
    assert all(d.startswith("sha256:") and size > 0 for d, size in info.manifest.layers)
    assert info.total_size == sum(size for _, size in info.manifest.layers)
    assert [h.get("created_by", "") for h in info.history] == pushed.history
    assert any("#(nop) COPY file:" in h for h in pushed.history)
    assert "APP_MODE=test" in info.env and "GREETING=hello" in info.env
    assert info.env == inspect["Config"]["Env"]  # type: ignore[index]
    assert info.platform == f"{inspect['Os']}/{inspect['Architecture']}"
    assert info.config["config"]["Labels"] == {"org.example.team": "devsync"}


def test_head_digest_equals_repo_digest_after_push(pushed: Pushed) -> None:
    client = RegistryClient(pushed.registry.host)
    digest = client.head_digest(pushed.repo, "1")
    assert digest is not None and digest.startswith("sha256:")
    assert f"{pushed.registry.host}/{pushed.repo}@{digest}" in pushed.inspect["RepoDigests"]  # type: ignore[operator]
    man = client.manifest(pushed.repo, "1")
    assert man.digest == digest and man.tag_digest == digest and man.index_digest is None
    # same image, other tag; and fetching by digest gives the same manifest
    assert client.head_digest(pushed.repo, "5") == digest
    by_digest = client.manifest(pushed.repo, digest)
    assert by_digest.digest == digest and by_digest.layers == man.layers


def test_missing_tag_and_repository(pushed: Pushed) -> None:
    client = RegistryClient(pushed.registry.host)
    host = pushed.registry.host
    assert client.head_digest(pushed.repo, "no-such-tag") is None
    assert client.head_digest("devsync-reg/nothing-here", "1") is None
    with pytest.raises(RegistryNotFound, match=f"{host}/{pushed.repo}:no-such-tag not found"):
        client.manifest(pushed.repo, "no-such-tag")
    with pytest.raises(RegistryNotFound, match=r"MANIFEST_UNKNOWN|NAME_UNKNOWN"):
        client.image_config("devsync-reg/nothing-here", "1")
    with pytest.raises(RegistryNotFound, match=r"repository .* not found") as info:
        client.tags("devsync-reg/nothing-here")
    assert isinstance(info.value, RegistryError) and info.value.exit_code == 8


def test_invalid_names_are_errors_not_requests(pushed: Pushed) -> None:
    client = RegistryClient(pushed.registry.host)
    with pytest.raises(RegistryError, match="invalid repository name"):
        client.tags("../../etc")
    with pytest.raises(RegistryError, match="invalid tag or digest"):
        client.manifest(pushed.repo, "a b")


def test_registry_that_is_down() -> None:
    host = f"localhost:{sandbox.free_port()}"  # nothing listens there
    client = RegistryClient(host, timeout=5)
    for call in (lambda: client.tags("x"), lambda: client.head_digest("x", "1"),
                 lambda: client.manifest("x", "1")):
        with pytest.raises(RegistryError) as info:
            call()
        assert str(info.value) == f"registry {host} is not reachable: connection refused"
        assert not isinstance(info.value, RegistryNotFound)
        assert isinstance(info.value, RegistryUnreachableError)
        assert info.value.exit_code == 8


def test_plain_http_fallback_only_for_loopback_or_insecure(pushed: Pushed) -> None:
    # 127.0.0.1 is loopback too; the first request settles the scheme
    assert RegistryClient(f"127.0.0.1:{pushed.registry.port}").ping().startswith("http://")
    # a non-loopback name would only ever get HTTPS; we cannot reach one here, so check the
    # decision itself
    remote = RegistryClient("registry.example.com", credentials=None)
    assert not remote.loopback and not remote.insecure


# --------------------------------------------------------------------------- multi-platform


def _manifest_cli(engine: sandbox.PrivateEngine, config_dir: Path, *args: str) -> str:
    if not os.path.exists(MODERN_CLI):
        pytest.skip("docker manifest needs the modern docker CLI")
    return sandbox.docker_cli(engine, "--config", str(config_dir), "manifest", *args,
                              cli=MODERN_CLI).stdout


@pytest.fixture(scope="module")
def multi(pushed: Pushed, engine: sandbox.PrivateEngine, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Manifest lists made with `docker manifest`: one amd64+arm64, one s390x only."""
    host = pushed.registry.host
    other = f"{host}/{REPO}:other"
    _build(engine, tmp_path_factory.mktemp("other-ctx"), busybox_image, other, env="arm")
    sandbox.docker_cli(engine, "push", other)
    config_dir = tmp_path_factory.mktemp("manifest-cli-config")
    both, only = f"{host}/{REPO}:multi", f"{host}/{REPO}:s390x-only"
    _manifest_cli(engine, config_dir, "create", "--insecure", both, pushed.ref, other)
    _manifest_cli(engine, config_dir, "annotate", "--os", "linux", "--arch", "arm64",
                  "--variant", "v8", both, other)
    _manifest_cli(engine, config_dir, "push", "--insecure", both)
    _manifest_cli(engine, config_dir, "create", "--insecure", only, pushed.ref)
    _manifest_cli(engine, config_dir, "annotate", "--os", "linux", "--arch", "s390x", only,
                  pushed.ref)
    _manifest_cli(engine, config_dir, "push", "--insecure", only)
    client = RegistryClient(host)
    return {"amd64": client.manifest(REPO, "1").digest,
            "arm64": client.manifest(REPO, "other").digest}


def test_index_resolves_to_the_requested_platform(pushed: Pushed, multi: dict[str, str]) -> None:
    client = RegistryClient(pushed.registry.host)
    list_digest = client.head_digest(REPO, "multi")
    amd = client.manifest(REPO, "multi", platform="linux/amd64")
    arm = client.manifest(REPO, "multi", platform="linux/arm64")
    assert (amd.digest, amd.platform) == (multi["amd64"], "linux/amd64")
    assert (arm.digest, arm.platform) == (multi["arm64"], "linux/arm64/v8")
    assert amd.index_digest == list_digest == amd.tag_digest != amd.digest
    raw = client.image_config(REPO, "multi", platform="linux/arm64/v8")
    assert "EXTRA=arm" in raw.env
    if local_platform() in ("linux/amd64", "linux/arm64"):
        assert client.manifest(REPO, "multi").platform is not None
    # the index itself is what the tag names
    with urllib.request.urlopen(urllib.request.Request(
            f"{pushed.registry.url}/v2/{REPO}/manifests/multi", method="HEAD",
            headers={"Accept": MEDIA_DOCKER_MANIFEST_LIST}), timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == list_digest


def test_image_only_for_another_platform(pushed: Pushed, multi: dict[str, str]) -> None:
    client = RegistryClient(pushed.registry.host)
    with pytest.raises(RegistryError, match=r"available platforms: linux/s390x\)") as info:
        client.manifest(REPO, "s390x-only")
    assert local_platform() in str(info.value)
    with pytest.raises(RegistryError, match="linux/amd64, linux/arm64/v8"):
        client.manifest(REPO, "multi", platform="linux/riscv64")


# --------------------------------------------------------------------------- htpasswd registry

USER, PASSWORD = "alice", "correct-horse-battery-staple"
WRONG = "wrong-password-do-not-print"


@pytest.fixture(scope="module")
def basic_registry(engine: sandbox.PrivateEngine, busybox_image: str, sandbox_root: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.PrivateRegistry]:
    root = sandbox_root / "registry-htpasswd"
    root.mkdir(exist_ok=True)
    htpasswd = root / "htpasswd"
    hashed, _tool = bcrypt_hash(PASSWORD)
    htpasswd.write_text(f"{USER}:{hashed}\n")
    reg = sandbox.PrivateRegistry(root, htpasswd=htpasswd).start()
    try:
        config = write_docker_config(tmp_path_factory.mktemp("basic-cfg"), reg.host, USER,
                                     PASSWORD)
        ref = f"{reg.host}/private/app:1"
        sandbox.docker_cli(engine, "tag", busybox_image, ref)
        sandbox.docker_cli(engine, "--config", str(config), "push", ref)
        yield reg
    finally:
        reg.stop()


def _assert_no_secret(exc: BaseException, *secrets: str) -> None:
    texts = [str(exc), repr(exc), getattr(exc, "message", ""), getattr(exc, "hint", "") or ""]
    texts += [str(a) for a in exc.args]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_basic_auth_with_credentials_from_docker_config(
    basic_registry: sandbox.PrivateRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_docker_config(tmp_path / "cfg", basic_registry.host, USER, PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    client = RegistryClient(basic_registry.host)  # credentials="auto"
    assert client.tags("private/app") == ["1"]
    info = client.image_config("private/app", "1")
    assert info.history and info.diff_ids
    assert client.head_digest("private/app", "1") == info.digest


def test_basic_auth_wrong_password(basic_registry: sandbox.PrivateRegistry) -> None:
    client = RegistryClient(basic_registry.host, credentials=Credentials(USER, WRONG))
    with pytest.raises(RegistryAuthError) as info:
        client.manifest("private/app", "1")
    assert f"docker login {basic_registry.host}" in (info.value.hint or "")
    assert info.value.exit_code == 9
    _assert_no_secret(info.value, WRONG, PASSWORD)
    assert WRONG not in repr(client)


def test_basic_auth_without_credentials(basic_registry: sandbox.PrivateRegistry) -> None:
    client = RegistryClient(basic_registry.host, credentials=None)
    with pytest.raises(RegistryAuthError, match="requires a login") as info:
        client.tags("private/app")
    assert info.value.hint == f"run `docker login {basic_registry.host}`"


HELPER = """#!/bin/sh
[ "$1" = get ] || exit 2
url=$(cat)
printf '%s\\n' "$url" >> "{log}"
if [ "$url" = "{host}" ]; then
  printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{password}"}}' "$url"
else
  echo 'credentials not found in native keychain'; exit 1
fi
"""


def test_basic_auth_through_a_credential_helper(
    basic_registry: sandbox.PrivateRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helper.log"
    helper = bindir / "docker-credential-fake"
    helper.write_text(HELPER.format(log=log, host=basic_registry.host, user=USER,
                                    password=PASSWORD))
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    client = RegistryClient(basic_registry.host)
    assert client.tags("private/app") == ["1"]
    assert log.read_text().splitlines() == [basic_registry.host]  # asked once per client


# --------------------------------------------------------------------------- token registry


def _start_token_registry(root: Path, tokens: TokenServer, cert: Path) -> sandbox.PrivateRegistry:
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.skip("docker-registry is not installed")
    reg = sandbox.PrivateRegistry(root, port=sandbox.free_port())
    config = root / "config.yml"
    config.write_text("\n".join([
        "version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
        f"    rootdirectory: {root / 'data'}", "http:", f"  addr: 127.0.0.1:{reg.port}",
        "auth:", "  token:", f"    realm: {tokens.realm}", f"    service: {TOKEN_SERVICE}",
        f"    issuer: {TOKEN_ISSUER}", f"    rootcertbundle: {cert}", "",
    ]))
    with open(root / "registry.log", "ab") as out:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    reg.pid = proc.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{reg.url}/v2/", timeout=1)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return reg
        except OSError:
            pass
        time.sleep(0.1)
    reg.stop()
    raise RuntimeError((root / "registry.log").read_text()[-2000:])


@pytest.fixture(scope="module")
def token_registry(engine: sandbox.PrivateEngine, busybox_image: str, sandbox_root: Path,
                   tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[sandbox.PrivateRegistry, TokenServer]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to sign tokens")
    root = sandbox_root / "registry-token"
    root.mkdir(exist_ok=True)
    key, cert = root / "token.key", root / "token.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=devsync-token", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    tokens = TokenServer(key, der, {USER: PASSWORD}).start()
    reg = None
    try:
        reg = _start_token_registry(root, tokens, cert)
        # dockerd does the token dance with our service to push: proof the service is real
        config = write_docker_config(tmp_path_factory.mktemp("token-cfg"), reg.host, USER,
                                     PASSWORD)
        ref = f"{reg.host}/team/app:1"
        sandbox.docker_cli(engine, "tag", busybox_image, ref)
        sandbox.docker_cli(engine, "--config", str(config), "push", ref)
        yield reg, tokens
    finally:
        if reg is not None:
            reg.stop()
        tokens.stop()


def test_bearer_token_flow(token_registry: tuple[sandbox.PrivateRegistry, TokenServer]) -> None:
    reg, tokens = token_registry
    client = RegistryClient(reg.host, credentials=Credentials(USER, PASSWORD))
    tokens.requests.clear()
    assert client.tags("team/app") == ["1"]
    info = client.image_config("team/app", "1")
    assert client.head_digest("team/app", "1") == info.digest
    assert info.history
    # one token for the repository's pull scope, reused for every later request
    assert tokens.requests == [(USER, ["repository:team/app:pull"])]


def test_bearer_token_refreshed_once_on_401(
    token_registry: tuple[sandbox.PrivateRegistry, TokenServer]
) -> None:
    reg, tokens = token_registry
    client = RegistryClient(reg.host, credentials=Credentials(USER, PASSWORD))
    client.tags("team/app")
    # a token the registry no longer accepts (as after a key rotation or revocation)
    for token in client._tokens.values():
        token.value = tokens.sign({"iss": "someone-else", "aud": TOKEN_SERVICE})
    tokens.requests.clear()
    assert client.tags("team/app") == ["1"]
    assert len(tokens.requests) == 1


def test_bearer_wrong_password(token_registry: tuple[sandbox.PrivateRegistry, TokenServer]) -> None:
    reg, _ = token_registry
    client = RegistryClient(reg.host, credentials=Credentials(USER, WRONG))
    with pytest.raises(RegistryAuthError, match=f"refused the credentials for {USER}") as info:
        client.manifest("team/app", "1")
    assert f"docker login {reg.host}" in (info.value.hint or "")
    _assert_no_secret(info.value, WRONG, PASSWORD)


def test_bearer_anonymous_is_denied(
    token_registry: tuple[sandbox.PrivateRegistry, TokenServer], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, tokens = token_registry
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # an empty Docker config
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    client = RegistryClient(reg.host)
    tokens.requests.clear()
    with pytest.raises(RegistryAuthError, match="requires a login") as info:
        client.head_digest("team/app", "1")
    assert info.value.hint == f"run `docker login {reg.host}`"
    # it asked for an anonymous token twice (first try, then the one refresh) and gave up
    assert [user for user, _ in tokens.requests] == ["", ""]


def test_bearer_credentials_from_docker_config(
    token_registry: tuple[sandbox.PrivateRegistry, TokenServer], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, _ = token_registry
    monkeypatch.setenv("DOCKER_CONFIG", str(write_docker_config(tmp_path, reg.host, USER,
                                                                PASSWORD)))
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    assert RegistryClient(reg.host).head_digest("team/app", "1") is not None


# --------------------------------------------------------------------------- writing a cache

CACHE_INDEX = "application/vnd.oci.image.index.v1+json"


def _write_cache(client: RegistryClient, repo: str, tag: str) -> tuple[str, str, bytes]:
    """What `devsync publish --registry-cache` writes: a config blob, an index naming it."""
    config = json.dumps({"layers": [], "records": [{"digest": "sha256:" + "0" * 64}]}).encode()
    config_digest = client.put_blob(repo, config)
    index = json.dumps({"schemaVersion": 2, "mediaType": CACHE_INDEX, "manifests": [
        {"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": config_digest,
         "size": len(config)}]}).encode()
    return config_digest, client.put_manifest(repo, tag, index, CACHE_INDEX), config


def test_put_blob_and_manifest_read_back(pushed: Pushed) -> None:
    client = RegistryClient(pushed.registry.host)
    config_digest, digest, config = _write_cache(client, REPO, "buildcache")
    assert config_digest == "sha256:" + hashlib.sha256(config).hexdigest()
    assert client.blob(REPO, config_digest) == config
    assert client.head_digest(REPO, "buildcache") == digest
    # a blob already there is not sent again
    assert client.put_blob(REPO, config) == config_digest
    with pytest.raises(RegistryNotFound):
        client.blob(REPO, "sha256:" + "1" * 64)


def test_put_with_basic_auth_from_docker_config(
    basic_registry: sandbox.PrivateRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(write_docker_config(
        tmp_path / "cfg", basic_registry.host, USER, PASSWORD)))
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    client = RegistryClient(basic_registry.host)
    config_digest, digest, config = _write_cache(client, "private/app", "buildcache")
    assert client.blob("private/app", config_digest) == config
    assert client.head_digest("private/app", "buildcache") == digest
    anonymous = RegistryClient(basic_registry.host, credentials=None)
    with pytest.raises(RegistryAuthError, match="requires a login"):
        anonymous.put_blob("private/app", b"{}")


def test_put_asks_the_token_service_for_push(
    token_registry: tuple[sandbox.PrivateRegistry, TokenServer]
) -> None:
    reg, tokens = token_registry
    client = RegistryClient(reg.host, credentials=Credentials(USER, PASSWORD))
    tokens.requests.clear()
    _config_digest, digest, _ = _write_cache(client, "team/app", "buildcache")
    assert client.head_digest("team/app", "buildcache") == digest
    assert (USER, ["repository:team/app:pull,push"]) in tokens.requests
