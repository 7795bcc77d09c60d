"""Access-token verification against a real JWKS endpoint and the local development issuer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from app.config import AuthMode, Environment, Settings
from app.core.auth import (
    AccessClaims,
    AccessTokenVerifier,
    HttpJwksSource,
    JwksCache,
    StaticJwksSource,
    bearer_token,
    build_verifier,
)
from app.core.errors import AppError, Forbidden, ServiceUnavailable, Unauthorized
from app.core.local_issuer import LocalIssuer, ensure_dev_tokens_allowed, rsa_jwk_thumbprint
from tests.support.cognito_server import (
    REMOVE,
    CognitoJwksServer,
    SigningKey,
    b64url,
    b64url_json,
)

CACHE_S = 3600
MIN_REFRESH_S = 30
LEEWAY_S = 30


class FakeClock:
    """A monotonic clock the test moves by hand, so throttle windows need no sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cognito() -> Iterator[CognitoJwksServer]:
    with CognitoJwksServer() as server:
        yield server


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(
    cognito: CognitoJwksServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> AccessTokenVerifier:
    cache = JwksCache(
        HttpJwksSource(cognito.jwks_url, http_client),
        cache_seconds=CACHE_S,
        min_refresh_seconds=MIN_REFRESH_S,
        clock=clock,
    )
    return AccessTokenVerifier(cognito.issuer, cognito.client_id, cache, LEEWAY_S)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def assert_no_token_leak(error: AppError, token: str) -> None:
    """Neither the token nor any recognisable piece of it appears in what the client sees."""
    visible = " ".join([error.message, str(error), *error.headers.values()])
    if token:
        assert token not in visible
    for part in token.split("."):
        if len(part) >= 6:
            assert part not in visible
            assert part[:16] not in visible


async def rejected(verifier: AccessTokenVerifier, token: str, code: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    assert caught.value.code == code, caught.value.message
    assert caught.value.status_code == 401
    assert_no_token_leak(caught.value, token)
    return caught.value


def random_kid_token(server: CognitoJwksServer) -> str:
    return server.mint(header={"kid": uuid.uuid4().hex})


# ----------------------------------------------------------------------------- accepted tokens
async def test_cognito_token_is_accepted_through_build_verifier(
    cognito: CognitoJwksServer, http_client: httpx.AsyncClient
) -> None:
    config = settings(
        ENVIRONMENT=Environment.PRODUCTION,
        AUTH_MODE=AuthMode.COGNITO,
        COGNITO_ISSUER=cognito.issuer,
        COGNITO_APP_CLIENT_ID=cognito.client_id,
    )
    verifier = build_verifier(config, http_client=http_client, local_issuer=None)
    claims_in = cognito.claims("user-42", username="alice")
    token = cognito.mint("user-42", username="alice", jti=claims_in["jti"], exp=claims_in["exp"])

    claims = await verifier.verify(token)

    assert claims == AccessClaims(
        sub="user-42",
        username="alice",
        client_id=cognito.client_id,
        scope="aws.cognito.signin.user.admin",
        expires_at=datetime.fromtimestamp(claims_in["exp"], UTC),
        token_id=claims_in["jti"],
    )
    assert claims.expires_at.tzinfo is UTC
    assert cognito.fetch_count == 1
    await verifier.verify(token)
    assert cognito.fetch_count == 1  # served from the cache


async def test_local_issuer_token_is_accepted_through_build_verifier(
    tmp_path: Path, http_client: httpx.AsyncClient
) -> None:
    config = settings(ENVIRONMENT=Environment.DEVELOPMENT, AUTH_MODE=AuthMode.LOCAL)
    issuer = LocalIssuer.load_or_create(tmp_path, config.local_issuer, "jadetrade-local-client")
    verifier = build_verifier(config, http_client=http_client, local_issuer=issuer)
    token = issuer.mint("dev-user", ttl_s=config.DEV_TOKEN_TTL_SECONDS, username="dev")

    claims = await verifier.verify(token)

    assert claims.sub == "dev-user"
    assert claims.username == "dev"
    assert claims.client_id == "jadetrade-local-client"
    assert claims.token_id is not None
    assert verifier.issuer == config.local_issuer


async def test_expiry_within_leeway_is_accepted(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier
) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = await verifier.verify(cognito.mint(exp=now - LEEWAY_S // 2, iat=now - 600))
    assert claims.sub == "user-123"


# ----------------------------------------------------------------------------- rejected claims
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"exp": 1_600_000_000, "iat": 1_599_990_000}, "token_expired", id="expired"),
        pytest.param({"iss": "https://evil.example/pool"}, "invalid_issuer", id="wrong-issuer"),
        pytest.param({"token_use": "id"}, "invalid_token_use", id="id-token"),
        pytest.param({"client_id": "someone-else"}, "invalid_client", id="wrong-client"),
        pytest.param({"token_use": REMOVE}, "invalid_token", id="no-token-use"),
        pytest.param({"client_id": REMOVE}, "invalid_token", id="no-client-id"),
        pytest.param({"exp": REMOVE}, "invalid_token", id="no-exp"),
        pytest.param({"iat": REMOVE}, "invalid_token", id="no-iat"),
        pytest.param({"sub": REMOVE}, "invalid_token", id="no-sub"),
        pytest.param({"iat": 4_000_000_000, "exp": 4_000_003_600}, "invalid_token", id="future"),
        pytest.param({"sub": 42}, "invalid_token", id="non-string-sub"),
    ],
)
async def test_bad_claims_are_rejected(
    cognito: CognitoJwksServer,
    verifier: AccessTokenVerifier,
    overrides: dict[str, Any],
    code: str,
) -> None:
    await rejected(verifier, cognito.mint(**overrides), code)


