"""The one wrapper around the Docker engine that every devsync operation goes through.

Calls go through the Docker SDK, except, over a local unix socket, the ones a sync makes (ping,
inspect, history and the image list, the pull and build streams, tag): those go through
devsync.adapters.engine.socketapi, so that a sync never spends the SDK's import on a machine
its pull keeps
busy (see `Engine`).

All calls block; the TUI runs them in worker threads. Long operations (pull, build, push) are
generators of `devsync.events` events. Every failure a user can meet becomes a `DevsyncError`
with one clear line (`EngineUnavailableError`, `EngineError`, `RegistryError`,
`RegistryAuthError`, `DockerfileError`, `UnknownBaseError`, `InterruptedError_`).

Streams and interruption: pull/build/push accept `cancel: threading.Event`. A small watcher
thread shuts the HTTP connection down when the event is set (or when the engine has sent
nothing for `stream_idle_timeout` seconds); the daemon sees the client go away and cancels the
pull/build (the classic builder kills and removes the RUN container). The generator then
raises `InterruptedError_`. Ctrl-C (`KeyboardInterrupt`) and closing the generator close the
connection the same way; `KeyboardInterrupt` is re-raised. Builds never pass a tag to the
engine: the image is tagged only after the whole build succeeded, so an interrupted or failed
build never moves or creates a tag.

History: the Engine API does not hand out an image's raw config. `inspect_image` gives
`RootFS.Layers` (diff IDs) but no history; `GET /images/{id}/history` gives every config
history entry, empty layers included (`CreatedBy`, `Created` in whole seconds, `Size`,
`Comment`, `Id` or "<missing>"), newest first, but no `empty_layer` flag. `history()` returns
the entries oldest first and works `empty_layer` out (see `_history`): metadata instructions
never make a layer, entries with bytes always do, and a 0-byte RUN/COPY/WORKDIR (the engine
keeps a layer only when the step's diff is not empty) is settled by the layer counts of the
intermediate images that locally built steps name, else by the total. Each layer entry then
gets its `diff_id`; if something had to be guessed, `LocalImage.history_exact` is False and
no `diff_id` is assigned. For a pulled image the registry's config blob is exact.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

from devsync.adapters.engine import socketapi as enginesocket
from devsync.errors import (
    DevsyncError,
    DockerfileError,
    EngineError,
    EngineUnavailableError,
    InterruptedError_,
    RegistryAuthError,
    RegistryError,
    UnknownBaseError,
)
from devsync.events import (
    Event,
    ImageBuilt,
    LayerProgress,
    LogLine,
    PullFinished,
    PullProgress,
    PullStarted,
    Pushed,
    PushProgress,
    StepFinished,
    StepStarted,
    Warning_,
)
from devsync.model.versions import registry_of, split_reference

if TYPE_CHECKING:
    import docker

    from devsync.adapters.dockerconfig import Credentials
    from devsync.model.images import ImageInfo

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT = 5.0  # seconds for the first ping: a live local daemon answers in milliseconds
API_TIMEOUT = 120.0  # inspect, tag, history...: a busy daemon (big prune running) can be slow
# A pull/push that sends nothing for this long is stuck; a silent RUN step may legitimately
# take a while, hence generous. None disables the check.
STREAM_IDLE_TIMEOUT: float | None = 3600.0
# A pull or push reports progress several times a second while it moves; minutes of silence
# mean a hung daemon or registry. (A build may rightly be silent for long: a quiet RUN.)
TRANSFER_IDLE_TIMEOUT = 300.0
_PROGRESS_INTERVAL = 0.2  # seconds between aggregated PullProgress/PushProgress events
_WATCH_INTERVAL = 0.1  # how often the stream watcher looks at the cancel event


# --------------------------------------------------------------------------- endpoint glue


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
class _PlainEndpoint:
    host: str
    tls: bool = False
    tls_verify: bool = False
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    context_name: str = "default"
    source: str = "default"


def _endpoint() -> EndpointLike:
    """The engine the docker CLI would use (devsync.adapters.dockerconfig), else DOCKER_HOST or
    the default socket."""
    try:
        from devsync.adapters.dockerconfig import resolve_engine
    except ImportError:
        host = os.environ.get("DOCKER_HOST", "")
        return _PlainEndpoint(host or DEFAULT_HOST, source="DOCKER_HOST" if host else "default")
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
        except ImportError:  # no paramiko: connecting says so (see _connect_failure)
            return
        docker.transport.SSHHTTPAdapter = SSHHTTPAdapter
        docker.api.client.SSHHTTPAdapter = SSHHTTPAdapter


def _sdk_client(endpoint: EndpointLike, *, timeout: float,
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
        # imports paramiko for the ssh transport module, see _connect_failure
        kwargs["use_ssh_client"] = True
        _tolerate_exited_ssh()
    try:
        # fetches the API version (docker>=7.1): the first contact, a ping would be a second
        client = _tls_client(**kwargs) if "tls" in kwargs else docker.DockerClient(**kwargs)
    except docker.errors.DockerException as exc:
        raise _connect_failure(exc, endpoint, timeout) from None
    except Exception as exc:  # requests/urllib3/ssl errors that the SDK lets through
        raise _connect_failure(exc, endpoint, timeout) from None
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
    except ImportError:  # no paramiko: connecting says so (see _connect_failure)
        return

    original = sshconn.SSHSocket.close
    if getattr(original, "_devsync_tolerant", False):
        return

    def close(self: Any) -> None:
        with contextlib.suppress(OSError):
            original(self)

    close._devsync_tolerant = True  # type: ignore[attr-defined]
    sshconn.SSHSocket.close = close


def _auth_config(reference: str) -> dict[str, str] | None:
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
    return None if creds is None else _login(registry, creds)


def _login(registry: str, creds: Credentials) -> dict[str, str]:
    """The Engine API's AuthConfig for `creds` (never log it)."""
    if creds.is_identity_token:
        return {"identitytoken": creds.secret, "serveraddress": registry}
    return {"username": creds.username, "password": creds.secret, "serveraddress": registry}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of an image config's history, oldest first (see the module doc)."""

    created_by: str
    empty_layer: bool
    size: int
    id: str  # image ID of that step for locally built images, "<missing>" otherwise
    created: int = 0  # unix seconds
    comment: str = ""
    diff_id: str | None = None  # the layer this entry made (None if empty or unknown)


