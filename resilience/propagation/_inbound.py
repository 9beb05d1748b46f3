"""What the WSGI and ASGI middleware share: settings, the budget decision, counters,
and the error -> status mapping. No I/O."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from resilience.errors import CircuitOpenError, ConfigError, DeadlineExceededError
from resilience.propagation._headers import DEFAULT_HEADER, read_budget

__all__ = ["MARKER_HEADER", "Inbound", "PropagationStats", "error_response"]

#: Set on every 504/503 the middleware writes, so a caller (and a test) can tell the
#: middleware's answer from the application's: ``expired`` (spent on arrival, no work
#: done), ``exceeded`` (ran out during the work), ``circuit-open``.
MARKER_HEADER = "resilience-deadline"


class PropagationStats:
    """Counters of one middleware, safe to read from any thread.

    Attributes:
        requests: requests seen (HTTP only; lifespan and websocket scopes are not).
        malformed: malformed deadline headers ignored, by header name.
        expired: requests answered 504 on arrival, their budget already spent.
        exceeded: requests whose work raised DeadlineExceededError (answered 504).
        circuit_open: requests whose work raised CircuitOpenError (answered 503).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.expired = 0
        self.exceeded = 0
        self.circuit_open = 0
        self.malformed: dict[str, int] = {}

    def add(self, field: str) -> None:
        with self._lock:  # `+=` on an attribute is not atomic across threads
            self.__dict__[field] += 1

    def add_malformed(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self.malformed[name] = self.malformed.get(name, 0) + 1

    def snapshot(self) -> dict[str, object]:
        """A consistent copy of every counter."""
        with self._lock:
            return {"requests": self.requests, "expired": self.expired,
                    "exceeded": self.exceeded, "circuit_open": self.circuit_open,
                    "malformed": dict(self.malformed)}


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)):
        more = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: expected a finite number of seconds {more}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Inbound:
    """The middleware's settings (validated) and its per-request decision.

    Args:
        max_budget: the longest any request may run, seconds; a caller's header can only
            shorten it. None: no cap (a request without a header runs with no deadline).
        header: this service's own budget header (whole milliseconds).
        reply_margin: seconds kept back from the caller's budget to write the reply.
    """

    max_budget: float | None
    header: str = DEFAULT_HEADER
    reply_margin: float = 0.005

    def __post_init__(self) -> None:
        if self.max_budget is not None:
            _seconds("max_budget", self.max_budget)
        _seconds("reply_margin", self.reply_margin, allow_zero=True)
        if not isinstance(self.header, str) or not self.header.strip():
            raise ConfigError(f"header={self.header!r}: expected a header name")

    def decide(
        self, headers: Iterable[tuple[str, str]], grpc: bool, route_max: object,
        stats: PropagationStats,
    ) -> float | None:
        """Seconds the request may run (<= 0: spent on arrival), or None for no deadline.

        ``route_max`` is what the route's callable returned (None: the app's maximum).
        """
        cap = self.max_budget if route_max is None else _seconds("route_max()", route_max)
        budget = read_budget(headers, own_header=self.header, grpc=grpc)
        if budget.malformed:
            stats.add_malformed(budget.malformed)
        seconds = budget.seconds
        if seconds is None:
            if cap is None:
                return None
            return cap - self.reply_margin  # the reply must fit in the route's maximum too
        if cap is not None and cap < seconds:
            seconds = cap
        return seconds - self.reply_margin if seconds > 0 else 0.0


def error_response(
    exc: BaseException, stats: PropagationStats
) -> tuple[int, list[tuple[str, str]]] | None:
    """Status and headers for an error the work raised, or None if it is not ours."""
    if isinstance(exc, DeadlineExceededError):
        stats.add("exceeded")
        return 504, [(MARKER_HEADER, "exceeded")]
    if isinstance(exc, CircuitOpenError):
        stats.add("circuit_open")
        retry_after = max(1, math.ceil(exc.retry_after))
        return 503, [(MARKER_HEADER, "circuit-open"), ("retry-after", str(retry_after))]
    return None
