"""Unit tests of the circuit breaker: every transition and threshold, `now` driven by hand."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from resilience.config import BreakerOptions
from resilience.core.breaker import BreakerRegistry, BreakerState, CircuitBreaker

S = BreakerState


def opts(**kw: Any) -> BreakerOptions:
    base: dict[str, Any] = {
        "window_size": 4,
        "minimum_calls": 4,
        "failure_rate": 0.5,
        "slow_call_rate": 1.0,
        "slow_call_duration": 1.0,
        "open_duration": 1.0,
        "max_open_duration": 5.0,
        "open_backoff": 2.0,
        "jitter": 0.0,
    }
    base.update(kw)
    return BreakerOptions(**base)


def ok(b: CircuitBreaker, now: float, duration: float = 0.0) -> None:
    p = b.acquire(now)
    assert p is not None
    b.on_success(p, now, duration)


def fail(b: CircuitBreaker, now: float, duration: float = 0.0) -> None:
    p = b.acquire(now)
    assert p is not None
    b.on_failure(p, now, duration)


def tripped(**kw: Any) -> CircuitBreaker:
    """A breaker that opened at t=0 on four failures."""
    b = CircuitBreaker(opts(**kw), name="n1")
    for _ in range(4):
        fail(b, 0.0)
    assert b.state(0.0) is S.OPEN
    return b


# -- CLOSED: window, thresholds, minimum calls, slow calls -------------------------------


def test_closed_admits_every_call_and_counts_outcomes() -> None:
    b = CircuitBreaker(opts(window_size=10, minimum_calls=10), name="n1")
    ok(b, 0.0)
    fail(b, 0.0)
    snap = b.snapshot(0.0)
    assert (snap["state"], snap["calls"], snap["failures"]) == ("closed", 2, 1)
    assert snap["failure_rate"] == 0.5 and snap["name"] == "n1"


def test_opens_when_failure_rate_reaches_the_threshold() -> None:
    b = CircuitBreaker(opts())
    ok(b, 0.0)
    ok(b, 0.0)
    fail(b, 0.0)
    assert b.state(0.0) is S.CLOSED  # 3 calls < minimum_calls
    fail(b, 0.0)  # 2 of 4 failed = 0.5
    assert b.state(0.0) is S.OPEN
    assert b.acquire(0.0) is None


def test_stays_closed_just_below_the_failure_rate() -> None:
    b = CircuitBreaker(opts(window_size=5, minimum_calls=5, failure_rate=0.5))
    for _ in range(3):
        ok(b, 0.0)
    fail(b, 0.0)
    fail(b, 0.0)  # 2 of 5 = 0.4
    assert b.state(0.0) is S.CLOSED


def test_never_judges_before_minimum_calls() -> None:
    b = CircuitBreaker(opts(window_size=10, minimum_calls=5))
    for _ in range(4):
        fail(b, 0.0)
    assert b.state(0.0) is S.CLOSED
    fail(b, 0.0)
    assert b.state(0.0) is S.OPEN


def test_minimum_calls_larger_than_a_count_window_is_capped_at_its_size() -> None:
    b = CircuitBreaker(opts(window_size=3, minimum_calls=10))
    for _ in range(3):
        fail(b, 0.0)
    assert b.state(0.0) is S.OPEN


def test_a_fast_success_is_not_judged_the_next_failure_is() -> None:
    b = CircuitBreaker(opts())
    for _ in range(3):
        fail(b, 0.0)
    ok(b, 0.0)  # completes minimum_calls with 3/4 failed, but a success never trips
    assert b.state(0.0) is S.CLOSED
    fail(b, 0.0)
    assert b.state(0.0) is S.OPEN


def test_count_window_forgets_the_oldest_outcome() -> None:
    b = CircuitBreaker(opts(window_size=3, minimum_calls=3, failure_rate=1.0))
    fail(b, 0.0)
    fail(b, 0.0)
    ok(b, 0.0)
    ok(b, 0.0)  # evicts the first failure
    snap = b.snapshot(0.0)
    assert (snap["calls"], snap["failures"]) == (3, 1)


def test_slow_successes_open_the_breaker_at_the_slow_call_rate() -> None:
    b = CircuitBreaker(opts(slow_call_rate=0.5, failure_rate=1.0))
    ok(b, 0.0, duration=0.999)  # just under slow_call_duration: not slow
    ok(b, 0.0)
    ok(b, 0.0, duration=1.0)  # exactly slow_call_duration counts as slow
    assert b.state(0.0) is S.CLOSED
    ok(b, 0.0, duration=5.0)
    assert b.state(0.0) is S.OPEN
    snap = b.snapshot(0.0)
    assert (snap["slow_calls"], snap["failures"]) == (2, 0)


def test_a_slow_failure_counts_as_failure_and_as_slow_call() -> None:
    b = CircuitBreaker(opts(window_size=10, minimum_calls=10))
    fail(b, 0.0, duration=2.0)
    snap = b.snapshot(0.0)
    assert (snap["failures"], snap["slow_calls"]) == (1, 1)


# -- time window -------------------------------------------------------------------------


def test_time_window_outcomes_expire_after_the_window() -> None:
    b = CircuitBreaker(opts(window="time", window_duration=10.0, minimum_calls=100))
    fail(b, 0.5)
    assert b.snapshot(9.5)["failures"] == 1
    assert b.snapshot(10.5)["calls"] == 0


def test_time_window_judges_only_outcomes_inside_the_window() -> None:
    b = CircuitBreaker(opts(window="time", window_duration=10.0, minimum_calls=3))
    fail(b, 0.0)
    fail(b, 1.0)
    fail(b, 12.0)  # the first two have left the window: 1 call < 3
    assert b.state(12.0) is S.CLOSED
    fail(b, 13.0)
    fail(b, 14.0)
    assert b.state(14.0) is S.OPEN


def test_time_window_expiring_successes_lets_the_next_failure_trip() -> None:
    b = CircuitBreaker(opts(window="time", window_duration=10.0, minimum_calls=2))
    for _ in range(10):
        ok(b, 0.0)
    fail(b, 5.0)
    fail(b, 6.0)
    assert b.state(6.0) is S.CLOSED  # 2 failures in 12 calls
    fail(b, 11.0)  # the 10 successes of t=0 expired: 3 of 3 failed
    assert b.state(11.0) is S.OPEN


def test_time_window_counts_a_late_outcome_in_its_own_bucket_or_drops_it() -> None:
    b = CircuitBreaker(opts(window="time", window_duration=10.0, minimum_calls=100))
    ok(b, 20.0)
    p = b.acquire(20.0)
    b.on_failure(p, 15.0, 0.0)  # stamped earlier, still inside the window
    b.on_failure(p, 5.0, 0.0)  # stamped before the window: dropped
    snap = b.snapshot(20.0)
    assert (snap["calls"], snap["failures"]) == (2, 1)
    assert b.snapshot(25.5)["failures"] == 0  # the t=15 bucket left the window


# -- OPEN: rejection, lazy half-open, growing interval, jitter ----------------------------


def test_open_rejects_until_the_interval_passes_then_turns_half_open_lazily() -> None:
    b = tripped()
    assert b.acquire(0.5) is None
    assert b.retry_after(0.25) == pytest.approx(0.75)
    assert b.state(0.999) is S.OPEN
    assert b.state(1.0) is S.HALF_OPEN
    assert b.retry_after(1.0) == 0.0


def test_acquire_itself_moves_an_expired_open_breaker_to_half_open() -> None:
    b = tripped()
    assert b.acquire(1.0) is not None
    assert b.state(1.0) is S.HALF_OPEN


def test_open_interval_grows_per_failed_probe_up_to_the_cap() -> None:
    b = tripped(open_duration=1.0, open_backoff=2.0, max_open_duration=5.0)
    now, seen = 0.0, []
    for _ in range(5):
        seen.append(b.snapshot(now)["open_interval"])
        now += seen[-1]
        fail(b, now)  # the probe fails
    assert seen == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_closing_resets_the_interval_growth() -> None:
    b = tripped()
    fail(b, 1.0)  # re-open for 2 s
    ok(b, 3.0)  # probe succeeds: closed
    assert b.state(3.0) is S.CLOSED
    for _ in range(4):
        fail(b, 3.0)
    assert b.snapshot(3.0)["open_interval"] == 1.0


def test_jitter_adds_a_seeded_share_of_the_interval() -> None:
    b = CircuitBreaker(opts(jitter=0.5), rng=random.Random(42))
    for _ in range(4):
        fail(b, 0.0)
    expected = 1.0 * (1 + 0.5 * random.Random(42).random())
    assert b.snapshot(0.0)["open_interval"] == pytest.approx(expected)
    assert b.retry_after(0.0) == pytest.approx(expected)
    assert 1.0 <= expected <= 1.5


def test_jitter_is_added_after_the_cap() -> None:
    rng = random.Random(3)
    b = CircuitBreaker(opts(jitter=0.2, max_open_duration=1.5), rng=random.Random(3))
    for _ in range(4):
        fail(b, 0.0)
    first = b.snapshot(0.0)["open_interval"]
    fail(b, 10.0)  # failed probe: base 2.0 is capped at 1.5, then jitter on top
    rng.random()
    assert b.snapshot(10.0)["open_interval"] == pytest.approx(1.5 * (1 + 0.2 * rng.random()))
    assert first < 1.2


# -- HALF_OPEN: probes ---------------------------------------------------------------------


def test_half_open_admits_only_the_probe_slots_and_release_frees_one() -> None:
    b = tripped(half_open_probes=2)
    p1, p2 = b.acquire(1.0), b.acquire(1.0)
    assert p1 is not None and p2 is not None
    assert b.acquire(1.0) is None
    b.release(p1)
    b.release(p1)  # a second release of the same permit frees nothing more
    p3 = b.acquire(1.0)
    assert p3 is not None and b.acquire(1.0) is None


def test_half_open_closes_with_an_empty_window_when_all_probes_succeed() -> None:
    b = tripped(half_open_probes=2)
    p1, p2 = b.acquire(1.0), b.acquire(1.0)
    b.on_success(p1, 1.1, 0.0)
    assert b.state(1.1) is S.HALF_OPEN
    assert b.acquire(1.1) is None  # one success in, one probe out: no slot left
    b.on_success(p2, 1.2, 0.0)
    assert b.state(1.2) is S.CLOSED
    assert b.snapshot(1.2)["calls"] == 0


def test_a_failed_probe_reopens_at_once_with_a_grown_interval() -> None:
    b = tripped(half_open_probes=2)
    p1, p2 = b.acquire(1.0), b.acquire(1.0)
    b.on_failure(p1, 1.5, 0.0)
    assert b.state(1.5) is S.OPEN
    assert b.retry_after(1.5) == 2.0
    b.on_success(p2, 1.6, 0.0)  # the other probe's late outcome changes nothing
    assert b.state(1.6) is S.OPEN


def test_slow_probes_at_the_slow_call_rate_reopen() -> None:
    b = tripped(half_open_probes=2, slow_call_rate=0.5)
    p1, p2 = b.acquire(1.0), b.acquire(1.0)
    b.on_success(p1, 3.0, 2.0)  # slow
    b.on_success(p2, 3.0, 0.0)
    assert b.state(3.0) is S.OPEN


# -- generations ---------------------------------------------------------------------------


def test_a_call_admitted_while_closed_does_not_count_in_the_half_open_verdict() -> None:
    b = CircuitBreaker(opts())
    slow = b.acquire(0.0)  # still running when the breaker opens
    for _ in range(4):
        fail(b, 0.0)
    probe = b.acquire(1.0)
    b.on_failure(slow, 1.5, 1.5)
    assert b.state(1.5) is S.HALF_OPEN
    b.on_success(probe, 1.6, 0.0)
    assert b.state(1.6) is S.CLOSED


def test_an_old_generation_outcome_does_not_leak_into_the_new_closed_window() -> None:
    b = CircuitBreaker(opts())
    stale = b.acquire(0.0)
    for _ in range(4):
        fail(b, 0.0)
    ok(b, 1.0)  # probe: closed again
    b.on_success(stale, 1.1, 0.0)
    b.on_failure(stale, 1.1, 0.0)
    assert b.snapshot(1.1)["calls"] == 0


# -- manual modes ------------------------------------------------------------------------------


def test_force_open_rejects_everything_with_no_known_retry_after() -> None:
    b = CircuitBreaker(opts())
    b.force_open(0.0)
    assert b.acquire(100.0) is None
    assert b.state(100.0) is S.FORCED_OPEN
    assert b.retry_after(100.0) == 0.0


@pytest.mark.parametrize(
    ("action", "state"), [("force_closed", S.FORCED_CLOSED), ("disable", S.DISABLED)]
)
def test_pass_through_modes_admit_everything_and_record_nothing(
    action: str, state: BreakerState
) -> None:
    b = tripped()
    getattr(b, action)(0.0)
    for _ in range(20):
        fail(b, 0.0)
    assert b.state(0.0) is state
    b.release(b.acquire(0.0))


def test_reset_returns_to_closed_with_an_empty_window_and_no_growth() -> None:
    b = tripped()
    fail(b, 1.0)  # grown to 2 s
    b.reset(2.0)
    assert b.state(2.0) is S.CLOSED
    assert b.snapshot(2.0)["calls"] == 0 and b.snapshot(2.0)["next_open_interval"] == 1.0
    ok(b, 2.0)
    b.reset(2.0)  # even when already closed: window emptied
    assert b.snapshot(2.0)["calls"] == 0


def test_a_disabled_breaker_admits_everything_and_reset_keeps_it_disabled() -> None:
    b = CircuitBreaker(opts(enabled=False))
    for _ in range(10):
        fail(b, 0.0)
    assert b.state(0.0) is S.DISABLED
    b.force_open(0.0)
    assert b.acquire(0.0) is None
    b.reset(0.0)
    assert b.state(0.0) is S.DISABLED


# -- listeners -----------------------------------------------------------------------------


def test_listeners_hear_each_real_transition_once_with_old_new_and_now() -> None:
    b = CircuitBreaker(opts(), name="n1")
    heard: list[tuple[str, str, str, float]] = []
    b.add_listener(lambda br, old, new, now: heard.append((br.name, old.value, new.value, now)))
    for _ in range(4):
        fail(b, 0.0)
    b.state(1.0)
    b.state(1.0)
    ok(b, 1.5)
    b.force_open(2.0)
    b.force_open(2.5)  # no change: nobody told
    assert heard == [
        ("n1", "closed", "open", 0.0),
        ("n1", "open", "half_open", 1.0),
        ("n1", "half_open", "closed", 1.5),
        ("n1", "closed", "forced_open", 2.0),
    ]


def test_a_raising_listener_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    b = CircuitBreaker(opts(), name="n1")
    heard: list[str] = []

    def boom(*_: object) -> None:
        raise RuntimeError("listener bug")

    b.add_listener(boom)
    b.add_listener(lambda _b, _o, new, _n: heard.append(new.value))
    with caplog.at_level(logging.ERROR, logger="resilience.core.breaker"):
        for _ in range(4):
            fail(b, 0.0)
    assert heard == ["open"] and b.state(0.0) is S.OPEN
    assert "listener bug" in caplog.text and "n1" in caplog.text


def test_unsubscribed_listeners_hear_nothing() -> None:
    b = CircuitBreaker(opts())
    heard: list[object] = []
    unsubscribe = b.add_listener(lambda *a: heard.append(a))
    unsubscribe()
    unsubscribe()  # idempotent
    b.force_open(0.0)
    assert heard == []


# -- registry ---------------------------------------------------------------------------------


def test_registry_creates_one_breaker_per_endpoint_on_first_use() -> None:
    reg = BreakerRegistry(opts())
    a = reg.get("10.0.0.1:11211")
    assert reg.get("10.0.0.1:11211") is a
    b = reg.get("10.0.0.2:11211")
    assert b is not a and b.name == "10.0.0.2:11211"
    assert len(reg) == 2 and list(reg) == [a, b]
    assert reg.items() == [("10.0.0.1:11211", a), ("10.0.0.2:11211", b)]
    assert "10.0.0.1:11211" in reg and "nope" not in reg


def test_registry_listeners_hear_existing_and_future_breakers() -> None:
    reg = BreakerRegistry(opts())
    old = reg.get("a")
    heard: list[tuple[str, str]] = []
    unsubscribe = reg.add_listener(lambda br, _o, new, _n: heard.append((br.name, new.value)))
    new = reg.get("b")
    old.force_open(0.0)
    new.force_open(0.0)
    unsubscribe()
    old.reset(0.0)
    assert heard == [("a", "forced_open"), ("b", "forced_open")]


def test_registry_seeded_rng_replays_jitter() -> None:
    def intervals(seed: int) -> list[float]:
        reg = BreakerRegistry(opts(jitter=0.5), rng=random.Random(seed))
        for key in ("a", "b"):
            for _ in range(4):
                fail(reg.get(key), 0.0)
        return [b.snapshot(0.0)["open_interval"] for b in reg]

    first = intervals(7)
    assert first == intervals(7)
    assert first[0] != first[1]


# -- bad input ----------------------------------------------------------------------------------


def test_bad_arguments_raise_errors_that_name_the_problem() -> None:
    b = CircuitBreaker(opts())
    with pytest.raises(TypeError, match="permit"):
        b.release(None)
    with pytest.raises(TypeError, match="permit"):
        b.on_failure("not a permit", 0.0, 0.0)
    with pytest.raises(TypeError, match="BreakerOptions"):
        CircuitBreaker({"window_size": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        b.add_listener(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        BreakerRegistry(opts()).get(3)  # type: ignore[arg-type]


def test_subclassing_is_refused_because_the_pipeline_inlines_the_fast_paths() -> None:
    with pytest.raises(TypeError, match=r"cannot be subclassed.*inlines"):

        class Mine(CircuitBreaker):  # type: ignore[misc]
            def on_success(self, permit: object, now: float, duration: float) -> None:
                pass
