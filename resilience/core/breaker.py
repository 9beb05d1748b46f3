"""Circuit breaker per endpoint: a small I/O-free state machine.

Contract: docs/architecture.md#per-endpoint-breakers.

Theory of operation
-------------------
The pipeline asks, records and moves on; the breaker never sees the guarded call::

    permit = breaker.acquire(now)                # None: rejected, raise CircuitOpenError
    ... the call, with no breaker lock held ...
    breaker.on_success(permit, now, duration)    # or on_failure(...), or release(permit)

States and transitions::

                 rate >= threshold (window holds >= minimum_calls)
      CLOSED ───────────────────────────────────────────────> OPEN
        ^                                                     │  ^
        │ half_open_probes successes are in and               │  │ a probe fails, or the
        │ their slow share < slow_call_rate                   │  │ probes' slow share is
        │                                                     v  │ >= slow_call_rate
        └───────────────────────────────────────────────── HALF_OPEN
                     open interval passed: lazily, on the next acquire/state/snapshot;
                     or at once on probe_succeeded() (a background health probe)

    FORCED_OPEN    force_open(): reject everything
    FORCED_CLOSED  force_closed(): admit everything, record nothing
    DISABLED       disable(), or options.enabled=False: like FORCED_CLOSED
    reset()        back to CLOSED (DISABLED if not enabled), new window, no growth

* CLOSED records outcomes in a sliding window (count or time, see ``_window``); a call
  lasting ``slow_call_duration`` or more is slow, a slow failure counts as both. Rates
  are judged when a failed or slow outcome is recorded and the window holds
  ``minimum_calls`` (capped at ``window_size`` for a count window). A fast success is
  never judged: it cannot be what makes a dependency unhealthy, and skipping the verdict
  keeps its path lock-free (unlike resilience4j, a success that only completes
  ``minimum_calls`` does not trip; the next failure does).
* OPEN rejects without I/O. The interval starts at ``open_duration``, is multiplied by
  ``open_backoff`` on each re-open from HALF_OPEN up to ``max_open_duration``, then gets a
  random share up to ``jitter`` added (injected rng; after the cap, so capped breakers
  still spread their probes). Closing resets the growth.
* ``probe_succeeded(now)``: an out-of-band health check of the endpoint (no user
  traffic; :mod:`resilience.core.prober` runs them) succeeded. OPEN turns HALF_OPEN at
  once and the interval growth is reset, so recovery after a heal no longer waits out
  an interval that grew during a long outage. Other states ignore it.
* HALF_OPEN admits ``half_open_probes`` trial calls in all; callers beyond the free slots
  are rejected; a released probe frees its slot. The first failed probe re-opens at once;
  otherwise the verdict comes when ``half_open_probes`` successes are in.

Generations. Each transition starts one; a permit carries the one it was issued in, and
outcomes from older ones are ignored (as in gobreaker): a slow call admitted while CLOSED
that ends after the breaker opened must not sway the HALF_OPEN verdict nor the next
CLOSED window. A CLOSED permit is shared by its generation's calls and carries that
generation's window, so a late fast success lands in an orphaned window and a late
failure fails ``permit is self._closed_permit``.

Locking. Lock-free: ``acquire`` in CLOSED and the pass-through modes (one read, one
compare), an OPEN rejection, and a fast success with a count window (one atomic
``next()`` on a counter); a time window takes one short critical section. ``self._lock``
guards state, generation, window, probe counters and open deadline, for a few
arithmetic operations (O(1) amortised, whatever the window size); it is never held
across the call nor while listeners run. Listeners run after it is released, in the
thread that caused the change; one that raises is logged and skipped. Nothing blocks,
so asyncio code uses the breaker as is.

Time comes from the caller (``now``, monotonic): the call path reads no clock. Only the
manual actions read ``time.monotonic`` when given no ``now``, to stamp their event.

Cost (timeit, CPython 3.11, the shared 2-core machine): ``acquire`` + ``on_success`` in
CLOSED 0.16 µs with a count window, 0.37 µs with a time window; an OPEN reject 0.09 µs.

The pipeline's copy of the fast paths (a contract). `resilience.core.pipeline` ``call``
and ``acall`` do not call ``acquire``, nor ``on_success`` for a fast success: they inline
both, which saves about 70 ns of a call of about 1 µs (timeit: ``acquire`` 50 ns against
17 ns inlined, ``on_success`` 127 ns against 92 ns)::

    acquire(now)                   is   self._fast_permit or self._acquire_slow(now)
    on_success(permit, end, d)     is   permit.window.add_ok(end)
        when type(permit) is ClosedPermit and d < permit.slow_after

(and ``_circuit_open`` reads ``self._name``). So: ``_fast_permit`` is the permit every
call gets with no verdict (the CLOSED generation's `ClosedPermit`, ``PASS`` in the
pass-through modes) or None, and ``_acquire_slow`` never raises; a ClosedPermit's
``slow_after`` is this breaker's ``slow_call_duration``; a fast success in CLOSED is
``window.add_ok`` and nothing else (no verdict, no lock of ours). A change to
``acquire``, ``on_success`` or these fields must be made in the pipeline too:
tests/core/test_breaker_stateful.py drives one reference model both directly and
through the pipeline and fails when the two sides differ. A subclass could not keep
the contract (the pipeline would bypass its overrides), so the class is final:
``typing.final`` for type checkers, and defining a subclass raises TypeError. Checking
``type(breaker) is CircuitBreaker`` in the pipeline instead would cost two checks of
18 ns on every call.

`BreakerRegistry` (breakers keyed by endpoint) is written in ``_registry`` and imported
from here; the windows and permits are in ``_window``.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from typing import Any, final

from resilience.config import BreakerOptions
from resilience.core._registry import BreakerRegistry, _check, _notify, _subscribe
from resilience.core._window import PASS, ClosedPermit, CountWindow, Permit, TimeWindow

__all__ = ["BreakerRegistry", "BreakerState", "CircuitBreaker", "Listener"]


class BreakerState(enum.Enum):
    """Where a breaker stands; the values are what snapshots and events show."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"
    DISABLED = "disabled"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_FORCED_CLOSED = BreakerState.FORCED_CLOSED
