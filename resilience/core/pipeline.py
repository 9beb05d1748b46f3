"""The pipeline: the one place where a guarded call is performed (sync `call`, async `acall`).

The order of docs/architecture.md#what-a-call-does::

    1 deadline   min(timeout, ambient deadline); spent -> DeadlineExceededError, no I/O
    2 bulkhead   no permit within min(max_wait, remaining) -> BulkheadFullError, no I/O
    3 breaker    open -> CircuitOpenError(retry_after), no I/O
    4 attempt    attempt(remaining seconds); the ambient deadline is set for nested calls
                 (unless ``op.ambient`` is False: the attempt makes none)
    5 record     outcome into the breaker (its slow-call rule sees the duration)
    6 retry      idempotent + transient + attempts left + fits the deadline + breaker
                 not open past the backoff + budget: jittered backoff (tenacity
                 decides, this loop sleeps), back to 1 and 3; a retry refused there
                 ends the retries with the last attempt's error. With ``op.route``
                 each retry may go to another endpoint (its breaker in 3 and 5);
                 deadline, budget, backoff and bulkhead permit stay the call's
    7 fallback   the operation's, if any; otherwise raise

What counts as a failure: a `BackendError` (what wrappers raise), and any other
exception unless ``op.is_failure(exc)`` says it is an application outcome (then the
breaker records a success and the exception goes to the caller untouched: no retry,
no fallback). A `ResilienceError` other than a `BackendError` raised inside an attempt
(a nested call's rejection) passes through and records nothing. ``op.is_failure_result``
may count a returned value as a failure (recorded, still returned). Cancellation
(``asyncio.CancelledError``, ``KeyboardInterrupt``) releases the breaker permit and the
bulkhead and records nothing. A `RejectedError` reaches the caller only when no
attempt was made: once one did I/O, its failure is the outcome. Errors leaving the
pipeline carry service, endpoint, operation and elapsed. No lock is held across an
attempt; time comes from ``op.clock``.

The sync and async loops are twins kept side by side; everything without I/O is in
:mod:`resilience.core.operation`, so each loop stays a screenful.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from resilience.core._window import PASS, ClosedPermit
from resilience.core.breaker import CircuitBreaker
from resilience.core.deadline import DEADLINE
from resilience.core.operation import (
    Operation,
    Route,
    _circuit_open,
    _failed,
    _give_up,
    _permit,
    _reject,
    _retrying,
    _succeeded,
)
from resilience.core.retry import RetryPolicy, first_outcome
from resilience.errors import BulkheadFullError, CircuitOpenError, DeadlineExceededError

__all__ = ["Operation", "acall", "call"]

T = TypeVar("T")


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
    monotonic = op.monotonic
    start = monotonic()
    at = start + (op.timeout if timeout is None else timeout)
    outer = DEADLINE.get()
    if outer is not None and outer < at:
        at = outer
    if at <= start:
        return cast(T, _reject(op, breaker, DeadlineExceededError, start, start))
    bulkhead = op.bulkhead
    now = start
    if bulkhead is not None:
        if not bulkhead.acquire(min(bulkhead.max_wait, at - start)):
            return cast(T, _reject(op, breaker, BulkheadFullError, start, monotonic()))
        now = monotonic()  # the wait for a permit came out of the budget
        if now >= at:
            bulkhead.release()
            return cast(T, _reject(op, breaker, DeadlineExceededError, start, now))
    # breaker.acquire(now), one frame shorter: the permit of CLOSED (lock-free), else
    # the state machine's slow path (also lock-free when it rejects). Never raises.
    # A written contract with the (final) breaker class: see resilience.core.breaker.
    permit = breaker._fast_permit or breaker._acquire_slow(now)
    if permit is None:
        # An open breaker rejects every call of a dead dependency: raised right here,
        # outside the try block below, which would cost a re-raise (~0.1 µs).
        if bulkhead is not None:
            bulkhead.release()
        if op.fallback is None:
            raise _circuit_open(op, breaker, start, now)
        return cast(T, _reject(op, breaker, CircuitOpenError, start, now))
    try:
        budget = op.budget
        if budget is not None:
            # budget.deposit(now) without its frame; lock-free, see RetryBudget.
            if now >= budget._rotate_at:
                budget.deposit(now)
            else:
                budget._cur += 1
        # The first attempt, inline: the healthy path is this block and nothing else.
        # The ambient deadline is set for nested calls, unless it already is this one
        # or the attempt has none (op.ambient False: a driver call given its deadline).
        token = DEADLINE.set(at) if op.ambient and at != outer else None
        try:
            result = attempt(at - now)
        except Exception as exc:
            _failed(op, breaker, permit, exc, start, now)
            error = exc
        except BaseException:
            breaker.release(permit)  # cancelled or interrupted: no outcome to record
            raise
        else:
            end = monotonic()
            if (type(permit) is ClosedPermit and end - now < permit.slow_after
                    and op.is_failure_result is None):
                # breaker.on_success's hot path without its frame: a fast success in
                # CLOSED is one lock-free window update (the same contract). No event:
                # only the bus's hot hook, None unless an exporter or success events
                # want every call (EventBus.hot).
                permit.window.add_ok(end)
                hot = op.events.hot
                if hot is not None:
                    hot(op, breaker, end - start, op.kind)
            elif op.is_failure_result is None and not op.events.listeners:
                if permit is not PASS:  # a pass-through breaker records nothing
                    breaker.on_success(permit, end, end - now)
            else:
                _succeeded(op, breaker, permit, result, start, now, end)
            return result
        finally:
            if token is not None:
                DEADLINE.reset(token)
        retry = op.retry
        if retry is not None and retry.is_transient(error):
            return _retry(op, retry, breaker, attempt, at, start, error)
        return cast(T, _give_up(op, error, start, breaker))
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
    monotonic = op.monotonic
    start = monotonic()
    at = start + (op.timeout if timeout is None else timeout)
    outer = DEADLINE.get()
    if outer is not None and outer < at:
        at = outer
    if at <= start:
        return cast(T, _reject(op, breaker, DeadlineExceededError, start, start))
    bulkhead = op.bulkhead
    now = start
    if bulkhead is not None:
        if not await bulkhead.aacquire(min(bulkhead.max_wait, at - start)):
            return cast(T, _reject(op, breaker, BulkheadFullError, start, monotonic()))
        now = monotonic()  # the wait for a permit came out of the budget
        if now >= at:
            bulkhead.release()
            return cast(T, _reject(op, breaker, DeadlineExceededError, start, now))
    # breaker.acquire(now), one frame shorter: the permit of CLOSED (lock-free), else
    # the state machine's slow path (also lock-free when it rejects). Never raises.
    # A written contract with the (final) breaker class: see resilience.core.breaker.
    permit = breaker._fast_permit or breaker._acquire_slow(now)
    if permit is None:
        # An open breaker rejects every call of a dead dependency: raised right here,
        # outside the try block below, which would cost a re-raise (~0.1 µs).
        if bulkhead is not None:
            bulkhead.release()
        if op.fallback is None:
            raise _circuit_open(op, breaker, start, now)
        return cast(T, _reject(op, breaker, CircuitOpenError, start, now))
    try:
        budget = op.budget
        if budget is not None:
            # budget.deposit(now) without its frame; lock-free, see RetryBudget.
            if now >= budget._rotate_at:
                budget.deposit(now)
            else:
                budget._cur += 1
        token = DEADLINE.set(at) if op.ambient and at != outer else None
        try:
            result = await attempt(at - now)
        except Exception as exc:
            _failed(op, breaker, permit, exc, start, now)
            error = exc
        except BaseException:
            breaker.release(permit)
            raise
        else:
            end = monotonic()
            if (type(permit) is ClosedPermit and end - now < permit.slow_after
                    and op.is_failure_result is None):
                # breaker.on_success's hot path without its frame: a fast success in
                # CLOSED is one lock-free window update (the same contract). No event:
                # only the bus's hot hook, None unless an exporter or success events
                # want every call (EventBus.hot).
                permit.window.add_ok(end)
                hot = op.events.hot
                if hot is not None:
                    hot(op, breaker, end - start, op.kind)
            elif op.is_failure_result is None and not op.events.listeners:
                if permit is not PASS:  # a pass-through breaker records nothing
                    breaker.on_success(permit, end, end - now)
            else:
                _succeeded(op, breaker, permit, result, start, now, end)
            return result
        finally:
            if token is not None:
                DEADLINE.reset(token)
        retry = op.retry
        if retry is not None and retry.is_transient(error):
            return await _aretry(op, retry, breaker, attempt, at, start, error)
        return cast(T, _give_up(op, error, start, breaker))
    finally:
        if bulkhead is not None:
            bulkhead.release()


def _retry(
    op: Operation,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
    attempt: Callable[[float], T],
    at: float,
    start: float,
    error: Exception,
) -> T:
    # Step 6: tenacity decides (retry? wait? stop?), this loop sleeps and attempts.
    # With a route (op.route), each retry may go to another endpoint: ``failed`` is the
    # breaker of the attempt that just failed, ``breaker`` the one the next goes to.
    import tenacity  # first retry only: keeps import resilience light

    route = op.route
    failed = breaker
    if route is not None:
        breaker, attempt = route(failed, attempt)
    engine = retry.retrying(op.clock, at, at - start, _retry_after(breaker, route, lambda: breaker))
    state = first_outcome(engine, error)
    while True:
        try:
            do = engine.iter(state)  # raises the last error once it gives up
        except Exception as exc:
            return cast(T, _give_up(op, exc, start, failed))
        if isinstance(do, tenacity.DoSleep):
            _retrying(op, breaker, state, float(do), start)
            op.clock.sleep(do)
        elif isinstance(do, tenacity.DoAttempt):
            permit = _permit(op, breaker, at, start)
            if permit is None:  # refused, no I/O: the last real failure is the outcome
                return cast(T, _give_up(op, error, start, failed))
            try:
                now = op.clock.monotonic()
                state.set_result(_attempt(op, breaker, permit, attempt, at, start, now))
            except Exception as exc:
                error = exc
                state.set_exception((type(exc), exc, exc.__traceback__))
                failed = breaker
                if route is not None:
                    breaker, attempt = route(failed, attempt)
        else:
            return cast(T, do)


async def _aretry(
    op: Operation,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
    attempt: Callable[[float], Awaitable[T]],
    at: float,
    start: float,
    error: Exception,
) -> T:
    import tenacity

    route = op.route
    failed = breaker
    if route is not None:
        breaker, attempt = route(failed, attempt)
    engine = retry.retrying(op.clock, at, at - start, _retry_after(breaker, route, lambda: breaker))
    state = first_outcome(engine, error)
    while True:
        try:
            do = engine.iter(state)
        except Exception as exc:
            return cast(T, _give_up(op, exc, start, failed))
        if isinstance(do, tenacity.DoSleep):
            _retrying(op, breaker, state, float(do), start)
            await op.clock.asleep(do)
        elif isinstance(do, tenacity.DoAttempt):
            permit = _permit(op, breaker, at, start)
            if permit is None:  # refused, no I/O: the last real failure is the outcome
                return cast(T, _give_up(op, error, start, failed))
            try:
                now = op.clock.monotonic()
                state.set_result(await _aattempt(op, breaker, permit, attempt, at, start, now))
            except Exception as exc:
                error = exc
                state.set_exception((type(exc), exc, exc.__traceback__))
                failed = breaker
                if route is not None:
                    breaker, attempt = route(failed, attempt)
        else:
            return cast(T, do)


def _retry_after(breaker: CircuitBreaker, route: Route | None,
                 current: Callable[[], CircuitBreaker]) -> Callable[[float], float]:
    # The retry engine's "still open after the backoff?" check: of the one breaker, or,
    # with a route, of whichever breaker the next retry goes to (``current()`` reads
    # the loop's variable, which the route rebinds after every failed attempt).
    if route is None:
        return breaker.retry_after
    return lambda now: current().retry_after(now)


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
        _failed(op, breaker, permit, exc, start, now, True)
        raise
    except BaseException:
        breaker.release(permit)  # cancelled or interrupted: no outcome to record
        raise
    finally:
        DEADLINE.reset(token)
    _succeeded(op, breaker, permit, result, start, now, op.clock.monotonic(), True)
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
        _failed(op, breaker, permit, exc, start, now, True)
        raise
    except BaseException:
        breaker.release(permit)
        raise
    finally:
        DEADLINE.reset(token)
    _succeeded(op, breaker, permit, result, start, now, op.clock.monotonic(), True)
    return result
