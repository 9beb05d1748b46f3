"""Running the node groups of a sync multi-key call concurrently.

Theory of operation
-------------------
A multi-key call is a list of tasks, one per node, each a guarded call bounded by the
operation's deadline. The caller's thread takes the tasks one at a time (a counter hands
each task out once). A node answering in one round trip needs no other thread: on
loopback a handoff between threads (wake-up, GIL transfer) costs more than the round trip
itself. So helpers join only when the caller has been busy for ``HEDGE_AFTER``: a
watchdog thread wakes when the oldest call in flight is ``HEDGE_AFTER`` old and, for one whose
caller is still not through its tasks, hands a helper to the executor; a helper takes
the next free task, first handing one more helper to the executor if tasks remain (a
chain: N slow nodes get N - 1 helpers). The caller, once no task is left to take, waits
for those the helpers took; they end by the deadline like every socket read. Hence:
N healthy nodes cost N round trips up to ``HEDGE_AFTER``, then about one more round trip;
N hanging nodes cost one budget (plus ``HEDGE_AFTER``), not N.

Helpers run with the caller's deadline (as :func:`resilience.core.deadline.propagate`
does).
When every worker is busy (``MAX_WORKERS``, many slow calls at once) a helper may start
late or never: the caller takes the tasks itself, one after another, still within the
one deadline.

Threads: nothing runs until the first call over two nodes or more starts the watchdog
(it blocks, using no CPU, whenever no call is in flight) and the executor (its threads
start on demand). Both are named ``resilience-memcache-fanout``. ``close()`` stops them.
A fork child never touches the parent's threads (they do not exist in it): it starts
its own on first use.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from resilience.clients._lazy import fork_generation
from resilience.core.deadline import DEADLINE

__all__ = ["HEDGE_AFTER", "MAX_WORKERS", "FanOut"]

HEDGE_AFTER = 0.001
"""Seconds the caller's thread works alone before helpers take the remaining tasks."""

MAX_WORKERS = 8
"""Upper bound of a client's fan-out executor threads, whatever the number of nodes."""

_NAME = "resilience-memcache-fanout"
_monotonic = time.monotonic


def _outcome(task: Callable[[], Any]) -> Any:
    """The task's result, or the exception it raised (an outcome either way)."""
    try:
        return task()
    except Exception as exc:
        return exc


