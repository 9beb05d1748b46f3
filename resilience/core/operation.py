"""`Operation` and what happens to an attempt's outcome: the pipeline's I/O-free half.

`Operation` holds one operation's settings, resolved once when a wrapper (or a
`Policy`) is built, so the per-call path does attribute reads and no lookups. The
functions below record outcomes in the breaker, fill in error context, build
rejections, emit events (only when someone listens) and apply the fallback; the sync
and async loops of :mod:`resilience.core.pipeline` share them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from resilience.core._window import ClosedPermit, Permit
from resilience.core.breaker import CircuitBreaker
from resilience.core.bulkhead import Bulkhead
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.fallback import Fallback, as_fallback
from resilience.core.retry import RetryBudget, RetryPolicy
from resilience.errors import (
    BackendError,
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceededError,
    RejectedError,
    ResilienceError,
    _fast_error,
    _new,
)

if TYPE_CHECKING:
    import tenacity

__all__ = ["Operation", "Route"]

Route = Callable[[CircuitBreaker, Callable[[float], Any]],
                 tuple[CircuitBreaker, Callable[[float], Any]]]
"""``route(breaker, attempt) -> (breaker, attempt)``: given the breaker and the attempt
that just failed (transiently, in an idempotent operation), the breaker and attempt the
next retry uses: the same endpoint or another that serves the same data. Called only
on the retry path, once per failed attempt, before the retry decision (so the decision
asks the breaker of the endpoint the retry would go to whether it admits calls). It
must do no I/O and never raise. The retry keeps the call's deadline, its retry budget,
its backoff and its bulkhead permit (taken for the first endpoint)."""


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
        kind: what this operation's first attempt is for metrics and events:
            ``first``, or ``hedge`` for the second attempt of a hedged read
            (:mod:`resilience.core.hedge`).
        route: where a retry goes (:data:`Route`), for a client with several
            interchangeable endpoints; None (the default): every retry goes to the
            breaker and attempt of the first.
        ambient: whether the first attempt runs under the call's deadline as the
            ambient one (True, the default: calls nested in the attempt get what is
            left). False for an attempt that is only a driver call handed its deadline
            explicitly: the pipeline then skips a context-variable set and reset per
            call (~2.5k instructions, an eighth of what the memcached wrapper adds to a
            ``get``). Retries always set it.

    Raises:
        ConfigError: timeout is not a number > 0.
    """

    __slots__ = (
        "ambient",
        "budget",
        "bulkhead",
        "clock",
        "endpoint",
        "events",
        "fallback",
        "idempotent",
        "is_failure",
        "is_failure_result",
        "kind",
        "monotonic",
        "name",
        "retry",
        "route",
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
        kind: str = "first",
        route: Route | None = None,
        ambient: bool = True,
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
        # The clock's reading function, bound once: the pipeline reads it twice a call.
        self.monotonic: Callable[[], float] = clock.monotonic
        self.is_failure = is_failure
        self.is_failure_result = is_failure_result
        self.kind = kind
        self.route = route
        self.ambient = ambient

    def __repr__(self) -> str:
        return (
            f"Operation({self.service}.{self.name}, timeout={self.timeout},"
            f" idempotent={self.idempotent}, retry={self.retry!r})"
        )


def _kind(op: Operation, permit: object, retry: bool) -> str:
    # What an attempt was, for metrics: a half-open trial, a retry, or a first attempt
    # (or a hedge: the first attempt of a hedge operation).
    if type(permit) is Permit and permit.probe:
        return "probe"
    return "retry" if retry else op.kind


def _succeeded(
    op: Operation,
    breaker: CircuitBreaker,
    permit: object,
    result: object,
    start: float,
    now: float,
    end: float,
    retry: bool = False,
) -> None:
    # Only called while the bus has listeners (the pipeline inlines the rest). The
    # attempt succeeded, so the call ends here: bus.timer sees its duration.
    check = op.is_failure_result
    bus = op.events
    if check is None and type(permit) is ClosedPermit and end - now < permit.slow_after:
        # A fast success in CLOSED: the breaker's contract (one window update), then
        # the exporters' timer, with no Event built (docs/core.md#metrics).
        permit.window.add_ok(end)
        timer = bus.timer
        if timer is not None:
            timer(op, breaker, end - start, "retry" if retry else op.kind)
        if bus.successes:
            _emit(op, breaker, "success", end - start, duration=end - now, outcome="success")
        return
    if check is not None and check(result):
        breaker.on_failure(permit, end, end - now)
        if bus.listeners:
            _emit(op, breaker, "failure", end - start, duration=end - now)
    else:
        breaker.on_success(permit, end, end - now)
    if bus.timer is not None:
        bus.timer(op, breaker, end - start, _kind(op, permit, retry))
    if bus.listeners:
        if end - now >= breaker.options.slow_call_duration:
            _emit(op, breaker, "slow_call", end - start, duration=end - now)
        if bus.successes:
            _emit(op, breaker, "success", end - start, duration=end - now, outcome="success")


def _failed(
    op: Operation, breaker: CircuitBreaker, permit: object, exc: Exception, start: float,
    now: float, retry: bool = False,
) -> None:
    # Record the outcome of an attempt that raised, and fill in the error's context.
    end = op.clock.monotonic()
    if isinstance(exc, ResilienceError) and not isinstance(exc, BackendError):
        breaker.release(permit)  # a nested call's rejection: says nothing about this endpoint
        return
    if not _is_failure(op, exc):
        breaker.on_success(permit, end, end - now)  # the dependency answered
        if op.events.timer is not None:
            op.events.timer(op, breaker, end - start, _kind(op, permit, retry))
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
        _emit(op, breaker, "failure", end - start, error=exc, duration=end - now,
              attempt_kind=_kind(op, permit, retry))
        if end - now >= breaker.options.slow_call_duration:
            _emit(op, breaker, "slow_call", end - start, error=exc, duration=end - now)


def _is_failure(op: Operation, exc: BaseException) -> bool:
    if isinstance(exc, ResilienceError):
        return isinstance(exc, BackendError)
    if not isinstance(exc, Exception):
        return False
    return op.is_failure is None or op.is_failure(exc)


def _permit(op: Operation, breaker: CircuitBreaker, at: float, start: float) -> object | None:
    # Steps 1 and 3 again before a retry. None: refused, no I/O. The refusal ends the
    # retries, but it is not the call's outcome: an attempt already did I/O, and its
    # failure is what the caller gets (a CircuitOpenError promises that no I/O was
    # attempted). The refusal still shows as a `rejected` event of that retry.
    now = op.clock.monotonic()
    if now >= at:
        kind: type[RejectedError] = DeadlineExceededError
    else:
        permit = breaker.acquire(now)
        if permit is not None:
            return permit
        kind = CircuitOpenError
    if op.events.listeners:
        _rejection(op, breaker, kind, start, now, None)
    return None


_REASONS: dict[type[RejectedError], str] = {
    DeadlineExceededError: "deadline",
    BulkheadFullError: "bulkhead_full",
    CircuitOpenError: "circuit_open",
}


def _rejection(
    op: Operation, breaker: CircuitBreaker, kind: type[RejectedError], start: float, now: float,
    outcome: str | None,
) -> RejectedError:
    # Build (not raise) a rejection with the call's context; emit the event if wanted,
    # with ``outcome="rejected"`` when the rejection is what the call ends with.
    err = _fast_error(kind, op.service, breaker.name or op.endpoint, op.name, now - start)
    if kind is CircuitOpenError:
        err.retry_after = breaker.retry_after(now)  # type: ignore[attr-defined]
    if op.events.listeners:
        _emit(op, breaker, "rejected", now - start, reason=_REASONS[kind], error=err,
              outcome=outcome)
    return err


def _circuit_open(
    op: Operation, breaker: CircuitBreaker, start: float, now: float
) -> CircuitOpenError:
    # _rejection specialised for the hottest rejection; fields as _fast_error sets them.
    err: CircuitOpenError = _new(CircuitOpenError)
    err.__dict__ = {
        "service": op.service,
        "endpoint": breaker._name or op.endpoint,  # the name property, without its frame
        "operation": op.name,
        "elapsed": now - start,
        "retry_after": breaker.retry_after(now),
    }
    if op.events.listeners:
        _emit(op, breaker, "rejected", now - start, reason="circuit_open", error=err,
              outcome="rejected")
    return err


def _reject(
    op: Operation, breaker: CircuitBreaker, kind: type[RejectedError], start: float, now: float
) -> Any:
    # Steps 1-3 refused the call: raise at once, or hand the rejection to the fallback.
    err = _rejection(op, breaker, kind, start, now,
                     "rejected" if op.fallback is None else None)
    if op.fallback is None:
        raise err
    return _give_up(op, err, start, breaker)


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


def _give_up(op: Operation, exc: BaseException, start: float,
             breaker: CircuitBreaker | None = None) -> Any:
    # Step 7: the fallback's value, or raise. Only handled errors reach a fallback.
    # The call ends here: ``call_failed`` or ``fallback_used`` carries its duration.
    fallback = op.fallback
    if fallback is None or not (isinstance(exc, RejectedError) or _is_failure(op, exc)):
        if op.events.listeners and not isinstance(exc, RejectedError):
            _emit(op, breaker, "call_failed", op.clock.monotonic() - start, error=exc,
                  outcome="failure")
        raise exc
    if op.events.listeners:
        _emit(op, breaker, "fallback_used", op.clock.monotonic() - start, error=exc,
              outcome="fallback")
    return fallback(exc)


def _emit(
    op: Operation, breaker: CircuitBreaker | None, kind: str, elapsed: float, **fields: Any
) -> None:
    endpoint = (breaker.name if breaker is not None else "") or op.endpoint
    op.events.emit(kind, op.service, op.name, endpoint, elapsed=elapsed, **fields)
