"""Registry faults: down, HTTP 500, slow, wrong credentials, token expiry, a missing manifest,
a tag deleted between plan and sync, an image built only for another architecture.

The registries stopped, damaged or fronted by a failing server are the fault suite's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devsync.adapters.registry import RegistryClient, local_platform
from devsync.devtools import sandbox
from tests.support.faultcases import FaultRecorder
from tests.support.faults import (
    AUTH_PASSWORD,
    AUTH_USER,
    AuthShop,
    FlakyProxy,
    StateDir,
    ci_deploy,
    clone,
    devsync,
    docker_config,
    expect_error,
    expect_ok,
    registry_link,
    small_repo,
    tagged_images,
)
from tests.support.registry import TokenServer
from tests.support.teamrepo import MODERN_CLI, TeamRepo

pytestmark = pytest.mark.engine

CONFIG = """\
[images.app]
dockerfile = "Dockerfile"
deployed = "{repo}"
tag = "{repo}:dev"
"""


def _configure(repo: Path, deployed: str) -> Path:
    (repo / ".devsync.toml").write_text(CONFIG.format(repo=deployed))
    return repo


def _retag_and_push(engine: sandbox.PrivateEngine, source: str, target: str) -> None:
    """Publish an existing image under another repository, leaving no local tag behind (so the
    developer's engine has to pull it)."""
    sandbox.docker_cli(engine, "tag", source, target)
    sandbox.docker_cli(engine, "push", target)
    sandbox.docker_cli(engine, "rmi", target)


@pytest.fixture(scope="module")
def proxy(fault_registry: sandbox.PrivateRegistry) -> Iterator[FlakyProxy]:
    p = FlakyProxy(fault_registry.port).start()
    yield p
    p.stop()


@pytest.fixture
def flaky(proxy: FlakyProxy) -> Iterator[FlakyProxy]:
    proxy.mode, proxy.before = "ok", None
    proxy.requests.clear()
    yield proxy
    proxy.mode, proxy.before = "ok", None


# --------------------------------------------------------------------------- down, 500, slow


@pytest.mark.fault("registry-down")
def test_registry_down(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                       fault_registry: sandbox.PrivateRegistry, tmp_path: Path) -> None:
    # (deployed under a name this engine holds no tag of: nothing local to use)
    deployed = f"{fault_registry.host}/downshop"
    _retag_and_push(engine, shop.deployed[-1], f"{deployed}:1.0.1")
    repo = _configure(clone(shop.path, tmp_path / "repo"), deployed)
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    fault_registry.stop()
    try:
        out = devsync(repo, "plan", engine=engine, state=state.path)
    finally:
        fault_registry.start()
    fault.saw(out)
    expect_error(out, 8, contains="is not reachable: connection refused")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


@pytest.mark.fault("registry-down-offline")
def test_registry_down_with_the_images_here(fault: FaultRecorder, shop: TeamRepo,
                                            engine: sandbox.PrivateEngine,
                                            fault_registry: sandbox.PrivateRegistry,
                                            tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")  # (CI built the deployed images here)
    local_tag = f"{shop.repo}:offline"  # (not shop:dev, which other cases would then see)
    (repo / ".devsync.toml").write_text(
        f'[images.app]\ndockerfile = "Dockerfile"\ndeployed = "{shop.repo}"\n'
        f'tag = "{local_tag}"\n')
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    (repo / "src" / "index.php").write_text("<?php echo 'offline';\n")
    before_images = tagged_images(engine)
    warning = (f"devsync: warning: registry {fault_registry.host} could not be checked "
               "(not reachable: connection refused): working from the images on this machine")

    fault_registry.stop()
    try:
        planned = devsync(repo, "plan", engine=engine, state=state.path)
        synced = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    finally:
        fault_registry.start()
    try:
        fault.saw(planned, said=planned.stderr.strip())
        expect_ok(planned)
        assert planned.stderr.splitlines() == [warning]
        assert "REBUILD    7  COPY . /var/www/html" in planned.stdout
        expect_ok(synced)
        assert synced.stdout.count("could not be checked") == 1, synced.stdout
        assert f"built {local_tag}" in synced.stdout
        after = tagged_images(engine)
        assert fault.intact(all(after.get(ref) == image for ref, image in before_images.items()))
        fault.recovered(None, "nothing to recover from: both worked from the local images")
    finally:
        sandbox.docker_cli(engine, "rmi", local_tag, check=False)


@pytest.mark.fault("registry-500")
def test_registry_answering_500(fault: FaultRecorder, shop: TeamRepo, flaky: FlakyProxy,
                                engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = _configure(clone(shop.path, tmp_path / "repo"), f"{flaky.host}/shop")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    flaky.mode = "500"
    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.saw(out)
    expect_error(out, 8, contains="HTTP 500")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    flaky.mode = "ok"
    out = devsync(repo, "plan", "--json", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)
    assert json.loads(out.stdout)["images"][0]["cache_from"][0] == f"{flaky.host}/shop:1.0.1"


@pytest.mark.fault("registry-slow")
def test_registry_that_answers_too_late(fault: FaultRecorder, shop: TeamRepo, flaky: FlakyProxy,
                                        engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = _configure(clone(shop.path, tmp_path / "repo"), f"{flaky.host}/shop")
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    flaky.mode = "slow"  # answers after 120 s: devsync must give up on its own, well before
    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.saw(out)
    expect_error(out, 8, contains="no answer within")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    flaky.mode = "ok"
    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


# --------------------------------------------------------------------------- credentials


@pytest.mark.fault("registry-wrong-credentials")
def test_wrong_credentials(fault: FaultRecorder, authshop: AuthShop,
                           engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(authshop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    right = {"DOCKER_CONFIG": str(authshop.right)}
    expect_ok(devsync(repo, "status", engine=engine, state=state.path, env=right))
    before_state, before_images = state.files(), tagged_images(engine)

    out = devsync(repo, "plan", engine=engine, state=state.path,
                  env={"DOCKER_CONFIG": str(authshop.wrong)})
    fault.saw(out)
    expect_error(out, 9, contains=f"refused the credentials for {AUTH_USER}")
    assert f"docker login {authshop.registry.host}" in out.stderr
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    out = devsync(repo, "plan", engine=engine, state=state.path, env=right)
    fault.recovered(out.returncode == 0)
    expect_ok(out)


# --------------------------------------------------------------------------- token expiry

TOKEN_LIFETIME = 1  # seconds
TOKEN_SERVICE = "devsync-faults-registry"
TOKEN_ISSUER = "devsync-faults-token-issuer"


@dataclass
class TokenShop:
    path: Path
    tokens: TokenServer
    proxy: FlakyProxy
    config: Path  # DOCKER_CONFIG with the login for the proxy's host


@pytest.fixture(scope="module")
def tokenshop(engine: sandbox.PrivateEngine, busybox_image: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenShop]:
    if shutil.which("openssl") is None or shutil.which("docker-registry") is None:
        pytest.skip("openssl and docker-registry are needed for a token registry")
    root = Path(tmp_path_factory.mktemp("tokenreg"))
    key, cert = root / "token.key", root / "token.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=devsync-faults", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    # tokens that live one second, by their `expires_in` and by their `exp` claim
    tokens = TokenServer(key, der, {AUTH_USER: AUTH_PASSWORD}, issuer=TOKEN_ISSUER,
                         service=TOKEN_SERVICE, lifetime=TOKEN_LIFETIME, anonymous=False,
                         issued_at=None).start()
    reg = sandbox.PrivateRegistry(root / "reg", port=sandbox.free_port())
    proc = None
    proxy = None
    try:
        (root / "reg").mkdir()
        config = root / "reg" / "config.yml"
        config.write_text("\n".join([
            "version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
            f"    rootdirectory: {root / 'reg' / 'data'}", "http:",
            f"  addr: 127.0.0.1:{reg.port}", "auth:", "  token:", f"    realm: {tokens.realm}",
            f"    service: {TOKEN_SERVICE}", f"    issuer: {TOKEN_ISSUER}",
            f"    rootcertbundle: {cert}", "",
        ]))
        with open(root / "reg" / "registry.log", "ab") as log:
            proc = subprocess.Popen([str(shutil.which("docker-registry")), "serve", str(config)],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        reg.pid = proc.pid
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{reg.url}/v2/", timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((root / "reg" / "registry.log").read_text()[-2000:])
            time.sleep(0.1)
        direct = docker_config(root / "direct", reg.host, AUTH_USER, AUTH_PASSWORD)
        proxy = FlakyProxy(reg.port).start()
        path = small_repo(root / "tokenshop", busybox_image, f"{proxy.host}/team/tokenshop")
        ci_deploy(engine, path, f"{reg.host}/team/tokenshop:1.0.0", direct)
        via_proxy = docker_config(root / "via-proxy", proxy.host, AUTH_USER, AUTH_PASSWORD)
        yield TokenShop(path, tokens, proxy, via_proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        reg.stop()
        tokens.stop()


@pytest.mark.fault("registry-token-expiry")
def test_token_expiry(fault: FaultRecorder, tokenshop: TokenShop, engine: sandbox.PrivateEngine,
                      tmp_path: Path) -> None:
    repo = clone(tokenshop.path, tmp_path / "repo")
    state = StateDir(tmp_path / "state")
    env = {"DOCKER_CONFIG": str(tokenshop.config)}
    before_images = tagged_images(engine)

    # each answer comes 1.2 s late: every 1-second token expires before the next request
    tokenshop.proxy.mode, tokenshop.proxy.lag = "lag", TOKEN_LIFETIME + 0.2
    tokenshop.tokens.requests.clear()
    out = devsync(repo, "plan", "--json", engine=engine, state=state.path, env=env)
    tokenshop.proxy.mode = "ok"
    fault.saw(out)
    expect_ok(out)
    plan = json.loads(out.stdout)["images"][0]
    assert plan["cache_from"] == [f"{tokenshop.proxy.host}/team/tokenshop:1.0.0"]
    scopes = [s for _user, asked in tokenshop.tokens.requests for s in asked]
    # devsync noticed the expiry and fetched fresh tokens for the same scope, on its own
    assert scopes.count("repository:team/tokenshop:pull") >= 2, scopes
    fault.saw(out, said="(the plan, as without the fault: devsync fetched a fresh token each "
                        "time the last one had expired)")
    assert fault.intact(tagged_images(engine) == before_images)
    fault.recovered(None, "nothing to recover from: the run succeeded")


# --------------------------------------------------------------------------- manifests and tags


@pytest.mark.fault("registry-missing-manifest")
def test_missing_manifest(fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
                          fault_registry: sandbox.PrivateRegistry, tmp_path: Path) -> None:
    lost = f"{fault_registry.host}/lostshop"
    for version in ("1.0.0", "1.0.1"):
        _retag_and_push(engine, f"{shop.repo}:{version}", f"{lost}:{version}")
    digest = RegistryClient(fault_registry.host).manifest("lostshop", "1.0.1").digest
    link = registry_link(fault_registry, "lostshop", digest)
    saved = link.read_bytes()
    repo = _configure(clone(shop.path, tmp_path / "repo"), lost)
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_images = tagged_images(engine)

    link.unlink()  # the registry's storage lost the manifest; the tag is still listed
    assert "1.0.1" in RegistryClient(fault_registry.host).tags("lostshop")
    plan = devsync(repo, "plan", engine=engine, state=state.path)
    expect_ok(plan)
    assert f"deployed image {lost}:1.0.1 is not in its registry" in plan.stdout
    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    fault.saw(out)
    assert "Traceback" not in out.stderr + out.stdout
    assert fault.intact(state.valid() and all(
        tagged_images(engine).get(k) == v for k, v in before_images.items()))

    link.write_bytes(saved)  # the registry is repaired
    again = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    fault.recovered(again.returncode == 0)
    expect_ok(again)
    # what the plan said is what sync must do: build, without the missing cache source
    expect_ok(out)
    assert "is not in its registry" in out.stdout


@pytest.mark.fault("registry-tag-deleted")
def test_tag_deleted_between_plan_and_sync(fault: FaultRecorder, shop: TeamRepo,
                                           flaky: FlakyProxy, engine: sandbox.PrivateEngine,
                                           fault_registry: sandbox.PrivateRegistry,
                                           tmp_path: Path) -> None:
    upstream = f"{fault_registry.host}/delshop"
    for version in ("1.0.0", "1.0.1"):
        _retag_and_push(engine, f"{shop.repo}:{version}", f"{upstream}:{version}")
    digest = RegistryClient(fault_registry.host).manifest("delshop", "1.0.1").digest
    repo = _configure(clone(shop.path, tmp_path / "repo"), f"{flaky.host}/delshop")
    state = StateDir(tmp_path / "state")
    out = devsync(repo, "plan", "--json", engine=engine, state=state.path)
    expect_ok(out)
    assert json.loads(out.stdout)["images"][0]["cache_from"] == [f"{flaky.host}/delshop:1.0.1"]
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)
    deleted: list[str] = []

    def planned() -> bool:
        return any(ua.startswith("devsync/") and "/v2/delshop/blobs/" in path
                   for _method, path, ua in flaky.requests[sync_started:])

    def delete_when_the_engine_asks(method: str, path: str, headers: dict[str, str]) -> None:
        # sync plans with :1.0.1 (registry client) while the engine comes to pull it: hold
        # the engine's request until the plan has read the image, then delete the tag
        if not deleted and path == "/v2/delshop/manifests/1.0.1" \
                and headers.get("User-Agent", "").startswith("docker/"):
            deadline = time.monotonic() + 30
            while not planned() and time.monotonic() < deadline:
                time.sleep(0.02)
            req = urllib.request.Request(f"{fault_registry.url}/v2/delshop/manifests/{digest}",
                                         method="DELETE")
            with urllib.request.urlopen(req, timeout=10) as resp:
                deleted.append(str(resp.status))

    sync_started = len(flaky.requests)
    flaky.before = delete_when_the_engine_asks
    out = devsync(repo, "sync", "--yes", engine=engine, state=state.path)
    flaky.before = None
    fault.saw(out)
    assert deleted == ["202"], flaky.requests
    expect_error(out, 8, contains="delshop:1.0.1 is not in its registry")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    # the next run plans again: 1.0.0 is now the latest deployed image
    out = devsync(repo, "sync", "--yes", "--json", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0, "with 1.0.0, now the latest")
    expect_ok(out)
    done = [json.loads(line) for line in out.stdout.splitlines() if '"done"' in line]
    assert done and done[-1]["details"]["deployed"] == f"{flaky.host}/delshop:1.0.0"


@pytest.mark.fault("registry-other-arch")
def test_image_only_for_another_architecture(fault: FaultRecorder, shop: TeamRepo,
                                             engine: sandbox.PrivateEngine,
                                             fault_registry: sandbox.PrivateRegistry,
                                             tmp_path: Path) -> None:
    if not os.path.exists(MODERN_CLI):
        pytest.skip("docker manifest needs the modern docker CLI")
    arch = f"{fault_registry.host}/archshop"
    _retag_and_push(engine, f"{shop.repo}:1.0.1", f"{arch}:1.0.1")

    def manifest_list(tag: str, platform_arch: str) -> None:
        cfg = tmp_path / f"manifest-cli-{platform_arch}"
        cfg.mkdir()

        def cli(*args: str) -> None:
            sandbox.docker_cli(engine, "--config", str(cfg), "manifest", *args, cli=MODERN_CLI)

        cli("create", "--insecure", f"{arch}:{tag}", f"{arch}:1.0.1")
        cli("annotate", "--os", "linux", "--arch", platform_arch, f"{arch}:{tag}",
            f"{arch}:1.0.1")
        cli("push", "--insecure", f"{arch}:{tag}")

    manifest_list("1.0.2", "s390x")  # the newest deployment was built for s390x only
    repo = _configure(clone(shop.path, tmp_path / "repo"), arch)
    state = StateDir(tmp_path / "state")
    expect_ok(devsync(repo, "status", engine=engine, state=state.path))
    before_state, before_images = state.files(), tagged_images(engine)

    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.saw(out)
    expect_error(out, 8, contains="available platforms: linux/s390x")
    assert fault.intact(state.files() == before_state
                        and tagged_images(engine) == before_images)

    manifest_list("1.0.2", local_platform().split("/")[1])  # CI builds for this one too
    out = devsync(repo, "plan", engine=engine, state=state.path)
    fault.recovered(out.returncode == 0)
    expect_ok(out)
