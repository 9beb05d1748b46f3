"""Events: what the pipeline and the breakers tell observers.

Contract: docs/architecture.md#observability.

Kinds (`Event.kind`):

==============  ================================================================
``rejected``    no I/O was attempted; ``reason`` is ``circuit_open``,
                ``bulkhead_full`` or ``deadline``
``failure``     an attempt failed and was recorded in the breaker (``error``)
``slow_call``   an attempt took at least the breaker's slow-call duration
``retry``       another attempt follows after ``delay`` seconds (``attempt`` = its number)
``state_change`` a breaker moved ``old_state`` -> ``new_state``
``fallback_used`` the fallback produced the result instead of the call (``error``)
``call_failed`` the call ends with a failure and no fallback (``error``)
``health_probe`` a background health probe of an open endpoint ended (``reason``
                ``ok`` or ``failed``; :mod:`resilience.core.prober`)
``hedge``       a hedged read sent its second attempt (``attempt_kind`` ``hedge``,
                ``delay`` = how long the first had run); counted as an attempt
``success``     an attempt succeeded, so its call does (emitted only to buses built
                with ``successes=True``: it is the one event on the healthy path)
==============  ================================================================

The event that ends a call carries ``outcome`` (``success``, ``failure``, ``rejected``,
``fallback``) and ``elapsed`` = the call's duration: ``success``, ``call_failed``,
``fallback_used``, and a ``rejected`` that no fallback follows (a refused retry's
``rejected`` has no outcome: the last failure is the outcome). ``failure`` events carry
``attempt_kind``: ``first``, ``retry``, ``probe`` (a half-open trial call) or ``hedge``
(the second attempt of a hedged read, :mod:`resilience.core.hedge`).

``EventBus.timer``: exporters that time every call set ``timer(op, breaker, seconds,
attempt_kind)``; the pipeline calls it once per successful call with no `Event` built.
The pipeline's healthy path reads one attribute, ``EventBus.hot``: None unless a timer
is set or ``successes`` is on (then the callable that times the call and/or emits the
``success`` event; on that path the event's ``duration`` is the call's ``elapsed``).

Zero cost when nobody listens: the pipeline tests ``bus.listeners`` (a plain tuple
attribute) before it builds anything, so with no listener no `Event` is ever created.
Listeners run synchronously in the calling thread (or the event loop); one that raises
is logged and skipped, never breaking the call. Keep them quick; hand heavy work to a
queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Event",
    "EventBus",
    "EventListener",
    "LoggingListener",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to a guarded call or a breaker. Never holds a secret."""

    kind: str
    service: str
    operation: str
    endpoint: str
    elapsed: float = 0.0  # seconds since the call started (0 for state changes)
    reason: str | None = None  # rejected: circuit_open | bulkhead_full | deadline
    error: BaseException | None = None
    attempt: int = 0  # 1-based attempt number, 0 when not about one attempt
    delay: float = 0.0  # retry: the backoff before the next attempt
    duration: float = 0.0  # failure / slow_call / success: how long the attempt took
    old_state: str | None = None  # state_change
    new_state: str | None = None
    outcome: str | None = None  # on the event that ends a call (see the module doc)
    attempt_kind: str | None = None  # failure: first | retry | probe | hedge


EventListener = Callable[[Event], None]
Timer = Callable[[Any, Any, float, str], None]


class EventBus:
    """Listeners of one dependency's (or one policy's) events.

    Args:
        successes: also emit ``success`` events (off by default: they cost on every
            healthy call once someone listens).
        factory: builds the event objects; tests pass a counting factory to check
            that nothing is built while nobody listens.

    Attributes:
        listeners: the current listeners, a tuple; empty means events are not built.
        timer: ``timer(op, breaker, seconds, attempt_kind)`` called once per successful
            call while there are listeners, with no event built (metrics exporters set
            it); None by default.
    """

    __slots__ = ("_lock", "_successes", "_timer", "factory", "hot", "listeners")

    def __init__(self, *, successes: bool = False, factory: Callable[..., Event] = Event) -> None:
        self.listeners: tuple[EventListener, ...] = ()
        self._successes = successes
        self._timer: Timer | None = None
        self.hot: Timer | None = None
        self.factory = factory
        self._lock = threading.Lock()
        self._rehot()

    @property
    def successes(self) -> bool:
        """Whether ``success`` events are emitted (settable)."""
        return self._successes

    @successes.setter
    def successes(self, value: bool) -> None:
        self._successes = value
        self._rehot()

    @property
    def timer(self) -> Timer | None:
        """``timer(op, breaker, seconds, attempt_kind)`` per successful call (settable)."""
        return self._timer

    @timer.setter
    def timer(self, fn: Timer | None) -> None:
        self._timer = fn
        self._rehot()

    def _rehot(self) -> None:
        # What the pipeline calls after each fast success: the timer itself when that
        # is all (no extra frame), a function that emits the success event too, or None.
        timer, successes = self._timer, self._successes
        if not successes:
            self.hot = timer
            return

        def hot(op: Any, breaker: Any, seconds: float, kind: str) -> None:
            if self.listeners:
                endpoint = breaker.name or op.endpoint
                self.emit("success", op.service, op.name, endpoint, elapsed=seconds,
                          duration=seconds, outcome="success")
            if timer is not None:
                timer(op, breaker, seconds, kind)

        self.hot = hot

    def add_listener(self, fn: EventListener) -> Callable[[], None]:
        """Call ``fn(event)`` for every event from now on; returns an unsubscribe function."""
        if not callable(fn):
            raise TypeError(f"an event listener must be callable, got {fn!r}")
        with self._lock:  # copy-on-write: emitters read the tuple without a lock
            self.listeners = (*self.listeners, fn)

        def unsubscribe() -> None:
            with self._lock:
                self.listeners = tuple(f for f in self.listeners if f is not fn)

        return unsubscribe

    def emit(self, kind: str, service: str, operation: str, endpoint: str, **fields: Any) -> None:
        """Build one event and hand it to every listener. Callers check ``listeners`` first."""
        listeners = self.listeners
        if not listeners:
            return
        event = self.factory(kind, service, operation, endpoint, **fields)
        for fn in listeners:
            try:
                fn(event)
            except Exception:
                _log.exception("event listener %r failed on a %s event", fn, kind)

    def watch_breaker(
        self, breaker: Any, service: str = "", operation: str = ""
    ) -> Callable[[], None]:
        """Turn ``breaker``'s state changes into ``state_change`` events on this bus.

        Returns a function that stops watching.
        """

        def on_change(b: Any, old: Any, new: Any, now: float) -> None:
            if self.listeners:
                self.emit(
                    "state_change",
                    service,
                    operation,
                    b.name,
                    old_state=old.value,
                    new_state=new.value,
                )

        unsubscribe: Callable[[], None] = breaker.add_listener(on_change)
        return unsubscribe


