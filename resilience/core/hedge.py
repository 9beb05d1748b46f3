"""Hedged reads: when to send a second attempt of a slow idempotent read (no I/O).

Theory of operation (docs/hedging.md)
-------------------------------------
A hedged read sends its first attempt as usual. If no answer has come after the
*hedge delay*, a second attempt (the hedge) goes out, to another endpoint or another
connection as the client decides; the first answer wins and the other attempt is
cancelled. This module only decides; the clients run the attempts
(:mod:`resilience.clients._hedge`).

- **The delay** is fixed (``delay`` > 0) or the recent ``quantile`` (p95 by default)
  of call durations, never below ``min_delay``. `LatencyTracker` keeps the last
  ``samples`` durations in a ring and sorts a copy every ``samples // 20`` records
  (about 50 µs for 1000 floats, so ~1 µs a call amortised); until it holds 20 samples
  there is no quantile and no hedge.
- **The budget** bounds the extra load: each call deposits one, each hedge withdraws
  one, and hedges are allowed while ``hedges < budget_ratio * calls +
  budget_min_per_second * budget_window`` over the last ``budget_window`` seconds (the
  retry budget's arithmetic, :class:`~resilience.core.retry.RetryBudget`). When a whole
  endpoint is slow, every call wants a hedge and the budget caps them at about 5 %.
- **Counted**: ``sent``, ``won`` (the hedge's answer was used) and ``refused`` (the
  budget said no) on the `HedgePolicy`; the hedge attempt itself runs through the
  pipeline as an operation whose attempts have kind ``hedge`` (events and metrics).

Off by default; a client that has hedging off never builds a `HedgePolicy`, and its
read path is the unhedged one (zero cost).

Records race under threads without a lock: with the GIL a lost or doubled sample only
shifts the quantile by one sample in ``samples``.
"""

from __future__ import annotations

import math

from resilience.config import HedgeOptions, RetryOptions
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.retry import RetryBudget

__all__ = ["HedgePolicy", "LatencyTracker"]

MIN_SAMPLES = 20
"""Durations needed before the tracker gives a quantile."""


class LatencyTracker:
    """The recent ``quantile`` of call durations, from a ring of the last ``size``.

    Args:
        size: durations kept (>= 20).
        quantile: which quantile, in (0, 1].

    Raises:
        ValueError: size or quantile out of range (the message names it).
    """

    __slots__ = ("_every", "_i", "_n", "_q", "_ring", "_since", "_size", "value")

    def __init__(self, size: int = 1000, quantile: float = 0.95) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SAMPLES:
            raise ValueError(f"LatencyTracker size={size!r}: expected an int >= {MIN_SAMPLES}")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"LatencyTracker quantile={quantile!r}: expected a number in (0, 1]")
        self._size = size
        self._q = quantile
        self._ring = [0.0] * size
        self._i = 0
        self._n = 0
        self._since = 0
        self._every = max(1, size // 20)
        self.value: float | None = None  # the quantile now; None until MIN_SAMPLES

    def record(self, seconds: float) -> None:
        """Add one duration; the quantile is refreshed every ``size // 20`` records
        (and on each of the first records once there are 20)."""
        i = self._i
        self._ring[i] = seconds
        self._i = i + 1 if i + 1 < self._size else 0
        if self._n < self._size:
            self._n += 1
        self._since += 1
        if self._since >= self._every or (self.value is None and self._n >= MIN_SAMPLES):
            self._refresh()

    def _refresh(self) -> None:
        self._since = 0
        n = self._n
        if n < MIN_SAMPLES:
            return
        ordered = sorted(self._ring[:n]) if n < self._size else sorted(self._ring)
        # Nearest rank: the smallest sample with at least q of the samples at or below.
        rank = max(0, min(n - 1, math.ceil(self._q * n) - 1))
        self.value = ordered[rank]

    def __len__(self) -> int:
        return self._n


class HedgePolicy:
    """When one dependency hedges its reads: the delay, the budget, the counts.

    Args:
        options: the client's hedge options (``enabled`` is the client's business).
        clock: time source of the budget.

    Raises:
        TypeError: options is not a HedgeOptions (which validates its own ranges).
    """

    __slots__ = ("budget", "clock", "fixed", "min_delay", "refused", "sent", "tracker", "won")

    def __init__(self, options: HedgeOptions, clock: Clock = SYSTEM_CLOCK) -> None:
        if not isinstance(options, HedgeOptions):
            raise TypeError(f"options must be a HedgeOptions, got {type(options).__name__}")
        self.clock = clock
        self.fixed = options.delay
        self.min_delay = options.min_delay
        self.tracker = LatencyTracker(options.samples, options.quantile)
        self.budget = RetryBudget(RetryOptions(
            budget_ratio=options.budget_ratio,
            budget_min_per_second=options.budget_min_per_second,
            budget_window=options.budget_window,
        ))
        self.sent = 0  # hedges sent
        self.won = 0  # hedges whose answer was the call's
        self.refused = 0  # hedges the budget refused

    def delay(self) -> float | None:
        """Seconds to wait before hedging a call starting now; None: do not hedge
        (no fixed delay and too few samples for a quantile yet)."""
        if self.fixed > 0.0:
            return self.fixed
        q = self.tracker.value
        if q is None:
            return None
        return q if q > self.min_delay else self.min_delay

    def started(self, now: float) -> None:
        """Count one call (a deposit in the budget)."""
        self.budget.deposit(now)

    def finished(self, seconds: float) -> None:
        """Record the duration the caller saw for one call (feeds the quantile)."""
        self.tracker.record(seconds)

    def try_hedge(self, now: float) -> bool:
        """Whether a hedge may go out at ``now``; True spends one from the budget."""
        if self.budget.try_withdraw(now):
            self.sent += 1
            return True
        self.refused += 1
        return False

    def __repr__(self) -> str:
        how = f"delay={self.fixed}" if self.fixed > 0 else f"quantile={self.tracker._q}"
        return (f"HedgePolicy({how}, sent={self.sent}, won={self.won},"
                f" refused={self.refused})")
