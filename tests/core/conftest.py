"""One scenario set, two pipelines: the ``run`` fixture drives `call` or `acall`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.core.breaker import CircuitBreaker
from resilience.core.pipeline import Operation, acall, call
from resilience.core.policy import Policy


class Runner:
    """Runs a plain attempt function through the sync or the async pipeline.

    The attempt is written once as a sync function of the remaining budget; in async
    mode it is awaited inside a coroutine, so the same scenario exercises `acall`.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def call(
        self,
        op: Operation,
        breaker: CircuitBreaker,
        attempt: Callable[[float], Any],
        timeout: float | None = None,
    ) -> Any:
        if self.mode == "sync":
            return call(op, breaker, attempt, timeout)

        async def attempt_async(remaining: float) -> Any:
            await asyncio.sleep(0)  # a real suspension point, as a driver would have
            return attempt(remaining)

        async def main() -> Any:
            return await acall(op, breaker, attempt_async, timeout)

        return asyncio.run(main())

    def policy(self, policy: Policy, fn: Callable[..., Any], *args: Any) -> Any:
        if self.mode == "sync":
            return policy.call(fn, *args)

        async def fn_async(*a: Any) -> Any:
            return fn(*a)

        async def main() -> Any:
            return await policy.acall(fn_async, *args)

        return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Iterator[Runner]:
    """The pipeline under test: sync ``call`` or async ``acall``."""
    yield Runner(request.param)
