"""Who may chat, and how much: paid tiers only, a monthly allowance of assistant answers.

An answer reserves one unit of the allowance before it starts (an atomic UPDATE, so two
concurrent requests cannot both take the last unit) and gives it back if it does not
complete — a failed, refused or abandoned answer is not counted. The counter restarts on
the first day of each calendar month, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.errors import AppError, Forbidden
from app.models import User


class ChatLimitReached(AppError):
    status_code = 429
    code = "chat_limit_reached"


def month_of(now: datetime) -> date:
    return now.astimezone(UTC).date().replace(day=1)


def next_reset(month: date) -> datetime:
    """The instant the allowance of `month` is renewed."""
    year, number = (month.year + 1, 1) if month.month == 12 else (month.year, month.month + 1)
    return datetime(year, number, 1, tzinfo=UTC)


def allowance(user: User, settings: Settings) -> int:
    """Answers per month: the user's own limit if set, else their tier's."""
    if user.subscription_tier == "free":
        return 0
    if user.chat_messages_limit > 0:
        return user.chat_messages_limit
    if user.subscription_tier == "enterprise":
        return settings.CHAT_MONTHLY_MESSAGES_ENTERPRISE
    return settings.CHAT_MONTHLY_MESSAGES_PRO


def require_paid_tier(user: User) -> None:
    if user.subscription_tier == "free":
        raise Forbidden(
            "the assistant is part of the Pro and Enterprise plans; upgrade to use it",
            code="chat_requires_paid_tier",
        )


def used_this_month(user: User, now: datetime) -> int:
    return user.chat_messages_used if user.chat_usage_month == month_of(now) else 0


@dataclass(frozen=True)
class Reservation:
    user_id: str
    month: date
    used: int  # answers of the month, this one included


async def reserve(
    session: AsyncSession, user: User, limit: int, *, now: datetime | None = None
) -> Reservation:
    """Take one answer from this month's allowance and commit; `ChatLimitReached` (429,
    with when it resets) if none is left."""
    now = now or datetime.now(UTC)
    month = month_of(now)
    new_month = User.chat_usage_month.is_distinct_from(month)
    taken = None
    if limit > 0:
        taken = await session.scalar(
            update(User)
            .where(User.id == user.id, new_month | (User.chat_messages_used < limit))
            .values(
                chat_messages_used=case((new_month, 1), else_=User.chat_messages_used + 1),
                chat_usage_month=month,
            )
            .returning(User.chat_messages_used)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    if taken is None:
        resets = next_reset(month)
        raise ChatLimitReached(
            f"you have used all {limit} assistant answers of this month; the allowance "
            f"resets on {resets.date().isoformat()} at 00:00 UTC",
            headers={"Retry-After": str(max(1, int((resets - now).total_seconds())))},
            details={"limit": limit, "resets_at": resets.isoformat().replace("+00:00", "Z")},
        )
    return Reservation(user.id, month, taken)


async def release(session: AsyncSession, reservation: Reservation) -> None:
    """Give back a reserved answer that did not complete (same month only: a new month's
    counter already started from zero)."""
    await session.execute(
        update(User)
        .where(
            User.id == reservation.user_id,
            User.chat_usage_month == reservation.month,
            User.chat_messages_used > 0,
        )
        .values(chat_messages_used=User.chat_messages_used - 1)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
