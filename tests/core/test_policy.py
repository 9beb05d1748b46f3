"""Policy and guard: the pipeline around any callable, as an object or a decorator."""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from typing import TYPE_CHECKING

import pytest

from resilience.config import BreakerOptions, RetryOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.deadline import remaining
from resilience.core.fallback import Fallback
from resilience.core.policy import Policy, guard
from resilience.errors import BackendTimeoutError, CircuitOpenError
from resilience.testing.clock import FakeClock

if TYPE_CHECKING:
    from tests.core.conftest import Runner


def test_policy_calls_with_arguments_and_returns_the_result(run: Runner) -> None:
    policy = Policy("math", clock=FakeClock())
    assert run.policy(policy, pow, 2, 10) == 1024


def test_policy_retries_an_idempotent_call_on_a_transient_error(run: Runner) -> None:
    clock = FakeClock()
    policy = Policy(
        "svc",
        retry=RetryOptions(attempts=3),
        idempotent=True,
        clock=clock,
        rng=random.Random(1),
    )
    failures = [BackendTimeoutError(), BackendTimeoutError()]

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert run.policy(policy, flaky) == "ok"
    assert len(clock.sleeps) == 2


def test_policy_opens_its_breaker_and_uses_the_fallback(run: Runner) -> None:
    clock = FakeClock()
    options = BreakerOptions(minimum_calls=2, window_size=2)
    policy = Policy("svc", breaker=options, fallback=Fallback.value(None), clock=clock)

    def down() -> None:
        raise ConnectionRefusedError()

    assert [run.policy(policy, down) for _ in range(3)] == [None, None, None]
    assert policy.breaker.retry_after(clock.monotonic()) > 0


def test_policies_can_share_one_breaker() -> None:
    clock = FakeClock()
    shared = CircuitBreaker(BreakerOptions(), name="db-1")
    a = Policy("db", operation="read", breaker=shared, clock=clock)
    b = Policy("db", operation="write", breaker=shared, clock=clock)
    shared.force_open(clock.monotonic())
    for policy in (a, b):
        with pytest.raises(CircuitOpenError) as info:
            policy.call(lambda: None)
        assert info.value.endpoint == "db-1"
    assert info.value.operation == "write"


def test_decorator_keeps_the_function_name_and_signature() -> None:
    policy = Policy("svc", clock=FakeClock())

    def add(a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    guarded = policy(add)
    assert guarded(1, b=2) == 3
    assert guarded.__name__ == "add" and guarded.__doc__ == "Add."
    assert inspect.signature(guarded) == inspect.signature(add)


async def test_decorator_makes_an_async_wrapper_for_a_coroutine_function() -> None:
    @guard("svc", timeout=1.0)
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(21) == 42


def test_guard_names_the_operation_after_the_function() -> None:
    clock = FakeClock()

    @guard("svc", breaker=BreakerOptions(minimum_calls=1, window_size=1), clock=clock)
    def load_profile() -> None:
        raise ConnectionResetError()

    with pytest.raises(ConnectionResetError):
        load_profile()
    with pytest.raises(CircuitOpenError) as info:
        load_profile()
    assert info.value.operation == "load_profile"


def test_guarded_function_can_read_its_remaining_budget() -> None:
    clock = FakeClock()
    policy = Policy("svc", timeout=0.25, clock=clock)
    assert policy.call(lambda: remaining(clock)) == pytest.approx(0.25)


async def test_async_attempt_is_cancelled_when_its_budget_is_spent() -> None:
    policy = Policy("svc", timeout=0.05)
    started = time.monotonic()
    with pytest.raises(BackendTimeoutError) as info:
        await policy.acall(asyncio.sleep, 10)
    assert time.monotonic() - started < 1.0
    assert info.value.service == "svc" and info.value.elapsed is not None


async def test_async_timeouts_of_the_function_itself_are_not_relabelled() -> None:
    policy = Policy("svc", timeout=5.0)

    async def own_timeout() -> None:
        raise TimeoutError("from the function")

    with pytest.raises(TimeoutError, match="from the function") as info:
        await policy.acall(own_timeout)
    assert not isinstance(info.value, BackendTimeoutError)
