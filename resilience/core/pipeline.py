"""The pipeline: the one place where a guarded call is performed (sync `call`, async `acall`).

Order of DESIGN.md "What a call does"::

    1 deadline   min(timeout, ambient deadline); spent -> DeadlineExceededError, no I/O
    2 bulkhead   no permit within min(max_wait, remaining) -> BulkheadFullError, no I/O
    3 breaker    open -> CircuitOpenError(retry_after), no I/O
    4 attempt    attempt(remaining seconds); the ambient deadline is set for nested calls
    5 record     outcome into the breaker (its slow-call rule sees the duration)
    6 retry      idempotent + transient + attempts left + fits the deadline + budget:
                 jittered backoff (tenacity decides, this loop sleeps), back to 3
    7 fallback   the operation's, if any; otherwise raise

What counts as a failure: a `BackendError` (what wrappers raise), and any other
exception unless ``op.is_failure(exc)`` says it is an application outcome (then the
breaker records a success and the exception goes to the caller untouched: no retry,
no fallback). A `ResilienceError` other than a `BackendError` raised inside an attempt
(a nested call's rejection) passes through and records nothing. ``op.is_failure_result``
may count a returned value as a failure (recorded, still returned). Cancellation
(``asyncio.CancelledError``, ``KeyboardInterrupt``) releases the breaker permit and the
bulkhead and records nothing. Errors leaving the pipeline carry service, endpoint,
operation and elapsed. No lock is held across an attempt; time comes from ``op.clock``.

The sync and async loops are twins kept side by side; everything without I/O is in
shared helpers, so each loop stays a screenful.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from resilience.core.breaker import CircuitBreaker
from resilience.core.bulkhead import Bulkhead
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.deadline import DEADLINE
from resilience.core.events import EventBus
from resilience.core.fallback import Fallback, as_fallback
from resilience.core.retry import RetryBudget, RetryPolicy, first_outcome
from resilience.errors import (
    BackendError,
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceededError,
    RejectedError,
    ResilienceError,
)

if TYPE_CHECKING:
    import tenacity

__all__ = ["Operation", "acall", "call"]

T = TypeVar("T")


class Operation:
    """Everything the pipeline needs about one operation, resolved once at construction.

    Args:
        name: the operation, for errors and events (``"get"``).
        service: the dependency family or name (``"memcache"``).
        timeout: default budget of one call in seconds (> 0).
        idempotent: whether failed attempts may be retried.
        retry: the dependency's retry policy; its budget gets a deposit per call even
            for non-idempotent operations (they are traffic too).
        bulkhead: the dependency's bulkhead, or None for no limit.
        events: the dependency's event bus (a fresh silent one by default).
        fallback: None, a `Fallback`, a callable of the exception, or a value.
        endpoint: the endpoint named in errors when the breaker has no name.
        clock: time source of every decision, including the deadline check.
        is_failure: False for exceptions that are application outcomes.
        is_failure_result: True for returned values that count as failures.

    Raises:
        ConfigError: timeout is not a number > 0.
    """

    __slots__ = (
        "budget",
        "bulkhead",
        "clock",
        "endpoint",
        "events",
        "fallback",
        "idempotent",
        "is_failure",
        "is_failure_result",
        "name",
        "retry",
        "service",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        *,
        service: str = "",
        timeout: float,
        idempotent: bool = False,
        retry: RetryPolicy | None = None,
        bulkhead: Bulkhead | None = None,
        events: EventBus | None = None,
        fallback: object = None,
        endpoint: str = "",
        clock: Clock = SYSTEM_CLOCK,
        is_failure: Callable[[Exception], bool] | None = None,
        is_failure_result: Callable[[Any], bool] | None = None,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(f"operation {name!r} timeout={timeout!r}: expected seconds > 0")
        self.name = name
        self.service = service
        self.timeout = float(timeout)
        self.idempotent = idempotent
        self.budget: RetryBudget | None = retry.budget if retry is not None else None
        self.retry = retry if (idempotent and retry is not None and retry.attempts > 1) else None
        self.bulkhead = bulkhead
        self.events = events if events is not None else EventBus()
        self.fallback: Fallback[object] | None = as_fallback(fallback)
        self.endpoint = endpoint
        self.clock = clock
        self.is_failure = is_failure
        self.is_failure_result = is_failure_result

    def __repr__(self) -> str:
        return (
            f"Operation({self.service}.{self.name}, timeout={self.timeout},"
            f" idempotent={self.idempotent}, retry={self.retry!r})"
        )


def call(
    op: Operation,
    breaker: CircuitBreaker,
    attempt: Callable[[float], T],
    timeout: float | None = None,
) -> T:
    """Run ``attempt(remaining_seconds)`` through the pipeline (sync).

    Args:
        op: the operation's precomputed settings.
        breaker: the breaker of the endpoint this call goes to.
        attempt: performs one attempt; gets the seconds left for it and should hand
            them to the driver's own timeout.
        timeout: this call's budget instead of ``op.timeout`` (still clamped to the
            ambient deadline).

    Raises:
        RejectedError: deadline spent, bulkhead full or circuit open, with no fallback.
        BackendError: the last attempt's failure, with no fallback.
        Exception: an application outcome of ``attempt``, unchanged.
    """
    clock = op.clock
    start = clock.monotonic()
    at = start + (op.timeout if timeout is None else timeout)
    outer = DEADLINE.get()
    if outer is not None and outer < at:
        at = outer
    if at <= start:
        return cast(T, _give_up(op, _rejection(op, breaker, DeadlineExceededError, start, start)))
    bulkhead = op.bulkhead
    if bulkhead is not None and not bulkhead.acquire(min(bulkhead.max_wait, at - start)):
        return cast(
            T, _give_up(op, _rejection(op, breaker, BulkheadFullError, start, clock.monotonic()))
        )
    try:
        if op.budget is not None:
            op.budget.deposit(start)
        permit = breaker.acquire(start)
        if permit is None:
            return cast(T, _give_up(op, _rejection(op, breaker, CircuitOpenError, start, start)))
        try:
            return _attempt(op, breaker, permit, attempt, at, start, start)
        except Exception as exc:
            error: BaseException = exc
        retry = op.retry
        if retry is not None and retry.is_transient(error):
            import tenacity  # first retry only: keeps import resilience light

            engine = retry.retrying(clock, at, at - start)
            state = first_outcome(engine, error)
            while True:
                try:
                    do = engine.iter(state)  # raises the last error once it gives up
                except Exception as exc:
                    error = exc
                    break
                if isinstance(do, tenacity.DoSleep):
                    _retrying(op, breaker, state, float(do), start)
                    clock.sleep(do)
                elif isinstance(do, tenacity.DoAttempt):
                    try:
                        permit = _permit(op, breaker, state, at, start)
                        state.set_result(
                            _attempt(op, breaker, permit, attempt, at, start, clock.monotonic())
                        )
                    except Exception as exc:
                        state.set_exception((type(exc), exc, exc.__traceback__))
                else:
                    return cast(T, do)
        return cast(T, _give_up(op, error))
    finally:
        if bulkhead is not None:
            bulkhead.release()


async def acall(
    op: Operation,
    breaker: CircuitBreaker,
    attempt: Callable[[float], Awaitable[T]],
    timeout: float | None = None,
) -> T:
    """Run ``await attempt(remaining_seconds)`` through the pipeline (async twin of `call`).

    Never blocks the event loop: bulkhead waits and backoff sleeps are awaited.
    Arguments and errors are those of `call`.
    """
    clock = op.clock
    start = clock.monotonic()
    at = start + (op.timeout if timeout is None else timeout)
    outer = DEADLINE.get()
    if outer is not None and outer < at:
        at = outer
    if at <= start:
        return cast(T, _give_up(op, _rejection(op, breaker, DeadlineExceededError, start, start)))
    bulkhead = op.bulkhead
    if bulkhead is not None and not await bulkhead.aacquire(min(bulkhead.max_wait, at - start)):
        return cast(
            T, _give_up(op, _rejection(op, breaker, BulkheadFullError, start, clock.monotonic()))
        )
    try:
        if op.budget is not None:
            op.budget.deposit(start)
        permit = breaker.acquire(start)
        if permit is None:
            return cast(T, _give_up(op, _rejection(op, breaker, CircuitOpenError, start, start)))
        try:
            return await _aattempt(op, breaker, permit, attempt, at, start, start)
        except Exception as exc:
            error: BaseException = exc
        retry = op.retry
        if retry is not None and retry.is_transient(error):
            import tenacity  # first retry only: keeps import resilience light

            engine = retry.retrying(clock, at, at - start)
            state = first_outcome(engine, error)
            while True:
                try:
                    do = engine.iter(state)  # raises the last error once it gives up
                except Exception as exc:
                    error = exc
                    break
                if isinstance(do, tenacity.DoSleep):
                    _retrying(op, breaker, state, float(do), start)
                    await clock.asleep(do)
                elif isinstance(do, tenacity.DoAttempt):
                    try:
                        permit = _permit(op, breaker, state, at, start)
                        state.set_result(
                            await _aattempt(
                                op, breaker, permit, attempt, at, start, clock.monotonic()
                            )
                        )
                    except Exception as exc:
                        state.set_exception((type(exc), exc, exc.__traceback__))
                else:
                    return cast(T, do)
        return cast(T, _give_up(op, error))
    finally:
        if bulkhead is not None:
            bulkhead.release()


def _attempt(
    op: Operation,
    breaker: CircuitBreaker,
    permit: object,
    attempt: Callable[[float], T],
    at: float,
    start: float,
    now: float,
) -> T:
    # Steps 4 and 5 for one attempt that already holds a breaker permit.
    token = DEADLINE.set(at)
    try:
        result = attempt(at - now)
    except Exception as exc:
        _failed(op, breaker, permit, exc, start, now)
        raise
    except BaseException:
        breaker.release(permit)  # cancelled or interrupted: no outcome to record
        raise
    finally:
        DEADLINE.reset(token)
    _succeeded(op, breaker, permit, result, start, now)
    return result


async def _aattempt(
    op: Operation,
    breaker: CircuitBreaker,
    permit: object,
    attempt: Callable[[float], Awaitable[T]],
    at: float,
    start: float,
    now: float,
) -> T:
    token = DEADLINE.set(at)
    try:
        result = await attempt(at - now)
    except Exception as exc:
        _failed(op, breaker, permit, exc, start, now)
        raise
    except BaseException:
        breaker.release(permit)
        raise
    finally:
        DEADLINE.reset(token)
    _succeeded(op, breaker, permit, result, start, now)
    return result


# -- shared helpers: no I/O ------------------------------------------------------------


def _succeeded(
    op: Operation, breaker: CircuitBreaker, permit: object, result: object, start: float, now: float
) -> None:
    end = op.clock.monotonic()
    check = op.is_failure_result
    if check is not None and check(result):
        breaker.on_failure(permit, end, end - now)
        if op.events.listeners:
            _emit(op, breaker, "failure", end - start, duration=end - now)
    else:
        breaker.on_success(permit, end, end - now)
    bus = op.events
    if bus.listeners:
        if end - now >= breaker.options.slow_call_duration:
            _emit(op, breaker, "slow_call", end - start, duration=end - now)
        if bus.successes:
            _emit(op, breaker, "success", end - start, duration=end - now)


def _failed(
    op: Operation, breaker: CircuitBreaker, permit: object, exc: Exception, start: float, now: float
) -> None:
    # Record the outcome of an attempt that raised, and fill in the error's context.
    end = op.clock.monotonic()
    if isinstance(exc, ResilienceError) and not isinstance(exc, BackendError):
        breaker.release(permit)  # a nested call's rejection: says nothing about this endpoint
        return
    if not _is_failure(op, exc):
        breaker.on_success(permit, end, end - now)  # the dependency answered
        return
    breaker.on_failure(permit, end, end - now)
    if isinstance(exc, BackendError):
        if exc.service is None:
            exc.service = op.service
        if exc.operation is None:
            exc.operation = op.name
        if exc.endpoint is None:
            exc.endpoint = breaker.name or op.endpoint
        if exc.elapsed is None:
            exc.elapsed = end - start
    bus = op.events
    if bus.listeners:
        _emit(op, breaker, "failure", end - start, error=exc, duration=end - now)
        if end - now >= breaker.options.slow_call_duration:
            _emit(op, breaker, "slow_call", end - start, error=exc, duration=end - now)


def _is_failure(op: Operation, exc: BaseException) -> bool:
    if isinstance(exc, ResilienceError):
        return isinstance(exc, BackendError)
    if not isinstance(exc, Exception):
        return False
    return op.is_failure is None or op.is_failure(exc)


def _permit(
    op: Operation, breaker: CircuitBreaker, state: tenacity.RetryCallState, at: float, start: float
) -> object:
    # Steps 1 and 3 again before a retry; raising ends the retries (rejections never retry).
    now = op.clock.monotonic()
    if now >= at:
        raise _rejection(op, breaker, DeadlineExceededError, start, now)
    permit = breaker.acquire(now)
    if permit is None:
        raise _rejection(op, breaker, CircuitOpenError, start, now)
    return permit


_REASONS: dict[type[RejectedError], str] = {
    DeadlineExceededError: "deadline",
    BulkheadFullError: "bulkhead_full",
    CircuitOpenError: "circuit_open",
}


def _rejection(
    op: Operation, breaker: CircuitBreaker, kind: type[RejectedError], start: float, now: float
) -> RejectedError:
    endpoint = breaker.name or op.endpoint
    if kind is CircuitOpenError:
        err: RejectedError = CircuitOpenError(
            retry_after=breaker.retry_after(now),
            service=op.service,
            endpoint=endpoint,
            operation=op.name,
            elapsed=now - start,
        )
    else:
        err = kind(service=op.service, endpoint=endpoint, operation=op.name, elapsed=now - start)
    if op.events.listeners:
        _emit(op, breaker, "rejected", now - start, reason=_REASONS[kind], error=err)
    return err


def _retrying(
    op: Operation,
    breaker: CircuitBreaker,
    state: tenacity.RetryCallState,
    delay: float,
    start: float,
) -> None:
    if op.events.listeners:
        outcome = state.outcome
        _emit(
            op,
            breaker,
            "retry",
            op.clock.monotonic() - start,
            attempt=state.attempt_number + 1,
            delay=delay,
            error=outcome.exception() if outcome is not None else None,
        )
    state.prepare_for_next_attempt()


def _give_up(op: Operation, exc: BaseException) -> Any:
    # Step 7: the fallback's value, or raise. Only handled errors reach a fallback.
    fallback = op.fallback
    if fallback is None or not (isinstance(exc, RejectedError) or _is_failure(op, exc)):
        raise exc
    if op.events.listeners:
        _emit(op, None, "fallback_used", 0.0, error=exc)
    return fallback(exc)


def _emit(
    op: Operation, breaker: CircuitBreaker | None, kind: str, elapsed: float, **fields: Any
) -> None:
    endpoint = (breaker.name if breaker is not None else "") or op.endpoint
    op.events.emit(kind, op.service, op.name, endpoint, elapsed=elapsed, **fields)
