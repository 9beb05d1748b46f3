"""Background health probes of open endpoints: recovery that does not wait out the outage.

Contract: docs/breaker.md#health-probes.

An OPEN breaker's interval grows on every failed user probe (1, 2, 4 ... up to
``max_open_duration``), so after a long outage the endpoint stays unused for up to that
long once it is back. A client that can check an endpoint cheaply without user traffic
(memcached ``version`` on a fresh connection) gets a *health probe*: while the breaker
is OPEN, the endpoint is checked every ``health_probe_interval`` (jittered ±25%), each
check bounded by ``health_probe_timeout``; the first one that succeeds calls
``breaker.probe_succeeded(now)`` (OPEN -> HALF_OPEN at once, growth reset), and the next
user call is the trial call as usual. User-traffic probing after the open interval goes
on as before; a client with no probe has only that.

Pieces:

* `ProbePlan`: the I/O-free schedule (which endpoint is due when). No clock, no thread.
* `ThreadProber`: one daemon thread for every sync client of the process (`SHARED`),
  started lazily when a breaker opens, exiting as soon as nothing is open (so an idle
  process has no thread), probing due endpoints one after another. The breaker opens
  inside a user call that just failed, often at its deadline: ``Thread.start()`` waits
  until the new thread runs, which on a loaded machine (the GIL and both cores
  contended) can take tens of milliseconds more, so a throwaway low-level thread starts
  it instead and the call returns at once. After a fork the
  child gets a fresh lock and, if something was being watched, a fresh thread.
* `AsyncProber`: the same as one task on the client's event loop (probes of due
  endpoints run concurrently); it ends when nothing is open.
* `ClientProbing`: the glue a client holds: it listens to its breakers, hands each
  breaker that turns OPEN to the runner, and on ``close()`` unsubscribes and forgets
  them.

A probe is ``probe(timeout)`` (sync) or ``await probe(timeout)`` (async): returns when
the endpoint answered, raises anything on failure. It must honour ``timeout`` itself;
the async runner also cancels it at ``timeout``.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from resilience.core.breaker import BreakerState, CircuitBreaker
from resilience.core.events import EventBus

__all__ = ["SHARED", "AsyncProber", "ClientProbing", "ProbePlan", "Target", "ThreadProber"]

_log = logging.getLogger(__name__)
_OPEN = BreakerState.OPEN
_INF = float("inf")


@dataclass(eq=False)
class Target:
    """One endpoint to watch: its breaker, its probe and the pacing.

    ``now`` is the breaker's clock (the client's; a fake one in tests); the pacing
    itself is in real monotonic seconds, as the runner sleeps in real time.
    """

    breaker: CircuitBreaker
    probe: Callable[[float], Any]
    interval: float
    timeout: float
    now: Callable[[], float] = time.monotonic
    owner: object = None
    due: float = field(default=0.0, compare=False)
    rewatched: bool = field(default=False, compare=False)


class ProbePlan:
    """Which targets are due when; no I/O, no clock (times are passed in).

    ``add`` schedules a target one jittered interval from ``now`` (a breaker that has
    just opened is not checked in the same instant). ``take_due`` hands out the due
    targets and marks them in flight; ``done`` drops a target that succeeded or whose
    breaker is no longer OPEN, and re-schedules the others.
    """

    __slots__ = ("_rng", "targets")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self.targets: list[Target] = []

    def _pace(self, t: Target, now: float) -> None:
        t.due = now + t.interval * (0.75 + 0.5 * self._rng.random())

    def add(self, target: Target, now: float) -> None:
        """Watch ``target`` (once: a target already watched keeps its schedule)."""
        for t in self.targets:
            if t.breaker is target.breaker and t.owner is target.owner:
                if t.due == _INF:
                    # In flight: its breaker re-opened after the probe began (a failed
                    # trial call), so the probe's end must not drop it as settled.
                    t.rewatched = True
                return
        self._pace(target, now)
        self.targets.append(target)

    def forget(self, owner: object) -> None:
        """Stop watching every target of ``owner``."""
        self.targets = [t for t in self.targets if t.owner is not owner]

    def next_wake(self) -> float | None:
        """When the next target is due; None when nothing is watched."""
        return min((t.due for t in self.targets), default=None)

    def take_due(self, now: float) -> list[Target]:
        """The targets due at ``now``, marked in flight (not due again until done)."""
        due = [t for t in self.targets if t.due <= now]
        for t in due:
            t.due = _INF
        return due

    def done(self, target: Target, settled: bool, now: float) -> None:
        """Record a probe's end: drop the target if ``settled`` (its probe succeeded or
        its breaker left OPEN) unless it was watched again meanwhile, else pace it."""
        if target not in self.targets:
            return  # forgotten while the probe ran
        if settled and not target.rewatched:
            self.targets.remove(target)
        else:
            target.rewatched = False  # the next probe's end decides again
            self._pace(target, now)


def _settle(target: Target, ok: bool, live: bool) -> bool:
    # Runs with no runner lock held (breaker listeners fire here). A success moves the
    # breaker (unless the target was forgotten meanwhile); a breaker no longer OPEN
    # needs no more probes.
    if ok:
        if live:
            target.breaker.probe_succeeded(target.now())
        return True
    # The state as it last moved, not state(now): that would turn an OPEN breaker past
    # its interval HALF_OPEN by itself, and probing would stop on an endpoint that may
    # still be down (with no user traffic to try it). probe_succeeded() accepts it.
    return target.breaker._state is not _OPEN


class ThreadProber:
    """Probes for sync clients on one lazily started daemon thread; see the module doc."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._plan = ProbePlan(rng)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is started or starting (it exits once nothing is watched)."""
        return self._thread is not None

    def watch(self, target: Target) -> None:
        """Probe ``target`` until its breaker leaves OPEN or it is forgotten.

        Never waits for the prober thread to start (see the module docstring)."""
        with self._cond:
            self._plan.add(target, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="resilience-prober", daemon=True)
                _thread.start_new_thread(_start, (self._thread,))
            self._cond.notify()

    def forget(self, owner: object) -> None:
        """Stop probing every target of ``owner`` (a closing client)."""
        with self._cond:
            self._plan.forget(owner)
            self._cond.notify()

    def _after_fork(self) -> None:
        # The parent's thread does not exist here and its lock may be held: start over.
        self._cond = threading.Condition()
        self._thread = None
        if self._plan.targets:
            self._thread = threading.Thread(
                target=self._run, name="resilience-prober", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while True:
                    if self._thread is not me:
                        return  # replaced (after a fork)
                    wake = self._plan.next_wake()
                    if wake is None:
                        self._thread = None  # nothing open: the thread ends
                        return
                    now = time.monotonic()
                    if wake <= now:
                        due = self._plan.take_due(now)
                        break
                    self._cond.wait(min(wake - now, 1.0))  # re-checked at least each second
            for t in due:  # one after another: each is bounded by its timeout
                ok = _probe_sync(t)
                with self._cond:
                    live = t in self._plan.targets
                settled = _settle(t, ok, live)
                with self._cond:
                    self._plan.done(t, settled, time.monotonic())


def _start(thread: threading.Thread) -> None:
    # Runs on a bare low-level thread (no threading.Thread of its own: nothing to clean
    # up) and ends once ``thread`` runs. It cannot start at interpreter shutdown: then
    # nothing is probed, as no thread would run anyway.
    with contextlib.suppress(RuntimeError):
        thread.start()


def _probe_sync(t: Target) -> bool:
    try:
        t.probe(t.timeout)
    except Exception as exc:
        _log.debug("health probe of %s failed: %r", t.breaker.name, exc)
        return False
    return True


class AsyncProber:
    """Probes for one async client: one task on its event loop; see the module doc."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 rng: random.Random | None = None) -> None:
        self.loop = loop
        self._plan = ProbePlan(rng)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def running(self) -> bool:
        """Whether the task is alive (it ends once nothing is watched)."""
        return self._task is not None and not self._task.done()

    def watch(self, target: Target) -> None:
        """Probe ``target``; call in the loop's thread."""
        self._plan.add(target, self.loop.time())
        if not self.running:
            self._task = self.loop.create_task(self._run(), name="resilience-prober")
        self._wake.set()

    def close(self) -> None:
        """Stop probing; the task is cancelled."""
        self._plan.targets = []
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        loop = self.loop
        while True:
            wake = self._plan.next_wake()
            if wake is None:
                return
            delay = wake - loop.time()
            if delay > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            due = self._plan.take_due(loop.time())
            oks = await asyncio.gather(*(_probe_async(t) for t in due))
            for t, ok in zip(due, oks, strict=True):
                self._plan.done(t, _settle(t, ok, t in self._plan.targets), loop.time())


async def _probe_async(t: Target) -> bool:
    try:
        async with asyncio.timeout(t.timeout):
            await t.probe(t.timeout)
    except Exception as exc:
        _log.debug("health probe of %s failed: %r", t.breaker.name, exc)
        return False
    return True


SHARED = ThreadProber()
"""The one prober thread of every sync client in this process."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=SHARED._after_fork)


class ClientProbing:
    """A client's health probing: listens to its breakers and feeds a runner.

    Args:
        interval, timeout: the pacing and the time limit of one probe (seconds).
        now: the breakers' clock.
        probe: ``probe(index, timeout)`` for a sync client, or
        aprobe: ``await aprobe(index, timeout)`` for an async one (exactly one of them).
        prober: the sync runner (`SHARED` by default).
        events, service: each probe's end is a ``health_probe`` event on ``events``
            (``reason`` ``ok`` or ``failed``; metrics count it as a probe attempt).
    """

    def __init__(self, *, interval: float, timeout: float, now: Callable[[], float],
                 probe: Callable[[int, float], None] | None = None,
                 aprobe: Callable[[int, float], Awaitable[None]] | None = None,
                 prober: ThreadProber | None = None, events: EventBus | None = None,
                 service: str = "") -> None:
        self._interval, self._timeout, self._now = interval, timeout, now
        self._events, self._service = events, service
        self._names: dict[int, str] = {}
        self._probe, self._aprobe = probe, aprobe
        self._prober = prober or SHARED
        self._async: AsyncProber | None = None
        self._index: dict[int, int] = {}  # id(breaker) -> endpoint index
        self._unsubscribe: list[Callable[[], None]] = []
        self._closed = False

    def add(self, index: int, breaker: CircuitBreaker) -> None:
        """Watch endpoint ``index``'s breaker from now on."""
        self._index[id(breaker)] = index
        self._names[index] = breaker.name
        self._unsubscribe.append(breaker.add_listener(self._changed))

    def _changed(self, b: CircuitBreaker, old: BreakerState, new: BreakerState,
                 now: float) -> None:
        index = self._index.get(id(b))
        if new is not _OPEN or index is None or self._closed:
            return
        if self._probe is not None:
            self._prober.watch(Target(b, _bind(self._probe, index, self._report),
                                      self._interval,
                                      self._timeout, self._now, self))
            return
        assert self._aprobe is not None
        target = Target(b, _abind(self._aprobe, index, self._report), self._interval,
                        self._timeout,
                        self._now, self)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # opened outside the loop (a shared registry's sync user)
            if self._async is not None:
                self._async.loop.call_soon_threadsafe(self._async.watch, target)
            return  # no loop known yet: user-traffic probing only
        if self._async is None or self._async.loop is not loop:
            if self._async is not None:
                self._async.close()
            self._async = AsyncProber(loop)
        self._async.watch(target)

    @property
    def running(self) -> bool:
        """Whether a probe runner (thread or task) is alive for this client."""
        if self._async is not None:
            return self._async.running
        return self._prober.running and any(
            t.owner is self for t in list(self._prober._plan.targets))

    def _report(self, index: int, ok: bool) -> None:
        bus = self._events
        if bus is not None and bus.listeners:
            bus.emit("health_probe", self._service, "health_probe", self._names[index],
                     reason="ok" if ok else "failed", attempt_kind="probe")

    def close(self) -> None:
        """Stop listening and probing (the shared thread ends if nothing else is open)."""
        self._closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self._prober.forget(self)
        if self._async is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: task gone too
                self._async.close()


def _bind(fn: Callable[[int, float], None], index: int,
          report: Callable[[int, bool], None]) -> Callable[[float], None]:
    def probe(timeout: float) -> None:
        try:
            fn(index, timeout)
        except BaseException:
            report(index, False)
            raise
        report(index, True)

    return probe


def _abind(fn: Callable[[int, float], Awaitable[None]], index: int,
           report: Callable[[int, bool], None]) -> Callable[[float], Awaitable[None]]:
    async def probe(timeout: float) -> None:
        try:
            await fn(index, timeout)
        except BaseException:
            report(index, False)
            raise
        report(index, True)

    return probe
