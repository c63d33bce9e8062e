"""Read Docker's own client configuration the way the docker CLI does.

Its jobs are on fast paths (no `docker` import here):

* `get_credentials(host)`: the credentials `docker pull HOST/...` would use, from
  `credHelpers` / `credsStore` (running `docker-credential-NAME get`) or `auths` in
  `config.json`. devsync only passes them on to the registry; it never stores or prints them.
* `all_credentials()` and `build_proxy_args(host)`: what the CLI adds to every build request
  (every login, for the builder's own pulls; the configured proxies, as build args).
* `resolve_engine()`: which Docker Engine the `docker` CLI would talk to, following its
  precedence: `DOCKER_HOST` (with `DOCKER_TLS_VERIFY`, `DOCKER_TLS`, `DOCKER_CERT_PATH`), else
  `DOCKER_CONTEXT`, else `currentContext` in `config.json`, else the "default" context.

All mirror docker/cli (cli/command/cli.go `resolveContextName`, cli/flags/options.go,
opts/hosts.go `ParseHost`, cli/context/store, cli/config/credentials, cli/config/configfile).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devsync.errors import EngineUnavailableError, RegistryAuthError

# Docker Hub's credentials live under this legacy v1 URL, whatever name the image uses.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
# The helper may need to unlock a keychain or ask a cloud API (ecr-login, gcloud).
CREDENTIAL_HELPER_TIMEOUT = 15.0
_TOKEN_USERNAME = "<token>"

DEFAULT_UNIX_HOST = "unix:///var/run/docker.sock"
DEFAULT_NPIPE_HOST = "npipe:////./pipe/docker_engine"
_DEFAULT_TCP_PORT = "2375"
_DEFAULT_TLS_PORT = "2376"
DEFAULT_CONTEXT = "default"
# The CLI only accepts such names in `docker context create`.
_CONTEXT_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$")


def docker_config_dir() -> Path:
    """`$DOCKER_CONFIG`, else `~/.docker` (the docker CLI's config directory)."""
    env = os.environ.get("DOCKER_CONFIG", "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".docker"


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """A username with its password, or an identity (OAuth refresh) token.

    `secret` is excluded from `repr`, `str` and equality output of any kind: pass it to the
    registry, never to a log or a message.
    """

    username: str
    secret: str = field(repr=False)
    is_identity_token: bool = False
    source: str = ""  # "config.json auths", "docker-credential-osxkeychain", ...

    def __repr__(self) -> str:
        kind = "identity token" if self.is_identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind}=<hidden>, source={self.source!r})"

    __str__ = __repr__


def config_key_for(registry_host: str) -> str:
    """The key Docker's config uses for a registry: Hub's legacy URL, else `host[:port]`."""
    host = _hostname_of(registry_host)
    if host in _DOCKER_HUB_ALIASES or registry_host == DOCKER_HUB_CONFIG_KEY:
        return DOCKER_HUB_CONFIG_KEY
    return host


def get_credentials(registry_host: str) -> Credentials | None:
    """The credentials the docker CLI would send to `registry_host`, or None for anonymous.

    Order as in docker/cli: `DOCKER_AUTH_CONFIG` (a JSON config in the environment), then the
    credential helper for the host (`credHelpers[host]`, else `credsStore`), else `auths`.
    A configured helper that does not know the host means anonymous, as for the CLI; a helper
    that fails raises `RegistryAuthError` (with no secret in it).
    """
    key = config_key_for(registry_host)
    env_config = os.environ.get("DOCKER_AUTH_CONFIG", "")
    if env_config:
        try:
            parsed = json.loads(env_config)
        except ValueError:
            parsed = None  # the CLI ignores a malformed DOCKER_AUTH_CONFIG too
        if isinstance(parsed, dict):
            creds = _from_auths(parsed.get("auths"), key, source="DOCKER_AUTH_CONFIG")
            if creds is not None:
                return creds

    config = _load_config_for_credentials()
    helper = _helper_for(config, key)
    if helper:
        return _from_helper(helper, key)
    return _from_auths(config.get("auths"), key, source="config.json auths")


def _helper_for(config: dict[str, Any], key: str) -> str:
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        name = helpers.get(key)
        if isinstance(name, str) and name:
            return name
    store = config.get("credsStore")
    return store if isinstance(store, str) else ""


