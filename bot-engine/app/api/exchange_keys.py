"""The caller's exchange API keys: add (validated with the exchange), list masked, deactivate.

A key is asked of the exchange before it is stored: one the exchange refuses, one that cannot
trade futures and one that can withdraw are all refused (422 naming `api_key`). A stored key
replaces the caller's active key for that exchange. Keys are stored encrypted and are never
returned: listings show the key's last four characters.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from app.api.deps import CurrentUser
from app.config import Settings
from app.core import exchange_keys
from app.core.client_ip import client_ip
from app.core.credentials import Keyring
from app.core.errors import NotFound, ServiceUnavailable, ValidationFailed
from app.core.pg import Pool
from app.exchanges.base import ApiCredentials, KeyPermissions
from app.exchanges.errors import AuthenticationFailed, ExchangeError, OutcomeUnknown, RetryLater
from app.exchanges.factory import inspect_key
from app.logging.logger import get_logger
from app.schemas.errors import AUTHENTICATED, NOT_FOUND, UNREADABLE_BODY, error
from app.schemas.exchange_keys import ExchangeKeyIn, ExchangeKeyOut, KeyPermissionsOut

router = APIRouter(prefix="/api/exchange-keys", tags=["exchange keys"], responses=AUTHENTICATED)
log = get_logger("exchange_keys")


def _out(key: exchange_keys.StoredKey) -> ExchangeKeyOut:
    return ExchangeKeyOut(
        id=key.id,
        exchange=key.exchange,
        mode=key.mode.value,
        label=key.label,
        api_key_hint=key.hint,
        permissions=KeyPermissionsOut(
            can_read=key.permissions.can_read,
            can_trade=key.permissions.can_trade,
            can_withdraw=key.permissions.can_withdraw,
        ),
        is_active=key.is_active,
        is_valid=key.is_valid,
        last_used_at=key.last_used_at,
        last_validated_at=key.last_validated_at,
        created_at=key.created_at,
    )


async def _permissions(
    settings: Settings, body: ExchangeKeyIn, credentials: ApiCredentials
) -> KeyPermissions:
    """What the exchange says the key may do; refusals as 422/503 the user can act on."""
    try:
        permissions = await inspect_key(settings, body.exchange, body.mode, credentials)
    except AuthenticationFailed:
        raise ValidationFailed(
            f"{body.exchange} refused this key ({body.mode} mode): check the key, the secret and"
            " the key's IP restrictions",
            field="api_key",
            code="key_refused",
        ) from None
    except (RetryLater, OutcomeUnknown) as exc:
        raise ServiceUnavailable(
            f"{body.exchange} could not be reached to check the key; try again shortly",
            code="exchange_unreachable",
            headers={"Retry-After": str(int(getattr(exc, "retry_after_s", None) or 5))},
        ) from None
    except ExchangeError as exc:
        raise ValidationFailed(
            f"{body.exchange} did not accept this key: {exc.code}",
            field="api_key",
            code="key_refused",
        ) from None
    if permissions.can_withdraw:
        raise ValidationFailed(
            "this key can withdraw funds; create a key without withdrawal permission",
            field="api_key",
            code="withdrawal_permission",
        )
    if not permissions.can_trade:
        raise ValidationFailed(
            f"this key cannot trade futures on {body.exchange}; enable futures trading for it",
            field="api_key",
            code="no_trade_permission",
        )
    return permissions


@router.post(
    "",
    status_code=201,
    response_model=ExchangeKeyOut,
    summary="Add an exchange key",
    responses={
        400: UNREADABLE_BODY,
        409: error("Another key of this exchange was stored at the same time; retry"),
        503: error("The exchange could not be reached to check the key; see Retry-After"),
    },
)
async def add_key(body: ExchangeKeyIn, user: CurrentUser, request: Request) -> ExchangeKeyOut:
    settings: Settings = request.app.state.settings
    credentials = ApiCredentials(
        body.api_key.get_secret_value(),
        body.api_secret.get_secret_value(),
        None if body.passphrase is None else body.passphrase.get_secret_value(),
    )
    permissions = await _permissions(settings, body, credentials)
    pool: Pool = request.app.state.pg
    stored = await exchange_keys.store_key(
        pool,
        Keyring.from_settings(settings),
        user_id=user.id,
        exchange=body.exchange,
        mode=body.mode,
        label=body.label,
        credentials=credentials,
        permissions=permissions,
        actor_ip=client_ip(request, settings.TRUSTED_PROXIES),
    )
    log.info("exchange_key_added", exchange=body.exchange, mode=body.mode, key_id=str(stored.id))
    return _out(stored)


@router.get("", response_model=list[ExchangeKeyOut], summary="My exchange keys, masked")
async def list_keys(user: CurrentUser, request: Request) -> list[ExchangeKeyOut]:
    pool: Pool = request.app.state.pg
    return [_out(key) for key in await exchange_keys.list_keys(pool, user.id)]


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Deactivate an exchange key",
    responses={404: NOT_FOUND},
)
async def delete_key(key_id: uuid.UUID, user: CurrentUser, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    pool: Pool = request.app.state.pg
    done = await exchange_keys.deactivate_key(
        pool, user_id=user.id, key_id=key_id,
        actor_ip=client_ip(request, settings.TRUSTED_PROXIES),
    )  # fmt: skip
    if not done:
        raise NotFound("no active key with this id", field="key_id", code="key_not_found")
    log.info("exchange_key_deactivated", key_id=str(key_id))
    return Response(status_code=204)
