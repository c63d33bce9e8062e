"""A small client for the Registry HTTP API v2 (the OCI distribution spec), standard library only.

devsync reads what is deployed without pulling it: tags, manifests (resolving multi-platform
indexes to the local machine's platform), and the image config blob whose `history` and
`rootfs.diff_ids` decide the classic builder's cache. It never pushes.

Transport decisions, mirroring dockerd for its "insecure registries":
* A loopback host (localhost, 127.0.0.0/8, ::1) or `insecure=True`: try HTTPS first, without
  certificate verification, and fall back to plain HTTP when the TLS handshake fails or the
  HTTPS attempt is refused. The first request (`GET /v2/`) settles the scheme for the client's
  lifetime. Proxies from the environment are never used for loopback hosts (as Go's
  `ProxyFromEnvironment` does).
* Any other host: HTTPS only, verified against the system CAs.

Auth: the `GET /v2/` ping learns the challenge. Basic credentials are then sent with every
request; Bearer tokens are fetched per scope (`repository:NAME:pull`) from the realm, with Basic
credentials when there are some (an identity token uses the OAuth2 refresh-token POST instead),
cached until `expires_in`, and fetched again once when the registry still answers 401.
Credentials default to what the docker CLI would use
(`devsync.adapters.dockerconfig.get_credentials`).
No message or exception ever contains a secret or a token.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Literal

from devsync import __version__
from devsync.adapters.dockerconfig import Credentials, get_credentials
from devsync.errors import RegistryAuthError, RegistryError

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_MEDIA_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_MANIFEST_TYPES = (MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST)
INDEX_TYPES = (MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_INDEX)
_ACCEPT_MANIFESTS = ", ".join(
    (MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST)
)

_USER_AGENT = f"devsync/{__version__}"
_MAX_PAGES = 1000  # a registry whose Link headers loop must not hang devsync
_TOKEN_MARGIN = 5.0  # seconds: fetch a new token this long before the old one expires
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class RegistryNotFound(RegistryError):
    """The registry has no such repository, tag or blob (HTTP 404)."""


@dataclass(frozen=True)
class Manifest:
    """One platform's image manifest (an index is resolved before this is built)."""

    repository: str
    reference: str
    digest: str  # of this image manifest: what `docker pull NAME@DIGEST` takes
    media_type: str
    config_digest: str
    config_size: int
    layers: list[tuple[str, int]]  # (digest, compressed size), base layer first
    platform: str | None = None  # "linux/amd64" when chosen from an index, else None
    index_digest: str | None = None  # the tag's index/list digest when there was one
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def total_size(self) -> int:
        """Compressed size of all layers: what a pull downloads at most."""
        return sum(size for _, size in self.layers)

    @property
    def tag_digest(self) -> str:
        """The digest the tag points at (the index when multi-platform): `head_digest()`."""
        return self.index_digest or self.digest


@dataclass(frozen=True)
class ImageConfigInfo:
    """An image's manifest and config blob, fetched without its layers."""

    manifest: Manifest
    config: dict[str, Any] = field(repr=False)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def config_digest(self) -> str:
        """The image ID an engine shows after pulling this image."""
        return self.manifest.config_digest

    @property
    def total_size(self) -> int:
        return self.manifest.total_size

    @property
    def history(self) -> list[dict[str, Any]]:
        value = self.config.get("history")
        return list(value) if isinstance(value, list) else []

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.get("rootfs")
        value = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        return [str(v) for v in value] if isinstance(value, list) else []

    @property
    def env(self) -> list[str]:
        cfg = self.config.get("config")
        value = cfg.get("Env") if isinstance(cfg, dict) else None
        return [str(v) for v in value] if isinstance(value, list) else []

    @property
    def platform(self) -> str:
        os_ = str(self.config.get("os") or "")
        arch = str(self.config.get("architecture") or "")
        variant = self.config.get("variant")
        return "/".join(p for p in (os_, arch, variant if isinstance(variant, str) else "") if p)


def local_platform() -> str:
    """The platform the local engine pulls by default: `linux/ARCH[/VARIANT]`.

    Always linux: Docker Desktop runs Linux containers in a VM on macOS and Windows.
    """
    import platform  # (a few ms to import; the tag lookup before a sync's pull needs none)

    machine = platform.machine().lower()
    arch = {
        "x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386",
        "aarch64": "arm64", "arm64": "arm64", "armv8l": "arm64",
        "armv7l": "arm/v7", "armv7": "arm/v7", "armv6l": "arm/v6",
        "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
    }.get(machine, machine)
    return f"linux/{arch}"


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()


