"""Docker client config: credentials lookup and engine resolution, checked against the real CLI.

Every test works on a fake Docker config directory in `tmp_path` (via `DOCKER_CONFIG`), never
on the user's own `~/.docker`. Where the real docker CLI can tell what it would do (`docker
context create/use/show/inspect`), the test asks it and compares.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.adapters.dockerconfig import (
    DOCKER_HUB_CONFIG_KEY,
    Credentials,
    EngineEndpoint,
    all_credentials,
    build_proxy_args,
    docker_config_dir,
    get_credentials,
    resolve_engine,
)
from devsync.devtools.sandbox import PrivateEngine
from devsync.errors import EngineUnavailableError, RegistryAuthError

MODERN_CLI = "/usr/local/bin/docker"
_ENGINE_VARS = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_TLS",
                "DOCKER_CERT_PATH", "DOCKER_AUTH_CONFIG")


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config dir, with every engine/auth variable cleared."""
    for var in _ENGINE_VARS:
        monkeypatch.delenv(var, raising=False)
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


def _write_config(cfg: Path, data: dict[str, object]) -> None:
    (cfg / "config.json").write_text(json.dumps(data))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _real_cli(*args: str, env_extra: dict[str, str] | None = None) -> str:
    exe = MODERN_CLI if os.path.exists(MODERN_CLI) else shutil.which("docker")
    if exe is None:
        pytest.skip("no docker CLI")
    env = {k: v for k, v in os.environ.items() if k not in _ENGINE_VARS}
    env["DOCKER_CONFIG"] = os.environ["DOCKER_CONFIG"]
    env.update(env_extra or {})
    proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --------------------------------------------------------------------------- config dir


def test_config_dir_from_env_or_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "x"))
    assert docker_config_dir() == tmp_path / "x"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert docker_config_dir() == tmp_path / "home" / ".docker"


# --------------------------------------------------------------------------- credentials


def test_no_config_means_anonymous(cfg: Path) -> None:
    assert get_credentials("localhost:5000") is None
    _write_config(cfg, {"auths": {"other:5000": {"auth": _b64("u:p")}}})
    assert get_credentials("localhost:5000") is None


def test_auths_basic_entry(cfg: Path) -> None:
    _write_config(cfg, {"auths": {"localhost:5000": {"auth": _b64("alice:s3cr:et")}}})
    creds = get_credentials("localhost:5000")
    assert creds is not None
    assert (creds.username, creds.secret, creds.is_identity_token) == ("alice", "s3cr:et", False)
    assert creds.source == "config.json auths"


def test_auths_legacy_url_keys_match_the_host(cfg: Path) -> None:
    _write_config(cfg, {"auths": {"https://reg.example:5000/v1/": {"auth": _b64("bob:pw")}}})
    creds = get_credentials("reg.example:5000")
    assert creds is not None and creds.username == "bob"


def test_identity_token(cfg: Path) -> None:
    _write_config(cfg, {"auths": {"ghcr.example": {"auth": _b64("carol:"),
                                                    "identitytoken": "refresh-xyz"}}})
    creds = get_credentials("ghcr.example")
    assert creds is not None
    assert creds.is_identity_token and creds.secret == "refresh-xyz"


