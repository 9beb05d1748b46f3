"""A call that did I/O raises its backend error, never a rejection.

`CircuitOpenError` (and every `RejectedError`) promises that no I/O was attempted. When
a retry is refused (the breaker is open, or the deadline passed during the backoff) the
retries end and the caller gets the last real failure, with its cause and context; the
refusal is not recorded as a failure. Each scenario runs through `call` and `acall`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from resilience.config import BreakerOptions, RetryOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.events import Event, EventBus
from resilience.core.pipeline import Operation
from resilience.core.policy import Policy
from resilience.core.retry import RetryPolicy
from resilience.errors import BackendUnavailableError
from resilience.testing.clock import FakeClock

if TYPE_CHECKING:
    from tests.core.conftest import Runner


class Refused:
    """An attempt whose server refuses the connection, as a wrapper reports it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _remaining: float) -> Any:
        self.calls += 1
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as exc:
            raise BackendUnavailableError("connect to 10.0.0.1:11211 refused") from exc


class HookedClock(FakeClock):
    """A fake clock that runs ``during_sleep`` inside every backoff sleep: what other
    threads (or a late wake-up) do while the call waits."""

    def __init__(self) -> None:
        super().__init__()
        self.during_sleep: Callable[[], None] = lambda: None

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.during_sleep()


def setup(clock: FakeClock, **breaker: Any) -> tuple[Operation, CircuitBreaker, list[Event]]:
    breaker.setdefault("jitter", 0.0)
    b = CircuitBreaker(BreakerOptions(open_duration=1.0, **breaker), name="10.0.0.1:11211")
    bus = EventBus()
    events: list[Event] = []
    bus.add_listener(events.append)
    retry = RetryPolicy(
        RetryOptions(attempts=3, backoff=0.01, max_backoff=0.02), rng=random.Random(7)
    )
    op = Operation(
        "get",
        service="memcache",
        timeout=0.1,
        idempotent=True,
        retry=retry,
        clock=clock,
        events=bus,
    )
    return op, b, events


def assert_refused_error(err: BaseException, elapsed_at_most: float) -> None:
    assert type(err) is BackendUnavailableError
    assert isinstance(err.__cause__, ConnectionRefusedError)
    assert (err.service, err.operation, err.endpoint) == ("memcache", "get", "10.0.0.1:11211")
    assert err.elapsed is not None and 0.0 <= err.elapsed <= elapsed_at_most


def test_a_failed_half_open_probe_raises_its_backend_error(run: Runner) -> None:
    clock = FakeClock()
    op, breaker, events = setup(clock, minimum_calls=1, window_size=1)
    attempt = Refused()
    with pytest.raises(BackendUnavailableError):
        run.call(op, breaker, attempt)  # opens the breaker
    clock.advance(1.5)  # the open interval is over: the next call is the probe
    events.clear()
    attempt.calls = 0
    with pytest.raises(BackendUnavailableError) as info:
        run.call(op, breaker, attempt)
    assert_refused_error(info.value, elapsed_at_most=0.1)
    # The probe's failure re-opened the breaker: no backoff sleep into a sure rejection.
    assert attempt.calls == 1 and clock.sleeps == []
    assert [e.kind for e in events] == ["failure", "call_failed"]
    snap = breaker.snapshot(clock.monotonic())
    assert snap["state"] == "open" and snap["next_open_interval"] == 2.0  # grew once


def test_a_retry_refused_by_the_breaker_after_its_backoff_raises_the_last_failure(
    run: Runner,
) -> None:
    clock = HookedClock()
    op, breaker, events = setup(clock, minimum_calls=2, window_size=2)

    def other_callers_fail() -> None:  # they open the breaker while this call sleeps
        now = clock.monotonic()
        breaker.on_failure(breaker.acquire(now), now, 0.0)

    clock.during_sleep = other_callers_fail
    attempt = Refused()
    with pytest.raises(BackendUnavailableError) as info:
        run.call(op, breaker, attempt)
    assert_refused_error(info.value, elapsed_at_most=0.1)
    assert attempt.calls == 1 and len(clock.sleeps) == 1
    assert [e.kind for e in events] == ["failure", "retry", "rejected", "call_failed"]
    assert events[-2].reason == "circuit_open"
    assert events[-2].outcome is None and events[-1].outcome == "failure"
    # The refusal recorded nothing: the window holds the two real failures only.
    snap = breaker.snapshot(clock.monotonic())
    assert snap["state"] == "open" and (snap["calls"], snap["failures"]) == (2, 2)


def test_a_retry_past_the_deadline_raises_the_last_failure(run: Runner) -> None:
    clock = HookedClock()
    op, breaker, events = setup(clock, minimum_calls=10, window_size=10)
    clock.during_sleep = lambda: clock.advance(0.2)  # woke up late, past the deadline
    attempt = Refused()
    with pytest.raises(BackendUnavailableError) as info:
        run.call(op, breaker, attempt)
    assert_refused_error(info.value, elapsed_at_most=0.1)
    assert attempt.calls == 1
    assert [e.kind for e in events] == ["failure", "retry", "rejected", "call_failed"]
    assert events[-2].reason == "deadline"
    assert breaker.snapshot(clock.monotonic())["failures"] == 1


def test_a_policy_hands_the_probe_failure_to_its_fallback(run: Runner) -> None:
    clock = FakeClock()
    policy = Policy(
        "memcache",
        timeout=0.1,
        retry=RetryOptions(attempts=3, backoff=0.01, max_backoff=0.02),
        idempotent=True,
        breaker=BreakerOptions(minimum_calls=1, window_size=1, open_duration=1.0, jitter=0.0),
        fallback=lambda exc: exc,
        clock=clock,
        rng=random.Random(7),
    )
    attempt = Refused()
    assert type(run.policy(policy, attempt, 0.1)) is BackendUnavailableError
    clock.advance(1.5)
    err = run.policy(policy, attempt, 0.1)
    assert type(err) is BackendUnavailableError
    assert isinstance(err.__cause__, ConnectionRefusedError)
    assert attempt.calls == 2 and clock.sleeps == []
    # No I/O while it is open: now, and only now, the fallback gets the rejection.
    assert type(run.policy(policy, attempt, 0.1)).__name__ == "CircuitOpenError"
    assert attempt.calls == 2
