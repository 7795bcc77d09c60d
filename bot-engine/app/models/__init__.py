"""The engine's tables. Importing this package registers every model on `Base.metadata`."""

from app.models.api_key import ExchangeApiKey
from app.models.audit import AuditLog
from app.models.base import Base
from app.models.chat import ChatConversation, ChatMessage
from app.models.knowledge import INDEXED_DIMENSIONS, KnowledgeEmbedding
from app.models.notification import Notification
from app.models.paper import PaperAccount, PaperLeverage, PaperOrder, PaperPosition
from app.models.position import RealPosition
from app.models.price_history import PriceHistory
from app.models.risk import UserRiskSettings
from app.models.signal import BotExecutionLog, TradingSignal
from app.models.strategy import Strategy
from app.models.trade import RealTrade
from app.models.user import User, WebhookToken

__all__ = [
    "INDEXED_DIMENSIONS",
    "AuditLog",
    "Base",
    "BotExecutionLog",
    "ChatConversation",
    "ChatMessage",
    "ExchangeApiKey",
    "KnowledgeEmbedding",
    "Notification",
    "PaperAccount",
    "PaperLeverage",
    "PaperOrder",
    "PaperPosition",
    "PriceHistory",
    "RealPosition",
    "RealTrade",
    "Strategy",
    "TradingSignal",
    "User",
    "UserRiskSettings",
    "WebhookToken",
]
