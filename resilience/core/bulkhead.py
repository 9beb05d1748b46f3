"""Bulkhead: a limit on calls in flight to one dependency, for threads and tasks alike.

Theory of operation
-------------------
One object serves sync and async callers of a dependency (a wrapper that offers both
shares one limit). State: ``_in_use`` permits handed out, and a FIFO of waiters, all
guarded by ``_lock``, which is only ever held for a few operations (never while waiting
and never across the guarded call), so taking it from the event loop is fine.

* ``try_acquire()`` takes a free permit at once, or fails. A waiter queue that is not
  empty counts as "no free permit", so newcomers cannot overtake waiters.
* ``acquire(timeout)`` (threads) and ``await aacquire(timeout)`` (tasks) queue when no
  permit is free and wait at most ``timeout`` seconds; the pipeline passes
  ``min(max_wait, remaining deadline)``. A thread waits on its own ``threading.Event``;
  a task awaits an ``asyncio.Future`` of its loop and never blocks the loop.
* ``release()`` hands the permit straight to the oldest waiter (so ``_in_use`` does not
  change) or, with no waiter, returns it. A waiter that timed out or was cancelled
  after being handed a permit gives it back through ``release()`` itself.

``max_concurrent=0`` means no limit: the pipeline then skips the bulkhead entirely
(`make_bulkhead` returns None), so an unlimited bulkhead costs nothing.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from resilience.config import BulkheadOptions
from resilience.errors import ConfigError

__all__ = ["Bulkhead", "make_bulkhead"]


class _Waiter:
    __slots__ = ("granted", "wake")

    def __init__(self, wake: Any) -> None:
        self.granted = False
        self.wake = wake  # a threading.Event, or (loop, future) for a task


class Bulkhead:
    """At most ``max_concurrent`` calls in flight; waits bounded by ``max_wait``.

    Args:
        options: ``max_concurrent`` >= 1 (0, no limit, is handled by `make_bulkhead`)
            and ``max_wait`` >= 0 seconds (0 rejects at once).

    Raises:
        ConfigError: an option is out of range.
    """

    __slots__ = ("_in_use", "_lock", "_waiters", "max_concurrent", "max_wait")

    def __init__(self, options: BulkheadOptions) -> None:
        if not isinstance(options.max_concurrent, int) or options.max_concurrent < 1:
            raise ConfigError(
                f"bulkhead max_concurrent={options.max_concurrent!r}: expected an integer"
                " >= 1 (0, no limit, means no Bulkhead object)"
            )
        self.max_concurrent = options.max_concurrent
        self.max_wait = float(options.max_wait)
        self._in_use = 0
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def in_use(self) -> int:
        """Permits currently held."""
        return self._in_use

    def try_acquire(self) -> bool:
        """Take a permit if one is free now; never waits."""
        with self._lock:
            if self._in_use < self.max_concurrent and not self._waiters:
                self._in_use += 1
                return True
            return False

    def acquire(self, timeout: float) -> bool:
        """Take a permit, waiting at most ``timeout`` seconds (threads). True if taken."""
        with self._lock:
            if self._in_use < self.max_concurrent and not self._waiters:
                self._in_use += 1
                return True
            if timeout <= 0.0:
                return False
            waiter = _Waiter(threading.Event())
            self._waiters.append(waiter)
        waiter.wake.wait(timeout)
        return self._settle(waiter)

    async def aacquire(self, timeout: float) -> bool:
        """Take a permit, waiting at most ``timeout`` seconds without blocking the loop."""
        with self._lock:
            if self._in_use < self.max_concurrent and not self._waiters:
                self._in_use += 1
                return True
            if timeout <= 0.0:
                return False
            import asyncio

            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            waiter = _Waiter((loop, future))
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        except BaseException:
            # Cancelled while waiting: a permit handed over meanwhile goes to the next one.
            if self._settle(waiter):
                self.release()
            raise
        return self._settle(waiter)

    def release(self) -> None:
        """Give a permit back: to the oldest waiter if any, else to the pool."""
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                wake = waiter.wake
                if isinstance(wake, threading.Event):
                    wake.set()
                else:
                    loop, future = wake
                    loop.call_soon_threadsafe(_resolve, future)
                return
            if self._in_use <= 0:
                raise RuntimeError("Bulkhead.release() without a permit held")
            self._in_use -= 1

    def _settle(self, waiter: _Waiter) -> bool:
        # After a wait: either we were handed a permit, or we leave the queue.
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def __repr__(self) -> str:
        return (
            f"Bulkhead(in_use={self._in_use}, max_concurrent={self.max_concurrent},"
            f" waiting={len(self._waiters)}, max_wait={self.max_wait})"
        )


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


def make_bulkhead(options: BulkheadOptions | None) -> Bulkhead | None:
    """A `Bulkhead`, or None when there is no limit (``max_concurrent=0`` or no options)."""
    if options is None or options.max_concurrent == 0:
        return None
    return Bulkhead(options)
