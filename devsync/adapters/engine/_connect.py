"""Which engine to talk to, and the Docker SDK client for it.

The endpoint is the one the docker CLI would use (devsync.adapters.dockerconfig: DOCKER_HOST,
the current context, TLS files). The SDK is first imported here, when a call first needs it,
and without paramiko unless the host is ssh:// (see `_import_sdk`); its client honours the
endpoint's TLS settings whatever the environment says. A failure to connect becomes one
`EngineUnavailableError` that says which side failed and what to try (`connect_failure`).
Registry credentials for the Engine API's X-Registry-Auth header come from Docker's config
(`auth_config`, `login`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from devsync.adapters.engine import socketapi as enginesocket
from devsync.adapters.engine._failures import exception_chain, is_timeout, shorten
from devsync.errors import EngineUnavailableError
from devsync.model.versions import registry_of

if TYPE_CHECKING:
    import docker

    from devsync.adapters.dockerconfig import Credentials

DEFAULT_HOST = "unix:///var/run/docker.sock"


class EndpointLike(Protocol):
    """What `devsync.adapters.dockerconfig.EngineEndpoint` offers (read-only)."""

    @property
    def host(self) -> str: ...
    @property
    def tls_verify(self) -> bool: ...
    @property
    def ca_cert(self) -> str | os.PathLike[str] | None: ...
    @property
    def client_cert(self) -> str | os.PathLike[str] | None: ...
    @property
    def client_key(self) -> str | os.PathLike[str] | None: ...
    @property
    def context_name(self) -> str: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class PlainEndpoint:
    host: str
    tls: bool = False
    tls_verify: bool = False
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    context_name: str = "default"
    source: str = "default"


def default_endpoint() -> EndpointLike:
    """The engine the docker CLI would use (devsync.adapters.dockerconfig), else DOCKER_HOST or
    the default socket."""
    try:
        from devsync.adapters.dockerconfig import resolve_engine
    except ImportError:
        host = os.environ.get("DOCKER_HOST", "")
        return PlainEndpoint(host or DEFAULT_HOST, source="DOCKER_HOST" if host else "default")
    return resolve_engine()


def _import_sdk(*, ssh: bool) -> None:
    """Import the Docker SDK; its ssh transport (and paramiko, ~0.12 s) only for ssh:// hosts.

    The SDK imports paramiko whenever it is installed, though only ssh:// engines use it, and
    every command that talks to an engine over the SDK would pay for it. Hiding paramiko while
    the SDK is first imported makes the SDK leave its ssh transport out; an ssh:// engine later
    in the same process imports the transport then and hands it to the SDK.
    """
    if "docker" not in sys.modules and "paramiko" not in sys.modules and not ssh:
        sys.modules["paramiko"] = None  # type: ignore[assignment]  # "import paramiko" fails
        try:
            import docker
        finally:
            if sys.modules.get("paramiko", ...) is None:
                del sys.modules["paramiko"]
        return
    import docker.api.client
    import docker.transport

    if ssh and not hasattr(docker.api.client, "SSHHTTPAdapter"):
        try:
            from docker.transport.sshconn import SSHHTTPAdapter
        except ImportError:  # no paramiko: connecting says so (see connect_failure)
            return
        docker.transport.SSHHTTPAdapter = SSHHTTPAdapter
        docker.api.client.SSHHTTPAdapter = SSHHTTPAdapter


def sdk_client(endpoint: EndpointLike, *, timeout: float,
               api_timeout: float) -> docker.DockerClient:
    """The SDK's client for `endpoint`, which answered its version request within `timeout`."""
    host = endpoint.host
    _import_sdk(ssh=host.startswith("ssh://"))
    import docker
    import docker.errors
    import docker.tls

    kwargs: dict[str, Any] = {"base_url": host, "timeout": timeout}
    tls_wanted = bool(getattr(endpoint, "tls", False) or endpoint.tls_verify)
    if tls_wanted and host.startswith(("tcp://", "https://")):
        cert = None
        if endpoint.client_cert and endpoint.client_key:
            cert = (os.fspath(endpoint.client_cert), os.fspath(endpoint.client_key))
        kwargs["tls"] = docker.tls.TLSConfig(
            client_cert=cert,
            ca_cert=os.fspath(endpoint.ca_cert) if endpoint.ca_cert else None,
            verify=bool(endpoint.tls_verify),
        )
    if host.startswith("ssh://"):
        # shell out to the ssh CLI (its config, agent and known_hosts); the SDK still
        # imports paramiko for the ssh transport module, see connect_failure
        kwargs["use_ssh_client"] = True
        _tolerate_exited_ssh()
    try:
        # fetches the API version (docker>=7.1): the first contact, a ping would be a second
        client = _tls_client(**kwargs) if "tls" in kwargs else docker.DockerClient(**kwargs)
    except docker.errors.DockerException as exc:
        raise connect_failure(exc, endpoint, timeout) from None
    except Exception as exc:  # requests/urllib3/ssl errors that the SDK lets through
        raise connect_failure(exc, endpoint, timeout) from None
    client.api.timeout = api_timeout
    if not host.startswith(("tcp://", "http://", "https://")):
        # a local socket or ssh: no proxy or .netrc entry applies, and requests would
        # otherwise read the environment (and ~/.netrc) on every call after the SDK's
        # version request
        client.api.trust_env = False
    return client


