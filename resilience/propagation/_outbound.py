"""What the outbound transports share: the budget to send, or a rejection. No I/O."""

from __future__ import annotations

from resilience.core.clock import SYSTEM_CLOCK
from resilience.core.deadline import DEADLINE
from resilience.errors import DeadlineExceededError
from resilience.propagation._headers import MalformedHeaderError, format_ms, parse_ms

__all__ = ["check_spent", "header_value", "outbound_budget"]


def outbound_budget(service: str, endpoint: str | None, operation: str | None
                    ) -> tuple[float, float] | None:
    """(seconds left, the deadline instant) for a call about to be sent, or None when no
    deadline is set.

    Raises:
        DeadlineExceededError: less than a millisecond is left (the smallest budget a
            header can carry): the call must not be sent.
    """
    at = DEADLINE.get()
    if at is None:
        return None
    left = at - SYSTEM_CLOCK.monotonic()
    if left < 0.001:
        raise DeadlineExceededError(
            "deadline spent before sending: nothing sent",
            service=service, endpoint=endpoint, operation=operation)
    return left, at


def header_value(left: float, existing: str | None) -> str:
    """The ms header to send: ``left`` rounded down, or a smaller value already set."""
    ours = format_ms(left) or "1"  # outbound_budget already refused under 1 ms
    if existing is not None:
        try:
            if parse_ms(existing) < int(ours) / 1000.0:
                return existing.strip()
        except MalformedHeaderError:
            pass  # replaced by ours
    return ours


def check_spent(at: float, service: str, endpoint: str | None, operation: str | None,
                cause: BaseException | None = None) -> None:
    """Raise DeadlineExceededError (from ``cause``) if the instant ``at`` has passed."""
    if SYSTEM_CLOCK.monotonic() >= at:
        raise DeadlineExceededError(
            "deadline passed during the call", service=service, endpoint=endpoint,
            operation=operation) from cause