@dataclass(frozen=True)
class LocalImage:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    labels: dict[str, str]
    created: str  # RFC 3339 as the engine reports it
    size: int
    diff_ids: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    history_exact: bool = True  # empty_layer/diff_id alignment checked against diff_ids
    architecture: str = ""
    os: str = ""
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # inspect's "Config"

    def digest_for(self, repository: str) -> str | None:
        """The manifest digest this image has in `repository` (from RepoDigests), if any."""
        for entry in self.repo_digests:
            repo, _, digest = entry.rpartition("@")
            if repo == repository:
                return digest
        return None

    def to_image_info(self, reference: str) -> ImageInfo:
        """The shape `devsync.model.images` compares (origin "local", whole-second timestamps)."""
        from devsync.model.images import HistoryEntry as InfoHistory
        from devsync.model.images import ImageInfo

        cfg = self.config
        repo = _split_tag(reference.split("@", 1)[0])[0]
        return ImageInfo(
            reference=reference,
            image_id=self.id,
            history=tuple(
                InfoHistory(created=h.created, created_by=h.created_by, comment=h.comment,
                            empty_layer=h.empty_layer)
                for h in self.history
            ),
            diff_ids=self.diff_ids,
            env=list(cfg.get("Env") or []),
            shell=list(cfg["Shell"]) if cfg.get("Shell") else None,
            onbuild=list(cfg.get("OnBuild") or []),
            workdir=cfg.get("WorkingDir") or "",
            labels=dict(self.labels),
            origin="local",
            size=self.size,
            digest=self.digest_for(repo),
        )


# --------------------------------------------------------------------------- the engine