@pytest.mark.parametrize(
    "host", ["docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_CONFIG_KEY]
)
def test_docker_hub_aliases_use_the_v1_key(cfg: Path, host: str) -> None:
    _write_config(cfg, {"auths": {DOCKER_HUB_CONFIG_KEY: {"auth": _b64("hubuser:hubpw")}}})
    creds = get_credentials(host)
    assert creds is not None and creds.username == "hubuser"


def test_secret_never_in_repr_or_str() -> None:
    creds = Credentials("dave", "hunter2-very-secret", source="x")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "hunter2" not in text
        assert "dave" in text


def test_malformed_auth_is_an_auth_error_without_the_value(cfg: Path) -> None:
    _write_config(cfg, {"auths": {"localhost:5000": {"auth": _b64("no-colon-secretvalue")}}})
    with pytest.raises(RegistryAuthError) as info:
        get_credentials("localhost:5000")
    assert "secretvalue" not in str(info.value)
    assert "docker login localhost:5000" in (info.value.hint or "")


def test_unreadable_config_json(cfg: Path) -> None:
    (cfg / "config.json").write_text("{not json")
    with pytest.raises(RegistryAuthError, match="cannot read Docker's config"):
        get_credentials("localhost:5000")


def test_docker_auth_config_env_wins(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config(cfg, {"auths": {"localhost:5000": {"auth": _b64("file:pw")}}})
    monkeypatch.setenv("DOCKER_AUTH_CONFIG",
                       json.dumps({"auths": {"localhost:5000": {"auth": _b64("env:pw")}}}))
    creds = get_credentials("localhost:5000")
    assert creds is not None and creds.username == "env"


FAKE_HELPER = """#!/bin/sh
# a docker-credential helper: reads the server URL on stdin, answers JSON
if [ "$1" = list ]; then
  echo '{{"localhost:5000":"helperuser","https://unknown.example":"gone"}}'; exit 0
fi
[ "$1" = get ] || exit 2
url=$(cat)
printf '%s' "$url" >> "{log}"
printf '\\n' >> "{log}"
case "$url" in
  localhost:5000) echo '{{"Username":"helperuser","Secret":"helper-secret-1"}}' ;;
  tokens.example) echo '{{"ServerURL":"tokens.example","Username":"<token>","Secret":"idtok-2"}}' ;;
  broken.example) echo 'keychain exploded' >&2; exit 1 ;;
  garbage.example) echo 'not json' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"""


def install_fake_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        name: str = "fake") -> Path:
    """Put `docker-credential-NAME` on PATH; returns the log of server URLs it was asked for."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / f"{name}-helper.log"
    script = bindir / f"docker-credential-{name}"
    script.write_text(FAKE_HELPER.format(log=log))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def test_creds_store_helper(cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = install_fake_helper(tmp_path, monkeypatch)
    _write_config(cfg, {"credsStore": "fake",
                        "auths": {"localhost:5000": {"auth": _b64("fileuser:filepw")}}})
    creds = get_credentials("localhost:5000")
    assert creds is not None
    assert (creds.username, creds.secret) == ("helperuser", "helper-secret-1")
    assert creds.source == "docker-credential-fake"
    # the helper protocol: exactly the server address on stdin, no newline
    assert log.read_text() == "localhost:5000\n"


def test_helper_not_found_means_anonymous_like_the_cli(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_helper(tmp_path, monkeypatch)
    # the CLI's native store does not fall back to plain `auths` for the same host
    _write_config(cfg, {"credsStore": "fake",
                        "auths": {"unknown.example": {"auth": _b64("fileuser:filepw")}}})
    assert get_credentials("unknown.example") is None


def test_cred_helpers_entry_beats_creds_store_and_auths(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_helper(tmp_path, monkeypatch)
    install_fake_helper(tmp_path, monkeypatch, name="other")
    _write_config(cfg, {"credsStore": "other", "credHelpers": {"tokens.example": "fake"},
                        "auths": {"tokens.example": {"auth": _b64("fileuser:filepw")}}})
    creds = get_credentials("tokens.example")
    assert creds is not None
    # "<token>" as the username marks an identity token
    assert creds.is_identity_token and creds.secret == "idtok-2" and creds.username == ""
    assert (tmp_path / "fake-helper.log").read_text() == "tokens.example\n"
    assert not (tmp_path / "other-helper.log").exists()


def test_hub_helper_is_asked_for_the_v1_url(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = install_fake_helper(tmp_path, monkeypatch)
    _write_config(cfg, {"credHelpers": {DOCKER_HUB_CONFIG_KEY: "fake"}})
    assert get_credentials("docker.io") is None  # our fake knows nothing about Hub
    assert log.read_text() == DOCKER_HUB_CONFIG_KEY + "\n"


@pytest.mark.parametrize("host,match", [
    ("broken.example", "docker-credential-fake failed for broken.example: keychain exploded"),
    ("garbage.example", "not JSON"),
])
def test_failing_helper_is_an_auth_error(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, match: str
) -> None:
    install_fake_helper(tmp_path, monkeypatch)
    _write_config(cfg, {"credsStore": "fake"})
    with pytest.raises(RegistryAuthError, match=match):
        get_credentials(host)


def test_missing_helper_program(cfg: Path) -> None:
    _write_config(cfg, {"credsStore": "does-not-exist-anywhere"})
    with pytest.raises(RegistryAuthError, match="docker-credential-does-not-exist-anywhere"):
        get_credentials("localhost:5000")


def test_all_credentials_as_the_cli_sends_them_with_a_build(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker/cli GetAllCredentials: what the store lists, every credHelpers entry, each
    looked up with the usual precedence; a listed login the helper no longer has is left out."""
    install_fake_helper(tmp_path, monkeypatch)
    _write_config(cfg, {"credsStore": "fake", "credHelpers": {"tokens.example": "fake"},
                        "auths": {"https://file.example/v1/": {"auth": _b64("f:pw")}}})
    monkeypatch.setenv("DOCKER_AUTH_CONFIG",
                       json.dumps({"auths": {"env.example": {"auth": _b64("env:pw")}}}))
    found = all_credentials()
    assert sorted(found) == ["env.example", "localhost:5000", "tokens.example"]
    assert (found["localhost:5000"].username, found["localhost:5000"].secret) == (
        "helperuser", "helper-secret-1")
    assert found["tokens.example"].is_identity_token
    assert found["env.example"].username == "env"
    # (the store is the helper for file.example too, and it has no login for it)
    assert "file.example\n" in (tmp_path / "fake-helper.log").read_text()


def test_all_credentials_without_a_helper(cfg: Path) -> None:
    _write_config(cfg, {"auths": {"https://file.example:5000": {"auth": _b64("f:pw")},
                                  "index.docker.io": {"auth": _b64("hub:pw")}}})
    found = all_credentials()
    assert sorted(found) == sorted([DOCKER_HUB_CONFIG_KEY, "file.example:5000"])
    assert found[DOCKER_HUB_CONFIG_KEY].username == "hub"
    assert not any("pw" in repr(c) for c in found.values())


def test_all_credentials_from_a_store_that_cannot_list(cfg: Path) -> None:
    _write_config(cfg, {"credsStore": "does-not-exist-anywhere"})
    with pytest.raises(RegistryAuthError, match="docker-credential-does-not-exist-anywhere"):
        all_credentials()


def test_build_proxy_args_from_the_config(cfg: Path) -> None:
    _write_config(cfg, {"proxies": {
        "default": {"httpProxy": "http://proxy.example:3128", "noProxy": "localhost,.lan"},
        "unix:///run/other.sock": {"httpsProxy": "http://secure.example:1"},
    }})
    assert build_proxy_args("unix:///var/run/docker.sock") == {
        "HTTP_PROXY": "http://proxy.example:3128", "http_proxy": "http://proxy.example:3128",
        "NO_PROXY": "localhost,.lan", "no_proxy": "localhost,.lan"}
    # an entry for the engine's own host replaces the default one, as in the CLI
    assert build_proxy_args("unix:///run/other.sock") == {
        "HTTPS_PROXY": "http://secure.example:1", "https_proxy": "http://secure.example:1"}


@pytest.mark.parametrize("text", ["", "{not json", '{"proxies": ["x"]}',
                                  '{"proxies": {"default": "x"}}'])
def test_no_proxy_args_without_a_usable_proxies_entry(cfg: Path, text: str) -> None:
    (cfg / "config.json").write_text(text)
    assert build_proxy_args("unix:///var/run/docker.sock") == {}


# --------------------------------------------------------------------------- engine


def _context_meta_dir(cfg: Path, name: str) -> Path:
    return cfg / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()


def _write_context(cfg: Path, name: str, host: str, skip_verify: bool = False) -> None:
    meta = _context_meta_dir(cfg, name)
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}},
    }))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, cert.pem, key.pem (a self-signed pair) as the CLI expects them."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make TLS files")
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=devsync",
         "-days", "2", "-keyout", str(directory / "key.pem"), "-out",
         str(directory / "cert.pem")],
        check=True, capture_output=True,
    )
    shutil.copy(directory / "cert.pem", directory / "ca.pem")
    return directory


