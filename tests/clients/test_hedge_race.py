"""The race of a hedged read (resilience/clients/_hedge.py) with plain callables.

The clients' tests run it against real servers (tests/clients/memcache/test_hedge.py,
tests/clients/search/test_hedge.py); these pin the outcomes that a healthy server
rarely produces: one attempt failing, both failing, cancellation of a blocked one.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from resilience.clients._hedge import (
    HedgeCancelled,
    Token,
    acall_hedged,
    call_hedged,
    guard,
)
from resilience.config import HedgeOptions
from resilience.core.events import EventBus
from resilience.core.hedge import HedgePolicy
from resilience.errors import BackendTimeoutError, BackendUnavailableError

pytestmark = pytest.mark.timeout(30)


def _policy() -> HedgePolicy:
    return HedgePolicy(HedgeOptions(delay=0.02, budget_ratio=1.0))


def _race(first: object, second: object) -> object:
    return call_hedged(_policy(), first, second, time.monotonic() + 2.0,  # type: ignore[arg-type]
                       EventBus(), "svc", "get", "e")


def test_token_runs_its_abort_once_bound_or_at_once_if_already_cancelled() -> None:
    calls: list[str] = []
    t = Token()
    assert t.bind(lambda: calls.append("a")) is False
    t.cancel()
    assert calls == ["a"] and t.bind(None) is True
    late = Token()
    late.cancel()
    assert late.bind(lambda: calls.append("b")) is True
    assert calls == ["a", "b"]


def test_guard_turns_a_cancelled_call_into_hedge_cancelled() -> None:
    t = Token()
    blocked = threading.Event()

    class Sock:  # what the abort shuts down: here it wakes the blocked call
        def shutdown(self, how: int) -> None:
            blocked.set()

    def fn(conn: object) -> str:
        blocked.wait(5.0)
        raise ConnectionError("shut down")

    threading.Timer(0.05, t.cancel).start()
    began = time.monotonic()
    with pytest.raises(HedgeCancelled):
        guard(t, fn, lambda conn: Sock())(object())
    assert time.monotonic() - began < 2.0  # woken by the abort, not by its own timeout


def test_the_hedge_answers_when_the_first_attempt_fails_after_it_went_out() -> None:
    def first(token: Token) -> str:
        time.sleep(0.1)
        raise BackendUnavailableError("first lost")

    def second(token: Token) -> str:
        return "hedged"

    assert _race(first, second) == "hedged"


def test_when_both_fail_the_first_attempts_error_is_raised() -> None:
    def first(token: Token) -> str:
        time.sleep(0.1)
        raise BackendUnavailableError("first")

    def second(token: Token) -> str:
        raise BackendTimeoutError("second")

    with pytest.raises(BackendUnavailableError, match="first"):
        _race(first, second)


def test_a_first_attempt_failing_before_the_delay_sends_no_hedge() -> None:
    policy = _policy()
    sent: list[str] = []

    def first(token: Token) -> str:
        raise BackendUnavailableError("at once")

    def second(token: Token) -> str:
        sent.append("hedge")
        return "never"

    with pytest.raises(BackendUnavailableError):
        call_hedged(policy, first, second, time.monotonic() + 2.0, EventBus(), "s", "get", "e")
    time.sleep(0.05)  # past the hedge instant: the cancelled timer entry must not fire
    assert sent == [] and policy.sent == 0


def test_async_both_fail_raises_the_first_and_cancels_nothing_left() -> None:
    async def first(token: Token) -> str:
        await asyncio.sleep(0.1)
        raise BackendUnavailableError("first")

    async def second(token: Token) -> str:
        raise BackendTimeoutError("second")

    async def main() -> None:
        with pytest.raises(BackendUnavailableError, match="first"):
            await acall_hedged(_policy(), first, second, time.monotonic() + 2.0, EventBus(),
                               "s", "get", "e")

    asyncio.run(main())


def test_async_loser_is_cancelled_and_its_token_too() -> None:
    cancelled: list[bool] = []
    token_seen: list[Token] = []

    async def first(token: Token) -> str:
        token_seen.append(token)
        try:
            await asyncio.sleep(5.0)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "slow"

    async def second(token: Token) -> str:
        return "fast"

    async def main() -> str:
        result = await acall_hedged(_policy(), first, second, time.monotonic() + 2.0,
                                    EventBus(), "s", "get", "e")
        await asyncio.sleep(0.01)  # let the cancellation land
        return result

    assert asyncio.run(main()) == "fast"
    assert cancelled == [True] and token_seen[0].cancelled
