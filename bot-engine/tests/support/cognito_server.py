"""A local stand-in for a Cognito user pool's JWKS endpoint, plus token minting for tests.

Serves `GET {issuer}/.well-known/jwks.json` over real HTTP (stdlib server in a background
thread on 127.0.0.1), counts the fetches, and lets a test rotate keys or make the endpoint
fail. `mint()` signs Cognito-shaped access tokens (RS256) with any header or claim overridden.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.http_server import BackgroundHttpServer, KeepAliveHandler, OwnedHttpServer

POOL_ID = "us-east-1_TestPool"
CLIENT_ID = "test-app-client"
REMOVE: Any = object()  # a claim/header override value that drops the member


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(uuid.uuid4().hex, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "alg": "RS256",
            "e": _b64url_uint(numbers.e),
            "kid": self.kid,
            "kty": "RSA",
            "n": _b64url_uint(numbers.n),
            "use": "sig",
        }

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class _Handler(KeepAliveHandler):
    server: OwnedHttpServer

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path != f"/{owner.pool_id}/.well-known/jwks.json":
            self._send(404, {"message": "not found"})
            return
        status, body = owner.handle_jwks_request()
        self._send(status, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self.reply(status, json.dumps(body).encode())


class CognitoJwksServer(BackgroundHttpServer):
    """One user pool's JWKS endpoint on a free loopback port."""

    def __init__(self, pool_id: str = POOL_ID, client_id: str = CLIENT_ID) -> None:
        super().__init__(_Handler)
        self.pool_id = pool_id
        self.client_id = client_id
        self.keys: list[SigningKey] = [SigningKey.generate()]
        self.failure_status: int | None = None  # answer the JWKS with this status when set
        self._lock = threading.Lock()
        self._fetches = 0

    # ------------------------------------------------------------------ what it serves
    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"

    @property
    def fetch_count(self) -> int:
        with self._lock:
            return self._fetches

    @property
    def current(self) -> SigningKey:
        """The newest key; `mint` signs with it unless told otherwise."""
        return self.keys[-1]

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.jwk() for key in self.keys]}

    def handle_jwks_request(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._fetches += 1
            failure = self.failure_status
        if failure is not None:
            return failure, {"message": "unavailable"}
        return 200, self.jwks()

    def rotate(self, *, keep_old: bool = False) -> SigningKey:
        """Publish a new signing key; drop the old ones unless `keep_old`."""
        new = SigningKey.generate()
        with self._lock:
            self.keys = [*self.keys, new] if keep_old else [new]
        return new

    # ------------------------------------------------------------------ tokens
    def claims(self, sub: str = "user-123", **overrides: Any) -> dict[str, Any]:
        """Claims of a Cognito access token, with `overrides` applied (REMOVE drops one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": sub,
            "iss": self.issuer,
            "client_id": self.client_id,
            "origin_jti": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "token_use": "access",
            "scope": "aws.cognito.signin.user.admin",
            "auth_time": now,
            "iat": now,
            "exp": now + 3600,
            "jti": str(uuid.uuid4()),
            "username": "trader",
        }
        return _apply(claims, overrides)

    def mint(
        self,
        sub: str = "user-123",
        *,
        key: SigningKey | None = None,
        header: dict[str, Any] | None = None,
        **claim_overrides: Any,
    ) -> str:
        """An RS256 token signed by `key` (default: the current key).

        `header` overrides header members (REMOVE drops one); the signature is RS256 whatever
        the header says, which is what tests of header tampering want.
        """
        key = key or self.current
        head = _apply({"kid": key.kid, "alg": "RS256"}, header or {})
        return sign_rs256(head, self.claims(sub, **claim_overrides), key.private_key)


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **overrides}
    return {name: value for name, value in merged.items() if value is not REMOVE}


def sign_rs256(header: dict[str, Any], claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"
