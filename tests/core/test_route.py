"""``Operation.route``: a retry may go to another endpoint (the search clients' failover).

The route is asked only after a failed attempt; the retry keeps the call's deadline,
budget and backoff, each attempt's outcome goes to the breaker of the endpoint it went
to, and an open breaker on the next endpoint stops the retries before the budget is
spent. Pure logic on a fake clock; each scenario runs through `call` and `acall`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from resilience.config import BreakerOptions, RetryOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.events import Event, EventBus
from resilience.core.operation import Route
from resilience.core.pipeline import Operation, acall, call
from resilience.core.retry import RetryPolicy
from resilience.errors import BackendUnavailableError
from resilience.testing.clock import FakeClock


class Node:
    """An endpoint: its breaker, and an attempt that fails or answers its name."""

    def __init__(self, name: str, *, up: bool) -> None:
        self.breaker = CircuitBreaker(BreakerOptions(jitter=0.0), name=name)
        self.up = up
        self.calls = 0

    def attempt(self, _remaining: float) -> str:
        self.calls += 1
        if not self.up:
            raise BackendUnavailableError(f"{self.breaker.name} refused")
        return str(self.breaker.name)


def _run(mode: str, op: Operation, node: Node, nodes: list[Node]) -> Any:
    """The call through the sync or async pipeline; the route is a round robin over
    ``nodes`` that hands out attempts of the pipeline's own flavour."""
    def attempt_of(n: Node) -> Callable[[float], Any]:
        if mode == "sync":
            return n.attempt

        async def attempt(remaining: float) -> Any:
            await asyncio.sleep(0)
            return n.attempt(remaining)
        return attempt

    by_breaker = {id(n.breaker): k for k, n in enumerate(nodes)}

    def route(failed: CircuitBreaker, _attempt: Any) -> tuple[CircuitBreaker, Any]:
        nxt = nodes[(by_breaker[id(failed)] + 1) % len(nodes)]
        return nxt.breaker, attempt_of(nxt)

    if op.route is not None:
        op.route = route
    if mode == "sync":
        return call(op, node.breaker, attempt_of(node))
    return asyncio.run(acall(op, node.breaker, attempt_of(node)))


def _op(clock: FakeClock, route: Route | None, events: list[Event]) -> Operation:
    bus = EventBus()
    bus.add_listener(events.append)
    retry = RetryPolicy(RetryOptions(attempts=3, backoff=0.01, max_backoff=0.02),
                        rng=random.Random(7))
    return Operation("get", service="search", timeout=1.0, idempotent=True, retry=retry,
                     clock=clock, events=bus, route=route)


def _placeholder(failed: CircuitBreaker, attempt: Any) -> tuple[CircuitBreaker, Any]:
    raise AssertionError("replaced in _run")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_retry_goes_where_the_route_says_and_each_breaker_sees_its_attempt(
        mode: str) -> None:
    clock, events = FakeClock(), list[Event]()
    a, b = Node("a:1", up=False), Node("b:1", up=True)
    op = _op(clock, _placeholder, events)
    assert _run(mode, op, a, [a, b]) == "b:1"
    assert (a.calls, b.calls) == (1, 1)
    now = clock.monotonic()
    assert a.breaker.snapshot(now)["failures"] == 1
    assert (b.breaker.snapshot(now)["calls"], b.breaker.snapshot(now)["failures"]) == (1, 0)
    assert [e.endpoint for e in events if e.kind == "retry"] == ["b:1"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_without_a_route_the_retry_stays(mode: str) -> None:
    clock, events = FakeClock(), list[Event]()
    a, b = Node("a:1", up=False), Node("b:1", up=True)
    op = _op(clock, None, events)
    with pytest.raises(BackendUnavailableError, match="a:1"):
        _run(mode, op, a, [a, b])
    assert (a.calls, b.calls) == (3, 0)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_open_breaker_on_the_next_endpoint_ends_the_retries_unpaid(mode: str) -> None:
    clock, events = FakeClock(), list[Event]()
    a, b = Node("a:1", up=False), Node("b:1", up=True)
    now = clock.monotonic()
    for _ in range(50):  # opened by failures (OPEN knows how long it stays open)
        permit = b.breaker.acquire(now)
        if permit is None:
            break
        b.breaker.on_failure(permit, now, 0.0)
    assert b.breaker.retry_after(now) > 0
    op = _op(clock, _placeholder, events)
    assert op.budget is not None
    before = op.budget.balance(clock.monotonic())
    with pytest.raises(BackendUnavailableError, match="a:1"):
        _run(mode, op, a, [a, b])
    assert (a.calls, b.calls) == (1, 0)
    # The call's own deposit only: no retry was withdrawn.
    assert op.budget.balance(clock.monotonic()) == pytest.approx(before + 0.2)
    failed = [e for e in events if e.kind == "call_failed"]
    assert [e.endpoint for e in failed] == ["a:1"]  # the last endpoint tried, not b


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_first_attempt_that_succeeds_never_asks_the_route(mode: str) -> None:
    clock, events = FakeClock(), list[Event]()
    a = Node("a:1", up=True)
    op = _op(clock, _placeholder, events)
    calls: list[CircuitBreaker] = []

    def route(failed: CircuitBreaker, attempt: Any) -> tuple[CircuitBreaker, Any]:
        calls.append(failed)
        return failed, attempt

    op.route = route
    if mode == "sync":
        assert call(op, a.breaker, a.attempt) == "a:1"
    else:
        async def attempt(remaining: float) -> str:
            return a.attempt(remaining)
        assert asyncio.run(acall(op, a.breaker, attempt)) == "a:1"
    assert calls == []
