"""What the soak watches while it runs: call outcomes and times, the process's threads,
file descriptors and memory, and how late the machine wakes a sleeping thread.

Everything here has fixed-size state (counters, 1 ms histograms, a capped list of
examples), so watching an hour costs no more memory than watching a minute.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

__all__ = ["BreakerTimeline", "CallStats", "LagProbe", "ResourceSampler", "Violation", "flat"]

_BUCKETS = 5000  # 1 ms buckets; the last one holds everything slower


@dataclass(frozen=True)
class Violation:
    """One broken invariant: what, where, when (seconds into the run), and the position
    in the datastore's fault schedule, to replay it from the seed."""

    invariant: str
    datastore: str
    offset: float
    detail: str
    position: str

    def line(self) -> str:
        where = f" [{self.datastore}]" if self.datastore else ""
        return (f"{self.invariant}{where} at {self.offset:.3f} s: {self.detail} "
                f"(schedule: {self.position})")


class Histogram:
    """Durations in 1 ms buckets: count, max and percentiles (to the millisecond)."""

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.buckets[min(int(seconds * 1000), _BUCKETS - 1)] += 1
        self.count += 1
        self.max = max(self.max, seconds)

    def percentile(self, p: float) -> float:
        """Upper edge (seconds) of the bucket holding the ``p``-th percentile."""
        if not self.count:
            return 0.0
        rank, seen = p / 100 * self.count, 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                if i == _BUCKETS - 1:  # the overflow bucket: its only known edge is max
                    return self.max
                return min((i + 1) / 1000, self.max)
        return self.max

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "p50_ms": self.percentile(50) * 1000,
                "p99_ms": self.percentile(99) * 1000, "max_ms": round(self.max * 1000, 3)}


class CallStats:
    """Outcomes and durations of one datastore's calls in one mode (sync or async)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.times = Histogram()
        self.over = 0  # calls past the deadline limit, not explained by a stall
        self.excused = 0  # calls past the limit by less than a stall they lived through

    def record(self, outcome: str, elapsed: float) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.times.add(elapsed)

    def judged(self, excused: bool) -> None:
        """Count a call past the limit once it was judged (see ``_Run.judge``)."""
        with self.lock:
            if excused:
                self.excused += 1
            else:
                self.over += 1

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"calls": self.times.count, "outcomes": dict(self.outcomes.most_common()),
                    "past_limit": self.over,
                    "past_limit_in_stall": self.excused, **self.times.summary()}


class LagProbe:
    """How late this machine wakes a sleeping thread (and the asyncio loop): a thread
    sleeps ``period`` seconds again and again, and :meth:`aprobe` does the same as a
    task on the soak's loop. Each late wake-up is the scheduling (and GIL) delay any
    call's return could suffer at that moment; stalls over 2 ms are kept (the last
    4096) so a call that overran its limit can be matched with a stall it lived
    through (:meth:`stall_during`)."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.lateness = Histogram()
        self.stalls: deque[tuple[float, float]] = deque(maxlen=4096)  # (late from, woke)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-lag", daemon=True)

    def start(self) -> LagProbe:
        self._thread.start()
        return self

    def _add(self, slept_at: float, woke: float) -> None:
        late = max(0.0, woke - slept_at - self.period)
        self.lateness.add(late)
        if late > 0.002:
            self.stalls.append((slept_at + self.period, woke))

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            time.sleep(self.period)
            self._add(start, time.perf_counter())

    async def aprobe(self) -> None:
        """The loop's twin of the thread (run it as a task; it ends at :meth:`stop`)."""
        while not self._stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(self.period)
            self._add(start, time.perf_counter())

    def stall_during(self, t0: float, t1: float) -> float:
        """The longest stall (seconds) overlapping ``[t0, t1]`` (``perf_counter`` times)."""
        longest = 0.0
        for late_from, woke in list(self.stalls):  # list() copies under the GIL
            if late_from < t1 and woke > t0:
                longest = max(longest, woke - late_from)
        return longest

    def explains(self, stall: float, overrun: float) -> bool:
        """Whether a ``stall`` seen during a call explains its ``overrun`` (seconds past
        its limit). The probe sees a stall from the wake-up it planned, so a stall that
        began while it slept is seen up to one ``period`` short of what the call lived
        through; a call that saw no stall is never explained."""
        return stall > 0.0 and overrun <= stall + self.period

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


