"""Time, injected: every policy reads ``now`` from a `Clock` instead of the time module.

A `Clock` is three methods: ``monotonic()`` (seconds, never goes back), ``sleep(s)`` and
``async asleep(s)``. `SYSTEM_CLOCK` is the real one (``time.monotonic``, never the wall
clock, so an NTP step cannot trip a breaker). Tests use
:class:`resilience.testing.clock.FakeClock`, whose sleeps advance time instantly.

The ambient deadline (:mod:`resilience.core.deadline`) is an instant on the same clock
as the policies that read it: pass one clock to both.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where the pipeline and its policies get time from."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` without blocking the loop."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and ``asyncio.sleep``."""

    __slots__ = ()

    # Plain function attributes: one attribute load and a C call per read.
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def asleep(self, seconds: float) -> None:
        # asyncio imported lazily: it is a large share of a cold import.
        import asyncio

        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SYSTEM_CLOCK"


SYSTEM_CLOCK: Clock = SystemClock()
