"""`Policy` and `guard`: the pipeline for service code, around any callable.

A policy is one operation against one dependency, with its own breaker::

    payments = resilience.Policy("payments", timeout=0.2, retry=RetryOptions(attempts=3),
                                 idempotent=True, fallback=None)
    payments.call(client.charge, order)          # sync
    await payments.acall(aclient.charge, order)  # async

    @resilience.guard("profiles", timeout=0.1, fallback=Fallback.value(None))
    def load_profile(user_id: int) -> Profile | None: ...

As a decorator it decides sync or async once, when decorating (coroutine functions get
an async wrapper), and keeps the signature (ParamSpec).

Bounding the call. The guarded function does not receive the remaining budget; the
ambient deadline is set during each attempt, so it (and any guarded call nested in it)
can read `resilience.remaining()`. An async attempt is also cancelled when its budget
runs out (``asyncio.timeout``; ``cancel_at_deadline=False`` turns that off, saving about
6 µs a call: benchmarks/results/overhead.md) and the timeout counts as a
`BackendTimeoutError`: transient, so it is retried when the policy retries. A sync
function cannot be interrupted safely: it must bound its own I/O (pass ``remaining()``
to its client's timeout).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from resilience.config import BreakerOptions, BulkheadOptions, RetryOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.bulkhead import Bulkhead, make_bulkhead
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.pipeline import Operation, acall, call
from resilience.core.retry import RetryPolicy, default_is_transient
from resilience.errors import BackendTimeoutError

__all__ = ["Policy", "guard"]

P = ParamSpec("P")
T = TypeVar("T")


class Policy:
    """Deadline, bulkhead, breaker, retry and fallback around calls to one dependency.

    Args:
        service: the dependency's name, in errors and events.
        operation: the operation's name (default: the decorated function's name, or
            ``"call"``).
        timeout: budget of one call in seconds, clamped to any ambient deadline.
        retry: `RetryOptions` (or a shared `RetryPolicy`); None: no retry.
        breaker: `BreakerOptions`, or a `CircuitBreaker` to share; None: default options.
            ``BreakerOptions(enabled=False)`` turns it off.
        bulkhead: `BulkheadOptions` or a shared `Bulkhead`; None: no limit.
        fallback: None, a `Fallback`, a callable ``f(exc)``, or a plain value. Use
            ``Fallback.value(None)`` to fall back to None.
        idempotent: whether failed calls may be retried at all.
        is_failure: ``f(exc) -> False`` for exceptions that are normal outcomes
            (not recorded as failures, never retried nor replaced by the fallback).
        is_failure_result: ``f(result) -> True`` for results that count as failures.
        is_transient: which failures are retried (default: backend timeouts and
            unavailability; give your own for non-wrapper exceptions). Ignored when
            ``retry`` is a `RetryPolicy`, which carries its own.
        events: an `EventBus` to share; a fresh one by default (see ``.events``).
        clock: time source (inject a FakeClock in tests).
        rng: randomness for backoff and open-interval jitter.
        cancel_at_deadline: cancel an async attempt when its budget is spent (only
            with the system clock: a fake clock's seconds mean nothing to the loop).

    Raises:
        ConfigError: an option is out of range (names it).
    """

    __slots__ = ("_cancel", "_op", "breaker", "events")

    def __init__(
        self,
        service: str,
        *,
        operation: str = "call",
        timeout: float = 1.0,
        retry: RetryOptions | RetryPolicy | None = None,
        breaker: BreakerOptions | CircuitBreaker | None = None,
        bulkhead: BulkheadOptions | Bulkhead | None = None,
        fallback: object = None,
        idempotent: bool = False,
        is_failure: Callable[[Exception], bool] | None = None,
        is_failure_result: Callable[[Any], bool] | None = None,
        is_transient: Callable[[BaseException], bool] = default_is_transient,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        cancel_at_deadline: bool = True,
    ) -> None:
        if isinstance(retry, RetryOptions):
            retry = RetryPolicy(retry, is_transient=is_transient, rng=rng)
        if not isinstance(breaker, CircuitBreaker):
            breaker = CircuitBreaker(breaker or BreakerOptions(), name=service, rng=rng)
        if not isinstance(bulkhead, Bulkhead):
            bulkhead = make_bulkhead(bulkhead)
        self.events = events if events is not None else EventBus()
        self.breaker = breaker
        self._op = Operation(
            operation,
            service=service,
            timeout=timeout,
            idempotent=idempotent,
            retry=retry,
            bulkhead=bulkhead,
            events=self.events,
            fallback=fallback,
            endpoint=service,
            clock=clock,
            is_failure=is_failure,
            is_failure_result=is_failure_result,
        )
        self.events.watch_breaker(breaker, service, operation)
        self._cancel = cancel_at_deadline and clock is SYSTEM_CLOCK

    @property
    def operation(self) -> Operation:
        """The precomputed operation (for `resilience.core.pipeline.call`)."""
        return self._op

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` through the pipeline.

        Raises:
            RejectedError: the call was refused before running (and no fallback).
            Exception: what ``fn`` raised last (and no fallback).
        """
        return call(self._op, self.breaker, lambda _budget: fn(*args, **kwargs))

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` through the pipeline, without blocking the loop."""
        if self._cancel:
            return await acall(
                self._op, self.breaker, lambda budget: _bounded(budget, fn, *args, **kwargs)
            )
        return await acall(self._op, self.breaker, lambda _budget: fn(*args, **kwargs))

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn``: every call goes through this policy (sync or async, decided now)."""
        import inspect  # decoration time only; a large import

        op, breaker = self._op, self.breaker
        if inspect.iscoroutinefunction(fn):
            if self._cancel:

                @functools.wraps(fn)
                async def guarded_bounded(*args: P.args, **kwargs: P.kwargs) -> Any:
                    return await acall(
                        op, breaker, lambda budget: _bounded(budget, fn, *args, **kwargs)
                    )

                return guarded_bounded

            @functools.wraps(fn)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await acall(op, breaker, lambda _budget: fn(*args, **kwargs))

            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(op, breaker, lambda _budget: fn(*args, **kwargs))

        return guarded

    def __repr__(self) -> str:
        return (
            f"Policy({self._op.service!r}, operation={self._op.name!r}, breaker={self.breaker!r})"
        )


async def _bounded(
    budget: float, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    # One async attempt, cancelled when its budget is spent.
    import asyncio

    timeout = asyncio.timeout(budget)
    try:
        async with timeout:
            return await fn(*args, **kwargs)
    except TimeoutError as exc:
        if timeout.expired():
            raise BackendTimeoutError(f"no answer within {budget * 1000:.0f} ms") from exc
        raise


def guard(
    service: str, *, operation: str | None = None, **options: Any
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator factory: ``@guard("profiles", timeout=0.1)`` = ``@Policy(...)`` with the
    operation named after the function. Takes the keyword arguments of `Policy`."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        name = operation if operation else str(getattr(fn, "__name__", "call"))
        return Policy(service, operation=name, **options)(fn)

    return decorate
