"""The local demo account `make run` prepares: a `pro` user, a webhook token and an access
token, and the banner that shows how to send a first alert.

Webhook tokens are stored hashed, so the demo token is also kept in clear in
`LOCAL_DIR/demo.json` (mode 0600, local mode only) to be shown again on the next start.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from app.cli.services import db_session
from app.cli.watch import ws_url
from app.config import Settings
from app.core import users, webhook_tokens
from app.core.local_issuer import LocalIssuer
from app.core.users import DEMO_EMAIL, Tier
from app.exchanges.factory import make_price_feed
from app.exchanges.symbols import paper_market
from app.models import User

DEMO_SYMBOL = "BTCUSDT"


@dataclass(frozen=True)
class DemoAccount:
    user: User
    webhook_token: str
    access_token: str


def _demo_file(settings: Settings) -> Path:
    return settings.LOCAL_DIR / "demo.json"


def _remembered_token(settings: Settings) -> str | None:
    try:
        token = json.loads(_demo_file(settings).read_text())["webhook_token"]
    except (OSError, ValueError, KeyError):
        return None
    return token if isinstance(token, str) else None


def _remember_token(settings: Settings, user_id: str, token: str) -> None:
    path = _demo_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"user_id": user_id, "webhook_token": token}, fh)


async def ensure_demo_account(settings: Settings) -> DemoAccount:
    """Create (or find) the demo user and a working webhook token; mint an access token."""
    async with db_session(settings) as session:
        user = await users.get_by_email(session, DEMO_EMAIL)
        if user is None:
            user = await users.create_user(session, DEMO_EMAIL, Tier.PRO)
        token = _remembered_token(settings)
        owner = None
        if token:
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            assert raw is not None
            owner = await webhook_tokens.authenticate(raw, token)
        if owner is None or owner.user_id != user.id:
            issued = await webhook_tokens.issue(session, user.id, name="demo")
            token = issued.token
            _remember_token(settings, user.id, token)
    assert token is not None
    issuer = LocalIssuer.load_or_create(
        settings.LOCAL_DIR / "jwt", settings.local_issuer, settings.COGNITO_APP_CLIENT_ID
    )
    access = issuer.mint(user.id, ttl_s=settings.DEV_TOKEN_TTL_SECONDS, username=user.email)
    return DemoAccount(user=user, webhook_token=token, access_token=access)


async def demo_price(settings: Settings) -> Decimal:
    """The paper market's price of the demo symbol now, for an example that trades as written."""
    feed = make_price_feed(settings)
    try:
        return await feed.price(DEMO_SYMBOL)
    finally:
        close = getattr(feed, "close", None)
        if close is not None:
            await close()


def summary(settings: Settings, demo: DemoAccount, price: Decimal) -> dict[str, str]:
    """What a new user needs to send a first alert, as data (`jadetrade run --json`)."""
    url = settings.public_url
    market = paper_market(DEMO_SYMBOL)
    assert market is not None
    alert = json.dumps(
        {
            "token": demo.webhook_token,
            "action": "long_entry",
            "symbol": DEMO_SYMBOL,
            "price": str(price),
            "stop_loss": str(market.floor_price(price * Decimal("0.98"))),
            "take_profit": str(market.floor_price(price * Decimal("1.04"))),
        }
    )
    return {
        "url": url,
        "user_id": demo.user.id,
        "email": demo.user.email,
        "tier": demo.user.subscription_tier,
        "webhook_token": demo.webhook_token,
        "access_token": demo.access_token,
        "alert_curl": (
            f"curl -sS -X POST {url}/api/webhooks/tradingview "
            f"-H 'Content-Type: application/json' -d {shlex.quote(alert)}"
        ),
        "me_curl": f"curl -sS {url}/api/me -H 'Authorization: Bearer {demo.access_token}'",
        "chat_curl": (
            f"curl -sS -N -X POST {url}/api/chat/stream "
            f"-H 'Authorization: Bearer {demo.access_token}' "
            "-H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps({'message': 'how is my BTC position doing?'}))}"
        ),
        "websocket_url": ws_url(url),
        "watch_command": f"{shlex.quote(_jadetrade())} watch --url {url} "
        f"--token {demo.access_token}",
    }


def _jadetrade() -> str:
    """How to call the CLI: the script this process runs, relative to the cwd when under it."""
    script = Path(sys.argv[0]).resolve()
    if script.name != "jadetrade":
        script = Path(sys.executable).parent / "jadetrade"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def banner(settings: Settings, info: dict[str, str]) -> str:
    hours = settings.DEV_TOKEN_TTL_SECONDS // 3600
    url = info["url"]
    dashboard = (
        f'  Dashboard      {url}/    (press "Use dev token")'
        if settings.WEB_DIST_DIR is not None
        else "  Dashboard      not built (needs Node.js: `make web`); the API works without it"
    )
    return "\n".join(
        [
            "",
            "JadeTrade bot engine — local mode (embedded PostgreSQL and Redis)",
            f"  API            {url}    (interactive docs: {url}/docs)",
            dashboard,
            f"  Demo user      {info['email']} ({info['tier']})",
            f"  Demo user id   {info['user_id']}",
            f"  Webhook token  {info['webhook_token']}",
            f"  Access token   valid {hours} h, for `Authorization: Bearer ...`:",
            f"                 {info['access_token']}",
            "",
            "Send a first TradingView-style alert:",
            f"  {info['alert_curl']}",
            "Ask the API who you are:",
            f"  {info['me_curl']}",
            "Ask the assistant (offline mode unless ANTHROPIC_API_KEY is set):",
            f"  {info['chat_curl']}",
            "Watch signals, orders and positions arrive over the WebSocket (another terminal):",
            f"  {info['watch_command']}",
            "",
            f"Ctrl-C stops the engine, PostgreSQL and Redis. Data stays in {settings.LOCAL_DIR}.",
            "",
        ]
    )