# ----------------------------------------------------------------------------- forged tokens
async def test_alg_none_is_rejected(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier
) -> None:
    for alg in ["none", "None", "NONE", ""]:
        header = {"alg": alg, "kid": cognito.current.kid, "typ": "JWT"}
        token = f"{b64url_json(header)}.{b64url_json(cognito.claims())}."
        await rejected(verifier, token, "unsupported_algorithm")
    header = {"kid": cognito.current.kid, "typ": "JWT"}  # no alg at all
    await rejected(
        verifier, f"{b64url_json(header)}.{b64url_json(cognito.claims())}.", "unsupported_algorithm"
    )
    assert cognito.fetch_count == 0


async def test_hs256_signed_with_the_public_key_is_rejected(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier
) -> None:
    """The classic key-confusion forgery: the RSA public key PEM used as an HMAC secret."""
    header = {"alg": "HS256", "kid": cognito.current.kid, "typ": "JWT"}
    signing_input = f"{b64url_json(header)}.{b64url_json(cognito.claims(sub='admin'))}"
    mac = hmac.new(cognito.current.public_pem(), signing_input.encode(), hashlib.sha256)
    token = f"{signing_input}.{b64url(mac.digest())}"

    await rejected(verifier, token, "unsupported_algorithm")
    assert cognito.fetch_count == 0  # refused before any key lookup


