"""Pipeline scenarios, each run through both the sync `call` and the async `acall`."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import pytest

from resilience.config import BreakerOptions, BulkheadOptions, RetryOptions
from resilience.core.breaker import BreakerState, CircuitBreaker
from resilience.core.bulkhead import Bulkhead
from resilience.core.deadline import current_deadline, deadline
from resilience.core.events import Event, EventBus
from resilience.core.fallback import Fallback
from resilience.core.pipeline import Operation, call
from resilience.core.retry import RetryPolicy
from resilience.errors import (
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
)
from resilience.testing.clock import FakeClock

if TYPE_CHECKING:
    from tests.core.conftest import Runner


def make_op(clock: FakeClock, **kw: Any) -> Operation:
    kw.setdefault("service", "memcache")
    kw.setdefault("timeout", 0.1)
    return Operation("get", clock=clock, **kw)


def make_breaker(**kw: Any) -> CircuitBreaker:
    kw.setdefault("minimum_calls", 2)
    kw.setdefault("window_size", 2)
    return CircuitBreaker(BreakerOptions(**kw), name="10.0.0.1:11211", rng=random.Random(1))


def retry(attempts: int = 3, **kw: Any) -> RetryPolicy:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.02)
    kw.setdefault("budget_min_per_second", 100.0)
    return RetryPolicy(RetryOptions(attempts=attempts, **kw), rng=random.Random(7))


class Script:
    """An attempt that plays outcomes in turn (exception instances are raised)."""

    def __init__(self, clock: FakeClock, *outcomes: Any, takes: float = 0.0) -> None:
        self.clock, self.outcomes, self.takes = clock, list(outcomes), takes
        self.budgets: list[float] = []
        self.deadlines: list[float | None] = []

    def __call__(self, remaining: float) -> Any:
        self.budgets.append(remaining)
        self.deadlines.append(current_deadline())
        self.clock.advance(self.takes)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_success_returns_the_value_and_hands_the_full_budget(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, "v")
    assert run.call(make_op(clock), make_breaker(), attempt) == "v"
    assert attempt.budgets == [pytest.approx(0.1)]


def test_attempt_sees_its_deadline_as_the_ambient_one(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, "v")
    run.call(make_op(clock), make_breaker(), attempt)
    assert attempt.deadlines == [pytest.approx(clock.monotonic() + 0.1)]
    assert current_deadline() is None


def test_an_attempt_that_makes_no_nested_call_runs_without_setting_it(run: Runner) -> None:
    """``Operation(ambient=False)``: the budget still reaches the attempt, but the
    ambient deadline is left as it was (the caller's, or none); a retry sets it."""
    clock = FakeClock()
    attempt = Script(clock, "v")
    run.call(make_op(clock, ambient=False), make_breaker(), attempt, timeout=0.5)
    assert attempt.budgets == [pytest.approx(0.5)] and attempt.deadlines == [None]
    with deadline(0.3, clock=clock):
        run.call(make_op(clock, ambient=False), make_breaker(), attempt, timeout=0.5)
    assert attempt.deadlines[1] == pytest.approx(clock.monotonic() + 0.3)
    retried = Script(clock, BackendUnavailableError("x"), "v")
    run.call(make_op(clock, ambient=False, idempotent=True, retry=retry(2)),
             make_breaker(), retried, timeout=0.5)
    assert retried.deadlines[0] is None and retried.deadlines[1] is not None


def test_ambient_deadline_shrinks_the_budget(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, "v")
    with deadline(0.03, clock=clock):
        run.call(make_op(clock), make_breaker(), attempt)
    assert attempt.budgets == [pytest.approx(0.03)]


def test_explicit_timeout_overrides_the_operation_default(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, "v")
    run.call(make_op(clock), make_breaker(), attempt, timeout=0.5)
    assert attempt.budgets == [pytest.approx(0.5)]


def test_spent_deadline_rejects_without_calling_the_attempt(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, "v")
    with deadline(0.0, clock=clock), pytest.raises(DeadlineExceededError) as info:
        run.call(make_op(clock), make_breaker(), attempt)
    assert attempt.budgets == []
    err = info.value
    assert (err.service, err.operation, err.endpoint) == ("memcache", "get", "10.0.0.1:11211")
    assert err.elapsed == 0.0


def test_open_breaker_rejects_without_io_and_says_when_to_retry(run: Runner) -> None:
    clock = FakeClock()
    breaker = make_breaker()
    breaker.force_open(clock.monotonic())
    attempt = Script(clock, "v")
    with pytest.raises(CircuitOpenError) as info:
        run.call(make_op(clock), breaker, attempt)
    assert attempt.budgets == []
    assert info.value.endpoint == "10.0.0.1:11211"


def test_failures_open_the_breaker_then_calls_are_rejected(run: Runner) -> None:
    clock = FakeClock()
    breaker, op = make_breaker(), make_op(clock)
    attempt = Script(clock, BackendUnavailableError("refused"))
    for _ in range(2):
        with pytest.raises(BackendUnavailableError):
            run.call(op, breaker, attempt)
    assert breaker.state(clock.monotonic()) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        run.call(op, breaker, attempt)
    assert info.value.retry_after > 0
    assert len(attempt.budgets) == 2


def test_backend_errors_get_the_call_context_filled_in(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, BackendTimeoutError("read timed out"), takes=0.02)
    with pytest.raises(BackendTimeoutError) as info:
        run.call(make_op(clock), make_breaker(), attempt)
    err = info.value
    assert (err.service, err.operation, err.endpoint) == ("memcache", "get", "10.0.0.1:11211")
    assert err.elapsed == pytest.approx(0.02)


def test_transient_failure_is_retried_after_a_bounded_backoff(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, BackendTimeoutError(), "v")
    op = make_op(clock, idempotent=True, retry=retry())
    assert run.call(op, make_breaker(minimum_calls=5, window_size=5), attempt) == "v"
    assert len(attempt.budgets) == 2
    assert len(clock.sleeps) == 1 and 0.0 <= clock.sleeps[0] <= 0.01


def test_non_idempotent_operation_is_never_retried(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, BackendTimeoutError(), "v")
    op = make_op(clock, idempotent=False, retry=retry())
    with pytest.raises(BackendTimeoutError):
        run.call(op, make_breaker(), attempt)
    assert len(attempt.budgets) == 1


def test_protocol_errors_are_not_retried(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, BackendProtocolError("garbage"), "v")
    with pytest.raises(BackendProtocolError):
        run.call(make_op(clock, idempotent=True, retry=retry()), make_breaker(), attempt)
    assert len(attempt.budgets) == 1


def test_retry_stops_at_the_attempt_limit(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, BackendUnavailableError())
    op = make_op(clock, idempotent=True, retry=retry(attempts=3), timeout=10.0)
    with pytest.raises(BackendUnavailableError):
        run.call(op, make_breaker(minimum_calls=10, window_size=10), attempt)
    assert len(attempt.budgets) == 3


def test_retry_never_sleeps_past_the_deadline(run: Runner) -> None:
    clock = FakeClock()
    start = clock.monotonic()
    attempt = Script(clock, BackendTimeoutError(), takes=0.03)
    op = make_op(clock, idempotent=True, retry=retry(attempts=50, backoff=0.02, max_backoff=0.05))
    with pytest.raises(BackendTimeoutError):
        run.call(op, make_breaker(minimum_calls=100, window_size=100), attempt)
    assert clock.monotonic() - start <= 0.1 + 0.03  # the last attempt may overrun, no sleep does
    assert all(b >= 0.001 for b in attempt.budgets)  # no attempt started without room
    assert len(attempt.budgets) >= 2


def test_retry_is_not_started_when_it_cannot_fit(run: Runner) -> None:
    clock = FakeClock()
    attempt = Script(clock, BackendTimeoutError(), "v", takes=0.0995)
    op = make_op(clock, idempotent=True, retry=retry())
    with pytest.raises(BackendTimeoutError):
        run.call(op, make_breaker(), attempt)
    assert len(attempt.budgets) == 1 and clock.sleeps == []


def test_retry_budget_limits_a_storm(run: Runner) -> None:
    clock = FakeClock()
    policy = retry(attempts=3, budget_ratio=0.1, budget_min_per_second=0.0)
    op = make_op(clock, idempotent=True, retry=policy)
    breaker = make_breaker(enabled=False)
    attempt = Script(clock, BackendUnavailableError())
    for _ in range(100):
        with pytest.raises(BackendUnavailableError):
            run.call(op, breaker, attempt)
    # 100 calls deposit 100; 10% may be retried: far from the 200 retries of a storm.
    assert 100 < len(attempt.budgets) <= 110


def test_a_breaker_opened_by_the_failure_ends_the_retries_with_that_failure(
    run: Runner,
) -> None:
    clock = FakeClock()
    breaker = make_breaker(minimum_calls=1, window_size=1)
    attempt = Script(clock, BackendTimeoutError())
    with pytest.raises(BackendTimeoutError):  # it did I/O: not a CircuitOpenError
        run.call(make_op(clock, idempotent=True, retry=retry()), breaker, attempt)
    assert len(attempt.budgets) == 1 and clock.sleeps == []


def test_fallback_value_replaces_a_rejection(run: Runner) -> None:
    clock = FakeClock()
    breaker = make_breaker()
    breaker.force_open(clock.monotonic())
    op = make_op(clock, fallback=Fallback.value(None))
    assert run.call(op, breaker, Script(clock, "v")) is None


def test_fallback_callable_gets_the_failure_which_is_still_recorded(run: Runner) -> None:
    clock = FakeClock()
    seen: list[BaseException] = []
    bus = EventBus()
    events: list[Event] = []
    bus.add_listener(events.append)

    def stale(exc: BaseException) -> str:
        seen.append(exc)
        return "stale"

    op = make_op(clock, fallback=stale, events=bus)
    breaker = make_breaker()
    for _ in range(2):
        assert run.call(op, breaker, Script(clock, BackendUnavailableError())) == "stale"
    assert [type(e) for e in seen] == [BackendUnavailableError] * 2
    assert breaker.state(clock.monotonic()) is BreakerState.OPEN
    kinds = [e.kind for e in events]
    assert kinds.count("failure") == 2 and kinds.count("fallback_used") == 2


def test_application_outcome_passes_through_and_counts_as_success(run: Runner) -> None:
    clock = FakeClock()
    breaker = make_breaker()
    op = make_op(clock, is_failure=lambda e: not isinstance(e, KeyError), fallback="fb")
    for _ in range(3):
        with pytest.raises(KeyError):
            run.call(op, breaker, Script(clock, KeyError("miss")))
    assert breaker.state(clock.monotonic()) is BreakerState.CLOSED


def test_foreign_exceptions_count_as_failures_and_are_raised_unchanged(run: Runner) -> None:
    clock = FakeClock()
    breaker = make_breaker()
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            run.call(make_op(clock), breaker, Script(clock, ConnectionResetError()))
    assert breaker.state(clock.monotonic()) is BreakerState.OPEN


def test_failure_results_are_recorded_but_returned(run: Runner) -> None:
    clock = FakeClock()
    breaker = make_breaker()
    op = make_op(clock, is_failure_result=lambda r: r == 503)
    assert [run.call(op, breaker, Script(clock, 503)) for _ in range(2)] == [503, 503]
    assert breaker.state(clock.monotonic()) is BreakerState.OPEN


def test_cancellation_frees_the_probe_and_records_nothing(run: Runner) -> None:
    clock = FakeClock()
    breaker = make_breaker(open_duration=1.0, jitter=0.0)
    op = make_op(clock)
    for _ in range(2):
        with pytest.raises(BackendUnavailableError):
            run.call(op, breaker, Script(clock, BackendUnavailableError()))
    clock.advance(1.5)
    cancel: BaseException = KeyboardInterrupt() if run.mode == "sync" else asyncio.CancelledError()
    with pytest.raises(type(cancel)):
        run.call(op, breaker, Script(clock, cancel))
    assert breaker.state(clock.monotonic()) is BreakerState.HALF_OPEN
    assert run.call(op, breaker, Script(clock, "v")) == "v"  # the probe slot was given back
    assert breaker.state(clock.monotonic()) is BreakerState.CLOSED


def test_full_bulkhead_rejects_a_nested_call_without_io(run: Runner) -> None:
    clock = FakeClock()
    op = make_op(clock, bulkhead=Bulkhead(BulkheadOptions(max_concurrent=1)))
    breaker = make_breaker()
    inner = Script(clock, "inner")

    def outer(_remaining: float) -> Any:
        with pytest.raises(BulkheadFullError) as info:
            call(op, breaker, inner)
        return info.value.operation

    assert run.call(op, breaker, outer) == "get"
    assert inner.budgets == []
    assert op.bulkhead is not None and op.bulkhead.in_use == 0


def test_no_event_is_built_without_a_listener(run: Runner) -> None:
    clock = FakeClock()
    built: list[str] = []

    def factory(kind: str, *args: Any, **kwargs: Any) -> Event:
        built.append(kind)
        return Event(kind, *args, **kwargs)

    bus = EventBus(successes=True, factory=factory)
    breaker = make_breaker()
    op = make_op(clock, events=bus, idempotent=True, retry=retry(), fallback="fb")
    for outcome in ("v", BackendTimeoutError(), BackendTimeoutError(), "v"):
        run.call(op, breaker, Script(clock, outcome))
    assert built == []
    seen: list[Event] = []
    bus.add_listener(seen.append)
    run.call(op, breaker, Script(clock, "v"))
    assert built and {e.kind for e in seen} >= {"rejected", "fallback_used"}
    rejected = next(e for e in seen if e.kind == "rejected")
    assert rejected.reason == "circuit_open" and rejected.endpoint == "10.0.0.1:11211"


def test_slow_successes_open_the_breaker_fast_ones_do_not(run: Runner) -> None:
    """Successes longer than the slow-call duration count as slow (the breaker opens at
    the slow-call rate); shorter ones count as plain successes."""
    clock = FakeClock()
    op = make_op(clock, timeout=1.0)
    fast = make_breaker(slow_call_duration=0.05, slow_call_rate=1.0)
    for _ in range(4):
        run.call(op, fast, Script(clock, "v", takes=0.04))
    assert fast.state(clock.monotonic()) is BreakerState.CLOSED
    slow = make_breaker(slow_call_duration=0.05, slow_call_rate=1.0)
    for _ in range(2):
        assert run.call(op, slow, Script(clock, "v", takes=0.06)) == "v"
    assert slow.state(clock.monotonic()) is BreakerState.OPEN
