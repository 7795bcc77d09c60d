"""`/.well-known/jwks.json`: the public keys of the local development token issuer.

Served only when the engine issues its own tokens (AUTH_MODE=local); in production the
keys are Cognito's and this route answers 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.core.errors import NotFound
from app.schemas.errors import error

router = APIRouter(tags=["auth"])


@router.get(
    "/.well-known/jwks.json",
    summary="Public keys of the local token issuer",
    responses={404: error("The engine does not issue tokens (AUTH_MODE=cognito)")},
)
async def jwks(request: Request) -> dict[str, Any]:
    issuer = request.app.state.local_issuer
    if issuer is None:
        raise NotFound("this engine does not issue tokens; keys are the identity provider's")
    keys: dict[str, Any] = issuer.jwks()
    return keys
