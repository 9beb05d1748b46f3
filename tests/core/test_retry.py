"""Retry policy pieces: backoff bounds, the retry budget, and option validation."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.config import RetryOptions
from resilience.core.retry import RetryBudget, RetryPolicy, default_is_transient
from resilience.errors import (
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
)


def test_only_backend_timeouts_and_unavailability_are_transient_by_default() -> None:
    assert default_is_transient(BackendTimeoutError())
    assert default_is_transient(BackendUnavailableError())
    for exc in (
        BackendProtocolError(),
        CircuitOpenError(),
        BulkheadFullError(),
        DeadlineExceededError(),
        TimeoutError(),
    ):
        assert not default_is_transient(exc)


def test_backoff_is_full_jitter_capped_exponential() -> None:
    policy = RetryPolicy(
        RetryOptions(backoff=0.01, max_backoff=0.05), rng=random.Random(3), budget=False
    )
    for n, cap in ((1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (10, 0.05)):
        delays = [policy.delay(n) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # the whole range is used, not a fixed step


def test_same_seed_gives_the_same_backoffs() -> None:
    a, b = (RetryPolicy(RetryOptions(), rng=random.Random(9), budget=False) for _ in range(2))
    assert [a.delay(n) for n in range(1, 6)] == [b.delay(n) for n in range(1, 6)]


def test_budget_allows_its_floor_with_no_traffic() -> None:
    budget = RetryBudget(
        RetryOptions(budget_ratio=0.2, budget_min_per_second=1.0, budget_window=10.0)
    )
    assert sum(budget.try_withdraw(100.0) for _ in range(20)) == 10


def test_budget_allows_a_share_of_recent_calls() -> None:
    budget = RetryBudget(
        RetryOptions(budget_ratio=0.2, budget_min_per_second=0.0, budget_window=10.0)
    )
    for i in range(100):
        budget.deposit(100.0 + i * 0.01)
    assert sum(budget.try_withdraw(101.0) for _ in range(50)) == 20
    assert budget.balance(101.0) == pytest.approx(0.0)


def test_old_calls_and_retries_leave_the_window() -> None:
    budget = RetryBudget(
        RetryOptions(budget_ratio=0.5, budget_min_per_second=0.0, budget_window=1.0)
    )
    for _ in range(10):
        budget.deposit(100.0)
    assert sum(budget.try_withdraw(100.0) for _ in range(10)) == 5
    assert not budget.try_withdraw(100.5)
    assert budget.balance(102.0) == 0.0  # deposits gone too: no credit from the past
    for _ in range(4):
        budget.deposit(102.0)
    assert sum(budget.try_withdraw(102.0) for _ in range(10)) == 2


def test_options_of_another_kind_are_refused() -> None:
    with pytest.raises(TypeError, match="RetryOptions"):
        RetryPolicy(object())  # type: ignore[arg-type]


def test_policy_without_a_budget_has_none() -> None:
    assert RetryPolicy(RetryOptions(), budget=False).budget is None
    shared = RetryBudget(RetryOptions())
    assert RetryPolicy(RetryOptions(), budget=shared).budget is shared


def test_budget_is_never_overspent_under_thread_contention() -> None:
    budget = RetryBudget(
        RetryOptions(budget_ratio=0.0, budget_min_per_second=10.0, budget_window=10.0)
    )
    granted: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(timeout=5)
        granted.extend(budget.try_withdraw(100.0) for _ in range(100))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sum(granted) == 100 and len(granted) == 800


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 0.5), st.sampled_from(["deposit", "withdraw"])),
        max_size=200,
    )
)
def test_withdrawals_stay_within_the_budget_of_their_window(
    steps: list[tuple[float, str]],
) -> None:
    # Reference model: the same ten 0.1 s buckets over a 1 s window, counted exactly.
    options = RetryOptions(budget_ratio=0.5, budget_min_per_second=2.0, budget_window=1.0)
    budget = RetryBudget(options)
    now = 100.0
    events: list[tuple[int, str]] = []  # (bucket, kind)
    for gap, kind in steps:
        now += gap
        bucket = int(now / 0.1)
        if kind == "deposit":
            budget.deposit(now)
            events.append((bucket, kind))
            continue
        recent = [k for b, k in events if b > bucket - 10]
        allowed = 2.0 + 0.5 * recent.count("deposit") - recent.count("withdraw")
        assert budget.try_withdraw(now) == (allowed >= 1)
        if allowed >= 1:
            events.append((bucket, kind))