def test_default_is_the_unix_socket(cfg: Path) -> None:
    ep = resolve_engine()
    assert ep == EngineEndpoint(host="unix:///var/run/docker.sock", context_name="default",
                                source="default context")


def test_docker_host_wins_over_context_and_current_context(cfg: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _write_context(cfg, "other", "tcp://127.0.0.1:2999")
    _write_config(cfg, {"currentContext": "other"})
    monkeypatch.setenv("DOCKER_CONTEXT", "other")
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/some.sock")
    ep = resolve_engine()
    assert (ep.host, ep.source, ep.context_name, ep.tls) == (
        "unix:///tmp/some.sock", "DOCKER_HOST", "default", False)
    # and that is what the CLI thinks too
    assert _real_cli("context", "show", env_extra={
        "DOCKER_HOST": "unix:///tmp/some.sock", "DOCKER_CONTEXT": "other"}) == "default"


@pytest.mark.parametrize("value,expected", [
    ("tcp://127.0.0.1", "tcp://127.0.0.1:2375"),
    ("127.0.0.1:99", "tcp://127.0.0.1:99"),
    ("tcp://", "tcp://localhost:2375"),
    ("ssh://me@box", "ssh://me@box"),
    ("unix://", "unix:///var/run/docker.sock"),
])
def test_docker_host_normalised_like_the_cli(cfg: Path, monkeypatch: pytest.MonkeyPatch,
                                            value: str, expected: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", value)
    assert resolve_engine().host == expected
    shown = _real_cli("context", "inspect", "default", "--format", "{{json .Endpoints}}",
                      env_extra={"DOCKER_HOST": value})
    assert json.loads(shown)["docker"]["Host"] == expected


def test_bad_docker_host(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "foo://x")
    with pytest.raises(EngineUnavailableError, match="invalid DOCKER_HOST"):
        resolve_engine()


def test_docker_tls_verify_with_cert_path(cfg: Path, tls_files: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "0")  # any non-empty value turns it on, as in the CLI
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tls_files))
    ep = resolve_engine()
    assert ep.tls and ep.tls_verify
    assert (ep.ca_cert, ep.client_cert, ep.client_key) == (
        tls_files / "ca.pem", tls_files / "cert.pem", tls_files / "key.pem")


