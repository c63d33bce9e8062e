"""A small client for the Registry HTTP API v2 (the OCI distribution spec), standard library only.

devsync reads what is deployed without pulling it: tags, manifests (resolving multi-platform
indexes to the local machine's platform), and the image config blob whose `history` and
`rootfs.diff_ids` decide the classic builder's cache. Images are pushed through the engine;
the one thing written here is what the engine cannot push: a BuildKit registry cache (its
config blob and its index, `put_blob` / `put_manifest`, for `devsync publish`).

`RegistryClient` is the surface; its parts live in private modules:
  _transport  urllib openers, TLS, the loopback/insecure fallback to plain HTTP (as dockerd
              does for its "insecure registries"), same-host redirects, responses
  _auth       challenges, Bearer tokens per scope, credentials sent only where they belong
  _manifests  `Manifest`, `ImageConfigInfo`, media types, the platform chosen from an index

The first request (`GET /v2/`) settles the scheme for the client's lifetime and learns the
auth challenge. Credentials default to what the docker CLI would use
(`devsync.adapters.dockerconfig.get_credentials`). No message or exception ever contains a
secret or a token.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Literal

from devsync.adapters.dockerconfig import Credentials, get_credentials
from devsync.adapters.registry._auth import (
    Challenge,
    Token,
    fetch_token,
    parse_challenge,
    pull_scope,
    push_scope,
)
from devsync.adapters.registry._manifests import (
    ACCEPT_MANIFESTS,
    DIGEST_RE,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    MEDIA_SCHEMA1,
    ImageConfigInfo,
    Manifest,
    choose_platform,
    digest_matches,
    image_manifest,
    local_platform,
    platform_string,
    platforms_of,
)
from devsync.adapters.registry._transport import (
    Response,
    Unreachable,
    error_detail,
    is_loopback,
    make_opener,
    parse_json,
    same_host,
    send,
    unverified_context,
)
from devsync.errors import RegistryAuthError, RegistryError, RegistryUnreachableError

__all__ = [
    "IMAGE_MANIFEST_TYPES",
    "INDEX_TYPES",
    "MEDIA_DOCKER_MANIFEST",
    "MEDIA_DOCKER_MANIFEST_LIST",
    "MEDIA_OCI_INDEX",
    "MEDIA_OCI_MANIFEST",
    "ImageConfigInfo",
    "Manifest",
    "RegistryClient",
    "RegistryNotFound",
    "local_platform",
]

_MAX_PAGES = 1000  # a registry whose Link headers loop must not hang devsync
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class RegistryNotFound(RegistryError):
    """The registry has no such repository, tag or blob (HTTP 404)."""


class RegistryClient:
    """Read-only client for one registry host (`"localhost:5000"`, `"ghcr.io"`, ...)."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        credentials: Credentials | Literal["auto"] | None = "auto",
        timeout: float = 10,
    ) -> None:
        host = host.strip().rstrip("/")
        if "://" in host:
            host = urllib.parse.urlsplit(host).netloc
        if not host:
            raise RegistryError("empty registry host")
        self.host = host
        # Docker Hub's API lives on another name than the one in image references.
        self._api_host = "registry-1.docker.io" if host in _DOCKER_HUB_NAMES else host
        self.insecure = insecure
        self.timeout = timeout
        self.loopback = is_loopback(self._api_host)
        self._credentials_arg = credentials
        self._credentials: Credentials | None = None
        self._credentials_loaded = credentials != "auto"
        self._credentials_problem = ""
        if credentials != "auto":
            self._credentials = credentials
        self._base_url: str | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[str, Token] = {}
        self._relaxed = self.loopback or insecure
        # built on first use: a verified TLS context loads the system CA bundle (~40 ms),
        # which a plain-HTTP loopback registry never needs
        self._verified_opener: urllib.request.OpenerDirector | None = None
        self._unverified_opener: urllib.request.OpenerDirector | None = None

    def _opener_for(self, url: str) -> urllib.request.OpenerDirector:
        relaxed = self._relaxed and (
            same_host(url, self._api_host) or is_loopback(urllib.parse.urlsplit(url).netloc))
        if relaxed:
            if self._unverified_opener is None:
                self._unverified_opener = make_opener(unverified_context(),
                                                      use_proxies=not self.loopback)
            return self._unverified_opener
        if self._verified_opener is None:
            self._verified_opener = make_opener(ssl.create_default_context(),
                                                use_proxies=not self.loopback)
        return self._verified_opener

    def __repr__(self) -> str:
        return f"RegistryClient({self.host!r}, insecure={self.insecure})"

    # ----------------------------------------------------------------- public API

    def ping(self) -> str:
        """Check that the registry answers the v2 API; returns the base URL in use."""
        return self._base()

    def tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """All tags of `repository`, following `Link` pagination (`page_size` sets `n=`)."""
        repository = self._repo(repository)
        path = f"/v2/{repository}/tags/list"
        if page_size is not None:
            path += f"?n={int(page_size)}"
        scope = pull_scope(repository)
        tags: list[str] = []
        for _ in range(_MAX_PAGES):
            resp = self._request("GET", path, scope=scope, accept="application/json")
            if resp.status == 404:
                raise RegistryNotFound(
                    f"repository {self.host}/{repository} not found in the registry"
                    f"{error_detail(resp)}",
                    hint="check the image name; the repository exists once an image is pushed",
                )
            self._raise_for_status(resp, f"listing tags of {repository}")
            data = parse_json(resp.body, f"tag list of {self.host}/{repository}")
            page = data.get("tags") if isinstance(data, dict) else None
            tags.extend(str(t) for t in page or [])
            next_path = _next_link(resp.header("Link"))
            if not next_path:
                return tags
            path = next_path
        raise RegistryError(f"registry {self.host} paginates the tags of {repository} forever")

    def head_digest(self, repository: str, reference: str) -> str | None:
        """The digest `reference` points at (an index's own digest for multi-platform tags).

        This is what `RepoDigests` holds after a push or pull by tag. None when the tag (or
        the whole repository) does not exist.
        """
        repository, reference = self._repo(repository), self._ref(reference)
        resp = self._request(
            "HEAD", f"/v2/{repository}/manifests/{reference}",
            scope=pull_scope(repository), accept=ACCEPT_MANIFESTS,
        )
        if resp.status == 404:
            return None
        self._raise_for_status(resp, f"looking up {repository}:{reference}")
        digest = resp.header("Docker-Content-Digest")
        if digest:
            return digest
        # Some registries omit the header on HEAD; the body's hash is the digest.
        return self._manifest_document(repository, reference)[0]

    def manifest(
        self, repository: str, reference: str, platform: str | None = None
    ) -> Manifest:
        """The image manifest for `reference` (tag or digest).

        An index / manifest list is resolved to `platform` (default: `local_platform()`);
        when it has no such platform, `RegistryError` names the ones it has.
        """
        repository, reference = self._repo(repository), self._ref(reference)
        digest, media_type, doc = self._manifest_document(repository, reference)
        if media_type in INDEX_TYPES or (not media_type and "manifests" in doc):
            wanted = platform or local_platform()
            entry = choose_platform(doc, wanted)
            if entry is None:
                available = ", ".join(platforms_of(doc)) or "none"
                raise RegistryError(
                    f"{self.host}/{repository}:{reference} has no image for {wanted} "
                    f"(available platforms: {available})",
                    hint="build for this platform too, or pass the platform explicitly",
                )
            child_digest = str(entry.get("digest") or "")
            child_digest_, child_type, child = self._manifest_document(repository, child_digest)
            if child_type in INDEX_TYPES:
                raise RegistryError(
                    f"{self.host}/{repository}:{reference} nests an index in an index"
                )
            return image_manifest(
                repository, reference, child_digest_, child_type, child,
                platform=platform_string(entry.get("platform")), index_digest=digest,
                where=f"{self.host}/{repository}@{child_digest}",
            )
        return image_manifest(
            repository, reference, digest, media_type, doc, platform=None, index_digest=None,
            where=f"{self.host}/{repository}:{reference}",
        )

    def config(self, repository: str, manifest: Manifest) -> dict[str, Any]:
        """The image config blob (history, rootfs.diff_ids, config.Env, ...), sha256-checked."""
        repository = self._repo(repository)
        digest = manifest.config_digest
        resp = self._request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=pull_scope(repository),
            accept="application/vnd.oci.image.config.v1+json, "
                   "application/vnd.docker.container.image.v1+json, application/json, */*",
        )
        if resp.status == 404:
            raise RegistryNotFound(
                f"config blob {digest} of {self.host}/{repository} not found in the registry"
                f"{error_detail(resp)}"
            )
        self._raise_for_status(resp, f"fetching the config of {repository}")
        if not digest_matches(digest, resp.body):
            raise RegistryError(
                f"registry {self.host} sent a config blob for {repository} whose content does "
                f"not match its digest {digest}"
            )
        data = parse_json(resp.body, f"image config {digest}")
        if not isinstance(data, dict):
            raise RegistryError(f"image config {digest} of {repository} is not a JSON object")
        return data

    def image_config(
        self, repository: str, reference: str, platform: str | None = None
    ) -> ImageConfigInfo:
        """Manifest and config of `repository:reference`, without any layer."""
        man = self.manifest(repository, reference, platform)
        return ImageConfigInfo(manifest=man, config=self.config(repository, man))

    def blob(self, repository: str, digest: str) -> bytes:
        """A blob (a config, a cache config...), sha256-checked."""
        repository = self._repo(repository)
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"invalid blob digest {digest!r}")
        resp = self._request("GET", f"/v2/{repository}/blobs/{digest}",
                             scope=pull_scope(repository), accept="*/*")
        if resp.status == 404:
            raise RegistryNotFound(f"blob {digest} of {self.host}/{repository} not found in "
                                   f"the registry{error_detail(resp)}")
        self._raise_for_status(resp, f"fetching blob {digest[:19]} of {repository}")
        if not digest_matches(digest, resp.body):
            raise RegistryError(f"registry {self.host} sent a blob for {repository} whose "
                                f"content does not match its digest {digest}")
        return resp.body

    def cache_config(self, repository: str, reference: str) -> dict[str, Any] | None:
        """A BuildKit registry cache's config (`type=registry` exporter: an index or manifest
        naming a config of media type application/vnd.buildkit.cacheconfig.v0), decoded;
        None when `reference` is something else (an image). Nothing else is fetched."""
        from devsync.model.buildkit import CACHE_CONFIG_MEDIA_TYPE

        repository, reference = self._repo(repository), self._ref(reference)
        _digest, _media_type, doc = self._manifest_document(repository, reference)
        descriptors = [d for d in [*(doc.get("manifests") or []), doc.get("config")]
                       if isinstance(d, dict)]
        found = next((d for d in descriptors if d.get("mediaType") == CACHE_CONFIG_MEDIA_TYPE),
                     None)
        if found is None:
            return None
        digest = str(found.get("digest") or "")
        data = parse_json(self.blob(repository, digest), f"cache config {digest}")
        if not isinstance(data, dict):
            raise RegistryError(f"cache config {digest} of {repository} is not a JSON object")
        return data

    @property
    def asks_for_login(self) -> bool:
        """Whether the registry answers `/v2/` with an auth challenge: then even an anonymous
        pull needs a client that can do the auth dance (BuildKit without a session cannot)."""
        self._base()
        return self._challenge is not None

    def blob_size(self, repository: str, digest: str) -> int | None:
        """A blob's size (HEAD, nothing downloaded); None when the registry has no such blob."""
        repository = self._repo(repository)
        resp = self._request("HEAD", f"/v2/{repository}/blobs/{digest}",
                             scope=pull_scope(repository), accept="*/*")
        if resp.status != 200:
            return None
        try:
            return int(resp.header("Content-Length"))
        except ValueError:
            return None

    # ----------------------------------------------------------------- writes

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` as a blob of `repository` (unless it is there already); its digest.

        One monolithic upload (POST, then PUT with the digest): what devsync writes is small
        JSON, never a layer."""
        repository = self._repo(repository)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        scope = push_scope(repository)
        head = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=scope,
                             accept="*/*")
        if head.status == 200:
            return digest
        start = self._request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope,
                              accept="*/*", data=b"")
        self._raise_for_status(start, f"starting an upload to {repository}")
        location = start.header("Location")
        if not location:
            raise RegistryError(f"registry {self.host} started an upload to {repository} "
                                "without saying where to send it")
        if not location.startswith(("http://", "https://")):
            location = self._base() + ("" if location.startswith("/") else "/") + location
        sep = "&" if "?" in location else "?"
        done = self._request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}",
                             scope=scope, accept="*/*", data=data,
                             content_type="application/octet-stream")
        self._raise_for_status(done, f"uploading blob {digest[:19]} to {repository}")
        return digest

    def put_manifest(self, repository: str, reference: str, body: bytes,
                     media_type: str) -> str:
        """Store `body` (a manifest or index of `media_type`) as `repository:reference`;
        returns its digest."""
        repository, reference = self._repo(repository), self._ref(reference)
        resp = self._request("PUT", f"/v2/{repository}/manifests/{reference}",
                             scope=push_scope(repository), accept="*/*", data=body,
                             content_type=media_type)
        self._raise_for_status(resp, f"storing {repository}:{reference}")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    # ----------------------------------------------------------------- manifests

    def _manifest_document(
        self, repository: str, reference: str
    ) -> tuple[str, str, dict[str, Any]]:
        resp = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}",
            scope=pull_scope(repository), accept=ACCEPT_MANIFESTS,
        )
        if resp.status == 404:
            raise RegistryNotFound(
                f"{self.host}/{repository}{_sep(reference)}{reference} not found in the registry"
                f"{error_detail(resp)}",
                hint="check the name and tag (devsync never pushes it for you)",
            )
        self._raise_for_status(resp, f"fetching the manifest of {repository}:{reference}")
        computed = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        if DIGEST_RE.match(reference) and not digest_matches(reference, resp.body):
            raise RegistryError(
                f"registry {self.host} sent a manifest for {repository}@{reference} whose "
                "content does not match that digest"
            )
        digest = resp.header("Docker-Content-Digest") or (
            reference if DIGEST_RE.match(reference) else computed
        )
        doc = parse_json(resp.body, f"manifest of {self.host}/{repository}:{reference}")
        if not isinstance(doc, dict):
            raise RegistryError(f"manifest of {repository}:{reference} is not a JSON object")
        media_type = str(doc.get("mediaType") or "")
        header_type = resp.header("Content-Type").split(";", 1)[0].strip()
        if not media_type and header_type in (*IMAGE_MANIFEST_TYPES, *INDEX_TYPES):
            media_type = header_type
        if media_type in MEDIA_SCHEMA1 or header_type in MEDIA_SCHEMA1:
            raise RegistryError(
                f"{self.host}/{repository}:{reference} is a schema 1 manifest, which devsync "
                "does not read",
                hint="push the image again with a current docker",
            )
        return digest, media_type, doc

    # ----------------------------------------------------------------- HTTP and auth

    def _base(self) -> str:
        if self._base_url is not None:
            return self._base_url
        schemes = ["https", "http"] if (self.loopback or self.insecure) else ["https"]
        failure: RegistryError | None = None
        for scheme in schemes:
            url = f"{scheme}://{self._api_host}/v2/"
            try:
                resp = self._send("GET", url, {"Accept": "application/json"})
            except Unreachable as exc:
                failure = exc.as_error(self.host)
                if scheme == "https" and len(schemes) > 1 and exc.may_fall_back:
                    continue
                raise failure from None
            if resp.status == 401:
                self._challenge = parse_challenge(resp.header("WWW-Authenticate"))
            elif resp.status == 404:
                raise RegistryError(
                    f"{self.host} does not serve the Registry v2 API ({url} answered 404)"
                )
            elif resp.status >= 500:
                raise RegistryUnreachableError(
                    f"registry {self.host} is failing: HTTP {resp.status} on /v2/"
                )
            self._base_url = f"{scheme}://{self._api_host}"
            return self._base_url
        assert failure is not None
        raise failure

    def _request(self, method: str, path: str, *, scope: str, accept: str,
                 data: bytes | None = None, content_type: str | None = None) -> Response:
        base = self._base()
        url = path if path.startswith(("http://", "https://")) else base + path
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        auth = self._auth_header(scope, refresh=False)
        if auth:
            headers["Authorization"] = auth
        resp = self._send_mapped(method, url, headers, data)
        if resp.status != 401:
            return resp
        # Once more with fresh auth: the token expired, the scope differs, or auth is new.
        challenge = parse_challenge(resp.header("WWW-Authenticate"))
        if challenge is not None:
            self._challenge = challenge
        if self._challenge is None:
            raise RegistryAuthError(
                f"registry {self.host} refused the request (401) without saying how to log in"
            )
        self._tokens.pop(scope, None)
        retry_auth = self._auth_header(scope, refresh=True)
        if retry_auth is None or (retry_auth == auth and self._challenge.scheme == "basic"):
            raise self._denied(scope)
        headers["Authorization"] = retry_auth
        resp = self._send_mapped(method, url, headers, data)
        if resp.status == 401:
            raise self._denied(scope)
        return resp

    def _send_mapped(self, method: str, url: str, headers: dict[str, str],
                     data: bytes | None = None) -> Response:
        try:
            return self._send(method, url, headers, data)
        except Unreachable as exc:
            raise exc.as_error(self.host) from None

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None = None
    ) -> Response:
        return send(self._opener_for(url), method, url, headers, data, timeout=self.timeout)

    def _auth_header(self, scope: str, *, refresh: bool) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        creds = self._get_credentials()
        if challenge.scheme == "basic":
            if creds is None:
                if refresh:
                    raise self._needs_login()
                return None
            if creds.is_identity_token:
                raise RegistryAuthError(
                    f"registry {self.host} wants a password, but Docker's config holds an "
                    "identity token for it",
                    hint=f"run `docker login {self.host}` with a username and password",
                )
            raw = f"{creds.username}:{creds.secret}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        token = self._tokens.get(scope)
        if token is not None and not refresh and token.expires_at > time.monotonic():
            return f"Bearer {token.value}"
        token = fetch_token(self._send, challenge.params, scope, creds, host=self.host,
                            insecure=self.insecure, needs_login=self._needs_login)
        self._tokens[scope] = token
        return f"Bearer {token.value}"

    def _get_credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            self._credentials_loaded = True
            try:
                self._credentials = get_credentials(self.host)
            except RegistryAuthError as exc:
                # like the docker CLI: go on anonymously, but say why if auth is then needed
                self._credentials = None
                self._credentials_problem = exc.message
        return self._credentials

    def _needs_login(self) -> RegistryAuthError:
        why = f" ({self._credentials_problem})" if self._credentials_problem else ""
        return RegistryAuthError(
            f"registry {self.host} requires a login and Docker's config has none for it{why}",
            hint=f"run `docker login {self.host}`",
        )

    def _denied(self, scope: str) -> RegistryAuthError:
        creds = self._get_credentials()
        what = scope.split(":")[1] if scope.count(":") >= 2 else "this resource"
        if creds is None:
            return self._needs_login()
        if self._challenge is not None and self._challenge.scheme == "basic":
            return RegistryAuthError(
                f"registry {self.host} refused the credentials"
                f"{' for ' + creds.username if creds.username else ''} "
                f"(from {creds.source or 'Docker config'})",
                hint=f"run `docker login {self.host}` again",
            )
        return RegistryAuthError(
            f"registry {self.host} denied access to {what}"
            f"{' for ' + creds.username if creds.username else ''}",
            hint=f"check that the repository exists and that `docker login {self.host}` "
                 "uses an account that may pull it",
        )

    def _raise_for_status(self, resp: Response, doing: str) -> None:
        if 200 <= resp.status < 300:
            return
        if resp.status >= 500:
            raise RegistryUnreachableError(
                f"registry {self.host} failed while {doing}: HTTP {resp.status}"
                f"{error_detail(resp)}"
            )
        if resp.status == 403:
            raise RegistryAuthError(
                f"registry {self.host} forbids {doing}{error_detail(resp)}",
                hint=f"check that `docker login {self.host}` uses an account with access",
            )
        raise RegistryError(
            f"registry {self.host} refused {doing}: HTTP {resp.status}{error_detail(resp)}"
        )

    def _repo(self, repository: str) -> str:
        repo = repository.strip().strip("/")
        if self._api_host == "registry-1.docker.io" and "/" not in repo:
            repo = f"library/{repo}"
        if not _REPO_RE.match(repo):
            raise RegistryError(f"invalid repository name {repository!r}")
        return repo

    @staticmethod
    def _ref(reference: str) -> str:
        ref = reference.strip()
        if not (_TAG_RE.match(ref) or DIGEST_RE.match(ref)):
            raise RegistryError(f"invalid tag or digest {reference!r}")
        return ref


def _next_link(header: str) -> str:
    if not header:
        return ""
    match = _LINK_NEXT_RE.search(header)
    return match.group(1) if match else ""


def _sep(reference: str) -> str:
    return "@" if DIGEST_RE.match(reference) else ":"

