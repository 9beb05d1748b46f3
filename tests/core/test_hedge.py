"""The hedge decision (resilience/core/hedge.py): the quantile, the delay, the budget."""

from __future__ import annotations

import random

import pytest

from resilience.clients.memcache import MemcacheOptions
from resilience.config import HedgeOptions
from resilience.core.hedge import MIN_SAMPLES, HedgePolicy, LatencyTracker
from resilience.errors import ConfigError
from resilience.testing.clock import FakeClock


def test_tracker_gives_no_quantile_before_enough_samples() -> None:
    t = LatencyTracker(100, 0.95)
    for i in range(MIN_SAMPLES - 1):
        t.record(0.001 * i)
    assert t.value is None
    t.record(0.5)
    assert t.value is not None


def test_tracker_p95_is_the_nearest_rank() -> None:
    t = LatencyTracker(100, 0.95)
    samples = [0.001 * i for i in range(1, 101)]
    random.Random(3).shuffle(samples)
    for s in samples:
        t.record(s)
    assert t.value == pytest.approx(0.095)


def test_tracker_forgets_old_samples() -> None:
    # The ring holds the last 100: after 100 slow ones, the fast past is gone.
    t = LatencyTracker(100, 0.5)
    for _ in range(100):
        t.record(0.001)
    assert t.value == pytest.approx(0.001)
    for _ in range(100):
        t.record(0.2)
    assert t.value == pytest.approx(0.2)
    assert len(t) == 100


@pytest.mark.parametrize(("size", "q"), [(19, 0.95), (100, 0.0), (100, 1.5), (True, 0.9)])
def test_tracker_rejects_bad_settings(size: int, q: float) -> None:
    with pytest.raises(ValueError, match="LatencyTracker"):
        LatencyTracker(size, q)


def test_fixed_delay_needs_no_samples() -> None:
    p = HedgePolicy(HedgeOptions(delay=0.02))
    assert p.delay() == 0.02


def test_quantile_delay_has_a_floor() -> None:
    p = HedgePolicy(HedgeOptions(min_delay=0.005, samples=20))
    assert p.delay() is None
    for _ in range(20):
        p.finished(0.0002)
    assert p.delay() == 0.005  # p95 0.2 ms, floored
    for _ in range(20):
        p.finished(0.030)
    assert p.delay() == pytest.approx(0.030)


def test_budget_allows_a_share_of_calls_and_counts() -> None:
    clock = FakeClock()
    p = HedgePolicy(HedgeOptions(delay=0.01, budget_ratio=0.05, budget_min_per_second=0.0),
                    clock)
    hedged = 0
    for _ in range(200):
        p.started(clock.monotonic())
        hedged += p.try_hedge(clock.monotonic())
        clock.advance(0.001)
    assert hedged == 10 == p.sent
    assert p.refused == 190
    assert "sent=10" in repr(p)


def test_budget_floor_allows_hedges_at_low_traffic() -> None:
    clock = FakeClock()
    p = HedgePolicy(HedgeOptions(delay=0.01, budget_ratio=0.0, budget_min_per_second=1.0,
                                 budget_window=10.0), clock)
    allowed = sum(p.try_hedge(clock.monotonic()) for _ in range(20))
    assert allowed == 10  # 1 per second over a 10 s window


def test_policy_wants_hedge_options() -> None:
    with pytest.raises(TypeError, match="HedgeOptions"):
        HedgePolicy(object())  # type: ignore[arg-type]


def test_hedge_options_come_from_the_environment() -> None:
    o = MemcacheOptions.from_env(environ={"RESILIENCE_MEMCACHE_HEDGE_ENABLED": "true",
                                          "RESILIENCE_MEMCACHE_HEDGE_DELAY_MS": "15"})
    assert o.hedge.enabled and o.hedge.delay == 0.015
    assert MemcacheOptions.from_env(environ={}).hedge.enabled is False


def test_a_bad_hedge_variable_names_itself() -> None:
    with pytest.raises(ConfigError, match="RESILIENCE_MEMCACHE_HEDGE_BUDGET_RATIO"):
        MemcacheOptions.from_env(environ={"RESILIENCE_MEMCACHE_HEDGE_BUDGET_RATIO": "2"})
