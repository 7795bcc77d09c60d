"""Access tokens at the HTTP boundary, with the engine in production auth mode (Cognito):
the JWKS comes over real HTTP from a local server speaking Cognito's key endpoint, and every
rejected token is a 401 in the standard error envelope."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from app.config import Settings
from tests.conftest import SecretsSeen, http_client, make_settings, running_app
from tests.support.cognito_server import REMOVE, CognitoJwksServer, SigningKey, b64url, b64url_json

SUB = "cognito-sub-0001"


@pytest.fixture(scope="module")
def cognito() -> Iterator[CognitoJwksServer]:
    with CognitoJwksServer() as server:
        yield server


@pytest.fixture
async def cognito_client(
    settings: Settings, cognito: CognitoJwksServer, clean_state: None
) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.DATABASE_URL is not None and settings.REDIS_URL is not None
    prod_auth = make_settings(
        settings.DATABASE_URL.get_secret_value(),
        settings.REDIS_URL.get_secret_value(),
        settings.LOCAL_DIR,
        AUTH_MODE="cognito",
        COGNITO_ISSUER=cognito.issuer,
        COGNITO_APP_CLIENT_ID=cognito.client_id,
        JWKS_MIN_REFRESH_SECONDS=0,
    )
    async with running_app(prod_auth) as app:
        from app.core.users import Tier, create_user

        async with app.state.sessionmaker() as s:
            await create_user(s, "cognito-user@example.com", Tier.PRO, user_id=SUB)
            await s.commit()
        async with http_client(app) as c:
            yield c


def _alg_none(c: CognitoJwksServer) -> str:
    return f"{b64url_json({'alg': 'none', 'kid': c.current.kid})}.{b64url_json(c.claims(SUB))}."


def _hs256_with_public_key(c: CognitoJwksServer) -> str:
    signing_input = (
        f"{b64url_json({'alg': 'HS256', 'kid': c.current.kid})}.{b64url_json(c.claims(SUB))}"
    )
    mac = hmac.new(c.current.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _tampered_signature(c: CognitoJwksServer) -> str:
    head, body, sig = c.mint(SUB).split(".")
    flipped = ("A" if sig[10] != "A" else "B").join((sig[:10], sig[11:]))
    return f"{head}.{body}.{flipped}"


def _unknown_kid(c: CognitoJwksServer) -> str:
    return c.mint(SUB, key=SigningKey.generate())


BAD_TOKENS: dict[str, tuple[Callable[[CognitoJwksServer], str], str]] = {
    "expired": (lambda c: c.mint(SUB, exp=int(time.time()) - 3600), "token_expired"),
    "wrong issuer": (lambda c: c.mint(SUB, iss="https://evil.example/pool"), "invalid_issuer"),
    "id token": (lambda c: c.mint(SUB, token_use="id"), "invalid_token_use"),
    "wrong client": (lambda c: c.mint(SUB, client_id="another-app"), "invalid_client"),
    "alg none": (_alg_none, "unsupported_algorithm"),
    "hs256 with public key": (_hs256_with_public_key, "unsupported_algorithm"),
    "unknown kid": (_unknown_kid, "unknown_key"),
    "tampered signature": (_tampered_signature, "invalid_token"),
    "no kid": (lambda c: c.mint(SUB, header={"kid": REMOVE}), "invalid_token"),
    "garbage": (lambda c: "not-a-jwt", "invalid_token"),
}


async def test_valid_cognito_token_is_accepted(
    cognito_client: httpx.AsyncClient, cognito: CognitoJwksServer, secrets_seen: SecretsSeen
) -> None:
    token = cognito.mint(SUB)
    secrets_seen.add(token)
    response = await cognito_client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["id"] == SUB


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_get_401_envelope(
    case: str,
    cognito_client: httpx.AsyncClient,
    cognito: CognitoJwksServer,
    secrets_seen: SecretsSeen,
) -> None:
    make, expected_code = BAD_TOKENS[case]
    token = make(cognito)
    if len(token) > 20:
        secrets_seen.add(token)
    response = await cognito_client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == expected_code
    assert set(error) == {"code", "message", "field"}
    assert token not in response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_local_dev_tokens_are_refused_in_cognito_mode(
    cognito_client: httpx.AsyncClient, settings: Settings, secrets_seen: SecretsSeen
) -> None:
    from app.core.local_issuer import LocalIssuer

    issuer = LocalIssuer.load_or_create(
        settings.LOCAL_DIR / "jwt", settings.local_issuer, settings.COGNITO_APP_CLIENT_ID
    )
    token = issuer.mint(SUB, ttl_s=600)
    secrets_seen.add(token)
    response = await cognito_client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_jwks_endpoint_is_not_served_in_cognito_mode(
    cognito_client: httpx.AsyncClient,
) -> None:
    response = await cognito_client.get("/.well-known/jwks.json")
    assert response.status_code == 404


async def test_local_issuer_keys_are_published_in_local_mode(
    client: httpx.AsyncClient, app: object
) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["kid"] == app.state.local_issuer.kid  # type: ignore[attr-defined]
    assert key["kty"] == "RSA"
    assert "d" not in key  # public part only