_LEVELS = {
    "rejected": logging.WARNING,
    "failure": logging.WARNING,
    "call_failed": logging.WARNING,
    "state_change": logging.WARNING,
    "slow_call": logging.INFO,
    "retry": logging.INFO,
    "fallback_used": logging.INFO,
    "success": logging.DEBUG,
    "health_probe": logging.DEBUG,
    "hedge": logging.DEBUG,
}


class LoggingListener:
    """Log events on a std ``logging`` logger, one structured line per state change and
    at most one per burst of anything else: never one line per call.

    A state change is always one line. Every other kind is rate-limited per (kind,
    service, operation, endpoint, reason): the first event logs a line, later ones
    within ``burst_interval`` seconds are only counted, and the first one after it logs
    a line that says how many were left out (``resilience_suppressed``). So a dead
    endpoint rejecting 10 000 calls a second logs one ``rejected`` line per interval.

    The message is one line (``resilience rejected memcache get on 10.0.0.1:11211:
    circuit_open (+5234 more in 10.0 s)``); ``extra`` carries ``resilience_event``,
    ``..._service``, ``..._operation``, ``..._endpoint``, ``..._reason``, ``..._error``
    (the exception type name), ``..._elapsed_ms``, ``..._suppressed`` and the state
    change. Exception messages are not logged for foreign exceptions (a driver's
    message may hold a query or a password); our own errors carry no secrets by
    construction and are logged in full.

    Args:
        logger: where to log; default ``logging.getLogger("resilience.events")``.
        levels: override the level per event kind.
        burst_interval: seconds between two lines of one kind of event (0: every event).
        clock: monotonic seconds (a fake clock's ``monotonic`` in tests).
    """

    __slots__ = ("_bursts", "_clock", "_interval", "_levels", "_lock", "_logger")

    def __init__(
        self, logger: logging.Logger | None = None, levels: dict[str, int] | None = None,
        *, burst_interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger or logging.getLogger("resilience.events")
        self._levels = {**_LEVELS, **(levels or {})}
        self._interval = burst_interval
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [when the last line was logged, events left out since]
        self._bursts: dict[tuple[str, str, str, str, str | None], list[float]] = {}

    def __call__(self, event: Event) -> None:
        level = self._levels.get(event.kind, logging.INFO)
        if not self._logger.isEnabledFor(level):
            return
        suppressed = 0
        if event.kind != "state_change" and self._interval > 0:
            key = (event.kind, event.service, event.operation, event.endpoint, event.reason)
            now = self._clock()
            with self._lock:
                burst = self._bursts.get(key)
                if burst is not None and now - burst[0] < self._interval:
                    burst[1] += 1
                    return
                if burst is not None:
                    suppressed = int(burst[1])
                if len(self._bursts) > 10_000:  # bounded: endpoints come and go
                    self._bursts.clear()
                self._bursts[key] = [now, 0]
        self._log(level, event, suppressed)

    def _log(self, level: int, event: Event, suppressed: int) -> None:
        from resilience.errors import ResilienceError

        err = event.error
        err_name = type(err).__name__ if err is not None else None
        detail = f"{err_name}: {err.detail}" if isinstance(err, ResilienceError) else err_name
        where = f"{event.service} {event.operation}".strip()
        if event.endpoint:
            where = f"{where} on {event.endpoint}"
        what = event.reason or (
            f"{event.old_state} -> {event.new_state}" if event.kind == "state_change" else detail
        )
        more = f" (+{suppressed} more in {self._interval:g} s)" if suppressed else ""
        self._logger.log(
            level,
            "resilience %s %s: %s%s",
            event.kind,
            where,
            what,
            more,
            extra={
                "resilience_event": event.kind,
                "resilience_service": event.service,
                "resilience_operation": event.operation,
                "resilience_endpoint": event.endpoint,
                "resilience_reason": event.reason,
                "resilience_error": err_name,
                "resilience_attempt": event.attempt,
                "resilience_elapsed_ms": round(event.elapsed * 1000.0, 3),
                "resilience_delay_ms": round(event.delay * 1000.0, 3),
                "resilience_old_state": event.old_state,
                "resilience_new_state": event.new_state,
                "resilience_outcome": event.outcome,
                "resilience_suppressed": suppressed,
            },
        )
