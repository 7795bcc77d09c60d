"""The caller's risk settings: read and update (validated ranges, 422 naming the field)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from app.api.deps import CurrentUser
from app.core.database import SessionDep
from app.logging.logger import get_logger
from app.models import AuditLog, UserRiskSettings
from app.schemas.errors import AUTHENTICATED, UNREADABLE_BODY
from app.schemas.trading import RiskSettingsIn, RiskSettingsOut

router = APIRouter(prefix="/api/risk-settings", tags=["risk"], responses=AUTHENTICATED)
log = get_logger("risk")


async def _settings_of(
    session: SessionDep, user_id: str, *, for_update: bool = False
) -> UserRiskSettings:
    """The user's settings row, created with the defaults if missing. `for_update` locks it
    until the transaction ends, so that concurrent updates are applied (and audited, old
    value included) one after the other."""
    query = select(UserRiskSettings).where(UserRiskSettings.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:  # users created before risk settings existed
        await session.execute(
            insert(UserRiskSettings)
            .values(user_id=user_id)
            .on_conflict_do_nothing(index_elements=["user_id"])
        )
        row = await session.scalar(query)
    assert row is not None
    return row


@router.get("", response_model=RiskSettingsOut, summary="My risk settings")
async def get_risk_settings(user: CurrentUser, session: SessionDep) -> RiskSettingsOut:
    row = await _settings_of(session, user.id)
    await session.commit()
    return RiskSettingsOut.model_validate(row)


@router.put(
    "",
    response_model=RiskSettingsOut,
    summary="Update my risk settings",
    responses={400: UNREADABLE_BODY},
)
async def put_risk_settings(
    body: RiskSettingsIn, user: CurrentUser, session: SessionDep
) -> RiskSettingsOut:
    row = await _settings_of(session, user.id, for_update=True)
    before = RiskSettingsOut.model_validate(row).model_dump(mode="json")
    changes = body.changes()
    for name, value in changes.items():
        setattr(row, name, value)
    await session.flush()
    # Read back what the columns hold (250.5 is stored as 250.50), so that the answer and the
    # audit trail say what a later GET will.
    await session.refresh(row)
    after = RiskSettingsOut.model_validate(row).model_dump(mode="json")
    session.add(
        AuditLog(
            user_id=user.id,
            action="settings.update",
            resource_type="settings",
            resource_id=str(row.id),
            old_value=before,
            new_value=after,
            success=True,
        )
    )
    await session.commit()
    log.info("risk_settings_updated", fields=sorted(changes))
    return RiskSettingsOut.model_validate(row)
