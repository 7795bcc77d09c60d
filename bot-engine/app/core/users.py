"""Users of the engine: creation (with their default risk settings) and look-up.

In production the user id is the Cognito `sub`; users created locally get a random UUID.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, ValidationFailed
from app.models import User, UserRiskSettings

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The account `make run` prepares and the dashboard's development sign-in uses.
DEMO_EMAIL = "demo@jadetrade.local"


class Tier(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


async def create_user(
    session: AsyncSession, email: str, tier: Tier, *, user_id: str | None = None
) -> User:
    """Create a user and their default risk settings; the caller commits."""
    email = email.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValidationFailed("email is not a valid address", field="email")
    if await get_by_email(session, email) is not None:
        raise Conflict("a user with this email exists", field="email", code="email_taken")
    user = User(id=user_id or str(uuid.uuid4()), email=email, subscription_tier=tier.value)
    session.add(user)
    await session.flush()  # the user row first: risk settings reference it
    session.add(UserRiskSettings(user_id=user.id))
    await session.flush()
    return user


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    # Emails are stored lower-cased (create_user), so the unique index serves this look-up.
    query = select(User).where(User.email == email.strip().lower())
    return (await session.execute(query)).scalar_one_or_none()