async def test_an_allowed_but_unpinned_algorithm_still_needs_the_jwk_alg(
    cognito: CognitoJwksServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    cache = JwksCache(
        HttpJwksSource(cognito.jwks_url, http_client),
        cache_seconds=CACHE_S,
        min_refresh_seconds=MIN_REFRESH_S,
        clock=clock,
    )
    lenient = AccessTokenVerifier(
        cognito.issuer, cognito.client_id, cache, LEEWAY_S, algorithms=("RS256", "RS512")
    )
    token = jwt.encode(
        cognito.claims(),
        cognito.current.private_key,
        algorithm="RS512",
        headers={"kid": cognito.current.kid},
    )
    await rejected(lenient, token, "unsupported_algorithm")  # the JWK says RS256


@pytest.mark.parametrize("algorithms", [("HS256",), ("RS256", "none"), ("RS256", "HS256"), ()])
def test_verifier_refuses_non_rsa_algorithms(algorithms: tuple[str, ...]) -> None:
    cache = JwksCache(StaticJwksSource(dict), cache_seconds=60, min_refresh_seconds=0)
    with pytest.raises(ValueError, match="RSA"):
        AccessTokenVerifier("iss", "client", cache, 0, algorithms=algorithms)


async def test_unknown_kid_is_rejected_after_one_refresh(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier, clock: FakeClock
) -> None:
    await verifier.verify(cognito.mint())
    assert cognito.fetch_count == 1
    clock.advance(MIN_REFRESH_S + 1)
    stranger = SigningKey.generate()

    await rejected(verifier, cognito.mint(key=stranger), "unknown_key")

    assert cognito.fetch_count == 2


async def test_tampered_signature_is_rejected(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier
) -> None:
    head, body, signature = cognito.mint().split(".")
    middle = len(signature) // 2  # not the last character, whose low bits are padding
    flipped = "A" if signature[middle] != "A" else "B"
    signature = signature[:middle] + flipped + signature[middle + 1 :]
    await rejected(verifier, f"{head}.{body}.{signature}", "invalid_token")


async def test_tampered_payload_is_rejected(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier
) -> None:
    head, body, signature = cognito.mint("user-123").split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "admin"
    await rejected(verifier, f"{head}.{b64url_json(claims)}.{signature}", "invalid_token")


async def test_missing_kid_is_rejected(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier
) -> None:
    await rejected(verifier, cognito.mint(header={"kid": REMOVE}), "invalid_token")
    await rejected(verifier, cognito.mint(header={"kid": ""}), "invalid_token")
    await rejected(verifier, cognito.mint(header={"kid": 7}), "invalid_token")
    assert cognito.fetch_count == 0


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "",
        "a.b.c",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.e30",
        "!!!.###.$$$",
        "x" * 20_000,
        f"{b64url(b'[1,2]')}.{b64url_json({})}.sig",
    ],
)
async def test_garbage_is_rejected(verifier: AccessTokenVerifier, token: str) -> None:
    await rejected(verifier, token, "invalid_token")


