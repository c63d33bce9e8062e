"""Registry auth: the challenge a registry answers with, and Bearer tokens from its realm.

The client's `GET /v2/` ping learns the challenge (`parse_challenge`). For Basic, the client
sends the credentials with every request. For Bearer, `fetch_token` gets a token per scope
(`repository:NAME:pull`) from the realm, with Basic credentials when there are some (an
identity token uses the OAuth2 refresh-token POST instead); the client caches it until
`expires_in` and fetches a new one once when the registry still answers 401. Credentials never
go to a token realm over plain HTTP (unless the realm is on loopback or the registry is
insecure), and no message here ever contains a secret or a token.
"""

from __future__ import annotations

import base64
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from devsync.adapters.registry._transport import (
    Response,
    Unreachable,
    is_loopback,
    origin,
    parse_json,
)
from devsync.errors import RegistryAuthError, RegistryError, RegistryUnreachableError

if TYPE_CHECKING:
    from devsync.adapters.dockerconfig import Credentials

_TOKEN_MARGIN = 5.0  # seconds: fetch a new token this long before the old one expires
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass
class Token:
    value: str
    expires_at: float  # time.monotonic()


@dataclass
class Challenge:
    scheme: Literal["basic", "bearer"]
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
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
    return Challenge("basic" if kind == "basic" else "bearer", params)


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def fetch_token(send: Callable[[str, str, Mapping[str, str], bytes | None], Response],
                params: dict[str, str], scope: str, creds: Credentials | None, *, host: str,
                insecure: bool, needs_login: Callable[[], RegistryAuthError]) -> Token:
    """A token for `scope` from the realm of a Bearer challenge's `params`, fetched with
    `send` (which raises `Unreachable`); `needs_login` words the refusal of an anonymous
    request."""
    realm = params.get("realm", "")
    if not realm.startswith(("https://", "http://")):
        raise RegistryAuthError(f"registry {host} gave an unusable token realm")
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
    if creds is not None and url.startswith("http://") and not is_loopback(
        urllib.parse.urlsplit(url).hostname or ""
    ) and not insecure:
        raise RegistryAuthError(
            f"registry {host} asks for credentials over plain HTTP ({origin(url)}); "
            "devsync will not send them",
        )
    try:
        resp = send(method, url, headers, data)
    except Unreachable as exc:
        raise RegistryUnreachableError(
            f"the token service of registry {host} ({origin(url)}) is not reachable: "
            f"{exc.describe()}"
        ) from None
    if resp.status in (401, 403):
        if creds is None:
            raise needs_login()
        raise RegistryAuthError(
            f"registry {host} refused the credentials"
            f"{' for ' + creds.username if creds.username else ''} "
            f"(from {creds.source or 'Docker config'})",
            hint=f"run `docker login {host}` again",
        )
    if resp.status != 200:
        failing = RegistryUnreachableError if resp.status >= 500 else RegistryError
        raise failing(f"the token service of registry {host} answered HTTP {resp.status}")
    body = parse_json(resp.body, f"token from {origin(url)}")
    value = ""
    if isinstance(body, dict):
        value = str(body.get("token") or body.get("access_token") or "")
    if not value:
        raise RegistryError(f"the token service of registry {host} sent no token")
    try:
        expires_in = float(body.get("expires_in") or 60)
    except (TypeError, ValueError):
        expires_in = 60.0
    return Token(value, time.monotonic() + max(expires_in - _TOKEN_MARGIN, 1.0))
