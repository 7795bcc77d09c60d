"""The error body every route answers with (`app.core.errors.error_body`), as OpenAPI
documents it, and the `responses=` entries the routers declare with it.

The engine's 422 is this body too, not FastAPI's default `HTTPValidationError`: a route that
declares `422` here replaces the default in the document.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_token`")
    message: str = Field(description="For people")
    field: str | None = Field(description="The request field at fault (`risk.max_leverage`)")
    details: dict[str, Any] | None = Field(
        default=None, description="Machine-readable facts of a few errors (when a limit resets)"
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error(description: str) -> dict[str, Any]:
    """One documented error answer of a route: the engine's error body, and when it comes."""
    return {"model": ErrorResponse, "description": description}


INVALID: Final = error("A parameter or a field of the body is invalid; `field` names it")
NOT_FOUND: Final = error("No such item of the caller's (another user's is answered the same)")
# FastAPI's answer to a JSON body it cannot even decode (bytes that are not UTF-8).
UNREADABLE_BODY: Final = error("The body cannot be read as JSON")

# What every route behind `CurrentUser` may answer before its own work starts.
AUTHENTICATED: Final[dict[int | str, dict[str, Any]]] = {
    401: error("Missing, malformed, invalid or expired access token"),
    403: error("The token is valid, but no engine account exists for it"),
    422: INVALID,
}