class BreakerTimeline:
    """When one datastore's breakers were all closed, sampled (every 20 ms by the run):
    the changes (a capped deque: a flapping breaker cannot grow it past ``maxlen``), the
    samples with one not closed, and how often they opened in each phase.

    A breaker can open again after the recovery, in a healthy phase, when calls time out
    on a loaded machine: :meth:`recovery` measures the heal-to-closed time, and
    :meth:`opened_after` how often they opened after that (set beside the warm-up's
    count, a baseline of the same healthy load).
    """

    def __init__(self, maxlen: int = 20_000) -> None:
        self.changes: deque[tuple[float, bool]] = deque(maxlen=maxlen)
        self.closed = True
        self.open_samples = 0
        self.opened: Counter[str] = Counter()  # phase -> times the breakers opened

    def sample(self, now: float, closed: bool, phase: str) -> None:
        if not closed:
            self.open_samples += 1
        if closed != self.closed:
            self.changes.append((now, closed))
            self.closed = closed
            if not closed:
                self.opened[phase] += 1

    def recovery(self, healed: float, end: float) -> tuple[float, bool]:
        """``(seconds from healed until all closed, still open at end)``; 0.0 if they
        were closed when the heal came."""
        changes = list(self.changes)
        if len(changes) == self.changes.maxlen and changes[0][0] > healed:
            # The changes around the heal fell out of the deque: the last closing then.
            last_open = max((t for t, closed in changes if closed), default=end)
            return max(0.0, last_open - healed), not self.closed
        at_heal = True
        for t, closed in changes:
            if t > healed:
                break
            at_heal = closed
        if at_heal:
            return 0.0, False
        closing = next((t for t, closed in changes if t > healed and closed), None)
        return (end - healed, True) if closing is None else (closing - healed, False)

    def opened_after(self, t0: float) -> int:
        """How often the breakers opened after ``t0`` (seconds into the run)."""
        return sum(1 for t, closed in self.changes if t > t0 and not closed)


def _threads() -> int:
    """OS threads of this process (driver and proxy threads included)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return -1.0


class ResourceSampler:
    """Samples (offset, threads, fds, RSS MB) of this process every ``period`` seconds;
    at most ``cap`` samples are kept (older ones thinned by half when full)."""

    def __init__(self, period: float = 0.5, cap: int = 4000,
                 start: float | None = None) -> None:
        self.period, self.cap = period, cap
        self.samples: list[tuple[float, int, int, float]] = []
        self._start = time.monotonic() if start is None else start

    def sample(self) -> None:
        self.samples.append((time.monotonic() - self._start, _threads(), _fds(), _rss_mb()))
        if len(self.samples) > self.cap:
            self.samples = self.samples[::2]
            self.period *= 2


def flat(samples: list[tuple[float, int, int, float]], after: float,
         limits: dict[str, float]) -> dict[str, dict[str, float]]:
    """Growth of each resource from the first to the last quarter of the samples taken
    after ``after`` seconds (median against median, so a fault in progress at one end
    weighs little), with its limit and whether it held.

    ``limits``: ``threads`` and ``fds`` (counts), ``rss_mb`` (MB) and ``rss_ratio``
    (a share of the starting RSS added to ``rss_mb``).
    """
    rows = [s for s in samples if s[0] >= after]
    out: dict[str, dict[str, float]] = {}
    if len(rows) < 8:
        return out
    q = len(rows) // 4
    first, last = rows[:q], rows[-q:]
    for i, name in ((1, "threads"), (2, "fds"), (3, "rss_mb")):
        start = statistics.median(r[i] for r in first)
        end = statistics.median(r[i] for r in last)
        limit = limits[name] + (start * limits["rss_ratio"] if name == "rss_mb" else 0)
        out[name] = {"start": round(start, 2), "end": round(end, 2),
                     "growth": round(end - start, 2), "limit": round(limit, 2),
                     "max": max(r[i] for r in rows), "ok": end - start <= limit}
    return out
