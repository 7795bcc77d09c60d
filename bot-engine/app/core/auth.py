"""Access-token verification: one code path for Cognito (production) and the local issuer.

A token is accepted only if its header names an allowed RSA algorithm and a `kid` found in
the issuer's JWKS, its RS256 signature verifies, and its claims say it is an unexpired
*access* token issued by our issuer for our app client. Cognito access tokens carry no `aud`;
`client_id` plays that role. Errors never echo the token or any part of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from app.config import AuthMode, Settings
from app.core.errors import ServiceUnavailable, Unauthorized
from app.logging.logger import get_logger

if TYPE_CHECKING:
    from app.core.local_issuer import LocalIssuer

log = get_logger("auth")

# Asymmetric RSA algorithms only: an HMAC or `none` entry would let a public key act as a secret.
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
MIN_RSA_KEY_BITS = 2048
MAX_TOKEN_LENGTH = 16 * 1024
REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "token_use", "client_id"]
DEFAULT_JWKS_TIMEOUT_S = 5.0
ACCESS_USE = "access"  # Cognito's `token_use` of access tokens (ID tokens say "id")


@dataclass(frozen=True)
class AccessClaims:
    """What the engine uses from a verified access token."""

    sub: str
    username: str | None
    client_id: str
    scope: str
    expires_at: datetime  # UTC
    token_id: str | None  # jti


# ----------------------------------------------------------------------------- key sources
class JwksFetchError(Exception):
    """The JWKS document could not be fetched or holds no usable key."""


class JwksSource(Protocol):
    """Where signing keys come from. Implementations raise JwksFetchError on failure."""

    async def fetch_jwks(self) -> dict[str, Any]: ...


class HttpJwksSource:
    """The issuer's published JWKS (Cognito: `{issuer}/.well-known/jwks.json`)."""

    def __init__(
        self, url: str, client: httpx.AsyncClient, timeout: float = DEFAULT_JWKS_TIMEOUT_S
    ) -> None:
        self.url = url
        self._client = client
        self._timeout = timeout

    async def fetch_jwks(self) -> dict[str, Any]:
        try:
            response = await self._client.get(
                self.url, timeout=self._timeout, headers={"Accept": "application/json"}
            )
            response.raise_for_status()
            document = response.json()
        except httpx.HTTPError as exc:
            raise JwksFetchError(f"fetching the JWKS failed: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise JwksFetchError("the JWKS response is not JSON") from exc
        if not isinstance(document, dict):
            raise JwksFetchError("the JWKS response is not a JSON object")
        return document


class StaticJwksSource:
    """Keys known in-process (the local issuer's own JWKS); no network."""

    def __init__(self, provider: Callable[[], dict[str, Any]]) -> None:
        self._provider = provider

    async def fetch_jwks(self) -> dict[str, Any]:
        return self._provider()


@dataclass(frozen=True)
class VerificationKey:
    """A public key from the JWKS, with the algorithm its JWK pins (if any)."""

    key: RSAPublicKey
    algorithm: str | None  # the JWK's `alg`, when it pins one


def _parse_jwks(document: Mapping[str, Any]) -> dict[str, VerificationKey]:
    """Public RSA signing keys by `kid`; everything else in the document is ignored."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise JwksFetchError("the JWKS document has no `keys` list")
    keys: dict[str, VerificationKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid, alg = entry.get("kid"), entry.get("alg")
        if (
            entry.get("kty") != "RSA"
            or entry.get("use", "sig") != "sig"
            or not isinstance(kid, str)
            or not kid
            or "d" in entry  # a private key has no business in a JWKS
            or (alg is not None and alg not in RSA_ALGORITHMS)
        ):
            continue
        try:
            key = RSAAlgorithm.from_jwk(entry)
        except (jwt.PyJWTError, ValueError, TypeError):
            log.warning("jwks_key_skipped", kid=kid, reason="malformed")
            continue
        if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_KEY_BITS:
            log.warning("jwks_key_skipped", kid=kid, reason="weak_or_not_public")
            continue
        keys[kid] = VerificationKey(key, alg)
    if not keys:
        raise JwksFetchError("the JWKS document holds no usable RSA signing key")
    return keys


class JwksCache:
    """Signing keys by `kid`, refreshed when stale or when a token names an unknown `kid`.

    Refresh attempts (successful or not) are at most one per `min_refresh_seconds`, so a flood
    of tokens with junk `kid`s cannot hammer the issuer; concurrent refreshes share one fetch.
    A failed refresh keeps the keys already held; with none held, verification answers 503.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        cache_seconds: float,
        min_refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: dict[str, VerificationKey] | None = None
        self._loaded_at = 0.0
        self._last_attempt: float | None = None
        self._attempts = 0  # completed fetch attempts; lets waiters reuse a peer's result

    async def key_for(self, kid: str) -> VerificationKey:
        seen = self._attempts
        keys = self._keys
        if keys is None or self._clock() - self._loaded_at >= self._cache_seconds:
            await self._refresh(seen, reason="stale" if keys else "empty")
        elif kid not in keys:
            await self._refresh(seen, reason="unknown_kid")
        if self._keys is None:
            raise ServiceUnavailable(
                "the token issuer's signing keys are unavailable; try again shortly",
                code="auth_unavailable",
            )
        key = self._keys.get(kid)
        if key is None:
            raise _rejected("unknown_key", "the token was signed with an unknown key")
        return key

    async def _refresh(self, seen: int, *, reason: str) -> None:
        async with self._lock:
            if self._attempts != seen:
                return  # a peer fetched while we waited; use its outcome
            now = self._clock()
            if (
                self._last_attempt is not None
                and now - self._last_attempt < self._min_refresh_seconds
            ):
                return
            try:
                keys = _parse_jwks(await self._source.fetch_jwks())
            except JwksFetchError as exc:
                self._record_attempt(now)
                log.warning(
                    "jwks_refresh_failed", reason=reason, error=str(exc), have_keys=bool(self._keys)
                )
                return
            self._record_attempt(now)
            self._keys, self._loaded_at = keys, now
            log.info("jwks_refreshed", reason=reason, kids=sorted(keys))

    def _record_attempt(self, now: float) -> None:
        # Recorded only once an attempt completes: a cancelled fetch leaves no throttle behind.
        self._last_attempt = now
        self._attempts += 1


# ----------------------------------------------------------------------------- verification
def _rejected(code: str, message: str) -> Unauthorized:
    return Unauthorized(
        message, code=code, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


class AccessTokenVerifier:
    """Verifies access tokens of one issuer and one app client."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        jwks: JwksCache,
        leeway_s: int,
        algorithms: tuple[str, ...] = ("RS256",),
    ) -> None:
        if not algorithms or not set(algorithms) <= RSA_ALGORITHMS:
            raise ValueError(f"algorithms must be RSA signature algorithms, got {algorithms}")
        self.issuer = issuer
        self.client_id = client_id
        self.jwks = jwks
        self.leeway_s = leeway_s
        self.algorithms = algorithms

    async def verify(self, token: str) -> AccessClaims:
        """The token's claims if it is a valid access token for us; Unauthorized otherwise."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _rejected("invalid_token", "the token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _rejected("invalid_token", "the token is malformed") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise _rejected("unsupported_algorithm", "the token's signing algorithm is refused")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _rejected("invalid_token", "the token header names no signing key")

        key = await self.jwks.key_for(kid)
        if key.algorithm is not None and key.algorithm != alg:
            raise _rejected("unsupported_algorithm", "the token's algorithm does not fit its key")
        payload = self._decode(token, key.key)
        return self._claims(payload)

    def _decode(self, token: str, key: RSAPublicKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=list(self.algorithms),
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": REQUIRED_CLAIMS, "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise _rejected("token_expired", "the token has expired") from None
        except jwt.InvalidIssuerError:
            raise _rejected("invalid_issuer", "the token was issued by someone else") from None
        except jwt.MissingRequiredClaimError as exc:
            message = f"the token lacks the required claim {exc.claim!r}"
            raise _rejected("invalid_token", message) from None
        except jwt.InvalidAlgorithmError:
            message = "the token's signing algorithm is refused"
            raise _rejected("unsupported_algorithm", message) from None
        except jwt.InvalidSignatureError:
            raise _rejected("invalid_token", "the token's signature is invalid") from None
        except jwt.ImmatureSignatureError:
            raise _rejected("invalid_token", "the token is not valid yet") from None
        except jwt.PyJWTError:
            raise _rejected("invalid_token", "the token is malformed") from None

    def _claims(self, payload: dict[str, Any]) -> AccessClaims:
        if payload["token_use"] != ACCESS_USE:
            raise _rejected("invalid_token_use", "an access token is required")
        if payload["client_id"] != self.client_id:
            raise _rejected("invalid_client", "the token was issued to another client")
        sub, exp = payload["sub"], payload["exp"]
        username, scope, jti = payload.get("username"), payload.get("scope", ""), payload.get("jti")
        if (
            not isinstance(sub, str)
            or not sub
            or isinstance(exp, bool)
            or not isinstance(exp, int | float)
            or not isinstance(scope, str)
            or not isinstance(username, str | None)
            or not isinstance(jti, str | None)
        ):
            raise _rejected("invalid_token", "the token's claims are malformed")
        return AccessClaims(
            sub=sub,
            username=username,
            client_id=self.client_id,
            scope=scope,
            expires_at=datetime.fromtimestamp(exp, UTC),
            token_id=jti,
        )


def bearer_token(authorization_header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; 401 `missing_token` otherwise."""
    scheme, _, token = (authorization_header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        raise Unauthorized("a bearer access token is required", code="missing_token")
    return token


def build_verifier(
    settings: Settings,
    *,
    http_client: httpx.AsyncClient,
    local_issuer: LocalIssuer | None,
) -> AccessTokenVerifier:
    """The verifier for the configured auth mode; both modes share AccessTokenVerifier."""
    source: JwksSource
    if settings.auth_mode == AuthMode.COGNITO:
        issuer, client_id = settings.cognito_issuer, settings.COGNITO_APP_CLIENT_ID
        source = HttpJwksSource(f"{issuer}/.well-known/jwks.json", http_client)
    else:
        if local_issuer is None:
            raise ValueError("AUTH_MODE=local needs the local issuer")
        issuer, client_id = local_issuer.issuer, local_issuer.client_id
        source = StaticJwksSource(local_issuer.jwks)
    cache = JwksCache(
        source,
        cache_seconds=settings.JWKS_CACHE_SECONDS,
        min_refresh_seconds=settings.JWKS_MIN_REFRESH_SECONDS,
    )
    return AccessTokenVerifier(issuer, client_id, cache, settings.JWT_LEEWAY_SECONDS)