class Engine:
    """A connected Docker Engine. Build one with `Engine.connect()`.

    Over a local unix socket the SDK client is made on first use, by the calls a sync does not
    make (push, image lists, removal...): a sync's own go through
    devsync.adapters.engine.socketapi, whose
    requests are the SDK's (the same query parameters, the proxy build args and registry
    logins of Docker's config), and whose failures map to the same DevsyncErrors.
    """

    def __init__(self, client: docker.DockerClient | None, *, host: str, source: str = "",
                 stream_idle_timeout: float | None = STREAM_IDLE_TIMEOUT,
                 make_client: Callable[[], docker.DockerClient] | None = None,
                 socket_path: str | None = None, api_timeout: float = API_TIMEOUT) -> None:
        """`client`, or `make_client` to make it on first use (with `socket_path`, the unix
        socket that the calls before then go through)."""
        if client is None and make_client is None:
            raise ValueError("an Engine needs an SDK client or a way to make one")
        self.host = host
        self.source = source
        self.stream_idle_timeout = stream_idle_timeout
        self._api_timeout = api_timeout
        self._socket = socket_path
        self._tap = _ResponseTap()
        self._make_client = make_client
        self._client_lock = threading.Lock()
        self._sdk_client: docker.DockerClient | None = None
        if client is not None:
            self._adopt(client)

    def _adopt(self, client: docker.DockerClient) -> None:
        client.api.hooks["response"].append(self._tap)
        self._sdk_client = client

    @property
    def _client(self) -> docker.DockerClient:
        client = self._sdk_client
        if client is None:
            with self._client_lock:
                if self._sdk_client is None:
                    assert self._make_client is not None
                    self._adopt(self._make_client())
                client = self._sdk_client
                assert client is not None
        return client

    def _load_sdk(self) -> None:
        """Make the client now, before any `import docker...`: making it imports the SDK as
        _import_sdk does (a bare `import docker.errors` first would bring paramiko along)."""
        _ = self._client

    # ---- connection

    @classmethod
    def connect(cls, endpoint: EndpointLike | str | None = None, *,
                timeout: float = CONNECT_TIMEOUT, api_timeout: float = API_TIMEOUT,
                stream_idle_timeout: float | None = STREAM_IDLE_TIMEOUT) -> Engine:
        """Connect and ping. `endpoint` defaults to what the docker CLI would use.

        Raises EngineUnavailableError (one line, with a hint) when the daemon is down, the
        socket is missing or not ours to use, or it does not answer within `timeout` seconds.
        """
        if endpoint is None:
            endpoint = _endpoint()
        elif isinstance(endpoint, str):
            endpoint = _PlainEndpoint(endpoint, source="given")
        resolved = endpoint
        path = enginesocket.socket_path(endpoint.host)
        if path is None:
            return cls(_sdk_client(endpoint, timeout=timeout, api_timeout=api_timeout),
                       host=endpoint.host, source=endpoint.source,
                       stream_idle_timeout=stream_idle_timeout, api_timeout=api_timeout)
        try:
            enginesocket.ping(path, timeout=timeout)
        except Exception as exc:
            raise _connect_failure(exc, endpoint, timeout) from None
        return cls(None, host=endpoint.host, source=endpoint.source,
                   stream_idle_timeout=stream_idle_timeout, socket_path=path,
                   api_timeout=api_timeout,
                   make_client=lambda: _sdk_client(resolved, timeout=timeout,
                                                   api_timeout=api_timeout))

    def close(self) -> None:
        if self._sdk_client is not None:
            self._sdk_client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_version(self) -> str:
        return str(self._client.api.api_version)

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client, for the rare call this wrapper does not cover."""
        return self._client

    def ping(self) -> bool:
        with self._calling("ping the Docker engine"):
            return bool(self._client.ping())

    # ---- images

    def image(self, ref: str) -> LocalImage | None:
        """The local image `ref` (name:tag, name@digest or ID), or None if there is none."""
        with self._calling(f"inspect image {ref}"):
            data = self._inspect(ref)
            if data is None:
                return None
            if self._socket is not None:
                rows = enginesocket.image_history(self._socket, data["Id"],
                                                  timeout=self._api_timeout)
            else:
                rows = self._client.api.history(data["Id"])
        return _local_image(data, rows, self._layers_at)

    def has_image(self, ref: str) -> bool:
        """Whether `ref` is a local image: one API call, where `image` makes several."""
        with self._calling(f"inspect image {ref}"):
            return self._inspect(ref) is not None

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        """The engine's `inspect` of image `ref`, None when there is none (inside _calling)."""
        if self._socket is not None:
            return enginesocket.inspect_image(self._socket, ref, timeout=self._api_timeout)
        self._load_sdk()
        import docker.errors

        try:
            return dict(self._client.api.inspect_image(ref))
        except docker.errors.NotFound:
            return None

    def has_children(self, image_id: str) -> bool:
        """Whether an image was built locally on top of `image_id` (intermediate images
        included): the builder's local cache, used when a build has no `--cache-from`."""
        with self._calling("list local images"):
            if self._socket is not None:
                summaries = enginesocket.list_images(self._socket, all_layers=True,
                                                     timeout=self._api_timeout)
            else:
                summaries = self._client.api.images(all=True)
        return any(s.get("ParentId") == image_id for s in summaries)

    def local_images(self, repository: str | None = None, *,
                     with_history: bool = True) -> list[LocalImage]:
        """Local images, all or those of `repository` (any tag); two API calls per image."""
        self._load_sdk()
        import docker.errors

        out: list[LocalImage] = []
        with self._calling("list local images"):
            summaries = self._client.api.images(name=repository)
            for summary in summaries:
                try:
                    data = self._client.api.inspect_image(summary["Id"])
                    rows = self._client.api.history(summary["Id"]) if with_history else []
                except docker.errors.NotFound:
                    continue  # removed while we looked
                out.append(_local_image(data, rows, self._layers_at))
        return out

    def _layers_at(self, image_id: str) -> int | None:
        """How many layers the (intermediate) image `image_id` has; None if it is gone."""
        with self._calling(f"inspect image {image_id[:19]}"):
            data = self._inspect(image_id)
        if data is None:
            return None
        return len((data.get("RootFS") or {}).get("Layers") or [])

    def history(self, ref: str) -> list[HistoryEntry]:
        """`ref`'s config history, oldest first (empty layers included; see module doc)."""
        img = self.image(ref)
        if img is None:
            raise EngineError(f"no local image {ref}", hint=f"pull it first: docker pull {ref}")
        return list(img.history)

    def remote_digest(self, ref: str) -> str | None:
        """The manifest digest the registry has for `ref`, asked through the engine.

        None when the engine cannot tell (not found, auth, an insecure or unreachable
        registry): the caller then asks the registry itself (devsync.adapters.registry).
        """
        self._load_sdk()
        import docker.errors

        with self._calling(f"ask the registry about {ref}"):
            try:
                data = self._client.api.inspect_distribution(ref, auth_config=_auth_config(ref))
            except docker.errors.APIError:
                return None
        digest = (data.get("Descriptor") or {}).get("digest")
        return str(digest) if digest else None

    def tag(self, image_id: str, ref: str) -> None:
        """Point tag `ref` (name[:tag], default latest) at `image_id`."""
        repo, tag = _split_tag(ref)
        with self._calling(f"tag {image_id[:19]} as {ref}"):
            if self._socket is not None:
                enginesocket.tag_image(self._socket, image_id, repo, tag or "latest",
                                       timeout=self._api_timeout)
            else:
                self._client.api.tag(image_id, repo, tag or "latest", force=True)

    def remove_image(self, ref: str, *, force: bool = False) -> bool:
        """Remove a local image or tag; False if it did not exist."""
        self._load_sdk()
        import docker.errors

        with self._calling(f"remove image {ref}"):
            try:
                self._client.api.remove_image(ref, force=force)
            except docker.errors.NotFound:
                return False
        return True

    # ---- pull

    def pull(self, ref: str, *, cancel: threading.Event | None = None,
             platform: str | None = None) -> Iterator[Event]:
        """Pull `ref` (default tag latest), yielding progress as `docker pull` shows it.

        Events: PullStarted; LayerProgress for every per-layer status line; PullProgress
        (aggregated, at most every 0.2 s and at each completed layer, plus a final one);
        PullFinished(digest, already_present). Bytes count what is downloaded (compressed
        layer sizes from progressDetail); layers that "Already exist" count as done with no
        bytes.
        """
        if "@" not in ref and not _split_tag(ref)[1]:
            ref = f"{ref}:latest"
        yield PullStarted(ref)
        tally = _LayerTally(done=("Pull complete", "Already exists"),
                            bytes_final=("Verifying Checksum", "Download complete",
                                         "Extracting", "Pull complete"),
                            bytes_status="Downloading")
        digest, already = "", False
        last_emit = 0.0
        last_done = -1
        stream = self._open_stream(
            self._pull_request(ref, platform), what=f"pull {ref}", cancel=cancel,
            classify=_registry_failure, ref=ref, idle=TRANSFER_IDLE_TIMEOUT,
        )
        with stream:
            for obj in stream:
                if "error" in obj or "errorDetail" in obj:
                    raise _registry_failure(_error_text(obj), ref=ref, doing="pull")
                status = str(obj.get("status") or "")
                layer = str(obj.get("id") or "")
                if layer and not status.startswith("Pulling from"):
                    detail = obj.get("progressDetail") or {}
                    tally.update(layer, status, detail)
                    yield LayerProgress(ref, layer, status, int(detail.get("current") or 0),
                                        int(detail.get("total") or 0))
                    snap = tally.snapshot()
                    now = time.monotonic()
                    if snap[0] != last_done or now - last_emit >= _PROGRESS_INTERVAL:
                        last_emit, last_done = now, snap[0]
                        yield PullProgress(ref, *snap)
                elif status.startswith("Digest: "):
                    digest = status.removeprefix("Digest: ").strip()
                elif status.startswith("Status: Image is up to date"):
                    already = True
        if not digest:
            img = self.image(ref)
            if img is not None:
                digest = img.digest_for(_split_tag(ref.split("@", 1)[0])[0]) or ""
        yield PullProgress(ref, *tally.snapshot())
        yield PullFinished(ref, digest=digest, already_present=already)

    def _pull_request(self, ref: str,
                      platform: str | None) -> Callable[[], Iterable[dict[str, Any]]]:
        socket_path = self._socket
        if socket_path is None:
            return lambda: self._client.api.pull(ref, stream=True, decode=True,
                                                 auth_config=_auth_config(ref),
                                                 platform=platform)
        # a digest wins over a tag, as for `docker pull name:tag@digest`
        repository, tag, digest = split_reference(ref)
        return lambda: enginesocket.pull(socket_path, repository, digest or tag or "latest",
                                         timeout=self._api_timeout,
                                         auth=_auth_config(ref), platform=platform)

    # ---- push

    def push(self, ref: str, *, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Push `ref` (one tag: default latest, never "all tags" as the bare API would).

        Events: LayerProgress per layer line, PushProgress (aggregated like pull), Pushed.
        """
        repo, tag = _split_tag(ref)
        tag = tag or "latest"
        ref = f"{repo}:{tag}"
        tally = _LayerTally(done=("Pushed", "Layer already exists", "Mounted from"),
                            bytes_final=("Pushed",), bytes_status="Pushing")
        digest = ""
        last_emit = 0.0
        last_done = -1
        stream = self._open_stream(
            lambda: self._client.api.push(repo, tag=tag, stream=True, decode=True,
                                          auth_config=_auth_config(ref)),
            what=f"push {ref}", cancel=cancel, classify=_registry_failure, ref=ref,
            idle=TRANSFER_IDLE_TIMEOUT,
        )
        with stream:
            for obj in stream:
                if "error" in obj or "errorDetail" in obj:
                    raise _registry_failure(_error_text(obj), ref=ref, doing="push")
                aux = obj.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                    continue
                status = str(obj.get("status") or "")
                layer = str(obj.get("id") or "")
                if not layer:
                    continue
                detail = obj.get("progressDetail") or {}
                tally.update(layer, status, detail)
                yield LayerProgress(ref, layer, status, int(detail.get("current") or 0),
                                    int(detail.get("total") or 0))
                snap = tally.snapshot()
                now = time.monotonic()
                if snap[0] != last_done or now - last_emit >= _PROGRESS_INTERVAL:
                    last_emit, last_done = now, snap[0]
                    yield PushProgress(ref, *snap)
        if not digest:
            raise EngineError(f"push of {ref} ended without a digest from the registry")
        yield PushProgress(ref, *tally.snapshot())
        yield Pushed(ref, digest=digest)

    # ---- build

    def build(self, context_tar: IO[bytes], *, dockerfile: str = "Dockerfile", tag: str = "",
              cache_from: Sequence[str] = (), build_args: Mapping[str, str] | None = None,
              labels: Mapping[str, str] | None = None, target: str | None = None,
              image_name: str = "", cancel: threading.Event | None = None) -> Iterator[Event]:
        """Build with the engine's classic builder; tag `tag` only once the build succeeded.

        `context_tar` is an uncompressed or gzip/bzip2/xz tar (the daemon detects which).
        Events: StepStarted / StepFinished per step (FROM included; `cached` is True when the
        builder printed "Using cache", and for FROM unless ONBUILD triggers ran), LogLine for
        RUN output and other builder text, Warning_ for "[Warning]" lines and for a
        `cache_from` image that is not local (the classic builder silently ignores those),
        then ImageBuilt.

        `labels` go to the builder's own option, which (engine 20.10) appends one `LABEL` step
        per label, a container commit each, reported after the Dockerfile's steps and counted
        in `total`. One `LABEL` line at the end of the Dockerfile itself costs one commit:
        devsync.model.labelstep makes such a context, and then no `labels` are needed here.
        """
        image = image_name or tag
        for source in cache_from:
            if not self.has_image(source):
                yield Warning_(image, f"cache source {source} is not a local image: the "
                                      "builder ignores it (pull it first)")
        parser = _BuildParser(image)
        abandoned = threading.Event()
        body = _CancellableReader(context_tar, cancel, abandoned)

        def start() -> Iterable[dict[str, Any]]:
            # the engine gets no tag: see the module doc
            if self._socket is not None:
                return self._socket_build(body, dockerfile=dockerfile, cache_from=cache_from,
                                          build_args=build_args, labels=labels, target=target)
            return self._client.api.build(
                fileobj=body, custom_context=True, dockerfile=dockerfile, tag=None,
                cache_from=list(cache_from) or None, buildargs=dict(build_args or {}),
                labels=dict(labels) if labels else None, target=target, rm=True,
                forcerm=True, decode=True, timeout=None,  # _open_stream bounds the wait
            )

        stream = self._open_stream(start, what=f"build {image or 'image'}", cancel=cancel,
                                   classify=_build_request_failure, ref=image,
                                   abandoned=abandoned)
        with stream:
            for obj in stream:
                if "error" in obj or "errorDetail" in obj:
                    raise parser.failure(_error_text(obj))
                yield from parser.feed(obj)
            yield from parser.close()
        if cancel is not None and cancel.is_set():
            raise InterruptedError_(f"build of {image or 'image'} cancelled; nothing was tagged")
        image_id = self._built_id(parser, image)
        if tag:
            self.tag(image_id, tag)
        yield ImageBuilt(image, tag, image_id, parser.steps_cached, parser.steps_total)

    def _socket_build(self, body: _CancellableReader, *, dockerfile: str,
                      cache_from: Sequence[str], build_args: Mapping[str, str] | None,
                      labels: Mapping[str, str] | None,
                      target: str | None) -> enginesocket.JSONStream:
        """The build request as the SDK (and the CLI) make it: the proxy build args of
        Docker's config under the given ones, every registry login for the builder's pulls."""
        from devsync.adapters.dockerconfig import all_credentials, build_proxy_args

        assert self._socket is not None
        args = {**build_proxy_args(self.host), **(build_args or {})}
        query = {"dockerfile": dockerfile, "rm": "1", "forcerm": "1"}
        if args:
            query["buildargs"] = json.dumps(args)
        if labels:
            query["labels"] = json.dumps(dict(labels))
        if cache_from:
            query["cachefrom"] = json.dumps(list(cache_from))
        if target:
            query["target"] = target
        logins = {key: _login(key, creds) for key, creds in all_credentials().items()}
        return enginesocket.build(
            self._socket, body, body.remaining(), query,
            registry_config=enginesocket.registry_auth_header(logins) if logins else None)

    def _built_id(self, parser: _BuildParser, image: str) -> str:
        image_id = parser.image_id
        if not image_id:
            raise EngineError(f"build of {image or 'image'} ended without an image ID")
        if not image_id.startswith("sha256:"):
            with self._calling("inspect the built image"):
                data = self._inspect(image_id)
            if data is None:
                raise EngineError(f"built image {image_id} vanished")
            image_id = str(data["Id"])
        return image_id

    # ---- plumbing

    @contextlib.contextmanager
    def _calling(self, doing: str) -> Iterator[None]:
        """Map SDK/transport failures of a plain API call to DevsyncErrors."""
        try:
            yield
        except DevsyncError:
            raise
        except Exception as exc:
            if _is_api_error(exc):
                explanation = _explanation(exc)
                if _disk_full(explanation.lower()):
                    raise _out_of_disk(f"cannot {doing}", explanation) from None
                raise EngineError(f"cannot {doing}: {explanation}") from None
            if _is_transport_error(exc):
                raise _lost_engine(self.host, doing, exc) from None
            raise

    def _open_stream(self, start: Callable[[], Iterable[dict[str, Any]]], *, what: str,
                     cancel: threading.Event | None, classify: Callable[..., DevsyncError],
                     ref: str, abandoned: threading.Event | None = None,
                     idle: float | None = None) -> _Stream:
        """Send the request in a helper thread and wait for the engine's first answer.

        The SDK call returns only once the engine sent its response headers (after the whole
        build context went up, or once a pull has resolved its manifest). Waiting here instead
        keeps that phase cancellable and bounded by the idle timeout; an abandoned request is
        closed by the helper as soon as it returns, which makes the daemon cancel it.
        """
        pending = _PendingStart(start, self._tap, abandoned or threading.Event())
        if idle is None or (self.stream_idle_timeout and self.stream_idle_timeout < idle):
            idle = self.stream_idle_timeout
        deadline = time.monotonic() + idle if idle else None
        try:
            while not pending.ready.wait(_WATCH_INTERVAL):
                if cancel is not None and cancel.is_set():
                    raise InterruptedError_(f"{what} cancelled")
                if deadline is not None and time.monotonic() > deadline:
                    raise EngineUnavailableError(
                        f"the Docker engine at {self.host} sent nothing for {idle:g}s "
                        f"after being asked to {what}",
                        hint="the daemon may be hung: restart Docker and try again",
                    )
        except BaseException:
            pending.abandon()
            raise
        exc = pending.error
        if exc is not None:
            if isinstance(exc, DevsyncError):
                raise exc
            if _is_api_error(exc):
                raise classify(_explanation(exc), ref=ref, doing=what.split()[0]) from None
            if _is_transport_error(exc):
                raise _lost_engine(self.host, what, exc) from None
            raise exc

        def api_failure(message: str) -> DevsyncError:
            return classify(message, ref=ref, doing=what.split()[0])

        assert pending.objs is not None
        return _Stream(pending.objs, pending.response, cancel=cancel, idle_timeout=idle,
                       host=self.host, what=what, api_failure=api_failure)


class _PendingStart:
    """A streaming SDK call running in a helper thread until the engine answers."""

    def __init__(self, start: Callable[[], Iterable[dict[str, Any]]], tap: _ResponseTap,
                 abandoned: threading.Event) -> None:
        self._start = start
        self._tap = tap
        self._lock = threading.Lock()
        self.abandoned = abandoned
        self.ready = threading.Event()
        self.objs: Iterable[dict[str, Any]] | None = None
        self.response: Any = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name="devsync-stream-start", daemon=True).start()

    def _run(self) -> None:
        objs: Iterable[dict[str, Any]] | None = None
        response: Any = None
        error: BaseException | None = None
        self._tap.take()
        try:
            objs = self._start()
        except BaseException as exc:
            error = exc
        response = self._tap.take()
        if response is None and isinstance(objs, enginesocket.JSONStream):
            response = objs  # (the socket path: no SDK response to tap)
        with self._lock:
            self.objs, self.response, self.error = objs, response, error
            self.ready.set()
            late = self.abandoned.is_set()
        if late:
            _close_response(response)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned.set()
            response = self.response if self.ready.is_set() else None
        _close_response(response)


def _close_response(response: Any) -> None:
    """Shut the connection down (not back to the pool): the daemon then cancels its work."""
    if response is None:
        return
    sock = _response_socket(response)
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()


def _response_socket(response: Any) -> Any:
    if isinstance(response, enginesocket.JSONStream):
        return response.sock
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None)  # urllib3 2: None once back in the pool
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    with contextlib.suppress(AttributeError):
        return raw._fp.fp.raw._sock  # type: ignore[union-attr]
    return None


# --------------------------------------------------------------------------- streams


class _ResponseTap:
    """A requests response hook remembering, per thread, the last response this client got.

    The SDK's streaming calls hide their HTTP response inside a generator; we need it to shut
    the connection down from the watcher thread.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._local.response = response
        return response

    def take(self) -> Any:
        response = getattr(self._local, "response", None)
        self._local.response = None
        return response


class _Stream:
    """Iterates decoded stream objects; closes the connection on cancel/idle/Ctrl-C/close."""

    def __init__(self, objs: Iterable[dict[str, Any]], response: Any, *,
                 cancel: threading.Event | None, idle_timeout: float | None, host: str,
                 what: str, api_failure: Callable[[str], DevsyncError]) -> None:
        self._objs = iter(objs)
        self._api_failure = api_failure
        self._response = response
        self._cancel = cancel
        self._idle_timeout = idle_timeout
        self._host = host
        self._what = what
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._finished = False
        self.cancelled = False
        self.timed_out = False
        sock = self._socket()
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.settimeout(None)  # the watcher enforces idleness instead
        self._watcher: threading.Thread | None = None
        if cancel is not None or idle_timeout:
            self._watcher = threading.Thread(target=self._watch, name="devsync-stream-watch",
                                             daemon=True)
            self._watcher.start()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # on success the connection went back to the pool: leave it alone
        self._finish(abort=exc_type is not None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            if self._cancel is not None and self._cancel.is_set():
                self.cancelled = True
                self._finish(abort=True)
            try:
                obj = next(self._objs)
            except StopIteration:
                break
            except DevsyncError:
                raise
            except Exception as exc:
                # the SDK's build stream raises the engine's refusal on the first read
                if _is_api_error(exc) and not (self.cancelled or self.timed_out):
                    raise self._api_failure(_explanation(exc)) from None
                raise self._broken(exc) from None
            self._last = time.monotonic()
            if isinstance(obj, dict):
                yield obj
        if self.cancelled or (self._cancel is not None and self._cancel.is_set()):
            self.cancelled = True
            raise InterruptedError_(f"{self._what} cancelled")
        if self.timed_out:
            raise self._broken(TimeoutError())

    def _broken(self, exc: BaseException) -> DevsyncError:
        if self.cancelled or (self._cancel is not None and self._cancel.is_set()):
            self.cancelled = True
            return InterruptedError_(f"{self._what} cancelled")
        if self.timed_out:
            return EngineUnavailableError(
                f"the Docker engine at {self._host} sent nothing for "
                f"{self._idle_timeout:g}s during {self._what}",
                hint="the daemon may be hung: restart Docker and try again",
            )
        return _lost_engine(self._host, self._what, exc)

    def _watch(self) -> None:
        while True:
            if self._cancel is not None:
                fired = self._cancel.wait(_WATCH_INTERVAL)
            else:
                time.sleep(_WATCH_INTERVAL)
                fired = False
            with self._lock:
                if self._finished:
                    return
                if fired:
                    self.cancelled = True
                elif self._idle_timeout and time.monotonic() - self._last > self._idle_timeout:
                    self.timed_out = True
                else:
                    continue
                self._shutdown()
                return

    def _finish(self, *, abort: bool) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if abort:
                self._shutdown()
        if abort:
            _close_response(self._response)

    def _shutdown(self) -> None:
        sock = self._socket()
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.shutdown(socket.SHUT_RDWR)

    def _socket(self) -> Any:
        return _response_socket(self._response)


class _CancellableReader:
    """The build context, read by the upload; stops the upload when `cancel` is set."""

    def __init__(self, fileobj: IO[bytes], cancel: threading.Event | None,
                 abandoned: threading.Event) -> None:
        self._f = fileobj
        self._cancel = cancel
        self._abandoned = abandoned

    def read(self, size: int = -1) -> bytes:
        if self._abandoned.is_set() or (self._cancel is not None and self._cancel.is_set()):
            raise InterruptedError_("build cancelled while sending the context; nothing was tagged")
        return self._f.read(size)

    # requests sizes the body through these (Content-Length instead of chunked encoding)
    def tell(self) -> int:
        return self._f.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def remaining(self) -> int | None:
        """How many bytes are still to be read; None for a stream that cannot tell."""
        try:
            here = self._f.tell()
            end = self._f.seek(0, os.SEEK_END)
            self._f.seek(here)
        except (OSError, ValueError):
            return None
        return end - here


# --------------------------------------------------------------------------- progress


@dataclass
class _LayerState:
    current: int = 0
    total: int = 0
    done: bool = False


class _LayerTally:
    """Per-layer state from pull/push status lines, summed as `docker pull` shows them."""

    def __init__(self, *, done: tuple[str, ...], bytes_final: tuple[str, ...],
                 bytes_status: str) -> None:
        self._done = done
        self._bytes_final = bytes_final
        self._bytes_status = bytes_status
        self._layers: dict[str, _LayerState] = {}

    def update(self, layer: str, status: str, detail: Mapping[str, Any]) -> None:
        st = self._layers.setdefault(layer, _LayerState())
        if status == self._bytes_status:
            total = int(detail.get("total") or 0)
            if total > 0:
                st.total = total
            # a push reports the tar stream, a little more than the layer size
            st.current = min(int(detail.get("current") or 0), st.total or 1 << 62)
        elif status.startswith(self._bytes_final):
            st.current = st.total
        if status.startswith(self._done):
            st.done = True
            st.current = st.total

    def snapshot(self) -> tuple[int, int, int, int]:
        layers = self._layers.values()
        return (
            sum(1 for s in layers if s.done),
            len(self._layers),
            sum(s.current for s in layers),
            sum(s.total for s in layers),
        )


# --------------------------------------------------------------------------- build stream

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_IMAGE_ID_RE = re.compile(r"^[0-9a-f]{12,64}$")
_SUCCESS_RE = re.compile(r"^Successfully built ([0-9a-f]{12,64})$")
_QUIET_PREFIXES = ("Removing intermediate container ", "Successfully built ",
                   "Successfully tagged ")


@dataclass
class _OpenStep:
    index: int
    total: int
    instruction: str
    using_cache: bool = False
    ran: bool = False

    @property
    def is_from(self) -> bool:
        return self.instruction.split(None, 1)[0].upper() == "FROM" if self.instruction else False


class _BuildParser:
    """Turns the classic builder's JSON stream into step events.

    The builder prints "Step N/M : INSTRUCTION", then for a cache hit " ---> Using cache"; for
    a step it runs (RUN, and also ENV/LABEL/... which commit through a container)
    " ---> Running in <container>"; COPY/ADD and FROM print neither. Every step ends with
    " ---> <12-hex image id>", which is when StepFinished is emitted (or at the next Step /
    the end, if that line never came). Multi-stage builds print an `aux` ID after each stage:
    the last one is the result.
    """

    def __init__(self, image: str) -> None:
        self.image = image
        self.image_id = ""
        self.steps_total = 0
        self.steps_cached = 0
        self._seen_from = False
        self._step: _OpenStep | None = None
        self._buf = ""
        self._pull_status: dict[str, str] = {}
        # the daemon repeats a host-level warning ("IPv4 forwarding is disabled...") for every
        # container a build runs: say each one once
        self._warned: set[str] = set()

    def feed(self, obj: Mapping[str, Any]) -> Iterator[Event]:
        aux = obj.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])
        text = obj.get("stream")
        if isinstance(text, str):
            self._buf += text
            while "\n" in self._buf:
                line, self._buf = self._buf.split("\n", 1)
                yield from self._line(line.rstrip("\r"))
        status = obj.get("status")
        if isinstance(status, str) and status:
            # the builder pulls a missing FROM image itself: one line per layer state change
            layer = str(obj.get("id") or "")
            if self._pull_status.get(layer) != status:
                self._pull_status[layer] = status
                yield LogLine(self.image, f"{layer}: {status}" if layer else status)

    def close(self) -> Iterator[Event]:
        if self._buf.strip():
            yield from self._line(self._buf.rstrip("\r"))
        self._buf = ""
        yield from self._finish_step()

    def failure(self, message: str) -> DevsyncError:
        step = self._step
        where = ""
        if step is not None:
            where = f" at step {step.index + 1}/{step.total} ({_shorten(step.instruction)})"
        if _disk_full(message.lower()):
            return _out_of_disk(f"build failed{where}", message)
        if step is not None and step.is_from and not step.ran:
            low = message.lower()
            if _looks_auth(low):
                return RegistryAuthError(f"cannot pull the base image{where}: {message}",
                                         hint="log in with `docker login REGISTRY`")
            if "not found" in low or "manifest unknown" in low or "no such image" in low:
                return UnknownBaseError(f"base image not found{where}: {message}")
        return EngineError(f"build failed{where}: {message}")

    def _line(self, line: str) -> Iterator[Event]:
        m = _STEP_RE.match(line)
        if m:
            yield from self._finish_step()
            self._step = _OpenStep(int(m.group(1)) - 1, int(m.group(2)),
                                   m.group(3).strip())
            self.steps_total = max(self.steps_total, self._step.total)
            yield StepStarted(self.image, self._step.index, self._step.total,
                              self._step.instruction)
            return
        if line.startswith(" ---> "):
            rest = line[6:].strip()
            if rest == "Using cache":
                if self._step is not None:
                    self._step.using_cache = True
                return
            if rest.startswith("Running in "):
                if self._step is not None:
                    self._step.ran = True
                return
            if _IMAGE_ID_RE.match(rest):
                yield from self._finish_step()
                return
            if rest.startswith("[Warning]"):
                yield from self._warning(rest)
                return
            yield LogLine(self.image, line)
            return
        if line.startswith("[Warning]"):
            yield from self._warning(line)
            return
        success = _SUCCESS_RE.match(line)
        if success and not self.image_id:
            self.image_id = success.group(1)  # daemons older than API 1.30 send no aux ID
        if line.startswith(_QUIET_PREFIXES):
            return
        yield LogLine(self.image, line)

    def _warning(self, line: str) -> Iterator[Event]:
        text = line.removeprefix("[Warning]").strip()
        if text not in self._warned:
            self._warned.add(text)
            yield Warning_(self.image, text)

    def _finish_step(self) -> Iterator[Event]:
        step, self._step = self._step, None
        if step is None:
            return
        # FROM, and the ARGs before the first FROM, make no layer: nothing to rebuild
        meta_arg = not self._seen_from and step.instruction.upper().startswith("ARG ")
        self._seen_from = self._seen_from or step.is_from
        cached = step.using_cache or ((step.is_from or meta_arg) and not step.ran)
        if cached:
            self.steps_cached += 1
        yield StepFinished(self.image, step.index, cached)


