"""The caller's risk settings: read and update (validated ranges, 422 naming the field)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.api.deps import CurrentUser
from app.core.database import SessionDep
from app.logging.logger import get_logger
from app.models import AuditLog, UserRiskSettings
from app.schemas.trading import RiskSettingsIn, RiskSettingsOut

router = APIRouter(prefix="/api/risk-settings", tags=["risk"])
log = get_logger("risk")


async def _settings_of(session: SessionDep, user_id: str) -> UserRiskSettings:
    row = await session.scalar(select(UserRiskSettings).where(UserRiskSettings.user_id == user_id))
    if row is None:  # users created before risk settings existed
        row = UserRiskSettings(user_id=user_id)
        session.add(row)
        await session.flush()
    return row


@router.get("", response_model=RiskSettingsOut, summary="My risk settings")
async def get_risk_settings(user: CurrentUser, session: SessionDep) -> RiskSettingsOut:
    row = await _settings_of(session, user.id)
    await session.commit()
    return RiskSettingsOut.model_validate(row)


@router.put("", response_model=RiskSettingsOut, summary="Update my risk settings")
async def put_risk_settings(
    body: RiskSettingsIn, user: CurrentUser, session: SessionDep
) -> RiskSettingsOut:
    row = await _settings_of(session, user.id)
    before = RiskSettingsOut.model_validate(row).model_dump(mode="json")
    for name, value in body.model_dump(exclude_none=True).items():
        setattr(row, name, value)
    await session.flush()
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
    log.info("risk_settings_updated", fields=sorted(body.model_dump(exclude_none=True)))
    return RiskSettingsOut.model_validate(row)
