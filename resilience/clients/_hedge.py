"""Running a hedged read: the second attempt, the race, the loser cancelled (sync and async).

The decision (delay, budget, counts) is :class:`resilience.core.hedge.HedgePolicy`; a
client supplies ``run(token)``, one whole pipeline call of the read, and
``hedge(token)``, one whole pipeline call of its hedge (operation ``<op>/hedge``: its
attempts have kind ``hedge``, it is never retried). Both get the same absolute
deadline, the caller's. docs/hedging.md says what a hedge goes to in each client.

Sync (:func:`call_hedged`): the first attempt runs inline on the caller's thread, as an
unhedged call does. One timer thread per process holds the calls' hedge instants in a
heap; at a call's instant, if it has not ended and the budget allows, the hedge is
handed to a small pool of hedge threads (:data:`HEDGE_THREADS`). The first success
wins. The loser is cancelled through its `Token`: the client binds the token to the
attempt's socket, and cancelling shuts the socket down, so a thread blocked in
``recv`` returns at once; the attempt then raises `HedgeCancelled`, a BaseException,
which the pipeline treats as a cancellation (the breaker permit is released, no
outcome is recorded, no retry). A hedge that has not started when the first attempt
wins never starts. If one attempt fails, the call waits (within the deadline) for the
other; if both fail, the first attempt's error is raised.

Async (:func:`acall_hedged`): the first attempt and the hedge are tasks; the loser is
cancelled with ``Task.cancel()`` (the pipeline's cancellation path). The token is
unused (None).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from resilience.core.deadline import DEADLINE
from resilience.core.events import EventBus
from resilience.core.hedge import HedgePolicy

__all__ = [
    "CANCEL",
    "HEDGE_SUFFIX",
    "HedgeCancelled",
    "Token",
    "acall_hedged",
    "call_hedged",
    "deadline_at",
    "guard",
    "guard_context",
]

T = TypeVar("T")

HEDGE_SUFFIX = "/hedge"
"""``get/hedge`` is the operation of ``get``'s hedges (kind ``hedge``, never retried)."""

HEDGE_THREADS = 8
"""Hedges of sync clients running at once in a process; more wait for a thread (and
give up if the call has ended by then)."""


class HedgeCancelled(BaseException):
    """The losing attempt of a hedged read, cancelled: not an outcome of the endpoint.

    A BaseException, like ``asyncio.CancelledError``, so the pipeline releases the
    breaker permit and records nothing."""


class Token:
    """Cancels one sync attempt from another thread: `cancel` runs the bound abort
    (which shuts the attempt's socket down), now or as soon as one is bound."""

    __slots__ = ("_abort", "_lock", "cancelled")

    def __init__(self) -> None:
        self.cancelled = False
        self._abort: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def bind(self, abort: Callable[[], None] | None) -> bool:
        """Set (or with None clear) what `cancel` does; runs it at once if cancelled.
        Returns whether the token is cancelled: after ``bind(None)`` returned False, no
        abort can run any more (so a connection whose call ended is safe to reuse)."""
        with self._lock:
            self._abort = abort
            cancelled = self.cancelled
        if cancelled and abort is not None:
            abort()
        return cancelled

    def cancel(self) -> None:
        """Cancel the attempt (idempotent)."""
        with self._lock:
            self.cancelled = True
            abort, self._abort = self._abort, None
        if abort is not None:
            abort()


CANCEL: contextvars.ContextVar[Token | None] = contextvars.ContextVar(
    "resilience_hedge_cancel", default=None)
"""The token of the sync attempt running in this context, for a connection class that
binds its socket to it when the request is sent (the search clients' pools)."""


def shutdown(sock: Any) -> None:
    """Abort a blocked ``recv``/``send`` on ``sock`` from another thread (never raises)."""
    if sock is None:
        return
    # Already closed, or not a socket: nothing is in flight on it.
    with contextlib.suppress(OSError, AttributeError):
        sock.shutdown(socket.SHUT_RDWR)


