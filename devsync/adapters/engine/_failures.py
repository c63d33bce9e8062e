"""Every engine and registry failure, translated into a DevsyncError with one clear line.

The engine answers in several voices: the Docker SDK's `APIError`, the socket path's
`EngineAPIError`, requests/urllib3/OSError transport errors, and `error` objects inside a pull,
push or build stream. These helpers tell them apart and word each one for the user
(`EngineError`, `EngineUnavailableError`, `RegistryError`, `RegistryAuthError`,
`DockerfileError`). Failures to connect are worded in devsync.adapters.engine._connect, which
knows the endpoint.
"""

from __future__ import annotations

import contextlib
import http.client
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from devsync.adapters.engine import socketapi as enginesocket
from devsync.errors import (
    DevsyncError,
    DockerfileError,
    EngineError,
    EngineUnavailableError,
    RegistryAuthError,
    RegistryError,
)


@contextlib.contextmanager
def call_failures(host: str, doing: str) -> Iterator[None]:
    """Map SDK/transport failures of a plain API call to the engine at `host` to
    DevsyncErrors."""
    try:
        yield
    except DevsyncError:
        raise
    except Exception as exc:
        if is_api_error(exc):
            explanation = api_explanation(exc)
            if disk_full(explanation.lower()):
                raise out_of_disk(f"cannot {doing}", explanation) from None
            raise EngineError(f"cannot {doing}: {explanation}") from None
        if is_transport_error(exc):
            raise lost_engine(host, doing, exc) from None
        raise


def shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def error_text(obj: Mapping[str, Any]) -> str:
    detail = obj.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"]).strip()
    return str(obj.get("error") or "unknown error").strip()


def api_explanation(exc: Any) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


def looks_auth(low: str) -> bool:
    return any(s in low for s in (
        "unauthorized", "authentication required", "no basic auth credentials",
        "access denied", "access to the resource is denied", "denied:", "forbidden",
        "incorrect username or password",
    ))


def disk_full(low: str) -> bool:
    return "no space left on device" in low or "disk quota exceeded" in low


def out_of_disk(what: str, message: str) -> EngineError:
    return EngineError(
        f"the Docker engine is out of disk space: {what}: {message}",
        hint="free space where the engine keeps its data (`docker system prune` removes "
             "unused images and build cache), then rerun",
    )


def registry_failure(message: str, *, ref: str, doing: str = "pull") -> DevsyncError:
    low = message.lower()
    if disk_full(low):
        return out_of_disk(f"{doing} of {ref} failed", message)
    if "does not exist locally" in low or "no such image" in low:
        return EngineError(f"cannot {doing} {ref}: {message}",
                           hint="build or tag it first")
    if "pull access denied" in low:
        return RegistryAuthError(f"cannot {doing} {ref}: {message}",
                                 hint="the repository does not exist, or needs `docker login`")
    if looks_auth(low):
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


def build_request_failure(message: str, *, ref: str, doing: str = "build") -> DevsyncError:
    low = message.lower()
    if disk_full(low):
        return out_of_disk(f"cannot build {ref or 'the image'}", message)
    if any(s in low for s in ("dockerfile parse error", "cannot locate specified dockerfile",
                              "unknown instruction", "failed to reach build target",
                              "unknown flag")):
        return DockerfileError(f"the engine rejected the Dockerfile: {message}")
    return EngineError(f"cannot build {ref or 'the image'}: {message}")


def exception_chain(exc: BaseException) -> list[BaseException]:
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


def is_api_error(exc: BaseException) -> bool:
    if isinstance(exc, enginesocket.EngineAPIError):
        return True
    errors = sys.modules.get("docker.errors")
    return errors is not None and isinstance(exc, errors.APIError)


def is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | http.client.HTTPException):
        return True
    requests, urllib3_exceptions = sys.modules.get("requests"), sys.modules.get(
        "urllib3.exceptions")
    return (requests is not None and isinstance(exc, requests.RequestException)) or (
        urllib3_exceptions is not None and isinstance(exc, urllib3_exceptions.HTTPError))


def is_timeout(chain: Sequence[BaseException]) -> bool:
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


def lost_engine(host: str, doing: str, exc: BaseException) -> EngineUnavailableError:
    chain = exception_chain(exc)
    what = "stopped answering" if is_timeout(chain) else "closed the connection"
    return EngineUnavailableError(
        f"the Docker engine at {host} {what} during {doing}",
        hint="check that Docker is still running (it may have restarted), then try again",
    )