_DISABLED = BreakerState.DISABLED

Listener = Callable[["CircuitBreaker", BreakerState, BreakerState, float], None]
_Change = tuple[BreakerState, BreakerState]


@final
class CircuitBreaker:
    """One endpoint's breaker. Thread-safe; never blocks; reads no clock on the call path.

    Final: the pipeline inlines its fast paths (see the module docstring), so it would
    bypass a subclass's overrides. Wrap a breaker, or listen to it, instead.

    Args:
        options: validated breaker options.
        name: the endpoint, for snapshots, events and log lines.
        rng: source of the open-interval jitter; inject a seeded one to replay.

    Raises:
        TypeError: options is not a BreakerOptions (whose own checks raise ConfigError);
            an outcome or release() is given something that is not a permit; a class
            derives from CircuitBreaker.

    Methods take ``now`` (the caller's monotonic reading), ``permit`` (what acquire()
    returned) and ``duration`` (seconds the call took).
    """

    # Packed: twenty one-per-line names would say no more.
    # fmt: off
    __slots__ = (
        "_closed_permit", "_fail_rate", "_fast_permit", "_gen", "_interval", "_listeners", "_lock",
        "_min_calls", "_name", "_open_for", "_open_until", "_options", "_probe_ok", "_probe_slow",
        "_probes_out", "_rng", "_slow_dur", "_slow_rate", "_state", "_window",
    )
    # fmt: on

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError(
            f"{cls.__qualname__}: CircuitBreaker cannot be subclassed; the pipeline inlines"
            " its acquire() and on_success() fast paths and would bypass overrides"
            " (see resilience.core.breaker). Wrap a breaker or add a listener instead."
        )

    def __init__(
        self, options: BreakerOptions, *, name: str = "", rng: random.Random | None = None
    ) -> None:
        _check(options)
        self._options = options
        self._name = name
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        self._window = self._new_window()
        count = options.window == "count"  # a count window can never hold more than its size
        self._min_calls = min(options.minimum_calls, options.window_size if count else 1 << 62)
        self._fail_rate = options.failure_rate
        self._slow_rate = options.slow_call_rate
        self._slow_dur = options.slow_call_duration
        self._interval = options.open_duration  # base of the next open interval
        self._open_for = 0.0  # jittered length of the latest open interval
        self._open_until = 0.0
        self._probes_out = self._probe_ok = self._probe_slow = self._gen = 0
        self._state = _CLOSED
        self._closed_permit: ClosedPermit | None = None
        self._fast_permit: ClosedPermit | Permit | None = None
        self._to(_CLOSED if options.enabled else _DISABLED)

    @property
    def name(self) -> str:
        """The endpoint this breaker guards."""
        return self._name

    @property
    def options(self) -> BreakerOptions:
        """The options the breaker was built with."""
        return self._options

    # -- the call path ----------------------------------------------------------------

    def acquire(self, now: float) -> object | None:
        """Ask to make a call: a permit to hand back with the outcome, or None if rejected.

        Never raises on rejection (the pipeline builds the CircuitOpenError). In CLOSED,
        FORCED_CLOSED and DISABLED this is lock-free and always admits.

        Contract: ``pipeline.call``/``acall`` inline this body as ``_fast_permit or
        _acquire_slow(now)`` (module docstring); change both or neither.
        """
        permit = self._fast_permit
        if permit is not None:
            return permit
        return self._acquire_slow(now)

    def on_success(self, permit: object, now: float, duration: float) -> None:
        """Record a call that succeeded after ``duration`` seconds (slow if long enough).

        Contract: ``pipeline.call``/``acall`` inline the fast CLOSED branch as
        ``permit.window.add_ok(now)`` when ``duration < permit.slow_after`` (module
        docstring); change both or neither.
        """
        if duration < self._slow_dur:
            if type(permit) is ClosedPermit:
                # The hot path: no verdict, and no lock with a count window.
                permit.window.add_ok(now)
                return
            self._outcome(permit, now, 0)
        else:
            self._outcome(permit, now, 2)

    def on_failure(self, permit: object, now: float, duration: float) -> None:
        """Record a call that failed after ``duration`` seconds (also slow if long enough)."""
        self._outcome(permit, now, 1 if duration < self._slow_dur else 3)

    def release(self, permit: object) -> None:
        """Give a permit back with no outcome (the call was cancelled or never made).

        Frees a half-open probe slot; does nothing for other permits.
        """
        if type(permit) is ClosedPermit:
            return
        if not isinstance(permit, Permit):
            raise TypeError(f"release() needs a permit from acquire(), got {permit!r}")
        if permit.probe:
            with self._lock:
                if permit.generation == self._gen and not permit.done:
                    permit.done = True
                    self._probes_out -= 1

    def retry_after(self, now: float) -> float:
        """Seconds until a probe may go through; 0.0 unless OPEN (or when unknown)."""
        # Lock-free: _open_until is always written before _state becomes OPEN.
        if self._state is _OPEN:
            return max(0.0, self._open_until - now)
        return 0.0

    def state(self, now: float) -> BreakerState:
        """The state at ``now``; an OPEN breaker whose interval has passed turns HALF_OPEN."""
        if self._state is _OPEN and now >= self._open_until:
            with self._lock:  # re-check: another thread may have moved it already
                if self._state is not _OPEN or now < self._open_until:
                    return self._state
                change = self._to(_HALF_OPEN)
            self._fire(change, now)
        return self._state

    def probe_succeeded(self, now: float) -> bool:
        """A background health probe of the endpoint succeeded: OPEN -> HALF_OPEN now.

        The open-interval growth is reset (as closing would), so a user probe that
        fails re-opens for ``open_duration * open_backoff``, not for an interval grown
        over the whole outage. The verdict still comes from user calls in HALF_OPEN.
        Returns True if this moved the breaker; False in any other state.
        """
        with self._lock:
            if self._state is not _OPEN:
                return False
            self._interval = self._options.open_duration
            change = self._to(_HALF_OPEN)
        self._fire(change, now)
        return True

    # -- manual modes -----------------------------------------------------------------

    def force_open(self, now: float | None = None) -> None:
        """Reject every call until reset() or another manual mode."""
        self._manual(_FORCED_OPEN, now)

    def force_closed(self, now: float | None = None) -> None:
        """Admit every call and record nothing until reset() or another manual mode."""
        self._manual(_FORCED_CLOSED, now)

    def disable(self, now: float | None = None) -> None:
        """Like force_closed(), reported as DISABLED."""
        self._manual(_DISABLED, now)

    def reset(self, now: float | None = None) -> None:
        """Back to CLOSED (DISABLED if options.enabled is False), empty window, no growth.

        Outcomes of calls admitted before the reset are ignored.
        """
        self._manual(_CLOSED if self._options.enabled else _DISABLED, now, always=True)

    # -- observation ------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(breaker, old, new, now)`` after every state change; returns unsubscribe.

        Listeners run outside the lock in the thread that caused the change; one that
        raises is logged and skipped.
        """
        return _subscribe(self, fn)

    def snapshot(self, now: float) -> dict[str, Any]:
        """A consistent view at ``now`` for events, the CLI and tests.

        Keys: name, state (its value), window, calls, failures, slow_calls, failure_rate
        and slow_call_rate (0.0 when empty), minimum_calls, open_interval (latest, with
        jitter; 0.0 if never opened), next_open_interval (without jitter), retry_after,
        probes_in_flight, probe_successes, generation.
        """
        self.state(now)
        with self._lock:
            n, failures, slows = self._window.totals(now)
            return {
                "name": self._name,
                "state": self._state.value,
                "window": self._options.window,
                "calls": n,
                "failures": failures,
                "slow_calls": slows,
                "failure_rate": failures / n if n else 0.0,
                "slow_call_rate": slows / n if n else 0.0,
                "minimum_calls": self._min_calls,
                "open_interval": self._open_for,
                "next_open_interval": self._interval,
                "retry_after": self.retry_after(now),
                "probes_in_flight": self._probes_out,
                "probe_successes": self._probe_ok,
                "generation": self._gen,
            }

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._state.value}>"

    # -- internals: the _acquire_slow, _outcome, _manual and _fire take no lock on entry;
    # -- the others run with self._lock held

    def _new_window(self) -> CountWindow | TimeWindow:
        o = self._options
        if o.window == "count":
            return CountWindow(o.window_size)
        return TimeWindow(o.window_duration, self._lock)

    def _acquire_slow(self, now: float) -> ClosedPermit | Permit | None:
        state = self._state
        if state is _FORCED_OPEN or (state is _OPEN and now < self._open_until):
            return None  # the reject path needs no lock either
        change = None
        with self._lock:
            state = self._state
            if state is _OPEN:
                if now < self._open_until:
                    return None
                change = self._to(_HALF_OPEN)
                state = _HALF_OPEN
            if state is _HALF_OPEN:
                if self._probes_out + self._probe_ok < self._options.half_open_probes:
                    self._probes_out += 1
                    permit: ClosedPermit | Permit | None = Permit(self._gen, True)
                else:
                    permit = None
            else:
                # CLOSED or a pass-through mode since the lock-free read, or FORCED_OPEN.
                permit = self._fast_permit
        if change is not None:
            self._fire(change, now)
        return permit

    def _outcome(self, permit: object, now: float, code: int) -> None:
        # Every outcome but a CLOSED fast success comes here.
        if permit is PASS:
            return  # pass-through modes record nothing: no lock either
        with self._lock:
            if type(permit) is ClosedPermit:
                if permit is not self._closed_permit:
                    return  # admitted in an earlier generation
                w = permit.window
                w.record(now, code)
                n, failures, slows = w.totals(now)
                if n < self._min_calls or (
                    failures / n < self._fail_rate and slows / n < self._slow_rate
                ):
                    return
                change = self._open(now, grow=False)
            else:
                probe_change = self._probe_outcome(permit, now, code)
                if probe_change is None:
                    return
                change = probe_change
        self._fire(change, now)

    def _probe_outcome(self, permit: object, now: float, code: int) -> _Change | None:
        if not isinstance(permit, Permit):
            raise TypeError(f"an outcome needs a permit from acquire(), got {permit!r}")
        if not permit.probe or permit.generation != self._gen or permit.done:
            return None  # stale generation, pass-through permit, or already counted
        permit.done = True
        self._probes_out -= 1
        if code & 1:
            return self._open(now, grow=True)
        self._probe_ok += 1
        self._probe_slow += code >> 1
        n = self._options.half_open_probes
        if self._probe_ok < n:
            return None
        if self._probe_slow / n >= self._slow_rate:
            return self._open(now, grow=True)
        return self._to(_CLOSED)

    def _open(self, now: float, *, grow: bool) -> _Change:
        o = self._options
        if grow:
            self._interval = min(self._interval * o.open_backoff, o.max_open_duration)
        interval = self._interval
        if o.jitter:
            interval += interval * o.jitter * self._rng.random()
        self._open_for = interval
        self._open_until = now + interval
        return self._to(_OPEN)

    def _to(self, new: BreakerState) -> _Change:
        # Enter `new`: a new generation, so every permit issued so far goes stale.
        old = self._state
        self._gen += 1
        self._probes_out = self._probe_ok = self._probe_slow = 0
        if new is _CLOSED:
            self._window = self._new_window()
            self._interval = self._options.open_duration
            self._closed_permit = self._fast_permit = ClosedPermit(
                self._gen, self._window, self._slow_dur)
        elif new is _FORCED_CLOSED or new is _DISABLED:
            self._closed_permit = None
            self._fast_permit = PASS
        else:
            self._closed_permit = self._fast_permit = None
        self._state = new
        return old, new

    def _manual(self, new: BreakerState, now: float | None, *, always: bool = False) -> None:
        with self._lock:
            if self._state is new and not always:
                return
            if always:  # reset(): forget the window and the interval growth too
                self._window = self._new_window()
                self._interval = self._options.open_duration
            change = self._to(new)
        if change[0] is not change[1]:
            self._fire(change, time.monotonic() if now is None else now)

    def _fire(self, change: _Change, now: float) -> None:
        if self._listeners:
            _notify(self._listeners, self, change, now)
