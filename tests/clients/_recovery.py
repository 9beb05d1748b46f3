"""Shared steps of the health-probe tests of every client (docs/breaker.md#health-probes).

The scenario: a real fault opens an endpoint's breaker through user calls; the open
interval is long (``LONG``: user traffic would not try the endpoint again within the
test); the fault heals; the test then makes no call at all and watches the breaker.
With probing on it leaves OPEN within a few probe intervals, which only the background
probe can have done; with probing off it stays OPEN.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from resilience.core.breaker import BreakerState, CircuitBreaker
from resilience.errors import ResilienceError

# The open interval outlasts the test: only a health probe can end it early.
LONG: dict[str, Any] = {"breaker_open_duration": 30.0, "breaker_max_open_duration": 30.0}

Pause = Callable[[float], None]


def state(breaker: CircuitBreaker) -> BreakerState:
    # The state as it last moved (state(now) would itself turn an expired OPEN
    # half-open; with LONG it never is expired here, but say exactly what is meant).
    return breaker._state


def open_it(call: Callable[[], Any], breaker: CircuitBreaker, pause: Pause,
            limit: int = 40) -> int:
    """Make user calls (each expected to fail under the fault) until ``breaker`` is
    OPEN; return how many were made. Bounded by ``limit`` calls."""
    for n in range(1, limit + 1):
        with contextlib.suppress(ResilienceError):
            call()
        if state(breaker) is BreakerState.OPEN:
            return n
        pause(0.01)
    raise AssertionError(f"the breaker did not open in {limit} calls: {state(breaker)}")


def left_open_after(breaker: CircuitBreaker, pause: Pause, within: float) -> float | None:
    """Seconds until ``breaker`` leaves OPEN with no call made meanwhile, or None if it
    is still OPEN after ``within`` seconds."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        if state(breaker) is not BreakerState.OPEN:
            return time.monotonic() - began
        pause(0.02)
    return None


def first_success(call: Callable[[], Any], pause: Pause, within: float) -> float:
    """Seconds until ``call()`` succeeds (calling every 20 ms), bounded by ``within``."""
    began = time.monotonic()
    while True:
        try:
            call()
            return time.monotonic() - began
        except ResilienceError:
            if time.monotonic() - began > within:
                raise
            pause(0.02)
