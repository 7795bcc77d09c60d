"""Request helpers shared by the API routers: the authenticated caller, a size-limited body."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request

from app.core.auth import AccessTokenVerifier, bearer_token
from app.core.database import SessionDep
from app.core.errors import Forbidden, PayloadTooLarge
from app.models import User


async def get_current_user(request: Request, session: SessionDep) -> User:
    """The user named by a valid `Authorization: Bearer <access token>`; 401 otherwise."""
    token = bearer_token(request.headers.get("authorization"))
    verifier: AccessTokenVerifier = request.app.state.verifier
    claims = await verifier.verify(token)
    user = await session.get(User, claims.sub)
    if user is None:
        raise Forbidden(
            "the token is valid but no engine account exists for it",
            code="user_not_provisioned",
        )
    structlog.contextvars.bind_contextvars(user_id=user.id)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
