"""The one wrapper around the Docker engine that every devsync operation goes through.

Calls go through the Docker SDK, except, over a local unix socket, the ones a sync makes (ping,
inspect, history and the image list, the pull and build streams, tag): those go through
devsync.adapters.engine.socketapi, so that a sync never spends the SDK's import on a machine
its pull keeps busy (see `Engine`).

All calls block; the TUI runs them in worker threads. Long operations (pull, build, push) are
generators of `devsync.events` events. Every failure a user can meet becomes a `DevsyncError`
with one clear line (`EngineUnavailableError`, `EngineError`, `RegistryError`,
`RegistryAuthError`, `DockerfileError`, `UnknownBaseError`, `InterruptedError_`).

Streams and interruption: pull/build/push accept `cancel: threading.Event`. Setting it,
Ctrl-C or closing the generator closes the connection, and the daemon cancels its work; a
cancel then raises `InterruptedError_`, Ctrl-C's `KeyboardInterrupt` is re-raised (see
`_streams`). Builds never pass a tag to the engine: the image is tagged only after the whole
build succeeded, so an interrupted or failed build never moves or creates a tag.

`Engine` is the facade; its parts live in private modules:
  _connect    which engine (the docker CLI's choice), the SDK and its client, connect failures
  _streams    cancellable streams: the request's helper thread, the watcher, the context upload
  _progress   pull/push layer progress and the classic builder's output as step events
  _buildkit_progress  a BuildKit build's vertices, from `/build?version=2`'s trace messages or
              the docker CLI's `--progress=plain`
  _history    `LocalImage`, `HistoryEntry`: inspect and history translated, empty layers
              worked out
  _failures   engine and registry errors as one-line DevsyncErrors
  _dockercli  the docker CLI that builds with BuildKit (`find_buildkit_cli`), and its builds
  _buildkit_build  those vertices as step, log and fetch events (`VertexEvents`, `StepMap`)
  socketapi   the standard-library unix-socket path a sync's calls take
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from devsync.adapters.engine import _connect
from devsync.adapters.engine import socketapi as enginesocket
from devsync.adapters.engine._buildkit_build import (
    RawJSONProgress,
    StepMap,
    VertexEvents,
    plain_times,
)
from devsync.adapters.engine._buildkit_progress import (
    BuildkitTrace,
    BuildkitVertex,
    PlainProgress,
    parse_plain_progress,
)
from devsync.adapters.engine._connect import DEFAULT_HOST, EndpointLike, auth_config, login
from devsync.adapters.engine._dockercli import (
    CLIBuild,
    CLIBuildRequest,
    CLIChoice,
    DockerCLI,
    cli_build_argv,
    find_buildkit_cli,
)
from devsync.adapters.engine._failures import (
    build_request_failure,
    call_failures,
    error_text,
    registry_failure,
)
from devsync.adapters.engine._history import HistoryEntry, LocalImage, local_image, split_tag
from devsync.adapters.engine._progress import BuildParser, TransferProgress
from devsync.adapters.engine._streams import (
    CancellableReader,
    ResponseTap,
    Stream,
    open_stream,
    seekable,
    spool,
)
from devsync.errors import DevsyncError, EngineError, InterruptedError_
from devsync.events import Event, ImageBuilt, PullFinished, PullStarted, Pushed, Warning_
from devsync.model.versions import split_reference

if TYPE_CHECKING:
    import docker

__all__ = [
    "API_TIMEOUT",
    "CONNECT_TIMEOUT",
    "DEFAULT_HOST",
    "STREAM_IDLE_TIMEOUT",
    "TRANSFER_IDLE_TIMEOUT",
    "BuildkitTrace",
    "BuildkitVertex",
    "CLIBuildRequest",
    "CLIChoice",
    "DockerCLI",
    "EndpointLike",
    "Engine",
    "HistoryEntry",
    "LocalImage",
    "PlainProgress",
    "StepMap",
    "find_buildkit_cli",
    "parse_plain_progress",
]

CONNECT_TIMEOUT = 5.0  # seconds for the first ping: a live local daemon answers in milliseconds
API_TIMEOUT = 120.0  # inspect, tag, history...: a busy daemon (big prune running) can be slow
# A pull/push that sends nothing for this long is stuck; a silent RUN step may legitimately
# take a while, hence generous. None disables the check.
STREAM_IDLE_TIMEOUT: float | None = 3600.0
# A pull or push reports progress several times a second while it moves; minutes of silence
# mean a hung daemon or registry. (A build may rightly be silent for long: a quiet RUN.)
TRANSFER_IDLE_TIMEOUT = 300.0


class Engine:
    """A connected Docker Engine. Build one with `Engine.connect()`.

    Over a local unix socket the SDK client is made on first use, by the calls a sync does not
    make (push, image lists, removal...): a sync's own go through
    devsync.adapters.engine.socketapi, whose requests are the SDK's (the same query
    parameters, the proxy build args and registry logins of Docker's config), and whose
    failures map to the same DevsyncErrors.
    """

    def __init__(self, client: docker.DockerClient | None, *, host: str, source: str = "",
                 stream_idle_timeout: float | None = STREAM_IDLE_TIMEOUT,
                 make_client: Callable[[], docker.DockerClient] | None = None,
                 socket_path: str | None = None, api_timeout: float = API_TIMEOUT,
                 context_name: str = "default") -> None:
        """`client`, or `make_client` to make it on first use (with `socket_path`, the unix
        socket that the calls before then go through). `context_name`: the Docker context
        the engine was found through ("default" for DOCKER_HOST and the default socket)."""
        if client is None and make_client is None:
            raise ValueError("an Engine needs an SDK client or a way to make one")
        self.host = host
        self.source = source
        self.context_name = context_name
        self.stream_idle_timeout = stream_idle_timeout
        self._api_timeout = api_timeout
        self._socket = socket_path
        self._tap = ResponseTap()
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
        """Make the client now, before any `import docker...`: making it imports the SDK
        without paramiko (a bare `import docker.errors` first would bring paramiko along)."""
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
            endpoint = _connect.default_endpoint()
        elif isinstance(endpoint, str):
            endpoint = _connect.PlainEndpoint(endpoint, source="given")
        resolved = endpoint
        context_name = endpoint.context_name or "default"
        path = enginesocket.socket_path(endpoint.host)
        if path is None:
            return cls(_connect.sdk_client(endpoint, timeout=timeout, api_timeout=api_timeout),
                       host=endpoint.host, source=endpoint.source,
                       stream_idle_timeout=stream_idle_timeout, api_timeout=api_timeout,
                       context_name=context_name)
        try:
            enginesocket.ping(path, timeout=timeout)
        except Exception as exc:
            raise _connect.connect_failure(exc, endpoint, timeout) from None
        return cls(None, host=endpoint.host, source=endpoint.source,
                   stream_idle_timeout=stream_idle_timeout, socket_path=path,
                   api_timeout=api_timeout, context_name=context_name,
                   make_client=lambda: _connect.sdk_client(resolved, timeout=timeout,
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

    def cli_environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a docker CLI that must talk to this engine: `base` (default:
        this process's) with DOCKER_CONTEXT naming the context devsync found the engine
        through, else DOCKER_HOST set to its host (TLS settings come from `base`, as they
        did for devsync)."""
        env = dict(os.environ if base is None else base)
        if self.context_name != "default" and not self.source.startswith("DOCKER_HOST"):
            env.pop("DOCKER_HOST", None)
            env["DOCKER_CONTEXT"] = self.context_name
        else:
            env.pop("DOCKER_CONTEXT", None)
            env["DOCKER_HOST"] = self.host
        return env

    def ping(self) -> bool:
        """Whether the engine answers (raises a DevsyncError when it cannot be reached)."""
        with self._calling("ping the Docker engine"):
            if self._socket is not None:
                enginesocket.ping(self._socket, timeout=self._api_timeout)
                return True
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
        return local_image(data, rows, self._layers_at)

    def has_image(self, ref: str) -> bool:
        """Whether `ref` is a local image: one API call, where `image` makes several."""
        with self._calling(f"inspect image {ref}"):
            return self._inspect(ref) is not None

    def image_id(self, ref: str) -> str | None:
        """The ID of the local image `ref`, None when there is none: one API call."""
        with self._calling(f"inspect image {ref}"):
            data = self._inspect(ref)
        return str(data["Id"]) if data is not None else None

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

    def local_tags(self, repository: str) -> list[str]:
        """The tags `repository` has on this engine (`1.0.0`, `dev`...): one API call."""
        with self._calling("list local images"):
            if self._socket is not None:
                summaries = enginesocket.list_images(self._socket, timeout=self._api_timeout)
            else:
                summaries = self._client.api.images()
        prefix = repository + ":"
        return sorted({ref[len(prefix):] for s in summaries for ref in s.get("RepoTags") or []
                       if ref.startswith(prefix) and "/" not in ref[len(prefix):]})

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
                out.append(local_image(data, rows, self._layers_at))
        return out

    def _layers_at(self, image_id: str) -> int | None:
        """How many layers the (intermediate) image `image_id` has; None if it is gone."""
        with self._calling(f"inspect image {image_id[:19]}"):
            data = self._inspect(image_id)
        if data is None:
            return None
        return len((data.get("RootFS") or {}).get("Layers") or [])

    def history(self, ref: str) -> list[HistoryEntry]:
        """`ref`'s config history, oldest first (empty layers included; see `_history`)."""
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
                data = self._client.api.inspect_distribution(ref, auth_config=auth_config(ref))
            except docker.errors.APIError:
                return None
        digest = (data.get("Descriptor") or {}).get("digest")
        return str(digest) if digest else None

    def tag(self, image_id: str, ref: str) -> None:
        """Point tag `ref` (name[:tag], default latest) at `image_id`."""
        repo, tag = split_tag(ref)
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
        if "@" not in ref and not split_tag(ref)[1]:
            ref = f"{ref}:latest"
        yield PullStarted(ref)
        progress = TransferProgress.pull(ref)
        digest, already = "", False
        stream = self._open_stream(
            self._pull_request(ref, platform), what=f"pull {ref}", cancel=cancel,
            classify=registry_failure, ref=ref, idle=TRANSFER_IDLE_TIMEOUT,
        )
        with stream:
            for obj in stream:
                if "error" in obj or "errorDetail" in obj:
                    raise registry_failure(error_text(obj), ref=ref, doing="pull")
                status = str(obj.get("status") or "")
                layer = str(obj.get("id") or "")
                if layer and not status.startswith("Pulling from"):
                    yield from progress.feed(layer, status, obj.get("progressDetail") or {})
                elif status.startswith("Digest: "):
                    digest = status.removeprefix("Digest: ").strip()
                elif status.startswith("Status: Image is up to date"):
                    already = True
        if not digest:
            img = self.image(ref)
            if img is not None:
                digest = img.digest_for(split_tag(ref.split("@", 1)[0])[0]) or ""
        yield progress.final()
        yield PullFinished(ref, digest=digest, already_present=already)

    def _pull_request(self, ref: str,
                      platform: str | None) -> Callable[[], Iterable[dict[str, Any]]]:
        socket_path = self._socket
        if socket_path is None:
            return lambda: self._client.api.pull(ref, stream=True, decode=True,
                                                 auth_config=auth_config(ref),
                                                 platform=platform)
        # a digest wins over a tag, as for `docker pull name:tag@digest`
        repository, tag, digest = split_reference(ref)
        return lambda: enginesocket.pull(socket_path, repository, digest or tag or "latest",
                                         timeout=self._api_timeout,
                                         auth=auth_config(ref), platform=platform)

    # ---- push

    def push(self, ref: str, *, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Push `ref` (one tag: default latest, never "all tags" as the bare API would).

        Events: LayerProgress per layer line, PushProgress (aggregated like pull), Pushed.
        """
        repo, tag = split_tag(ref)
        tag = tag or "latest"
        ref = f"{repo}:{tag}"
        progress = TransferProgress.push(ref)
        digest = ""
        stream = self._open_stream(
            lambda: self._client.api.push(repo, tag=tag, stream=True, decode=True,
                                          auth_config=auth_config(ref)),
            what=f"push {ref}", cancel=cancel, classify=registry_failure, ref=ref,
            idle=TRANSFER_IDLE_TIMEOUT,
        )
        with stream:
            for obj in stream:
                if "error" in obj or "errorDetail" in obj:
                    raise registry_failure(error_text(obj), ref=ref, doing="push")
                aux = obj.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                    continue
                status = str(obj.get("status") or "")
                layer = str(obj.get("id") or "")
                if not layer:
                    continue
                yield from progress.feed(layer, status, obj.get("progressDetail") or {})
        if not digest:
            raise EngineError(f"push of {ref} ended without a digest from the registry")
        yield progress.final()
        yield Pushed(ref, digest=digest)

    # ---- build

    def build(self, context_tar: IO[bytes] | enginesocket.Readable, *,
              dockerfile: str = "Dockerfile", tag: str = "",
              cache_from: Sequence[str] = (), build_args: Mapping[str, str] | None = None,
              labels: Mapping[str, str] | None = None, target: str | None = None,
              image_name: str = "", cancel: threading.Event | None = None) -> Iterator[Event]:
        """Build with the engine's classic builder; tag `tag` only once the build succeeded.

        `context_tar` is an uncompressed or gzip/bzip2/xz tar (the daemon detects which): a file,
        or a stream of known `size` sent as it is made (the SDK gets it spooled to a file).
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
        parser = BuildParser(image)
        abandoned = threading.Event()
        spooled = spool(context_tar) if self._socket is None and not seekable(context_tar) \
            else None
        body = CancellableReader(spooled or context_tar, cancel, abandoned)

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
                                   classify=build_request_failure, ref=image,
                                   abandoned=abandoned)
        with stream, spooled or contextlib.nullcontext():
            for obj in stream:
                if "error" in obj or "errorDetail" in obj:
                    raise parser.failure(error_text(obj))
                yield from parser.feed(obj)
            yield from parser.close()
        if cancel is not None and cancel.is_set():
            raise InterruptedError_(f"build of {image or 'image'} cancelled; nothing was tagged")
        image_id = self._built_id(parser, image)
        if tag:
            self.tag(image_id, tag)
        yield ImageBuilt(image, tag, image_id, parser.steps_cached, parser.steps_total)

    def _socket_build(self, body: CancellableReader, *, dockerfile: str,
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
        logins = {key: login(key, creds) for key, creds in all_credentials().items()}
        return enginesocket.build(
            self._socket, body, body.remaining(), query,
            registry_config=enginesocket.registry_auth_header(logins) if logins else None)

    def _built_id(self, parser: BuildParser, image: str) -> str:
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

    # ---- BuildKit

    def build_buildkit(self, context_tar: IO[bytes], *, dockerfile: str = "Dockerfile",
                       tag: str = "", cache_from: Sequence[str] = (),
                       build_args: Mapping[str, str] | None = None,
                       labels: Mapping[str, str] | None = None, target: str | None = None,
                       steps: StepMap | None = None, blob_sizes: Mapping[str, int] | None = None,
                       fetch_label: str = "", image_name: str = "",
                       cancel: threading.Event | None = None) -> Iterator[Event]:
        """Build with the engine's BuildKit through the Engine API (`/build?version=2`, the
        context tar in the request body, no session); tag `tag` once it succeeded.

        BuildKit applies `labels` to the image config without a step, and pulls from
        `cache_from` (registry references, or local images) only the layers it reuses. It
        has no registry logins this way (no session): pull what needs one first, and name
        the local image. Events: see `VertexEvents`, then ImageBuilt.
        """
        from devsync.adapters.dockerconfig import build_proxy_args

        image = image_name or tag
        events = VertexEvents(image, steps or StepMap(), blob_sizes=blob_sizes or {},
                              fetch_label=fetch_label or image)
        trace = BuildkitTrace()
        abandoned = threading.Event()
        body = CancellableReader(context_tar, cancel, abandoned)
        query = {"version": "2", "dockerfile": dockerfile}
        args = {**build_proxy_args(self.host), **(build_args or {})}
        if args:
            query["buildargs"] = json.dumps(args)
        if labels:
            query["labels"] = json.dumps(dict(labels))
        if cache_from:
            query["cachefrom"] = json.dumps(list(cache_from))
        if target:
            query["target"] = target

        def start() -> Iterable[dict[str, Any]]:
            # the engine gets no tag: see the module doc
            if self._socket is not None:
                return enginesocket.build(self._socket, body, body.remaining(), query)
            api = self._client.api
            response = api._post(api._url("/build"), params=query, data=body, stream=True,
                                 headers={"Content-Type": "application/tar"}, timeout=None)
            api._raise_for_status(response)
            return api._stream_helper(response, decode=True)

        stream = self._open_stream(start, what=f"build {image or 'image'}", cancel=cancel,
                                   classify=build_request_failure, ref=image,
                                   abandoned=abandoned)
        with stream:
            for obj in stream:
                for vertex in trace.feed(obj):
                    yield from events.vertex(vertex)
                if "error" in obj or "errorDetail" in obj:
                    raise events.failure(error_text(obj))
        yield from events.finish()
        if cancel is not None and cancel.is_set():
            raise InterruptedError_(f"build of {image or 'image'} cancelled; nothing was tagged")
        yield self._buildkit_built(events, trace.image_id or "", tag=tag, image=image)

    def build_with_cli(self, cli: DockerCLI, request: CLIBuildRequest, *, tag: str = "",
                       steps: StepMap | None = None,
                       blob_sizes: Mapping[str, int] | None = None, fetch_label: str = "",
                       image_name: str = "",
                       cancel: threading.Event | None = None) -> Iterator[Event]:
        """Build with BuildKit through the docker CLI `cli` (its session: the context read
        by the CLI as `docker build` reads it, registry logins from Docker's config), against
        this engine; tag `tag` once the build succeeded. Events as `build_buildkit`'s.

        The CLI runs in a process group of its own: a cancel, Ctrl-C or closing this
        generator stops it (and the daemon's build with it) and nothing is tagged."""
        image = image_name or tag
        events = VertexEvents(image, steps or StepMap(), blob_sizes=blob_sizes or {},
                              fetch_label=fetch_label or image)
        progress: PlainProgress | RawJSONProgress = (
            RawJSONProgress() if cli.progress == "rawjson" else PlainProgress())
        env = self.cli_environment()
        if not cli.buildx:
            env["DOCKER_BUILDKIT"] = "1"
        builder = self.context_name if env.get("DOCKER_CONTEXT") else "default"
        other: list[str] = []
        with tempfile.TemporaryDirectory(prefix="devsync-build-") as tmp:
            iidfile = Path(tmp) / "image-id"
            run = CLIBuild(cli_build_argv(cli, request, iidfile, builder=builder), env,
                           cancel=cancel, cwd=request.context_dir)
            for line in run.lines():
                changed = progress.feed_line(line)
                if changed is None:
                    if line.strip():
                        other = [*other[-19:], line.strip()]
                    continue
                if not isinstance(changed, list):
                    plain_times(changed, line)
                    changed = [changed]
                for vertex in changed:
                    yield from events.vertex(vertex)
            if run.returncode != 0:
                raise events.failure(other[-1] if other else
                                     f"{cli.path} exited with status {run.returncode}")
            image_id = iidfile.read_text().strip() if iidfile.exists() else ""
        yield from events.finish()
        yield self._buildkit_built(events, image_id, tag=tag, image=image)

    def _buildkit_built(self, events: VertexEvents, image_id: str, *, tag: str,
                        image: str) -> ImageBuilt:
        if not image_id:
            raise EngineError(f"build of {image or 'image'} ended without an image ID")
        if tag:
            self.tag(image_id, tag)
        return ImageBuilt(
            image, tag, image_id, sum(1 for hit in events.cached.values() if hit),
            events.total, fetched_layers=len(events.fetched),
            fetched_bytes=events.fetched_bytes,
            cache_import_errors=tuple(f"{ref}: {why}"
                                      for ref, why in events.import_errors.items()))

    # ---- plumbing

    def _calling(self, doing: str) -> contextlib.AbstractContextManager[None]:
        """Map SDK/transport failures of a plain API call to DevsyncErrors."""
        return call_failures(self.host, doing)

    def _open_stream(self, start: Callable[[], Iterable[dict[str, Any]]], *, what: str,
                     cancel: threading.Event | None, classify: Callable[..., DevsyncError],
                     ref: str, abandoned: threading.Event | None = None,
                     idle: float | None = None) -> Stream:
        """`open_stream` to this engine, waiting at most the lesser of `idle` and the
        engine's own `stream_idle_timeout` for each answer."""
        if idle is None or (self.stream_idle_timeout and self.stream_idle_timeout < idle):
            idle = self.stream_idle_timeout
        return open_stream(start, self._tap, host=self.host, what=what, cancel=cancel,
                           classify=classify, ref=ref, abandoned=abandoned, idle=idle)