# --------------------------------------------------------------------------- history


def _local_image(data: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                 layers_at: Callable[[str], int | None]) -> LocalImage:
    rootfs = data.get("RootFS") or {}
    diff_ids = tuple(str(d) for d in (rootfs.get("Layers") or []))
    history, exact = _history(rows, diff_ids, layers_at)
    cfg = data.get("Config") or {}
    return LocalImage(
        id=str(data["Id"]),
        repo_tags=tuple(data.get("RepoTags") or ()),
        repo_digests=tuple(data.get("RepoDigests") or ()),
        labels=dict(cfg.get("Labels") or {}),
        created=str(data.get("Created") or ""),
        size=int(data.get("Size") or 0),
        diff_ids=diff_ids,
        history=history,
        history_exact=exact,
        architecture=str(data.get("Architecture") or ""),
        os=str(data.get("Os") or ""),
        config=dict(cfg),
    )


def _history(rows: Sequence[Mapping[str, Any]], diff_ids: tuple[str, ...],
             layers_at: Callable[[str], int | None]) -> tuple[tuple[HistoryEntry, ...], bool]:
    """Config history oldest first, with `empty_layer` worked out (see the module doc).

    The engine marks a step `empty_layer` when its diff is empty (moby image.NewChildImage):
    a metadata step always, a `RUN true` too, while `WORKDIR /new` or `RUN mkdir` make a
    0-byte layer. So a 0-byte entry that is not pure metadata is undecided by itself. Rows of
    locally built images carry the ID of the image that step produced: its layer count pins
    down how many layers the history has up to there. Between two such checkpoints, the
    undecided entries are all layers or all empty when the count says so; otherwise they are
    guessed (COPY/ADD, then WORKDIR, then RUN) and the result is marked inexact.
    """
    entries = list(reversed(rows))
    n = len(entries)
    sizes = [int(r.get("Size") or 0) for r in entries]
    kinds = [_layer_kind(str(r.get("CreatedBy") or "")) for r in entries]
    layer: list[bool] = [size > 0 or kind == "layer" for size, kind in zip(sizes, kinds,
                                                                             strict=True)]
    undecided = [sizes[i] == 0 and kinds[i] != "meta" and kinds[i] != "layer" for i in range(n)]
    exact = True
    if any(undecided):
        checkpoints: list[tuple[int, int]] = [(-1, 0)]
        for i, row in enumerate(entries[:-1]):
            image_id = str(row.get("Id") or "")
            if image_id.startswith("sha256:"):
                count = layers_at(image_id)
                if count is not None:
                    checkpoints.append((i, count))
        checkpoints.append((n - 1, len(diff_ids)))
        for (a, count_a), (b, count_b) in itertools.pairwise(checkpoints):
            span = range(a + 1, b + 1)
            open_rows = [i for i in span if undecided[i]]
            need = count_b - count_a - sum(1 for i in span if sizes[i] > 0)
            if need == len(open_rows):
                chosen = set(open_rows)
            elif need == 0:
                chosen = set()
            else:
                exact = False
                ranked = sorted(open_rows, key=lambda i: _GUESS_ORDER.get(kinds[i], 9))
                chosen = set(ranked[: max(need, 0)])
            for i in open_rows:
                layer[i] = i in chosen
    if sum(layer) != len(diff_ids):
        exact = False
    out: list[HistoryEntry] = []
    layer_index = 0
    for row, makes_layer in zip(entries, layer, strict=True):
        diff_id = None
        if makes_layer and exact:
            diff_id = diff_ids[layer_index]
            layer_index += 1
        out.append(HistoryEntry(
            created_by=str(row.get("CreatedBy") or ""),
            empty_layer=not makes_layer,
            size=int(row.get("Size") or 0),
            id=str(row.get("Id") or "<missing>"),
            created=int(row.get("Created") or 0),
            comment=str(row.get("Comment") or ""),
            diff_id=diff_id,
        ))
    return tuple(out), exact