def guard(token: Token | None, fn: Callable[[Any], T],
          sock_of: Callable[[Any], Any]) -> Callable[[Any], T]:
    """``fn(conn)`` made cancellable by ``token``: ``sock_of(conn)`` is shut down on
    cancel, and whatever the cancelled call raises becomes `HedgeCancelled`."""
    if token is None:
        return fn

    def run(conn: Any) -> T:
        if token.bind(lambda: shutdown(sock_of(conn))):
            token.bind(None)
            raise HedgeCancelled
        # Cancelled as it ended: its socket may be shut down already, so the
        # connection must not go back to the pool (the client drops it on raise).
        return _unbound_after(token, fn, conn)

    return run


def _unbound_after(token: Token, fn: Callable[[Any], T], conn: Any) -> T:
    # ``fn(conn)``, then the token unbound; a call the token cancelled meanwhile (its
    # error, or its result) ends as HedgeCancelled.
    try:
        result = fn(conn)
    except Exception as exc:
        if token.bind(None):
            raise HedgeCancelled from exc
        raise
    except BaseException:
        token.bind(None)
        raise
    if token.bind(None):
        raise HedgeCancelled  # cancelled as it ended: its result is not wanted
    return result


def guard_context(token: Token | None, fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """``fn(conn)`` made cancellable by ``token`` through :data:`CANCEL`: for drivers
    whose socket is found below the call (a connection class binds it), not on ``conn``.
    Whatever the cancelled call raises becomes `HedgeCancelled`."""
    if token is None:
        return fn

    def run(conn: Any) -> T:
        if token.cancelled:
            raise HedgeCancelled
        reset = CANCEL.set(token)
        try:
            return _unbound_after(token, fn, conn)
        finally:
            CANCEL.reset(reset)

    return run


class _Timers:
    """One daemon thread per process firing callbacks at monotonic instants (a heap).
    A cancelled entry stays in the heap until its instant and is skipped then."""

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._clock = time.monotonic  # real time: the sockets' deadlines are real too
        self.pool = ThreadPoolExecutor(HEDGE_THREADS, thread_name_prefix="resilience-hedge")

    def add(self, at: float, fn: Callable[[], None]) -> list[Any]:
        entry = [at, next(self._seq), fn]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="resilience-hedge-timer",
                                                daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()
        return entry

    @staticmethod
    def cancel(entry: list[Any]) -> None:
        entry[2] = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = self._clock()
                    if self._heap and self._heap[0][0] <= now:
                        fn = heapq.heappop(self._heap)[2]
                        break
                    # Bounded wait: re-checks at least every second.
                    wait = min(1.0, self._heap[0][0] - now) if self._heap else 1.0
                    self._cond.wait(wait)
            if fn is not None:
                with contextlib.suppress(Exception):  # never kills the timer thread
                    fn()


_TIMERS: _Timers | None = None
_TIMERS_LOCK = threading.Lock()


def _forget_timers() -> None:
    # A forked child has neither the timer thread nor the pool's threads.
    global _TIMERS
    _TIMERS = None


os.register_at_fork(after_in_child=_forget_timers)


def _timers() -> _Timers:
    global _TIMERS
    if _TIMERS is None:
        with _TIMERS_LOCK:
            if _TIMERS is None:
                _TIMERS = _Timers()
    return _TIMERS


class _Race:
    __slots__ = ("done", "hedge_ended", "hedge_error", "hedge_started", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False  # an attempt's answer was taken (or the call ended)
        self.hedge_started = False
        self.hedge_ended = threading.Event()
        self.hedge_error: BaseException | None = None
        self.value: Any = None

    def claim(self) -> bool:
        with self.lock:
            if self.done:
                return False
            self.done = True
            return True


def deadline_at(now: float, timeout: float) -> float:
    """The instant a call starting at ``now`` with budget ``timeout`` must end by (the
    ambient deadline if sooner): what both attempts of a hedged read share."""
    at = now + timeout
    outer = DEADLINE.get()
    return outer if outer is not None and outer < at else at


def _emit_sent(bus: EventBus, service: str, op: str, endpoint: str, delay: float) -> None:
    if bus.listeners:
        bus.emit("hedge", service, op, endpoint, delay=delay, attempt_kind="hedge")


def call_hedged(policy: HedgePolicy, run: Callable[[Token], T], hedge: Callable[[Token], T],
                at: float, bus: EventBus, service: str, op: str, endpoint: str) -> T:
    """One hedged read (sync) that must end by the instant ``at``; see the module doc."""
    monotonic = policy.clock.monotonic
    start = monotonic()
    delay = policy.delay()
    policy.started(start)
    if delay is None or start + delay >= at:
        result = run(Token())
        policy.finished(monotonic() - start)
        return result
    race = _Race()
    first, second = Token(), Token()
    context = contextvars.copy_context()
    timers = _timers()

    def body() -> None:
        if race.done:  # the first attempt ended while this waited for a thread
            race.hedge_ended.set()
            return
        DEADLINE.set(at)  # inside the copied context: the caller's absolute deadline
        try:
            value = hedge(second)
        except BaseException as exc:  # reported to the caller's thread
            race.hedge_error = exc
        else:
            if race.claim():
                race.value = value
                policy.won += 1
                first.cancel()
        race.hedge_ended.set()

    def launch() -> None:
        if race.done or not policy.try_hedge(monotonic()):
            return
        race.hedge_started = True
        _emit_sent(bus, service, op, endpoint, delay)
        timers.pool.submit(context.run, body)

    entry = timers.add(time.monotonic() + delay, launch)
    try:
        result = run(first)
    except HedgeCancelled:
        # The hedge won: its answer is the call's. It set value before cancelling us.
        race.hedge_ended.wait(max(0.0, at - monotonic()) + 0.05)
        policy.finished(monotonic() - start)
        return race.value  # type: ignore[no-any-return]
    except Exception:
        _Timers.cancel(entry)
        if race.hedge_started and race.hedge_ended.wait(max(0.0, at - monotonic()) + 0.05) \
                and race.hedge_error is None and race.done:
            policy.finished(monotonic() - start)
            return race.value  # type: ignore[no-any-return]
        race.claim()
        raise
    except BaseException:  # interrupted: no hedge may start for a call that is gone
        _Timers.cancel(entry)
        if race.claim():
            second.cancel()
        raise
    _Timers.cancel(entry)
    if race.claim():
        second.cancel()
    policy.finished(monotonic() - start)
    return result


async def acall_hedged(policy: HedgePolicy, run: Callable[[Token], Awaitable[T]],
                       hedge: Callable[[Token], Awaitable[T]], at: float, bus: EventBus,
                       service: str, op: str, endpoint: str) -> T:
    """One hedged read (async) that must end by the instant ``at``: two tasks, the
    loser cancelled (its task, and its token for an attempt running on a worker
    thread); see the module doc."""
    monotonic = policy.clock.monotonic
    start = monotonic()
    delay = policy.delay()
    policy.started(start)
    if delay is None or start + delay >= at:
        result = await run(Token())
        policy.finished(monotonic() - start)
        return result
    tokens = (Token(), Token())
    reset = DEADLINE.set(at)  # both tasks copy the context: the caller's deadline
    try:
        first: asyncio.Future[T] = asyncio.ensure_future(run(tokens[0]))
    finally:
        DEADLINE.reset(reset)
    second: asyncio.Future[T] | None = None
    try:
        done, _ = await asyncio.wait((first,), timeout=delay)
        if not done and policy.try_hedge(monotonic()):
            _emit_sent(bus, service, op, endpoint, delay)
            reset = DEADLINE.set(at)
            try:
                second = asyncio.ensure_future(hedge(tokens[1]))
            finally:
                DEADLINE.reset(reset)
            pending = {first, second}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    if not fut.cancelled() and fut.exception() is None:
                        if fut is second:
                            policy.won += 1
                        policy.finished(monotonic() - start)
                        return fut.result()
            # Both failed: the first attempt's error.
        result = await first
        policy.finished(monotonic() - start)
        return result
    finally:
        for loser, token in ((first, tokens[0]), (second, tokens[1])):
            if loser is None:
                continue
            if not loser.done():
                token.cancel()
                loser.cancel()
            elif not loser.cancelled():
                loser.exception()  # a loser's failure is nobody's error: mark it seen
