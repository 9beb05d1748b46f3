"""The lazy driver: built on first use, rebuilt after fork, released by ``close()``.

Theory of operation
-------------------
States: *empty* (nothing built), *built* (a driver for this process), *closed*.

- ``get()`` on the hot path is one attribute read and one comparison: the built value
  (``_value``, which callers on a hot path may read themselves). No lock, no syscall.
- The first ``get()`` (or the first after a fork) takes the lock, checks again (double
  checked locking: a second thread that waited on the lock finds the driver built and
  uses it) and calls the factory. The lock guards only the build, never I/O a caller
  makes with the driver. Factories must not do I/O: the wrappers' factories build
  connection pools that connect on first use, under that call's deadline.
- Fork safety: a process-wide generation counter is bumped in the child by
  :func:`os.register_at_fork`, and the same hook forgets (sets to None) the value of every
  live LazyDriver. A driver built in another generation belongs to the parent: the child
  builds a fresh one and never closes the inherited one (closing would shut sockets the
  parent is still using).
- ``close()`` moves to *closed* for good: ``get()`` then raises
  :class:`~resilience.errors.BackendUnavailableError`, and the closer given at
  construction runs once on the built driver (it is expected to wake every call still
  waiting on that driver, for example by shutting its sockets down).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from resilience.errors import BackendUnavailableError

__all__ = ["LazyDriver", "fork_generation"]

T = TypeVar("T")

_fork_generation = 0


_drivers: weakref.WeakSet[LazyDriver[Any]] = weakref.WeakSet()  # every one alive


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1
    # The parent's drivers are forgotten (not closed) at once, so that a built driver
    # is simply ``_value is not None``: the hot path reads one attribute, no generation.
    for driver in list(_drivers):
        driver._value = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation() -> int:
    """Return a number that changes in every child process after ``os.fork()``."""
    return _fork_generation


class LazyDriver(Generic[T]):
    """A driver built on first use, rebuilt after fork, released by ``close()``.

    Args:
        factory: builds the driver; must not perform I/O.
        closer: releases a driver built by this process (called by ``close()``).
        service: the datastore family, for the error raised after ``close()``.
    """

    __slots__ = ("__weakref__", "_closed", "_closer", "_factory", "_generation", "_lock",
                 "_service", "_value")

    def __init__(
        self, factory: Callable[[], T], closer: Callable[[T], None], *, service: str
    ) -> None:
        self._factory = factory
        self._closer = closer
        self._service = service
        self._lock = threading.Lock()
        self._value: T | None = None
        self._generation = -1
        self._closed = False
        _drivers.add(self)

    def get(self) -> T:
        """Return the driver, building it first if this process has none.

        Raises:
            BackendUnavailableError: the wrapper was closed.
        """
        value = self._value  # None after a fork: the at-fork hook forgot the parent's
        if value is not None:
            return value
        return self._build()

    def _build(self) -> T:
        with self._lock:
            if self._closed:
                raise BackendUnavailableError("client is closed", service=self._service)
            value = self._value
            if value is None or self._generation != _fork_generation:
                # A driver from another generation is the parent's: drop it unclosed.
                value = self._factory()
                self._value = value
                self._generation = _fork_generation
            return value

    def peek(self) -> T | None:
        """Return the driver built by this process, or None; never builds one."""
        if self._generation != _fork_generation:
            return None
        return self._value

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def close(self) -> None:
        """Release the driver (if this process built one); later ``get()`` calls fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            value = self._value if self._generation == _fork_generation else None
            self._value = None
        if value is not None:
            self._closer(value)
