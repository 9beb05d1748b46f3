"""Time each subject's calls under a fault, cutting hung calls at a cap.

Calls run on one worker thread per subject, so the main thread can stop waiting at the
cap. Each call is timed inside the worker (``perf_counter`` around the call alone, so
thread hand-off does not pollute microsecond figures). When a call passes the cap, the
runner records a hang, calls ``subject.abort()`` (which shuts the subject's sockets down
and wakes the blocked call) and stops measuring that subject under this fault: every
further call would hang the same way. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from resilience.bench.plugin import Subject

__all__ = ["Measurement", "measure", "outcome_name"]

_perf = time.perf_counter


def outcome_name(exc: BaseException | None, result: object = None) -> str:
    """How a call ended: ``ok``, ``miss`` (a read that found nothing) or the error class."""
    if exc is None:
        return "miss" if result is None else "ok"
    return type(exc).__name__


class _Worker:
    """A daemon thread that runs ``fn`` when asked, and times it."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self._go = threading.Event()
        self._done = threading.Event()
        self._stop = False
        self.duration = 0.0
        self.outcome = ""
        self._thread = threading.Thread(target=self._loop, name="bench-call", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self._stop:
                return
            start = _perf()
            try:
                result = self._fn()
                exc: BaseException | None = None
            except Exception as e:  # every failure is a measured outcome
                result, exc = None, e
            self.duration = _perf() - start
            self.outcome = outcome_name(exc, result)
            self._done.set()

    def run(self, cap: float) -> bool:
        """Run one call; True if it ended within ``cap`` seconds."""
        self._done.clear()
        self._go.set()
        return self._done.wait(cap)

    def stop(self, grace: float) -> bool:
        """Ask the thread to end; True if it did within ``grace`` seconds.

        Waits only the first time: a thread that outlived that grace is abandoned, and
        a second ``stop`` (``measure``'s cleanup after a hang) returns at once.
        """
        if not self._stop:
            self._stop = True
            self._go.set()
            self._thread.join(grace)
        return not self._thread.is_alive()


@dataclass(slots=True)
class Measurement:
    """What :func:`measure` saw: one duration and outcome per call, open-breaker cost."""

    durations: list[float]
    outcomes: list[str]
    open_cost: float | None
    note: str = ""


def measure(
    subject: Subject,
    *,
    calls: int,
    cap: float,
    time_limit: float,
    open_calls: int = 1000,
    on_hang: Callable[[], None] | None = None,
    pace: float = 0.0,
) -> Measurement:
    """Make up to ``calls`` calls (for at most ``time_limit`` s) and time each.

    A call still running at ``cap`` is recorded as ``hang`` with duration ``cap``; the
    subject is then aborted, ``on_hang`` runs (the scenario clears its fault, which
    also releases a connect that ``abort`` cannot wake) and no further call is made.
    If the subject's breaker is open after the measured calls, ``open_calls`` more
    calls time the cost of a rejection. ``pace`` spaces the calls out (seconds), for
    faults that change over time.
    """
    if calls < 1 or cap <= 0 or time_limit <= 0:
        raise ValueError(
            f"calls, cap and time_limit must be positive: {calls}, {cap}, {time_limit}"
        )
    worker = _Worker(subject.call)
    durations: list[float] = []
    outcomes: list[str] = []
    note = ""
    ends = time.monotonic() + time_limit
    try:
        for _ in range(calls):
            if not worker.run(cap):
                durations.append(cap)
                outcomes.append("hang")
                subject.abort()
                if on_hang is not None:
                    on_hang()
                if not worker.stop(grace=max(2.0, cap)):
                    note = "a hung call did not wake on abort; its thread was abandoned"
                return Measurement(durations, outcomes, None, note)
            durations.append(worker.duration)
            outcomes.append(worker.outcome)
            if time.monotonic() >= ends:
                note = f"stopped after {len(durations)} calls at the {time_limit:g} s limit"
                break
            if pace:
                time.sleep(min(pace, max(0.0, ends - time.monotonic())))
        open_cost = _open_cost(subject, open_calls, ends + time_limit) if open_calls else None
        return Measurement(durations, outcomes, open_cost, note)
    finally:
        worker.stop(grace=1.0)


def _open_cost(subject: Subject, calls: int, ends: float) -> float | None:
    """Mean seconds per call while the subject's breaker stays open (None if it is not)."""
    if not subject.breaker_open():
        return None
    done = 0
    start = _perf()
    for _ in range(calls):
        with contextlib.suppress(Exception):  # CircuitOpenError is the expected outcome
            subject.call()
        done += 1
        if done % 100 == 0 and (time.monotonic() >= ends or not subject.breaker_open()):
            break
    return (_perf() - start) / done
