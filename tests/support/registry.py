"""Registry helpers shared by the adapter and fault suites: a token service, htpasswd hashes
and Docker client configs holding a login."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def bcrypt_hash(password: str) -> tuple[str, str]:
    """A bcrypt hash for an htpasswd file (distribution 2.8 accepts only bcrypt), and the tool.

    The `bcrypt` package is a test dependency: crypt(3) left the stdlib in Python 3.13, and
    `htpasswd` needs apache2-utils."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode(), "bcrypt"


def write_docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


TOKEN_SERVICE = "devsync-test-registry"


TOKEN_ISSUER = "devsync-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """A Docker token service: Basic creds in, RS256 JWT out (signed by `openssl dgst`).

    Anonymous requests get a token that grants nothing, or a 401 without `anonymous`. The
    answer's `issued_at` is far in the past unless None: clients time tokens by their own
    clock. The fault suite's registry uses it with one-second tokens."""

    key: Path
    cert_der: bytes
    users: dict[str, str]
    requests: list[tuple[str, list[str]]] = field(default_factory=list)  # (user or "", scopes)
    server: ThreadingHTTPServer | None = None
    issuer: str = TOKEN_ISSUER
    service: str = TOKEN_SERVICE
    lifetime: int = 600  # seconds, in `expires_in` and in the `exp` claim
    anonymous: bool = True
    issued_at: str | None = "2020-01-01T00:00:00Z"

    @property
    def realm(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), capture_output=True, check=True).stdout
        return signing_input + "." + _b64url(sig)

    def token_for(self, user: str, scopes: list[str]) -> str:
        access = []
        if user:  # anonymous users get a token that grants nothing
            for scope in scopes:
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        return self.sign({"iss": self.issuer, "sub": user, "aud": self.service,
                          "exp": now + self.lifetime, "nbf": now - 30, "iat": now,
                          "jti": uuid.uuid4().hex, "access": access})

    def start(self) -> TokenServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = ""
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Basic ") and not outer.anonymous:
                    self.send_response(401)
                    self.end_headers()
                    return
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if outer.users.get(name) != password:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                scopes = query.get("scope", [])
                outer.requests.append((user, scopes))
                answer: dict[str, object] = {"token": outer.token_for(user, scopes),
                                             "expires_in": outer.lifetime}
                if outer.issued_at is not None:
                    answer["issued_at"] = outer.issued_at
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
