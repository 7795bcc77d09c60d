"""The development token issuer: Cognito-shaped access tokens signed by a key on local disk.

Used when AUTH_MODE=local (development and tests) so the engine runs without AWS. Its tokens
are verified by exactly the same code as Cognito's (`app.core.auth`), against its own JWKS.
The signing key lives in `LOCAL_DIR/jwt-signing-key.pem` (mode 0600) and is reused across
restarts, so minted tokens stay valid. Production refuses to mint (`ensure_dev_tokens_allowed`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import AuthMode, Settings
from app.core.errors import Forbidden

KEY_FILE_NAME = "jwt-signing-key.pem"
KEY_BITS = 2048
COGNITO_SCOPE = "aws.cognito.signin.user.admin"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def rsa_jwk_thumbprint(*, n: str, e: str) -> str:
    """RFC 7638 thumbprint of an RSA JWK: SHA-256 of its required members in sorted order."""
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class LocalIssuer:
    """Mints RS256 access tokens shaped like Cognito's and publishes the matching JWKS."""

    def __init__(self, private_key: rsa.RSAPrivateKey, issuer: str, client_id: str) -> None:
        numbers = private_key.public_key().public_numbers()
        self._private_key = private_key
        self._issuer = issuer
        self._client_id = client_id
        self._n, self._e = _b64url_uint(numbers.n), _b64url_uint(numbers.e)
        self._kid = rsa_jwk_thumbprint(n=self._n, e=self._e)

    @classmethod
    def load_or_create(cls, directory: Path, issuer: str, client_id: str) -> LocalIssuer:
        """The issuer whose key is in `directory`, creating the key on first use."""
        return cls(_load_or_create_key(directory / KEY_FILE_NAME), issuer, client_id)

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def kid(self) -> str:
        return self._kid

    def jwks(self) -> dict[str, Any]:
        """The public JWKS, as Cognito publishes it at `/.well-known/jwks.json`."""
        key = {"kty": "RSA", "kid": self._kid, "use": "sig", "alg": "RS256"}
        return {"keys": [{**key, "n": self._n, "e": self._e}]}

    def mint(self, sub: str, *, ttl_s: int, username: str | None = None) -> str:
        """An access token for `sub`, valid for `ttl_s` seconds from now."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        now = int(time.time())
        claims = {
            "sub": sub,
            "iss": self._issuer,
            "client_id": self._client_id,
            "token_use": "access",  # the kind of token, not a secret  # nosec B105
            "scope": COGNITO_SCOPE,
            "auth_time": now,
            "iat": now,
            "exp": now + ttl_s,
            "jti": str(uuid.uuid4()),
            "username": username if username is not None else sub,
        }
        headers = {"kid": self._kid, "alg": "RS256", "typ": None}  # Cognito sends no `typ`
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers=headers)


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        return _load_key(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Write a private temporary file, then link it into place: a concurrent start either wins
    # the link or loads the winner's complete key; nobody ever reads a half-written file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _load_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < KEY_BITS:
        raise ValueError(f"{path} does not hold an RSA private key of at least {KEY_BITS} bits")
    return key


def ensure_dev_tokens_allowed(settings: Settings) -> None:
    """Refuse to mint development tokens in production or when Cognito issues the tokens."""
    if settings.is_production or settings.auth_mode != AuthMode.LOCAL:
        raise Forbidden(
            "development tokens are only available with AUTH_MODE=local outside production",
            code="dev_tokens_disabled",
        )