@dataclass
class _Challenge:
    scheme: Literal["basic", "bearer"]
    params: dict[str, str]


@dataclass
class _Response:
    status: int
    headers: Message
    body: bytes
    url: str

    def header(self, name: str) -> str:
        return str(self.headers.get(name) or "")


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
        self.loopback = _is_loopback(self._api_host)
        self._credentials_arg = credentials
        self._credentials: Credentials | None = None
        self._credentials_loaded = credentials != "auto"
        self._credentials_problem = ""
        if credentials != "auto":
            self._credentials = credentials
        self._base_url: str | None = None
        self._challenge: _Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._relaxed = self.loopback or insecure
        # built on first use: a verified TLS context loads the system CA bundle (~40 ms),
        # which a plain-HTTP loopback registry never needs
        self._verified_opener: urllib.request.OpenerDirector | None = None
        self._unverified_opener: urllib.request.OpenerDirector | None = None

    def _opener_for(self, url: str) -> urllib.request.OpenerDirector:
        relaxed = self._relaxed and (
            _same_host(url, self._api_host) or _is_loopback(urllib.parse.urlsplit(url).netloc))
        if relaxed:
            if self._unverified_opener is None:
                self._unverified_opener = _build_opener(_unverified_context(),
                                                        use_proxies=not self.loopback)
            return self._unverified_opener
        if self._verified_opener is None:
            self._verified_opener = _build_opener(ssl.create_default_context(),
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
        scope = _pull_scope(repository)
        tags: list[str] = []
        for _ in range(_MAX_PAGES):
            resp = self._request("GET", path, scope=scope, accept="application/json")
            if resp.status == 404:
                raise RegistryNotFound(
                    f"repository {self.host}/{repository} not found in the registry"
                    f"{_error_detail(resp)}",
                    hint="check the image name; the repository exists once an image is pushed",
                )
            self._raise_for_status(resp, f"listing tags of {repository}")
            data = _json(resp.body, f"tag list of {self.host}/{repository}")
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
            scope=_pull_scope(repository), accept=_ACCEPT_MANIFESTS,
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
            entry = _choose_platform(doc, wanted)
            if entry is None:
                available = ", ".join(_platforms_of(doc)) or "none"
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
            return _image_manifest(
                repository, reference, child_digest_, child_type, child,
                platform=_platform_string(entry.get("platform")), index_digest=digest,
                where=f"{self.host}/{repository}@{child_digest}",
            )
        return _image_manifest(
            repository, reference, digest, media_type, doc, platform=None, index_digest=None,
            where=f"{self.host}/{repository}:{reference}",
        )

    def config(self, repository: str, manifest: Manifest) -> dict[str, Any]:
        """The image config blob (history, rootfs.diff_ids, config.Env, ...), sha256-checked."""
        repository = self._repo(repository)
        digest = manifest.config_digest
        resp = self._request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=_pull_scope(repository),
            accept="application/vnd.oci.image.config.v1+json, "
                   "application/vnd.docker.container.image.v1+json, application/json, */*",
        )
        if resp.status == 404:
            raise RegistryNotFound(
                f"config blob {digest} of {self.host}/{repository} not found in the registry"
                f"{_error_detail(resp)}"
            )
        self._raise_for_status(resp, f"fetching the config of {repository}")
        if not _digest_matches(digest, resp.body):
            raise RegistryError(
                f"registry {self.host} sent a config blob for {repository} whose content does "
                f"not match its digest {digest}"
            )
        data = _json(resp.body, f"image config {digest}")
        if not isinstance(data, dict):
            raise RegistryError(f"image config {digest} of {repository} is not a JSON object")
        return data

    def image_config(
        self, repository: str, reference: str, platform: str | None = None
    ) -> ImageConfigInfo:
        """Manifest and config of `repository:reference`, without any layer."""
        man = self.manifest(repository, reference, platform)
        return ImageConfigInfo(manifest=man, config=self.config(repository, man))

    # ----------------------------------------------------------------- manifests

    def _manifest_document(
        self, repository: str, reference: str
    ) -> tuple[str, str, dict[str, Any]]:
        resp = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}",
            scope=_pull_scope(repository), accept=_ACCEPT_MANIFESTS,
        )
        if resp.status == 404:
            raise RegistryNotFound(
                f"{self.host}/{repository}{_sep(reference)}{reference} not found in the registry"
                f"{_error_detail(resp)}",
                hint="check the name and tag (devsync never pushes it for you)",
            )
        self._raise_for_status(resp, f"fetching the manifest of {repository}:{reference}")
        computed = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        if _DIGEST_RE.match(reference) and not _digest_matches(reference, resp.body):
            raise RegistryError(
                f"registry {self.host} sent a manifest for {repository}@{reference} whose "
                "content does not match that digest"
            )
        digest = resp.header("Docker-Content-Digest") or (
            reference if _DIGEST_RE.match(reference) else computed
        )
        doc = _json(resp.body, f"manifest of {self.host}/{repository}:{reference}")
        if not isinstance(doc, dict):
            raise RegistryError(f"manifest of {repository}:{reference} is not a JSON object")
        media_type = str(doc.get("mediaType") or "")
        header_type = resp.header("Content-Type").split(";", 1)[0].strip()
        if not media_type and header_type in (*IMAGE_MANIFEST_TYPES, *INDEX_TYPES):
            media_type = header_type
        if media_type in _MEDIA_SCHEMA1 or header_type in _MEDIA_SCHEMA1:
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
            except _Unreachable as exc:
                failure = exc.as_error(self.host)
                if scheme == "https" and len(schemes) > 1 and exc.may_fall_back:
                    continue
                raise failure from None
            if resp.status == 401:
                self._challenge = _parse_challenge(resp.header("WWW-Authenticate"))
            elif resp.status == 404:
                raise RegistryError(
                    f"{self.host} does not serve the Registry v2 API ({url} answered 404)"
                )
            elif resp.status >= 500:
                raise RegistryError(
                    f"registry {self.host} is failing: HTTP {resp.status} on /v2/"
                )
            self._base_url = f"{scheme}://{self._api_host}"
            return self._base_url
        assert failure is not None
        raise failure

    def _request(self, method: str, path: str, *, scope: str, accept: str) -> _Response:
        base = self._base()
        url = path if path.startswith(("http://", "https://")) else base + path
        headers = {"Accept": accept}
        auth = self._auth_header(scope, refresh=False)
        if auth:
            headers["Authorization"] = auth
        resp = self._send_mapped(method, url, headers)
        if resp.status != 401:
            return resp
        # Once more with fresh auth: the token expired, the scope differs, or auth is new.
        challenge = _parse_challenge(resp.header("WWW-Authenticate"))
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
        resp = self._send_mapped(method, url, headers)
        if resp.status == 401:
            raise self._denied(scope)
        return resp

    def _send_mapped(self, method: str, url: str, headers: dict[str, str]) -> _Response:
        try:
            return self._send(method, url, headers)
        except _Unreachable as exc:
            raise exc.as_error(self.host) from None

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None = None
    ) -> _Response:
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("User-Agent", _USER_AGENT)
        for name, value in headers.items():
            if name.lower() == "authorization":
                # never follow a redirect (e.g. to a blob store) with our credentials
                req.add_unredirected_header(name, value)
            else:
                req.add_header(name, value)
        opener = self._opener_for(url)
        try:
            with opener.open(req, timeout=self.timeout) as raw:
                return _Response(raw.status, raw.headers, raw.read(), raw.geturl())
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except (OSError, ValueError):
                body = b""
            finally:
                exc.close()
            return _Response(exc.code, exc.headers, body, exc.geturl())
        except urllib.error.URLError as exc:
            reason = exc.reason
            cause = reason if isinstance(reason, BaseException) else OSError(str(reason))
            raise _Unreachable(cause, self.timeout) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # timeouts while reading, resets, garbled responses, bad URLs
            raise _Unreachable(exc, self.timeout) from None

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
        token = self._fetch_token(challenge.params, scope, creds)
        self._tokens[scope] = token
        return f"Bearer {token.value}"

    def _fetch_token(
        self, params: dict[str, str], scope: str, creds: Credentials | None
    ) -> _Token:
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryAuthError(f"registry {self.host} gave an unusable token realm")
        scopes = [scope]
        if params.get("scope") and params["scope"] not in scopes:
            scopes.append(params["scope"])
        service = params.get("service", "")
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        method = "GET"
        if creds is not None and creds.is_identity_token:
            # OAuth2 refresh-token grant, as the docker CLI does for identity tokens
            method = "POST"
            form = [("grant_type", "refresh_token"), ("refresh_token", creds.secret),
                    ("client_id", "devsync"), ("service", service)]
            form += [("scope", " ".join(scopes))]
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            url = realm
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            sep = "&" if "?" in realm else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            if creds is not None:
                raw = f"{creds.username}:{creds.secret}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        if creds is not None and url.startswith("http://") and not _is_loopback(
            urllib.parse.urlsplit(url).hostname or ""
        ) and not self.insecure:
            raise RegistryAuthError(
                f"registry {self.host} asks for credentials over plain HTTP ({_origin(url)}); "
                "devsync will not send them",
            )
        try:
            resp = self._send(method, url, headers, data)
        except _Unreachable as exc:
            raise RegistryError(
                f"the token service of registry {self.host} ({_origin(url)}) is not reachable: "
                f"{exc.describe()}"
            ) from None
        if resp.status in (401, 403):
            if creds is None:
                raise self._needs_login()
            raise RegistryAuthError(
                f"registry {self.host} refused the credentials"
                f"{' for ' + creds.username if creds.username else ''} "
                f"(from {creds.source or 'Docker config'})",
                hint=f"run `docker login {self.host}` again",
            )
        if resp.status != 200:
            raise RegistryError(
                f"the token service of registry {self.host} answered HTTP {resp.status}"
            )
        body = _json(resp.body, f"token from {_origin(url)}")
        value = ""
        if isinstance(body, dict):
            value = str(body.get("token") or body.get("access_token") or "")
        if not value:
            raise RegistryError(f"the token service of registry {self.host} sent no token")
        try:
            expires_in = float(body.get("expires_in") or 60)
        except (TypeError, ValueError):
            expires_in = 60.0
        return _Token(value, time.monotonic() + max(expires_in - _TOKEN_MARGIN, 1.0))

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

    def _raise_for_status(self, resp: _Response, doing: str) -> None:
        if 200 <= resp.status < 300:
            return
        if resp.status >= 500:
            raise RegistryError(
                f"registry {self.host} failed while {doing}: HTTP {resp.status}"
                f"{_error_detail(resp)}"
            )
        if resp.status == 403:
            raise RegistryAuthError(
                f"registry {self.host} forbids {doing}{_error_detail(resp)}",
                hint=f"check that `docker login {self.host}` uses an account with access",
            )
        raise RegistryError(
            f"registry {self.host} refused {doing}: HTTP {resp.status}{_error_detail(resp)}"
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
        if not (_TAG_RE.match(ref) or _DIGEST_RE.match(ref)):
            raise RegistryError(f"invalid tag or digest {reference!r}")
        return ref


# --------------------------------------------------------------------------- helpers


class _Unreachable(Exception):
    """A transport failure, before any HTTP status."""

    def __init__(self, cause: BaseException, timeout: float) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.timeout = timeout

    @property
    def may_fall_back(self) -> bool:
        """An HTTPS attempt that a plain-HTTP retry may fix (refused or not TLS)."""
        return isinstance(self.cause, (ssl.SSLError, ConnectionError))

    def describe(self) -> str:
        cause = self.cause
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "cannot resolve its name"
        if isinstance(cause, (TimeoutError, socket.timeout)):
            return f"no answer within {self.timeout:g}s"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or cause})"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, http.client.HTTPException):
            return f"it does not speak HTTP properly ({type(cause).__name__})"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        return str(cause) or type(cause).__name__

    def as_error(self, host: str) -> RegistryError:
        hint = None
        if isinstance(self.cause, ssl.SSLCertVerificationError):
            hint = "add the registry's CA to the system trust store"
        elif isinstance(self.cause, ConnectionRefusedError):
            hint = "is the registry running, and is the port right?"
        return RegistryError(f"registry {host} is not reachable: {self.describe()}", hint=hint)