# ----------------------------------------------------------------------------- bearer header
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer   ",
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer abc.def ghi",
    ],
)
def test_bearer_token_requires_a_bearer_credential(header: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        bearer_token(header)
    assert caught.value.code == "missing_token"
    assert caught.value.headers["WWW-Authenticate"] == "Bearer"
    if header:
        assert_no_token_leak(caught.value, header.partition(" ")[2])


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_token_extracts_the_token(scheme: str) -> None:
    assert bearer_token(f"{scheme} abc.def.ghi") == "abc.def.ghi"
    assert bearer_token(f"  {scheme}   abc.def.ghi  ") == "abc.def.ghi"


# ----------------------------------------------------------------------------- key rotation
async def test_rotated_key_is_accepted_after_exactly_one_refresh(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier, clock: FakeClock
) -> None:
    old_token = cognito.mint()
    await verifier.verify(old_token)
    assert cognito.fetch_count == 1

    new_key = cognito.rotate()
    clock.advance(MIN_REFRESH_S + 1)
    new_token = cognito.mint(key=new_key)

    assert (await verifier.verify(new_token)).sub == "user-123"
    assert cognito.fetch_count == 2
    assert (await verifier.verify(new_token)).sub == "user-123"
    assert cognito.fetch_count == 2
    # The old key is gone from the JWKS, so tokens it signed no longer verify.
    await rejected(verifier, old_token, "unknown_key")
    assert cognito.fetch_count == 2  # still inside the throttle window


async def test_a_flood_of_unknown_kids_triggers_at_most_one_fetch(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier, clock: FakeClock
) -> None:
    valid = cognito.mint()
    await verifier.verify(valid)
    clock.advance(MIN_REFRESH_S + 1)
    junk = [random_kid_token(cognito) for _ in range(50)]

    outcomes = await asyncio.gather(*(verifier.verify(t) for t in junk), return_exceptions=True)

    assert all(isinstance(o, Unauthorized) and o.code == "unknown_key" for o in outcomes)
    assert cognito.fetch_count == 2
    for token in junk:  # one after another, too: the throttle, not only the lock, holds
        await rejected(verifier, token, "unknown_key")
    assert cognito.fetch_count == 2
    assert (await verifier.verify(valid)).sub == "user-123"
    assert cognito.fetch_count == 2


async def test_concurrent_first_requests_share_one_fetch(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier
) -> None:
    tokens = [cognito.mint(f"user-{i}") for i in range(20)]
    claims = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [c.sub for c in claims] == [f"user-{i}" for i in range(20)]
    assert cognito.fetch_count == 1


async def test_stale_keys_are_refetched(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier, clock: FakeClock
) -> None:
    token = cognito.mint()
    await verifier.verify(token)
    clock.advance(CACHE_S + 1)
    await verifier.verify(token)
    assert cognito.fetch_count == 2


# ----------------------------------------------------------------------------- JWKS outages
async def test_jwks_down_with_nothing_cached_is_service_unavailable(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier, clock: FakeClock
) -> None:
    token = cognito.mint()
    cognito.stop()

    with pytest.raises(ServiceUnavailable) as caught:
        await verifier.verify(token)
    assert caught.value.code == "auth_unavailable"
    assert caught.value.status_code == 503
    assert_no_token_leak(caught.value, token)

    clock.advance(MIN_REFRESH_S + 1)
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(token)


async def test_jwks_errors_with_nothing_cached_are_service_unavailable(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier, clock: FakeClock
) -> None:
    cognito.failure_status = 500
    token = cognito.mint()
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(token)
    assert cognito.fetch_count == 1
    with pytest.raises(ServiceUnavailable):  # throttled: the issuer is not asked again at once
        await verifier.verify(token)
    assert cognito.fetch_count == 1

    cognito.failure_status = None
    clock.advance(MIN_REFRESH_S + 1)
    assert (await verifier.verify(token)).sub == "user-123"
    assert cognito.fetch_count == 2


async def test_jwks_failure_keeps_the_cached_keys(
    cognito: CognitoJwksServer, verifier: AccessTokenVerifier, clock: FakeClock
) -> None:
    token = cognito.mint()
    await verifier.verify(token)
    cognito.failure_status = 503
    clock.advance(CACHE_S + 1)

    assert (await verifier.verify(token)).sub == "user-123"
    assert cognito.fetch_count == 2  # it tried, failed, and kept the keys it had

    cognito.stop()
    clock.advance(CACHE_S + 1)
    assert (await verifier.verify(token)).sub == "user-123"
    await rejected(verifier, random_kid_token(cognito), "unknown_key")


async def test_only_rsa_signing_keys_are_taken_from_the_jwks(clock: FakeClock) -> None:
    rsa_key = SigningKey.generate().jwk()
    document = {
        "keys": [
            {"kty": "oct", "kid": "hmac", "k": b64url(b"secret" * 8)},
            {**rsa_key, "kid": "encryption", "use": "enc"},
            {**rsa_key, "kid": "hs-pinned", "alg": "HS256"},
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            "not-a-key",
            {**rsa_key, "kid": "signing"},
            {k: v for k, v in rsa_key.items() if k != "use"} | {"kid": "no-use"},
        ]
    }
    cache = JwksCache(
        StaticJwksSource(lambda: document), cache_seconds=60, min_refresh_seconds=0, clock=clock
    )
    assert (await cache.key_for("signing")).algorithm == "RS256"
    assert (await cache.key_for("no-use")).key.key_size == 2048
    for kid in ["hmac", "encryption", "hs-pinned", "broken"]:
        with pytest.raises(Unauthorized) as caught:
            await cache.key_for(kid)
        assert caught.value.code == "unknown_key"


async def test_a_jwks_without_usable_keys_counts_as_unavailable(clock: FakeClock) -> None:
    cache = JwksCache(
        StaticJwksSource(lambda: {"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}),
        cache_seconds=60,
        min_refresh_seconds=0,
        clock=clock,
    )
    with pytest.raises(ServiceUnavailable):
        await cache.key_for("k")


# ----------------------------------------------------------------------------- local issuer
def test_local_issuer_keeps_its_key_private_and_reuses_it(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / ".local"
    first = LocalIssuer.load_or_create(directory, "http://127.0.0.1:8000/local-issuer", "c")
    key_file = directory / "jwt-signing-key.pem"

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in directory.iterdir()] == ["jwt-signing-key.pem"]
    second = LocalIssuer.load_or_create(directory, "http://127.0.0.1:8000/local-issuer", "c")
    assert second.kid == first.kid
    assert second.jwks() == first.jwks()


async def test_local_tokens_survive_a_restart(tmp_path: Path) -> None:
    first = LocalIssuer.load_or_create(tmp_path, "http://127.0.0.1:8000/local-issuer", "c")
    token = first.mint("dev-user", ttl_s=600)
    restarted = LocalIssuer.load_or_create(tmp_path, first.issuer, first.client_id)
    cache = JwksCache(StaticJwksSource(restarted.jwks), cache_seconds=60, min_refresh_seconds=0)
    verifier = AccessTokenVerifier(restarted.issuer, restarted.client_id, cache, LEEWAY_S)
    assert (await verifier.verify(token)).sub == "dev-user"

    other = LocalIssuer.load_or_create(tmp_path / "other", first.issuer, first.client_id)
    await rejected(verifier, other.mint("dev-user", ttl_s=600), "unknown_key")


def test_local_issuer_publishes_a_cognito_shaped_public_jwks(tmp_path: Path) -> None:
    issuer = LocalIssuer.load_or_create(tmp_path, "http://127.0.0.1:8000/local-issuer", "c")
    (jwk,) = issuer.jwks()["keys"]

    assert set(jwk) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["kid"]) == ("RSA", "sig", "RS256", issuer.kid)
    assert issuer.kid == rsa_jwk_thumbprint(n=jwk["n"], e=jwk["e"])

    token = issuer.mint("dev-user", ttl_s=600)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header == {"alg": "RS256", "kid": issuer.kid}
    assert claims["token_use"] == "access"
    assert claims["client_id"] == "c"
    assert claims["scope"] == "aws.cognito.signin.user.admin"
    assert claims["username"] == "dev-user"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["auth_time"] == claims["iat"]
    uuid.UUID(claims["jti"])
    assert "aud" not in claims


def test_rfc7638_thumbprint_example() -> None:
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    assert rsa_jwk_thumbprint(n=n, e="AQAB") == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("environment", "mode"),
    [
        (Environment.PRODUCTION, AuthMode.LOCAL),
        (Environment.PRODUCTION, AuthMode.COGNITO),
        (Environment.DEVELOPMENT, AuthMode.COGNITO),
    ],
)
def test_dev_tokens_are_refused_outside_local_development(
    environment: Environment, mode: AuthMode
) -> None:
    with pytest.raises(Forbidden) as caught:
        ensure_dev_tokens_allowed(settings(ENVIRONMENT=environment, AUTH_MODE=mode))
    assert caught.value.code == "dev_tokens_disabled"
    assert caught.value.status_code == 403


def test_dev_tokens_are_allowed_in_local_development() -> None:
    ensure_dev_tokens_allowed(settings(ENVIRONMENT=Environment.DEVELOPMENT))
    ensure_dev_tokens_allowed(settings(ENVIRONMENT=Environment.TEST, AUTH_MODE=AuthMode.LOCAL))


async def test_local_mode_needs_the_local_issuer(http_client: httpx.AsyncClient) -> None:
    config = settings(ENVIRONMENT=Environment.DEVELOPMENT, AUTH_MODE=AuthMode.LOCAL)
    with pytest.raises(ValueError, match="local issuer"):
        build_verifier(config, http_client=http_client, local_issuer=None)
