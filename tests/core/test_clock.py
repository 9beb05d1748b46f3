"""The system clock and the fake clock for tests."""

from __future__ import annotations

import asyncio
import time

import pytest

from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.testing.clock import FakeClock


def test_system_clock_is_monotonic_time() -> None:
    before = time.monotonic()
    assert before <= SYSTEM_CLOCK.monotonic() <= time.monotonic()
    assert isinstance(SYSTEM_CLOCK, Clock)


def test_fake_clock_moves_only_when_told(fake_clock: FakeClock) -> None:
    t0 = fake_clock.monotonic()
    assert fake_clock.monotonic() == t0
    fake_clock.advance(2.5)
    assert fake_clock.monotonic() == t0 + 2.5
    assert isinstance(fake_clock, Clock)


def test_fake_sleep_takes_no_real_time_and_is_recorded() -> None:
    clock = FakeClock(start=0.0)
    started = time.monotonic()
    clock.sleep(30.0)
    asyncio.run(clock.asleep(15.0))
    assert time.monotonic() - started < 1.0
    assert clock.monotonic() == 45.0 and clock.sleeps == [30.0, 15.0]


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_fake_clock_refuses_to_go_back_or_to_infinity(bad: float) -> None:
    with pytest.raises(ValueError, match=r"FakeClock\.advance"):
        FakeClock().advance(bad)