def test_docker_tls_verify_without_host_defaults_to_2376(cfg: Path, tls_files: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):  # DOCKER_CERT_PATH defaults to the config dir
        shutil.copy(tls_files / name, cfg / name)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    ep = resolve_engine()
    assert ep.host == "tcp://localhost:2376" and ep.tls_verify and ep.ca_cert == cfg / "ca.pem"
    shown = _real_cli("context", "inspect", "default", "--format", "{{json .Endpoints}}",
                      env_extra={"DOCKER_TLS_VERIFY": "1"})
    assert json.loads(shown)["docker"] == {"Host": "tcp://localhost:2376", "SkipTLSVerify": False}


def test_docker_tls_without_verify(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS", "1")
    ep = resolve_engine()
    assert ep.tls and not ep.tls_verify and ep.ca_cert is None


def test_tls_verify_without_ca_is_an_error(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(cfg / "nowhere"))
    with pytest.raises(EngineUnavailableError, match="no CA certificate") as info:
        resolve_engine()
    assert "DOCKER_CERT_PATH" in (info.value.hint or "")


def test_tls_vars_ignored_for_a_socket(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/x.sock")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    ep = resolve_engine()
    assert not ep.tls and ep.ca_cert is None


def test_contexts_made_by_the_real_cli(cfg: Path, tls_files: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _real_cli("context", "create", "plain", "--docker", "host=tcp://127.0.0.1:2999")
    _real_cli("context", "create", "secure", "--docker",
              f"host=tcp://127.0.0.1:2376,ca={tls_files / 'ca.pem'},"
              f"cert={tls_files / 'cert.pem'},key={tls_files / 'key.pem'}")
    _real_cli("context", "create", "skippy", "--docker",
              "host=tcp://127.0.0.1:2377,skip-tls-verify=true")
    _real_cli("context", "use", "secure")

    ep = resolve_engine()  # currentContext from config.json
    tls_dir = cfg / "contexts" / "tls" / hashlib.sha256(b"secure").hexdigest() / "docker"
    assert ep == EngineEndpoint(
        host="tcp://127.0.0.1:2376", tls=True, tls_verify=True,
        ca_cert=tls_dir / "ca.pem", client_cert=tls_dir / "cert.pem",
        client_key=tls_dir / "key.pem", context_name="secure", source="context secure",
    )
    assert ep.ca_cert is not None and ep.ca_cert.read_bytes() == (tls_files / "ca.pem").read_bytes()

    monkeypatch.setenv("DOCKER_CONTEXT", "plain")  # beats currentContext
    ep = resolve_engine()
    assert (ep.host, ep.tls, ep.context_name, ep.source) == (
        "tcp://127.0.0.1:2999", False, "plain", "DOCKER_CONTEXT=plain")
    assert _real_cli("context", "show", env_extra={"DOCKER_CONTEXT": "plain"}) == "plain"

    monkeypatch.setenv("DOCKER_CONTEXT", "skippy")
    ep = resolve_engine()
    assert ep.tls and not ep.tls_verify and ep.ca_cert is None

    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    assert resolve_engine().host == "unix:///var/run/docker.sock"


def test_missing_context(cfg: Path) -> None:
    _write_config(cfg, {"currentContext": "colima"})
    with pytest.raises(EngineUnavailableError, match="'colima' does not exist") as info:
        resolve_engine()
    assert "docker context" in (info.value.hint or "")


def test_bad_context_name(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONTEXT", "../../etc")
    with pytest.raises(EngineUnavailableError, match="invalid Docker context name"):
        resolve_engine()


def test_unreadable_context_meta(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = _context_meta_dir(cfg, "colima")
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text("{oops")
    monkeypatch.setenv("DOCKER_CONTEXT", "colima")
    with pytest.raises(EngineUnavailableError, match="cannot read Docker context 'colima'"):
        resolve_engine()
    (meta / "meta.json").write_text(json.dumps({"Name": "colima", "Endpoints": {}}))
    with pytest.raises(EngineUnavailableError, match="has no docker endpoint"):
        resolve_engine()


def test_context_with_ssh_host(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_context(cfg, "remote", "ssh://dev@buildbox")
    monkeypatch.setenv("DOCKER_CONTEXT", "remote")
    ep = resolve_engine()
    assert (ep.host, ep.scheme, ep.tls) == ("ssh://dev@buildbox", "ssh", False)


def test_unreadable_config_json_for_engine(cfg: Path) -> None:
    (cfg / "config.json").write_text("[1, 2")
    with pytest.raises(EngineUnavailableError, match="cannot read Docker's config"):
        resolve_engine()


def test_resolves_the_private_engine(cfg: Path, engine: PrivateEngine,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    ep = resolve_engine()
    assert ep.host == engine.url and ep.scheme == "unix"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(ep.host.removeprefix("unix://"))
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        assert b"200 OK" in s.recv(256)


def test_modules_do_not_import_docker() -> None:
    # these modules sit on devsync's fast paths (`devsync --check`)
    code = ("import sys, devsync.adapters.dockerconfig, devsync.adapters.registry; "
            "print('docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, check=True)
    assert out.stdout.strip() == "False"