class _RedirectKeepingSameHostAuth(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and _same_origin(req.full_url, newurl):
            new.add_unredirected_header("Authorization", auth)
        return new


def _unverified_context() -> ssl.SSLContext:
    # no CA bundle to load: nothing is verified on this context
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _build_opener(ctx: ssl.SSLContext, *, use_proxies: bool) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPSHandler(context=ctx),
        _RedirectKeepingSameHostAuth(),
    ]
    if not use_proxies:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _is_loopback(host: str) -> bool:
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    name = name.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_host(url: str, api_host: str) -> bool:
    return urllib.parse.urlsplit(url).netloc == api_host


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _parse_challenge(header: str) -> _Challenge | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    kind = scheme.lower()
    if kind not in ("basic", "bearer"):
        return None
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = value.replace('\\"', '"')
    return _Challenge("basic" if kind == "basic" else "bearer", params)


def _pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _next_link(header: str) -> str:
    if not header:
        return ""
    match = _LINK_NEXT_RE.search(header)
    return match.group(1) if match else ""


def _sep(reference: str) -> str:
    return "@" if _DIGEST_RE.match(reference) else ":"


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"the registry sent something that is not JSON as the {what}") from None


def _error_detail(resp: _Response) -> str:
    """The registry's own error codes, e.g. " (MANIFEST_UNKNOWN: manifest unknown)"."""
    try:
        data = json.loads(resp.body) if resp.body else None
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors:
        return ""
    parts = []
    for err in errors[:3]:
        if isinstance(err, dict):
            code, message = str(err.get("code") or ""), str(err.get("message") or "")
            parts.append(": ".join(p for p in (code, message) if p))
    return f" ({'; '.join(p for p in parts if p)})" if any(parts) else ""


