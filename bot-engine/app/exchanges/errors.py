"""Errors of the exchange layer, grouped by what the caller must do next.

- `RetryLater`: nothing happened; try again later (rate limit, maintenance).
- `OutcomeUnknown`: the request may or may not have taken effect. Look the order up by its
  client order id before doing anything else; never resend blindly.
- `OrderRejected` (and `InsufficientFunds`): the exchange refused the order; retrying the
  same request fails the same way. `reason` is a sentence a user understands.
- `OrderNotFound`: no such order on this account.
- `AuthenticationFailed`: the credentials are wrong, revoked or lack a permission.
- `PriceUnavailable`: no price is known for the symbol (a feed has none).

Adapters translate their library's exceptions into these at their boundary, and nowhere else.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base of every exchange error; `code` is stable and machine-readable."""

    code: str = "exchange_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class RetryLater(ExchangeError):
    """Rate limited or unavailable; the request did not take effect."""

    code = "retry_later"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(ExchangeError):
    """The request may have taken effect (timeout, 5xx, lost connection): reconcile first."""

    code = "outcome_unknown"


class OrderRejected(ExchangeError):
    """The order is invalid or not allowed; never retry it unchanged."""

    code = "order_rejected"

    @property
    def reason(self) -> str:
        """Why the order was refused, in words a user understands."""
        return self.message


class InsufficientFunds(OrderRejected):
    code = "insufficient_funds"


class OrderNotFound(ExchangeError):
    code = "order_not_found"


class AuthenticationFailed(ExchangeError):
    code = "authentication_failed"


class PriceUnavailable(ExchangeError):
    """A price feed has no price for the symbol."""

    code = "price_unavailable"
