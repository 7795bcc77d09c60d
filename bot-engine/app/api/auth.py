"""How to sign in: `GET /api/auth/options` tells a client which kind of access token the engine
takes and where alerts go; `POST /api/auth/dev-token` hands out a development token for the demo
account in local auth mode, so the dashboard's "use dev token" button works after `make run`.

A development token is as good as a password for the demo account, so by default only callers
on this machine get one (`DEV_SIGN_IN`), and never in production or with Cognito.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from app.config import AuthMode, Settings
from app.core import users
from app.core.client_ip import client_ip
from app.core.database import SessionDep
from app.core.errors import Conflict, Forbidden
from app.core.local_issuer import LocalIssuer, ensure_dev_tokens_allowed
from app.core.users import DEMO_EMAIL, Tier
from app.logging.logger import get_logger
from app.schemas.errors import error

router = APIRouter(prefix="/api/auth", tags=["auth"])
log = get_logger("auth")


class AuthOptions(BaseModel):
    auth_mode: Literal["local", "cognito"] = Field(description="Who issues access tokens")
    dev_token: bool = Field(description="`POST /api/auth/dev-token` may answer this caller")
    webhook_url: str = Field(description="Where TradingView alerts are sent")


class DevToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the scheme's name, not a secret)
    expires_in: int = Field(description="Seconds until the token expires")
    user_id: str


def _is_loopback(address: str | None) -> bool:
    if address is None:
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _dev_sign_in_refusal(request: Request, settings: Settings) -> str | None:
    """Why this caller may not have a development token, or None when it may."""
    if settings.is_production or settings.auth_mode != AuthMode.LOCAL:
        return "development tokens are only available with AUTH_MODE=local outside production"
    if settings.DEV_SIGN_IN == "off":
        return "development sign-in is turned off (DEV_SIGN_IN=off)"
    if settings.DEV_SIGN_IN == "loopback" and not _is_loopback(
        client_ip(request, settings.TRUSTED_PROXIES)
    ):
        return "development tokens are only issued to this machine (DEV_SIGN_IN=loopback)"
    return None


@router.get("/options", response_model=AuthOptions, summary="How to sign in to this engine")
async def options(request: Request) -> AuthOptions:
    settings: Settings = request.app.state.settings
    return AuthOptions(
        auth_mode=settings.auth_mode.value,
        dev_token=_dev_sign_in_refusal(request, settings) is None,
        webhook_url=f"{settings.public_url}/api/webhooks/tradingview",
    )


@router.post(
    "/dev-token",
    response_model=DevToken,
    summary="A development access token for the demo account (local auth mode only)",
    responses={403: error("Development tokens are off here, or not for this caller")},
)
async def dev_token(request: Request, session: SessionDep) -> DevToken:
    settings: Settings = request.app.state.settings
    ensure_dev_tokens_allowed(settings)
    refusal = _dev_sign_in_refusal(request, settings)
    if refusal is not None:
        raise Forbidden(refusal, code="dev_tokens_disabled")
    issuer: LocalIssuer = request.app.state.local_issuer
    user = await users.get_by_email(session, DEMO_EMAIL)
    if user is None:
        try:
            user = await users.create_user(session, DEMO_EMAIL, Tier.PRO)
            await session.commit()
            log.info("demo_user_created", user_id=user.id)
        except (Conflict, IntegrityError):  # created by a concurrent request meanwhile
            await session.rollback()
            user = await users.get_by_email(session, DEMO_EMAIL)
            if user is None:
                raise
    token = issuer.mint(user.id, ttl_s=settings.DEV_TOKEN_TTL_SECONDS, username=user.email)
    log.info("dev_token_issued", user_id=user.id)
    return DevToken(access_token=token, expires_in=settings.DEV_TOKEN_TTL_SECONDS, user_id=user.id)