def _digest_matches(digest: str, body: bytes) -> bool:
    algo, _, hexpart = digest.partition(":")
    try:
        hasher = hashlib.new(algo)
    except ValueError:
        return False
    hasher.update(body)
    return hasher.hexdigest() == hexpart


def _image_manifest(
    repository: str, reference: str, digest: str, media_type: str, doc: dict[str, Any], *,
    platform: str | None, index_digest: str | None, where: str,
) -> Manifest:
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise RegistryError(f"{where} is not an image manifest (media type {media_type!r})")
    return Manifest(
        repository=repository,
        reference=reference,
        digest=digest,
        media_type=media_type or MEDIA_OCI_MANIFEST,
        config_digest=str(config.get("digest") or ""),
        config_size=int(config.get("size") or 0),
        layers=[
            (str(layer.get("digest") or ""), int(layer.get("size") or 0))
            for layer in layers
            if isinstance(layer, dict)
        ],
        platform=platform,
        index_digest=index_digest,
        raw=doc,
    )


def _split_platform(value: str) -> tuple[str, str, str]:
    parts = value.strip().lower().split("/")
    if len(parts) < 2 or not all(parts):
        raise RegistryError(f"invalid platform {value!r} (expected os/arch[/variant])")
    return parts[0], parts[1], parts[2] if len(parts) > 2 else ""


