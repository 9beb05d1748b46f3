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
``success``     an attempt succeeded (emitted only to buses built with
                ``successes=True``: it is the one event on the healthy path)
==============  ================================================================

Zero cost when nobody listens: the pipeline tests ``bus.listeners`` (a plain tuple
attribute) before it builds anything, so with no listener no `Event` is ever created.
Listeners run synchronously in the calling thread (or the event loop); one that raises
is logged and skipped, never breaking the call. Keep them quick; hand heavy work to a
queue.
"""

from __future__ import annotations

import logging
import threading
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


EventListener = Callable[[Event], None]


class EventBus:
    """Listeners of one dependency's (or one policy's) events.

    Args:
        successes: also emit ``success`` events (off by default: they cost on every
            healthy call once someone listens).
        factory: builds the event objects; tests pass a counting factory to check
            that nothing is built while nobody listens.

    Attributes:
        listeners: the current listeners, a tuple; empty means events are not built.
    """

    __slots__ = ("_lock", "factory", "listeners", "successes")

    def __init__(self, *, successes: bool = False, factory: Callable[..., Event] = Event) -> None:
        self.listeners: tuple[EventListener, ...] = ()
        self.successes = successes
        self.factory = factory
        self._lock = threading.Lock()

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
    "state_change": logging.WARNING,
    "slow_call": logging.INFO,
    "retry": logging.INFO,
    "fallback_used": logging.INFO,
    "success": logging.DEBUG,
}


class LoggingListener:
    """Log each event on a std ``logging`` logger with structured ``extra`` fields.

    The message is one line (``resilience failure memcache get on 10.0.0.1:11211:
    BackendTimeoutError``); ``extra`` carries ``resilience_event``, ``..._service``,
    ``..._operation``, ``..._endpoint``, ``..._reason``, ``..._error`` (the exception
    type name), ``..._elapsed_ms`` and the state change. Exception messages are not
    logged for foreign exceptions (a driver's message may hold a query or a password);
    our own errors carry no secrets by construction and are logged in full.

    Args:
        logger: where to log; default ``logging.getLogger("resilience.events")``.
        levels: override the level per event kind.
    """

    __slots__ = ("_levels", "_logger")

    def __init__(
        self, logger: logging.Logger | None = None, levels: dict[str, int] | None = None
    ) -> None:
        self._logger = logger or logging.getLogger("resilience.events")
        self._levels = {**_LEVELS, **(levels or {})}

    def __call__(self, event: Event) -> None:
        level = self._levels.get(event.kind, logging.INFO)
        if not self._logger.isEnabledFor(level):
            return
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
        self._logger.log(
            level,
            "resilience %s %s: %s",
            event.kind,
            where,
            what,
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
            },
        )