_NOP_RE = re.compile(r"#\(nop\) +([A-Za-z]+)")
# instructions that only change the config: their commit has an empty diff
_META = frozenset({
    "ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "USER", "ARG", "VOLUME", "STOPSIGNAL",
    "HEALTHCHECK", "SHELL", "ONBUILD", "MAINTAINER",
})
_GUESS_ORDER = {"copy": 0, "workdir": 1, "run": 2}


def _layer_kind(created_by: str) -> str:
    """"meta" (never a layer), "copy", "workdir" or "run" (a layer unless nothing changed)."""
    text = created_by.strip()
    m = _NOP_RE.search(text)
    if m:
        prefix = text[: m.start()].split()
        # classic builder: "<shell> <flag> #(nop) INSTR ..."; anything else is a RUN whose
        # command happens to contain "#(nop)"
        if not text.startswith("|") and prefix and prefix[-1].startswith(("-", "/")):
            word = m.group(1).upper()
            if word in ("COPY", "ADD"):
                return "copy"
            return "workdir" if word == "WORKDIR" else "meta"
        return "run"
    word = text.split(None, 1)[0] if text else ""
    if word in _META:  # BuildKit writes "INSTRUCTION args"
        return "meta"
    if word in ("COPY", "ADD"):
        return "copy"
    # classic RUN ("/bin/sh -c ...", "|N A=b /bin/sh -c ...", exec form), BuildKit RUN,
    # `docker import` (empty CreatedBy) and `docker commit`
    return "workdir" if word == "WORKDIR" else "run"


