"""`BreakerRegistry`, and the listener plumbing that breakers and registries share.

Import both from :mod:`resilience.core.breaker` (the public path). This module sits
below it: it imports the breaker module only for types and, in ``_create``, when the
first breaker is made, so importing either module first works.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from resilience.config import BreakerOptions

if TYPE_CHECKING:
    from resilience.core.breaker import BreakerState, CircuitBreaker, Listener, _Change

__all__ = ["BreakerRegistry"]

# Listener failures are logged under the public module's name, which users configure.
_log = logging.getLogger("resilience.core.breaker")


def _notify(ls: tuple[Listener, ...], b: CircuitBreaker, change: _Change, now: float) -> None:
    old, new = change
    for fn in ls:
        try:
            fn(b, old, new, now)
        except Exception:  # a broken listener must not break the breaker nor the call
            msg = "listener %r of circuit breaker %r failed on %s -> %s"
            _log.exception(msg, fn, b.name, old.value, new.value)


def _check(options: object) -> None:
    # BreakerOptions validates its own ranges (ConfigError naming the field) when built.
    if not isinstance(options, BreakerOptions):
        raise TypeError(f"options must be a BreakerOptions, got {type(options).__name__}")


def _subscribe(owner: CircuitBreaker | BreakerRegistry, fn: Listener) -> Callable[[], None]:
    # Copy on write under the owner's lock: _fire reads the tuple with no lock.
    if not callable(fn):
        raise TypeError(f"listener must be callable, got {fn!r}")
    with owner._lock:
        owner._listeners = (*owner._listeners, fn)

    def unsubscribe() -> None:
        with owner._lock:
            ls = list(owner._listeners)
            if fn in ls:
                ls.remove(fn)
                owner._listeners = tuple(ls)

    return unsubscribe


class BreakerRegistry:
    """Breakers keyed by endpoint, created on first use with shared options.

    ``get`` is a plain dict read when the breaker exists. Creation takes a lock and
    publishes a new dict (copy on write), so iteration never sees a dict mid-change.

    Args:
        options: options of every breaker in the registry.
        rng: seeds each new breaker's own rng (in creation order), so a run replays.
    """

    __slots__ = ("_breakers", "_listeners", "_lock", "_options", "_rng")

    def __init__(self, options: BreakerOptions, *, rng: random.Random | None = None) -> None:
        _check(options)
        self._options = options
        self._rng = rng
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: tuple[Listener, ...] = ()

    def get(self, key: str) -> CircuitBreaker:
        """The breaker of endpoint ``key``, created on first use."""
        b = self._breakers.get(key)
        if b is None:
            b = self._create(key)
        return b

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Listen to every breaker of the registry, present and future; returns unsubscribe."""
        return _subscribe(self, fn)

    def items(self) -> list[tuple[str, CircuitBreaker]]:
        """(endpoint, breaker) pairs, in creation order."""
        return list(self._breakers.items())

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, key: object) -> bool:
        return key in self._breakers

    def _create(self, key: str) -> CircuitBreaker:
        from resilience.core.breaker import CircuitBreaker as _breaker  # see the docstring

        if not isinstance(key, str):
            raise TypeError(f"breaker key must be a str, got {key!r}")
        with self._lock:
            b = self._breakers.get(key)
            if b is None:
                rng = None if self._rng is None else random.Random(self._rng.getrandbits(64))
                b = _breaker(self._options, name=key, rng=rng)
                b.add_listener(self._dispatch)
                self._breakers = {**self._breakers, key: b}
        return b

    def _dispatch(
        self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState, now: float
    ) -> None:
        if self._listeners:
            _notify(self._listeners, breaker, (old, new), now)