class _Work:
    """The tasks of one call. ``next`` on an ``itertools.count`` is atomic under the GIL,
    so each task is taken once without a lock. Cheap to make (no Event, no wrapper):
    every multi-node call makes one, and most never meet a helper."""

    __slots__ = ("_done", "_left", "_lock", "_next", "all_taken", "at", "executor",
                 "outcomes", "start", "tasks")

    def __init__(self, tasks: list[Callable[[], Any]], executor: ThreadPoolExecutor | None):
        self.tasks = tasks
        self.executor = executor
        self.outcomes: list[Any] = [None] * len(tasks)
        self._next = itertools.count().__next__
        self._left = len(tasks)
        self._lock = threading.Lock()
        self._done: threading.Event | None = None  # made only if the caller must wait
        self.all_taken = False
        self.at = DEADLINE.get()  # the caller's deadline, for the helpers
        self.start = _monotonic()

    def take(self) -> int | None:
        """The next task nobody has taken, or None."""
        i = self._next()
        last = len(self.tasks) - 1
        if i >= last:  # the last one taken: no helper is needed any more
            self.all_taken = True
        return i if i <= last else None

    def run(self, i: int) -> None:
        try:
            self.outcomes[i] = _outcome(self.tasks[i])
        except BaseException as exc:  # SystemExit...: kept, and the caller still wakes
            self.outcomes[i] = exc
            raise
        finally:
            self._count_down()

    def _count_down(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0 and self._done is not None:
                self._done.set()

    def wait(self) -> None:
        """Until every task taken by a helper has ended."""
        with self._lock:
            if self._left == 0:
                return
            done = self._done = threading.Event()
        done.wait()

    def help(self) -> None:
        """A helper: take a task, first handing one more helper to the executor if more
        remain. Runs with the caller's deadline (what ``propagate`` does, without a
        wrapper made on every call)."""
        i = self.take()
        if i is None:
            return
        if i + 1 < len(self.tasks):
            self.spawn()
        token = DEADLINE.set(self.at)
        try:
            self.run(i)
        finally:
            DEADLINE.reset(token)

    def spawn(self) -> None:
        """Hand one helper to the executor (nothing if it is shut down: the caller
        takes the remaining tasks)."""
        if self.executor is not None:
            with contextlib.suppress(RuntimeError):
                self.executor.submit(self.help)


class _Crew:
    """The threads of one process generation: the executor and the watchdog."""

    __slots__ = ("closed", "executor", "idle", "pending", "wake")

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=_NAME)
        self.pending: collections.deque[_Work] = collections.deque()
        self.wake = threading.Event()
        self.idle = False
        self.closed = False
        threading.Thread(target=self._watch, name=f"{_NAME}-watchdog", daemon=True).start()

    def watch(self, work: _Work) -> None:
        self.pending.append(work)
        if self.idle:  # blocked on wake: only then pay for waking it
            self.wake.set()

    def _watch(self) -> None:
        pending = self.pending
        while not self.closed:
            if not pending:
                self.idle = True
                if not pending:  # re-checked after publishing idle: no append is lost
                    self.wake.wait()
                self.wake.clear()
                self.idle = False
                continue
            # Asleep until the first call is due (calls are appended roughly in order
            # of age: a helper may come up to one HEDGE_AFTER late): about one wake-up
            # per HEDGE_AFTER however many calls run, none while no call is in flight.
            try:
                due = pending[0].start + HEDGE_AFTER
            except IndexError:  # cleared by close()
                continue
            time.sleep(max(due - _monotonic(), 0.0))
            now = _monotonic()
            for _ in range(len(pending)):
                work = pending.popleft()
                if work.all_taken:
                    continue
                if now - work.start < HEDGE_AFTER:
                    pending.append(work)
                else:
                    work.spawn()

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        self.pending.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)


class FanOut:
    """The fan-out threads of one client: started on first use, restarted in a fork
    child, stopped by :meth:`close`. See the module docstring.

    Args:
        nodes: the client's node count; the executor has at most
            ``min(2 * (nodes - 1), MAX_WORKERS)`` threads.
    """

    __slots__ = ("_closed", "_crew", "_generation", "_lock", "_workers")

    def __init__(self, nodes: int) -> None:
        self._workers = max(1, min(2 * (nodes - 1), MAX_WORKERS))
        self._lock = threading.Lock()
        self._crew: _Crew | None = None
        self._generation = -1
        self._closed = False

    def _get(self) -> _Crew | None:
        crew = self._crew
        if crew is not None and self._generation == fork_generation():
            return crew
        with self._lock:
            if self._closed:
                return None
            if self._crew is None or self._generation != fork_generation():
                self._crew = _Crew(self._workers)  # a parent's crew is left alone
                self._generation = fork_generation()
            return self._crew

    def run(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Every task's result or the exception it raised, in order; see the module
        docstring for which thread runs which. After :meth:`close` the caller's thread
        runs them all."""
        if len(tasks) < 2:  # nothing to overlap: no thread, not even started
            return [_outcome(task) for task in tasks]
        crew = self._get()
        work = _Work(tasks, crew.executor if crew is not None else None)
        if crew is not None:
            crew.watch(work)
        while (i := work.take()) is not None:
            work.run(i)
        work.wait()
        return work.outcomes

    def close(self) -> None:
        """Stop the watchdog and the executor; a helper still in a call ends with it
        (the client shuts its sockets down first). Later calls run in the caller."""
        with self._lock:
            self._closed = True
            crew, self._crew = self._crew, None
            mine = self._generation == fork_generation()
        if crew is not None and mine:
            crew.close()