def _platform_string(plat: object) -> str | None:
    if not isinstance(plat, dict):
        return None
    parts = [str(plat.get("os") or ""), str(plat.get("architecture") or "")]
    if plat.get("variant"):
        parts.append(str(plat["variant"]))
    return "/".join(parts)


def _real_entries(doc: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for entry in doc.get("manifests") or []:
        if not isinstance(entry, dict):
            continue
        plat = entry.get("platform")
        # BuildKit stores attestations as "unknown/unknown" entries: not images
        if isinstance(plat, dict) and plat.get("os") == "unknown":
            continue
        yield entry


def _platforms_of(doc: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for entry in _real_entries(doc):
        name = _platform_string(entry.get("platform"))
        if name and name not in seen:
            seen.append(name)
    return seen


def _choose_platform(doc: dict[str, Any], wanted: str) -> dict[str, Any] | None:
    os_, arch, variant = _split_platform(wanted)
    best: tuple[int, dict[str, Any]] | None = None
    for entry in _real_entries(doc):
        plat = entry.get("platform")
        if not isinstance(plat, dict):
            continue
        if str(plat.get("os") or "").lower() != os_:
            continue
        if str(plat.get("architecture") or "").lower() != arch:
            continue
        have = str(plat.get("variant") or "").lower()
        if variant:
            # arm64 images usually leave their "v8" variant unsaid
            ok = have == variant or (arch == "arm64" and {have, variant} <= {"", "v8"})
            rank = 0 if have == variant else 1
        else:
            ok = True
            rank = 0 if not have else 1
        if ok and (best is None or rank < best[0]):
            best = (rank, entry)
    return best[1] if best else None