# --------------------------------------------------------------------------- errors


def _split_tag(ref: str) -> tuple[str, str | None]:
    """("host:5000/name", "tag") from "host:5000/name:tag"; a digest stays in the name."""
    if "@" in ref:
        return ref, None
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, None


def _shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _error_text(obj: Mapping[str, Any]) -> str:
    detail = obj.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"]).strip()
    return str(obj.get("error") or "unknown error").strip()


def _explanation(exc: Any) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


def _looks_auth(low: str) -> bool:
    return any(s in low for s in (
        "unauthorized", "authentication required", "no basic auth credentials",
        "access denied", "access to the resource is denied", "denied:", "forbidden",
        "incorrect username or password",
    ))


def _disk_full(low: str) -> bool:
    return "no space left on device" in low or "disk quota exceeded" in low


def _out_of_disk(what: str, message: str) -> EngineError:
    return EngineError(
        f"the Docker engine is out of disk space: {what}: {message}",
        hint="free space where the engine keeps its data (`docker system prune` removes "
             "unused images and build cache), then rerun",
    )


def _registry_failure(message: str, *, ref: str, doing: str = "pull") -> DevsyncError:
    low = message.lower()
    if _disk_full(low):
        return _out_of_disk(f"{doing} of {ref} failed", message)
    if "does not exist locally" in low or "no such image" in low:
        return EngineError(f"cannot {doing} {ref}: {message}",
                           hint="build or tag it first")
    if "pull access denied" in low:
        return RegistryAuthError(f"cannot {doing} {ref}: {message}",
                                 hint="the repository does not exist, or needs `docker login`")
    if _looks_auth(low):
        return RegistryAuthError(f"the registry refused to let devsync {doing} {ref}: {message}",
                                 hint="log in with `docker login REGISTRY` and try again")
    if "manifest unknown" in low or "not found" in low or "name unknown" in low:
        return RegistryError(f"{ref} is not in its registry: {message}",
                             hint="check the name and tag (see the registry's tag list)")
    if "no matching manifest" in low:
        return RegistryError(f"{ref} has no image for this platform: {message}",
                             hint="pass the right platform, or build the image for it")
    if "invalid reference format" in low:
        return EngineError(f"invalid image reference {ref!r}: {message}")
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "dial tcp",
                              "server gave http response to https client", "x509:",
                              "tls:", "timeout exceeded", "eof")):
        return RegistryError(f"cannot reach the registry to {doing} {ref}: {message}",
                             hint="is the registry up? an http-only registry must be listed in "
                                  "the daemon's insecure-registries")
    return EngineError(f"{doing} of {ref} failed: {message}")


