"""Cursor pagination for user-scoped listings, newest first.

The cursor is an opaque token encoding the (created_at, id) of the last item returned; the
next page continues strictly after it, so rows inserted meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import ValidationFailed
from app.schemas.trading import Page

MAX_LIMIT = 200
S = TypeVar("S", bound=BaseModel)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) in `cursor`; 422 naming `cursor` for anything `encode_cursor`
    cannot have made (a client may send any string)."""
    invalid = ValidationFailed("cursor is not valid", field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = orjson.loads(raw)
    except ValueError as exc:  # binascii.Error, UnicodeError, JSONDecodeError
        raise invalid from exc
    match decoded:
        case [str(stamp_text), str(id_text)]:
            pass
        case _:
            raise invalid
    try:
        stamp, row_id = datetime.fromisoformat(stamp_text), uuid.UUID(id_text)
    except ValueError as exc:
        raise invalid from exc
    if stamp.utcoffset() is None:  # compared with timestamptz: a naive time is ambiguous
        raise invalid
    return stamp, row_id


def page(
    query: Select[Any],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    *,
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    """`query` restricted to the page after `cursor`, one extra row to tell if more follow."""
    if cursor:
        stamp, last_id = decode_cursor(cursor)
        query = query.where(or_(created_at < stamp, and_(created_at == stamp, row_id < last_id)))
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)


def to_page(
    rows: Sequence[Any],
    limit: int,
    schema: type[S],
    stamp: Callable[[Any], datetime] = lambda row: row.created_at,
) -> Page[S]:
    """The first `limit` rows as a page; the extra row fetched says whether more follow."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(stamp(rows[-1]), rows[-1].id) if more and rows else None
    return Page[S](items=[schema.model_validate(r) for r in rows], next_cursor=cursor)