def _from_auths(auths: object, key: str, *, source: str) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    entry = auths.get(key)
    if entry is None:
        # legacy keys such as "https://host:5000" or "http://host/v1/"
        for name, value in auths.items():
            if isinstance(name, str) and _hostname_of(name) == key:
                entry = value
                break
            if key == DOCKER_HUB_CONFIG_KEY and isinstance(name, str) and (
                _hostname_of(name) in _DOCKER_HUB_ALIASES
            ):
                entry = value
                break
    if not isinstance(entry, dict):
        return None
    username, password = "", ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryAuthError(
                f"the saved login for {key} in Docker's config is not valid base64",
                hint=f"run `docker login {key}` again",
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise RegistryAuthError(
                f"the saved login for {key} in Docker's config is malformed",
                hint=f"run `docker login {key}` again",
            )
        password = password.strip("\x00")
    else:
        username = str(entry.get("username") or "")
        password = str(entry.get("password") or "")
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(username, token, is_identity_token=True, source=source)
    if username or password:
        return Credentials(username, password, source=source)
    return None


def all_credentials() -> dict[str, Credentials]:
    """What the docker CLI sends with every build (its GetAllCredentials): the credentials of
    each registry that `auths`, `credHelpers` or DOCKER_AUTH_CONFIG name or the `credsStore`
    helper lists, keyed as Docker's config keys them, each looked up as `get_credentials`
    would. The builder then pulls a `FROM` image that is not local with the right login."""
    names: set[str] = set()
    env_config = os.environ.get("DOCKER_AUTH_CONFIG", "")
    if env_config:
        with contextlib.suppress(ValueError):
            parsed = json.loads(env_config)
            if isinstance(parsed, dict) and isinstance(parsed.get("auths"), dict):
                names.update(parsed["auths"])
    config = _load_config_for_credentials()
    for section in ("auths", "credHelpers"):
        if isinstance(config.get(section), dict):
            names.update(config[section])
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        names.update(_helper_list(store))
    found: dict[str, Credentials] = {}
    for key in sorted({config_key_for(str(name)) for name in names}):
        creds = get_credentials(key)
        if creds is not None:
            found[key] = creds
    return found


def build_proxy_args(engine_host: str) -> dict[str, str]:
    """The proxy build args the docker CLI adds to every build: config.json's `proxies` for
    `engine_host`, else its "default" entry (an unreadable config adds none)."""
    try:
        proxies = _read_config().get("proxies")
    except (OSError, ValueError):
        return {}
    if not isinstance(proxies, dict):
        return {}
    entry = proxies.get(engine_host) or proxies.get("default")
    if not isinstance(entry, dict):
        return {}
    args: dict[str, str] = {}
    for key, name in (("httpProxy", "HTTP_PROXY"), ("httpsProxy", "HTTPS_PROXY"),
                      ("noProxy", "NO_PROXY"), ("ftpProxy", "FTP_PROXY"),
                      ("allProxy", "ALL_PROXY")):
        value = entry.get(key)
        if isinstance(value, str) and value:
            args[name] = args[name.lower()] = value
    return args


def _run_helper(helper: str, action: str, stdin: str,
                what: str) -> subprocess.CompletedProcess[bytes]:
    program = f"docker-credential-{helper}"
    exe = shutil.which(program)
    if exe is None:
        raise RegistryAuthError(
            f"Docker's config names the credential helper {program}, which is not on PATH",
            hint="install it, or remove credsStore/credHelpers from Docker's config.json",
        )
    try:
        return subprocess.run(
            [exe, action],
            input=stdin.encode(),  # the helper protocol: server URL on stdin, no newline
            capture_output=True,
            timeout=CREDENTIAL_HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(
            f"credential helper {program} did not answer within "
            f"{CREDENTIAL_HELPER_TIMEOUT:.0f}s for {what}",
            hint="unlock your keychain or check the helper, then try again",
        ) from None
    except OSError as exc:
        raise RegistryAuthError(f"cannot run credential helper {program}: {exc.strerror}") from None


def _helper_list(helper: str) -> list[str]:
    """The servers the credential helper holds logins for (`docker-credential-NAME list`)."""
    program = f"docker-credential-{helper}"
    proc = _run_helper(helper, "list", "", "its list of logins")
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        err = (out or proc.stderr.decode("utf-8", "replace")).strip()
        first = err.splitlines()[0][:200] if err else f"exit status {proc.returncode}"
        raise RegistryAuthError(f"credential helper {program} failed to list its logins: {first}")
    try:
        listed = json.loads(out or "{}")
    except ValueError:
        listed = None
    if not isinstance(listed, dict):
        raise RegistryAuthError(f"credential helper {program} listed its logins in a form "
                                "that is not a JSON object")
    return [str(server) for server in listed]


def _from_helper(helper: str, key: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    proc = _run_helper(helper, "get", key, key)
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        err = (out or proc.stderr.decode("utf-8", "replace")).strip()
        if "credentials not found" in err.lower():
            return None
        # the helper's own error text names the problem; keep only its first line
        first = err.splitlines()[0][:200] if err else f"exit status {proc.returncode}"
        raise RegistryAuthError(f"credential helper {program} failed for {key}: {first}")
    try:
        data = json.loads(out)
        username = str(data.get("Username") or "")
        secret = str(data.get("Secret") or "")
    except (ValueError, AttributeError):
        raise RegistryAuthError(
            f"credential helper {program} gave an answer that is not JSON for {key}"
        ) from None
    if not secret and not username:
        return None
    if username == _TOKEN_USERNAME:
        return Credentials("", secret, is_identity_token=True, source=program)
    return Credentials(username, secret, source=program)


def _hostname_of(value: str) -> str:
    """docker/cli ConvertToHostname: strip a scheme and any path."""
    if "://" in value:
        parts = urlsplit(value)
        if parts.hostname:
            host = parts.hostname
            if ":" in host:
                host = f"[{host}]"
            return f"{host}:{parts.port}" if parts.port else host
    return value.split("/", 1)[0]


def _config_path() -> Path:
    return docker_config_dir() / "config.json"


def _read_config() -> dict[str, Any]:
    """config.json as a dict ({} when absent); raises ValueError/OSError with the reason."""
    path = _config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("top level is not a JSON object")
    return data


def _load_config_for_credentials() -> dict[str, Any]:
    try:
        return _read_config()
    except (OSError, ValueError) as exc:
        raise RegistryAuthError(
            f"cannot read Docker's config {_config_path()}: {_reason(exc)}",
            hint="fix or remove that file (docker login rewrites it)",
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- engine endpoint


@dataclass(frozen=True)
class EngineEndpoint:
    """Where the Docker Engine is, and how to reach it, as the docker CLI would decide.

    `tls` says whether a tcp:// host speaks TLS; `tls_verify` whether the server certificate is
    verified (against `ca_cert` when set, else the system CAs). Socket hosts (unix, npipe) and
    ssh:// ignore TLS.
    """

    host: str
    tls: bool = False
    tls_verify: bool = False
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    context_name: str = DEFAULT_CONTEXT
    source: str = "default context"

    @property
    def scheme(self) -> str:
        return self.host.split("://", 1)[0]


def resolve_engine() -> EngineEndpoint:
    """The engine the docker CLI would use, without contacting it.

    Raises `EngineUnavailableError` for a bad or missing context, unreadable metadata, a bad
    `DOCKER_HOST`, or missing TLS files.
    """
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host:
        # DOCKER_HOST wins over DOCKER_CONTEXT and currentContext (resolveContextName)
        return _default_endpoint(docker_host, source="DOCKER_HOST")
    env_context = os.environ.get("DOCKER_CONTEXT", "")
    if env_context:
        return _named_endpoint(env_context, source=f"DOCKER_CONTEXT={env_context}")
    try:
        config = _read_config()
    except (OSError, ValueError) as exc:
        raise EngineUnavailableError(
            f"cannot read Docker's config {_config_path()}: {_reason(exc)}",
            hint="fix or remove that file, or set DOCKER_HOST",
        ) from None
    current = config.get("currentContext")
    if isinstance(current, str) and current:
        return _named_endpoint(current, source=f"context {current}")
    return _default_endpoint("", source="default context")


def context_dir_name(name: str) -> str:
    """Contexts are stored under the hex sha256 of their name (cli/context/store)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _named_endpoint(name: str, *, source: str) -> EngineEndpoint:
    if name == DEFAULT_CONTEXT:
        return _default_endpoint("", source=source)
    if not _CONTEXT_NAME_RE.match(name):
        raise EngineUnavailableError(
            f"invalid Docker context name {name!r} ({source})",
            hint="see `docker context ls` for the contexts you have",
        )
    contexts = docker_config_dir() / "contexts"
    meta_path = contexts / "meta" / context_dir_name(name) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineUnavailableError(
            f"Docker context {name!r} does not exist ({source})",
            hint="see `docker context ls`, or pick one with `docker context use NAME`",
        ) from None
    except (OSError, ValueError) as exc:
        raise EngineUnavailableError(
            f"cannot read Docker context {name!r} metadata {meta_path}: {_reason(exc)}",
            hint="recreate the context with `docker context create`",
        ) from None
    endpoints = meta.get("Endpoints") if isinstance(meta, dict) else None
    docker_ep = endpoints.get("docker") if isinstance(endpoints, dict) else None
    if not isinstance(docker_ep, dict):
        raise EngineUnavailableError(
            f"Docker context {name!r} has no docker endpoint ({meta_path})",
            hint="recreate the context with `docker context create`",
        )
    host = docker_ep.get("Host")
    if not isinstance(host, str) or not host:
        # the CLI passes an empty host on to its client, which then uses the default socket
        host = _platform_default_host()
    skip_verify = bool(docker_ep.get("SkipTLSVerify"))
    tls_dir = contexts / "tls" / context_dir_name(name) / "docker"
    ca, cert, key = (_existing(tls_dir / f) for f in ("ca.pem", "cert.pem", "key.pem"))
    if (cert is None) != (key is None):
        cert = key = None  # the CLI only uses a client key pair when both halves are there
    tls = ca is not None or cert is not None or skip_verify
    if _is_socket(host):
        tls = False
    return EngineEndpoint(
        host=host,
        tls=tls,
        tls_verify=tls and not skip_verify,
        ca_cert=ca if tls else None,
        client_cert=cert if tls else None,
        client_key=key if tls else None,
        context_name=name,
        source=source,
    )


def _default_endpoint(docker_host: str, *, source: str) -> EngineEndpoint:
    # cli/flags/options.go: any non-empty value enables; DOCKER_TLS_VERIFY=0 still verifies
    tls_verify = os.environ.get("DOCKER_TLS_VERIFY", "") != ""
    tls = tls_verify or os.environ.get("DOCKER_TLS", "") != ""
    try:
        host = parse_host(docker_host, default_to_tls=tls)
    except ValueError as exc:
        raise EngineUnavailableError(
            f"invalid DOCKER_HOST {docker_host!r}: {exc}",
            hint="use unix:///path/to/docker.sock, tcp://HOST:PORT or ssh://USER@HOST",
        ) from None
    if not tls or _is_socket(host) or host.startswith("ssh://"):
        return EngineEndpoint(host=host, context_name=DEFAULT_CONTEXT, source=source)
    cert_path = Path(os.environ.get("DOCKER_CERT_PATH", "") or docker_config_dir())
    ca = _existing(cert_path / "ca.pem")
    if tls_verify and ca is None:
        raise EngineUnavailableError(
            f"DOCKER_TLS_VERIFY is set but there is no CA certificate at {cert_path / 'ca.pem'}",
            hint="set DOCKER_CERT_PATH to the directory with ca.pem, cert.pem and key.pem",
        )
    return EngineEndpoint(
        host=host,
        tls=True,
        tls_verify=tls_verify,
        ca_cert=ca if tls_verify else None,
        client_cert=_existing(cert_path / "cert.pem"),
        client_key=_existing(cert_path / "key.pem"),
        context_name=DEFAULT_CONTEXT,
        source=source,
    )


def parse_host(value: str, *, default_to_tls: bool = False) -> str:
    """docker/cli opts.ParseHost: normalise a DOCKER_HOST value (raises ValueError)."""
    addr = value.strip()
    if not addr:
        if default_to_tls:
            return f"tcp://localhost:{_DEFAULT_TLS_PORT}"
        return _platform_default_host()
    proto, sep, rest = addr.partition("://")
    if not sep:
        rest = proto
        proto = "unix" if rest.startswith(("/", "./")) else "tcp"
    if proto == "tcp":
        return _parse_tcp(rest)
    if proto in ("unix", "npipe"):
        if "://" in rest:
            raise ValueError(f"invalid proto, expected {proto}")
        default = "/var/run/docker.sock" if proto == "unix" else "//./pipe/docker_engine"
        return f"{proto}://{rest or default}"
    if proto in ("ssh", "fd"):
        return addr
    raise ValueError("unsupported scheme (expected unix, tcp, ssh, npipe or fd)")


def _parse_tcp(rest: str) -> str:
    if not rest:
        return f"tcp://localhost:{_DEFAULT_TCP_PORT}"
    if "://" in rest:
        raise ValueError("invalid proto, expected tcp")
    netloc, slash, path = rest.partition("/")
    path = slash + path if slash else ""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ValueError("invalid IPv6 address")
        host = netloc[: end + 1]
        port = netloc[end + 2 :] if netloc[end + 1 : end + 2] == ":" else ""
    else:
        host, _, port = netloc.partition(":")
        if ":" in port:
            raise ValueError("invalid address (bracket IPv6 addresses: [::1]:2375)")
    host = host or "localhost"
    port = port or _DEFAULT_TCP_PORT
    if not port.isdigit():
        raise ValueError(f"invalid port {port!r}")
    return f"tcp://{host}:{port}{path}"


def _platform_default_host() -> str:
    return DEFAULT_NPIPE_HOST if os.name == "nt" else DEFAULT_UNIX_HOST


def _is_socket(host: str) -> bool:
    return host.split("://", 1)[0] in ("unix", "npipe", "fd")


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None
