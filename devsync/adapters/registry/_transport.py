"""How the registry client reaches a registry: urllib openers, TLS, redirects, responses.

Transport decisions, mirroring dockerd for its "insecure registries":
* A loopback host (localhost, 127.0.0.0/8, ::1) or `insecure=True`: try HTTPS first, without
  certificate verification, and fall back to plain HTTP when the TLS handshake fails or the
  HTTPS attempt is refused (`Unreachable.may_fall_back`). Proxies from the environment are
  never used for loopback hosts (as Go's `ProxyFromEnvironment` does).
* Any other host: HTTPS only, verified against the system CAs.

Credentials are sent as unredirected headers: a redirect keeps them only to the same scheme,
host and port (a blob store elsewhere gets none).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from devsync import __version__
from devsync.errors import RegistryError, RegistryUnreachableError

_USER_AGENT = f"devsync/{__version__}"


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes
    url: str

    def header(self, name: str) -> str:
        return str(self.headers.get(name) or "")


def send(opener: urllib.request.OpenerDirector, method: str, url: str,
         headers: Mapping[str, str], data: bytes | None, *, timeout: float) -> Response:
    """One request through `opener`; HTTP errors are responses, the rest `Unreachable`."""
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("User-Agent", _USER_AGENT)
    for name, value in headers.items():
        if name.lower() == "authorization":
            # never follow a redirect (e.g. to a blob store) with our credentials
            req.add_unredirected_header(name, value)
        else:
            req.add_header(name, value)
    try:
        with opener.open(req, timeout=timeout) as raw:
            return Response(raw.status, raw.headers, raw.read(), raw.geturl())
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read()
        except (OSError, ValueError):
            body = b""
        finally:
            exc.close()
        return Response(exc.code, exc.headers, body, exc.geturl())
    except urllib.error.URLError as exc:
        reason = exc.reason
        cause = reason if isinstance(reason, BaseException) else OSError(str(reason))
        raise Unreachable(cause, timeout) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # timeouts while reading, resets, garbled responses, bad URLs
        raise Unreachable(exc, timeout) from None


class Unreachable(Exception):
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
        message = f"registry {host} is not reachable: {self.describe()}"
        if isinstance(self.cause, ssl.SSLError):
            # (a TLS setup to fix, not a registry that is down)
            return RegistryError(message, hint=hint)
        return RegistryUnreachableError(message, hint=hint)


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


def unverified_context() -> ssl.SSLContext:
    # no CA bundle to load: nothing is verified on this context
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_opener(ctx: ssl.SSLContext, *, use_proxies: bool) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPSHandler(context=ctx),
        _RedirectKeepingSameHostAuth(),
    ]
    if not use_proxies:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def is_loopback(host: str) -> bool:
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


def same_host(url: str, api_host: str) -> bool:
    return urllib.parse.urlsplit(url).netloc == api_host


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def parse_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"the registry sent something that is not JSON as the {what}") from None


def error_detail(resp: Response) -> str:
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