def _build_request_failure(message: str, *, ref: str, doing: str = "build") -> DevsyncError:
    low = message.lower()
    if _disk_full(low):
        return _out_of_disk(f"cannot build {ref or 'the image'}", message)
    if any(s in low for s in ("dockerfile parse error", "cannot locate specified dockerfile",
                              "unknown instruction", "failed to reach build target",
                              "unknown flag")):
        return DockerfileError(f"the engine rejected the Dockerfile: {message}")
    return EngineError(f"cannot build {ref or 'the image'}: {message}")


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and every exception it wraps (causes, contexts, args, urllib3's `reason`)."""
    out: list[BaseException] = []
    todo = [exc]
    while todo:
        cur = todo.pop(0)
        if any(cur is seen for seen in out):
            continue
        out.append(cur)
        nested = [*getattr(cur, "args", ()), cur.__cause__, cur.__context__,
                  getattr(cur, "reason", None)]
        todo.extend(n for n in nested if isinstance(n, BaseException))
    return out


# The SDK's exception types are looked at only once the SDK is loaded: before, nothing can
# have raised them, and importing it to ask would cost what the socket path saves.


def _is_api_error(exc: BaseException) -> bool:
    if isinstance(exc, enginesocket.EngineAPIError):
        return True
    errors = sys.modules.get("docker.errors")
    return errors is not None and isinstance(exc, errors.APIError)


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | http.client.HTTPException):
        return True
    requests, urllib3_exceptions = sys.modules.get("requests"), sys.modules.get(
        "urllib3.exceptions")
    return (requests is not None and isinstance(exc, requests.RequestException)) or (
        urllib3_exceptions is not None and isinstance(exc, urllib3_exceptions.HTTPError))