def _tls_client(**kwargs: Any) -> docker.DockerClient:
    """A `docker.DockerClient` whose TLS verification is the endpoint's, whatever the environment.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's `verify` on every
    request (docker/docker-py#2433), so the engine's own CA (or verify=False) would lose to a
    bundle set for other tools. The docker CLI ignores those variables; so must we.
    """
    import docker

    class _APIClient(docker.APIClient):
        def merge_environment_settings(self, *args: Any, **kw: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(*args, **kw)
            if self.verify is not True:  # a CA path or False, set by TLSConfig
                settings["verify"] = self.verify
            return settings

    class _Client(docker.DockerClient):
        def __init__(self, **kw: Any) -> None:  # DockerClient.__init__ only makes `api`
            self.api = _APIClient(**kw)

    return _Client(**kwargs)


def _tolerate_exited_ssh() -> None:
    """Closing a shelled-out ssh connection whose ssh has already exited is no error.

    docker-py's SSHSocket.close writes to ssh's stdin; when the engine ended the connection
    first, ssh is gone and the BrokenPipeError escapes from a garbage-collector finalizer as a
    traceback on stderr (seen after every `devsync sync` over ssh://).
    """
    try:
        from docker.transport import sshconn
    except ImportError:  # no paramiko: connecting says so (see connect_failure)
        return

    original = sshconn.SSHSocket.close
    if getattr(original, "_devsync_tolerant", False):
        return

    def close(self: Any) -> None:
        with contextlib.suppress(OSError):
            original(self)

    close._devsync_tolerant = True  # type: ignore[attr-defined]
    sshconn.SSHSocket.close = close


def auth_config(reference: str) -> dict[str, str] | None:
    """Credentials for the registry of `reference` as Docker's config has them, else None.

    None lets the SDK do its own lookup in config.json. The dict goes into the
    X-Registry-Auth header only: never log it.
    """
    try:
        from devsync.adapters.dockerconfig import get_credentials
    except ImportError:
        return None
    registry = registry_of(reference)  # (a tag or digest never holds a "/")
    creds = get_credentials(registry)
    return None if creds is None else login(registry, creds)


def login(registry: str, creds: Credentials) -> dict[str, str]:
    """The Engine API's AuthConfig for `creds` (never log it)."""
    if creds.is_identity_token:
        return {"identitytoken": creds.secret, "serveraddress": registry}
    return {"username": creds.username, "password": creds.secret, "serveraddress": registry}


def connect_failure(exc: BaseException, endpoint: EndpointLike,
                    timeout: float) -> EngineUnavailableError:
    host = endpoint.host
    where = f"cannot reach the Docker engine at {host}"
    via = f" (chosen by {endpoint.source})" if endpoint.source not in ("", "given") else ""
    text = str(exc)
    chain = exception_chain(exc)
    if "paramiko" in text:
        return EngineUnavailableError(
            f"{where}: ssh:// engines need the paramiko package",
            hint="pip install paramiko (the Docker SDK imports it even to shell out to ssh)",
        )
    if "Invalid bind address" in text or "invalid bind address" in text.lower():
        return EngineUnavailableError(
            f"invalid Docker host {host!r}{via}",
            hint="use unix:///path/to/docker.sock, tcp://HOST:PORT or ssh://USER@HOST",
        )
    tls_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if tls_error is not None:
        return EngineUnavailableError(
            f"{where}: TLS handshake failed: {_tls_reason(tls_error, endpoint)}",
            hint="check DOCKER_TLS_VERIFY / DOCKER_CERT_PATH (or the context's TLS files)"
                 " against how the daemon listens",
        )
    if is_timeout(chain):
        return EngineUnavailableError(
            f"{where}: no answer within {timeout:g}s — is the daemon hung or still starting?",
            hint="restart Docker, or point DOCKER_HOST / `docker context use` at a live engine",
        )
    status = next((_status_code(e) for e in chain if _status_code(e)), None)
    if status is not None:
        return EngineUnavailableError(
            f"{where}: the server there answered HTTP {status}, not as a Docker engine",
            hint=f"check the host and port{via}",
        )
    for e in chain:
        if isinstance(e, FileNotFoundError):
            return EngineUnavailableError(
                f"{where}: no such socket — is Docker running?",
                hint=f"start Docker{via}, or point DOCKER_HOST / `docker context use` at a "
                     "running engine",
            )
        if isinstance(e, PermissionError):
            return EngineUnavailableError(
                f"{where}: permission denied",
                hint="add your user to the docker group and log in again, or use rootless "
                     "Docker",
            )
        if isinstance(e, ConnectionRefusedError):
            return EngineUnavailableError(
                f"{where}: connection refused — is Docker running?",
                hint=f"start Docker{via}, or point DOCKER_HOST at a running engine",
            )
        if isinstance(e, socket.gaierror):
            return EngineUnavailableError(f"{where}: unknown host{via}")
    reason = next((str(e) for e in reversed(chain) if isinstance(e, OSError) and str(e)), "")
    reason = reason or text.removeprefix("Error while fetching server API version: ")
    return EngineUnavailableError(f"{where}: {shorten(' '.join(reason.split()), 160)}",
                                  hint=f"is Docker running{via}?")


def _status_code(exc: BaseException) -> int | None:
    if isinstance(exc, enginesocket.EngineAPIError):
        return exc.status_code
    return getattr(getattr(exc, "response", None), "status_code", None)


def _tls_reason(exc: ssl.SSLError, endpoint: EndpointLike) -> str:
    """Which side said no: our check of the engine's certificate, or the engine's of ours."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the engine's certificate is not trusted: {exc.verify_message or exc.reason}"
    reason = str(exc.reason or "")
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "the engine requires a client certificate"
    if reason in ("SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA",
                  "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_DECRYPT_ERROR"):
        return "the engine rejected the client certificate"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        # TLS 1.3: the engine checks our certificate after our side of the handshake is done,
        # and its alert races with its hang-up; about half the time only the hang-up arrives
        sent = bool(endpoint.client_cert and endpoint.client_key)
        return ("the engine hung up; does it accept this client certificate?" if sent
                else "the engine hung up; does it require a client certificate?")
    return shorten(reason.lower().replace("_", " ") or str(exc), 80)
