"""A fake clock for tests: time moves only when told to, and sleeping takes no time."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A `resilience.core.clock.Clock` that never reads real time.

    ``sleep(s)`` and ``await asleep(s)`` advance the clock by ``s`` at once and record
    the request in ``sleeps``; ``advance(s)`` moves time forward by hand. Safe to share
    between threads.

    Args:
        start: the initial reading of ``monotonic()``.

    Raises:
        ValueError: on a negative or non-finite ``advance``/``sleep`` argument.

    Example::

        clock = FakeClock()
        policy = resilience.Policy("db", timeout=0.2, clock=clock)
        clock.advance(5.0)   # the open breaker's interval has passed
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The current fake time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0)."""
        _check(seconds, "advance")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` instantly and record the sleep."""
        _check(seconds, "sleep")
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def asleep(self, seconds: float) -> None:
        """Advance by ``seconds`` instantly, record it, and yield to the loop once."""
        import asyncio

        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


def _check(seconds: float, what: str) -> None:
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"FakeClock.{what}({seconds!r}): expected a finite number >= 0")