def _is_timeout(chain: Sequence[BaseException]) -> bool:
    if "requests" not in sys.modules:
        timed_out = any(isinstance(e, TimeoutError) for e in chain)
    else:
        import requests
        import urllib3.exceptions

        # urllib3's NewConnectionError subclasses its ConnectTimeoutError: a refusal is no
        # timeout
        timed_out = any(
            isinstance(e, TimeoutError | requests.Timeout | urllib3.exceptions.TimeoutError)
            and not isinstance(e, urllib3.exceptions.NewConnectionError)
            and not (isinstance(e, requests.ConnectionError)
                     and not isinstance(e, requests.Timeout))
            for e in chain
        )
    return timed_out and not any(isinstance(e, ConnectionRefusedError | FileNotFoundError)
                                 for e in chain)


def _connect_failure(exc: BaseException, endpoint: EndpointLike,
                     timeout: float) -> EngineUnavailableError:
    host = endpoint.host
    where = f"cannot reach the Docker engine at {host}"
    via = f" (chosen by {endpoint.source})" if endpoint.source not in ("", "given") else ""
    text = str(exc)
    chain = _chain(exc)
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
    if _is_timeout(chain):
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
    return EngineUnavailableError(f"{where}: {_shorten(' '.join(reason.split()), 160)}",
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
    return _shorten(reason.lower().replace("_", " ") or str(exc), 80)


def _lost_engine(host: str, doing: str, exc: BaseException) -> EngineUnavailableError:
    chain = _chain(exc)
    what = "stopped answering" if _is_timeout(chain) else "closed the connection"
    return EngineUnavailableError(
        f"the Docker engine at {host} {what} during {doing}",
        hint="check that Docker is still running (it may have restarted), then try again",
    )
