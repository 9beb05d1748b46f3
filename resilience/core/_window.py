"""Sliding windows of call outcomes, and the permits the circuit breaker hands out.

A window lives for one CLOSED generation of its breaker: entering CLOSED builds a new
one, so an outcome reported late through an old permit lands in an orphaned window and
cannot disturb the current one. Outcome codes are ``failed | slow << 1`` (0 ok, 1
failed, 2 slow, 3 failed and slow).

* :class:`CountWindow` holds the last ``size`` outcomes without storing the successes.
  Every outcome takes the next number from an ``itertools.count`` (one C call, atomic
  under the GIL, so no number is lost or shared); a fast success does nothing else, with
  no lock. Failures and slow calls (recorded under the breaker's lock, so in order) keep
  their numbers in two deques. The window is the numbers in ``(last - size, last]``:
  totals drop the numbers that fell out of it, O(1) amortised, and count what is left.
* :class:`TimeWindow` splits ``duration`` into :data:`BUCKETS` buckets of equal width,
  indexed by ``floor(now / width)``, with running totals. Recording into a newer bucket
  first expires the buckets that left the window, so an outcome stays counted for
  between ``duration - width`` and ``duration`` seconds (the granularity is one bucket).
  An outcome stamped with a ``now`` older than the newest bucket (a thread that read
  the clock, then lost the race for the lock) goes into its own bucket if that bucket is
  still in the window and is dropped if it has expired. Its bookkeeping needs the
  breaker's lock: ``add_ok`` takes it, ``record`` and ``totals`` expect it held.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque

__all__ = ["BUCKETS", "PASS", "ClosedPermit", "CountWindow", "Permit", "TimeWindow"]

#: Buckets a time window is split into (1 s buckets for the default 10 s window).
BUCKETS = 10

# A bucket index far in the past, so the first record clears every bucket.
_NEVER = -(1 << 62)


class CountWindow:
    """The last ``size`` outcomes; fast successes are recorded without a lock.

    ``record`` and ``totals`` expect the breaker's lock held; ``add_ok`` needs none.

    Args:
        size: outcomes kept; at least 1.
    """

    __slots__ = ("_fails", "_seq", "_size", "_slows")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"window_size must be at least 1, got {size!r}")
        self._size = size
        self._seq = itertools.count()
        self._fails: deque[int] = deque()  # numbers of failed outcomes, ascending
        self._slows: deque[int] = deque()  # numbers of slow outcomes, ascending

    def add_ok(self, now: float) -> None:
        """Record a fast success. Lock-free: one atomic ``next`` on the counter."""
        next(self._seq)

    def record(self, now: float, code: int) -> None:
        """Record an outcome code (see the module docstring)."""
        n = next(self._seq)
        if code & 1:
            self._fails.append(n)
        if code & 2:
            self._slows.append(n)

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) among the last ``size`` outcomes."""
        # The number the next outcome will get, read without taking it (next() would add
        # an outcome). repr ("count(42)") is the one stable way to peek: count's
        # __reduce__/copy support was deprecated in 3.12 and is gone in 3.14. Cold path.
        nxt = int(repr(self._seq)[6:-1])
        oldest = nxt - self._size  # numbers below this have left the window
        for q in (self._fails, self._slows):
            while q and q[0] < oldest:
                q.popleft()
        return min(nxt, self._size), len(self._fails), len(self._slows)


class TimeWindow:
    """Outcomes of the last ``duration`` seconds, in :data:`BUCKETS` buckets.

    Args:
        duration: length of the window in seconds; greater than 0.
        lock: the breaker's lock, taken by ``add_ok``.
    """

    __slots__ = ("_b_calls", "_b_fails", "_b_slows", "_head", "_lock", "_totals", "_width")

    def __init__(self, duration: float, lock: threading.Lock) -> None:
        if not duration > 0:
            raise ValueError(f"window_duration must be greater than 0, got {duration!r}")
        self._width = duration / BUCKETS
        self._lock = lock
        self._b_calls = [0] * BUCKETS
        self._b_fails = [0] * BUCKETS
        self._b_slows = [0] * BUCKETS
        self._head = _NEVER  # index of the newest bucket
        self._totals = [0, 0, 0]  # calls, failures, slow calls

    def add_ok(self, now: float) -> None:
        """Record a fast success, under the breaker's lock (one short critical section)."""
        e = int(now // self._width)
        lock = self._lock
        lock.acquire()  # explicit acquire/release: half the cost of `with` on 3.11
        try:
            if e == self._head:  # the common case, inlined
                self._b_calls[e % BUCKETS] += 1
                self._totals[0] += 1
            else:
                self.record(now, 0)
        finally:
            lock.release()

    def record(self, now: float, code: int) -> None:
        """Record an outcome code stamped ``now``; the caller holds the lock."""
        e = int(now // self._width)
        if e > self._head:
            self._advance(e)
        elif e <= self._head - BUCKETS:
            return  # its bucket already left the window: it would expire at once
        i = e % BUCKETS
        failed = code & 1
        slow = code >> 1
        self._b_calls[i] += 1
        self._b_fails[i] += failed
        self._b_slows[i] += slow
        t = self._totals
        t[0] += 1
        t[1] += failed
        t[2] += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) at ``now``; the caller holds the lock."""
        e = int(now // self._width)
        if e > self._head:
            self._advance(e)
        t = self._totals
        return t[0], t[1], t[2]

    def _advance(self, e: int) -> None:
        # Make e the newest bucket: every bucket index in (head, e] is reused, so the
        # outcomes it held (from BUCKETS indices earlier) leave the window.
        bc, bf, bs, t = self._b_calls, self._b_fails, self._b_slows, self._totals
        if e - self._head >= BUCKETS:
            for i in range(BUCKETS):
                bc[i] = bf[i] = bs[i] = 0
            t[0] = t[1] = t[2] = 0
        else:
            for k in range(self._head + 1, e + 1):
                i = k % BUCKETS
                t[0] -= bc[i]
                t[1] -= bf[i]
                t[2] -= bs[i]
                bc[i] = bf[i] = bs[i] = 0
        self._head = e


class ClosedPermit:
    """Token shared by every call admitted in one CLOSED generation; carries its window
    and the breaker's slow-call duration (``slow_after``), so the pipeline records a
    fast success with ``permit.window.add_ok(now)`` and no breaker method in between."""

    __slots__ = ("generation", "slow_after", "window")

    def __init__(self, generation: int, window: CountWindow | TimeWindow,
                 slow_after: float = float("inf")) -> None:
        self.generation = generation
        self.window = window
        self.slow_after = slow_after

    def __repr__(self) -> str:
        return f"<breaker permit closed generation={self.generation}>"


class Permit:
    """Token of a half-open probe, or of a pass-through call (generation -1)."""

    __slots__ = ("done", "generation", "probe")

    def __init__(self, generation: int, probe: bool) -> None:
        self.generation = generation
        self.probe = probe
        self.done = False  # probes only: an outcome or release was already counted

    def __repr__(self) -> str:
        kind = "probe" if self.probe else "pass-through"
        return f"<breaker permit {kind} generation={self.generation}>"


# Handed out by the pass-through modes; its generation never matches, so nothing counts.
PASS = Permit(-1, False)
