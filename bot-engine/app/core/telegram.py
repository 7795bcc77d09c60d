"""A small Telegram Bot API client over httpx, for delivering user notifications.

Errors are grouped by what the caller must do next:

- `TelegramRetryLater`: nothing was delivered, or we cannot tell (429, 5xx, a timeout, a lost
  connection, an answer we cannot read); try again later, after `retry_after_s` when Telegram
  names a wait. A timeout may hide a delivered message, so a retry can rarely send it twice,
  which is acceptable for notifications.
- `TelegramUndeliverable`: this chat will never accept the message (the user blocked the bot,
  the chat does not exist, the request is invalid); do not retry.
- `TelegramAuthFailed`: the bot token is wrong or revoked; nothing can be delivered at all.

The bot token is part of every request URL, and httpx puts the URL into its exceptions, so
no httpx exception crosses this boundary: every error here is built from our own words and
raised `from None`.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from app.logging.logger import get_logger

log = get_logger("notifications")

DEFAULT_API_URL = "https://api.telegram.org"
# sendMessage refuses longer texts ("Bad Request: message is too long"); Telegram counts
# Unicode code points, which is what `len()` counts.
MAX_MESSAGE_LENGTH = 4096
_ELLIPSIS = "…"
_FAILURE_EVENTS = {"sendMessage": "telegram_send_failed", "getMe": "telegram_get_me_failed"}


class TelegramError(Exception):
    """Base of every Telegram error; `code` is stable and machine-readable, `status` is the
    HTTP status of Telegram's answer (None when there was no answer)."""

    code: str = "telegram_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class TelegramRetryLater(TelegramError):
    """Rate limited, unavailable or unanswered; `retry_after_s` is Telegram's wait, if any."""

    code = "telegram_retry_later"

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class TelegramUndeliverable(TelegramError):
    """Telegram refused the message for this chat (blocked, not found, invalid); `message`
    is the Bot API's `description`, e.g. "Forbidden: bot was blocked by the user"."""

    code = "telegram_undeliverable"


class TelegramAuthFailed(TelegramError):
    """The bot token is not accepted (401 Unauthorized, or 404 for a malformed token)."""

    code = "telegram_auth_failed"


def truncate_message(text: str) -> str:
    """`text` cut to Telegram's length limit, with an ellipsis showing that it was cut."""
    if len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text[: MAX_MESSAGE_LENGTH - len(_ELLIPSIS)] + _ELLIPSIS


class TelegramClient:
    """Calls Bot API methods as one bot; the HTTP client is shared and owned by the caller."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: SecretStr,
        *,
        base_url: str = DEFAULT_API_URL,
        timeout_s: float = 10.0,
    ) -> None:
        self._http = http
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_s

    def __repr__(self) -> str:
        return f"TelegramClient(base_url={self._base_url!r})"

    async def get_me(self) -> dict[str, Any]:
        """The bot's own User object; a start-up check that the token is accepted."""
        return await self._call("getMe", {}, required="id")

    async def send_message(self, chat_id: str, text: str) -> int:
        """Send `text` as plain text (no parse mode, nothing to escape); returns message_id."""
        params = {
            "chat_id": chat_id,
            "text": truncate_message(text),
            "link_preview_options": {"is_disabled": True},
        }
        result = await self._call("sendMessage", params, required="message_id")
        message_id: int = result["message_id"]
        return message_id

    # ------------------------------------------------------------------ one call
    async def _call(self, method: str, params: dict[str, Any], *, required: str) -> dict[str, Any]:
        """The method's `result` object, which must hold the integer field `required`."""
        try:
            result = await self._request(method, params)
            if isinstance(result, dict) and _is_int(result.get(required)):
                return result
            raise TelegramRetryLater(f"the answer has no {required}", status=200)
        except TelegramError as error:
            _log_failure(method, error)
            raise

    async def _request(self, method: str, params: dict[str, Any]) -> Any:
        url = f"{self._base_url}/bot{self._token.get_secret_value()}/{method}"
        # Every `raise` below is `from None`: httpx's exceptions carry the URL, and with it
        # the token, into tracebacks.
        try:
            response = await self._http.post(url, json=params, timeout=self._timeout)
        except httpx.TimeoutException:
            raise TelegramRetryLater("Telegram did not answer in time") from None
        except httpx.HTTPError as exc:
            raise TelegramRetryLater(f"the request failed: {type(exc).__name__}") from None
        except httpx.InvalidURL:
            raise TelegramError("the Telegram API URL is invalid") from None

        try:
            body = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            raise TelegramRetryLater("the answer is not a Bot API response", status=status)
        if body["ok"] is True and response.is_success:
            return body.get("result")
        raise _refusal(status, body)


def _refusal(http_status: int, body: dict[str, Any]) -> TelegramError:
    """The error for an `ok: false` answer, by what the caller can do about it."""
    error_code = body.get("error_code")
    status = error_code if isinstance(error_code, int) else http_status
    description = body.get("description")
    if not isinstance(description, str) or not description:
        description = f"Telegram answered {status}"
    if status == 429:
        return TelegramRetryLater(description, retry_after_s=_retry_after(body), status=status)
    if status in (401, 404):
        return TelegramAuthFailed(description, status=status)
    if status in (400, 403):
        return TelegramUndeliverable(description, status=status)
    # 5xx, and whatever the Bot API does not document: the caller's attempt limit bounds it.
    return TelegramRetryLater(description, status=status)


def _log_failure(method: str, error: TelegramError) -> None:
    fields: dict[str, Any] = {"method": method, "status": error.status, "code": error.code}
    fields["reason"] = error.message  # Telegram's description, or what went wrong on the way
    if isinstance(error, TelegramRetryLater) and error.retry_after_s is not None:
        fields["retry_after_s"] = error.retry_after_s
    event = _FAILURE_EVENTS.get(method, "telegram_call_failed")
    if isinstance(error, TelegramAuthFailed):
        log.error(event, **fields)
    else:
        log.warning(event, **fields)


def _retry_after(body: dict[str, Any]) -> float | None:
    parameters = body.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
