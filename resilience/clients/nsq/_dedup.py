"""Seen-stores: where a de-duplicating consumer records the keys it has processed.

A store answers one atomic question, "claim this key unless someone has": ``claim``
inserts the key as *pending* only if it is absent (memcached ``add``) and reports
``"new"``, ``"pending"`` (another delivery is being handled, or one failed and its
claim has not expired) or ``"done"`` (processed: skip it). ``done`` marks a key
processed for the de-duplication window; ``release`` drops a failed claim so the next
delivery may run at once.

The window must exceed the redelivery horizon (docs/nsq.md#sizing-the-window): the
longest time between two deliveries of one key, i.e. the publisher's retries plus
``msg_timeout`` plus the largest requeue delay times the attempts, plus how long a
message may wait in the queue.

A store that fails raises; the consumer then requeues the message rather than risk
processing it twice.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Literal, Protocol

__all__ = [
    "AsyncMemcacheSeenStore", "AsyncSeenStore", "MemcacheSeenStore", "MemorySeenStore",
    "SeenStore",
]

Claim = Literal["new", "pending", "done"]
_PENDING, _DONE = b"p", b"d"


class SeenStore(Protocol):
    """A sync seen-store (its calls may block; the consumer runs them off the loop)."""

    def claim(self, key: str, ttl: float) -> Claim: ...
    def done(self, key: str, ttl: float) -> None: ...
    def release(self, key: str) -> None: ...


class AsyncSeenStore(Protocol):
    """An asyncio seen-store."""

    async def claim(self, key: str, ttl: float) -> Claim: ...
    async def done(self, key: str, ttl: float) -> None: ...
    async def release(self, key: str) -> None: ...


class _Cache(Protocol):
    """What the store uses of :class:`~resilience.clients.memcache.Memcache` (typed
    structurally: clients do not import one another)."""

    def add(self, key: str, value: bytes, expire: int = 0) -> bool: ...
    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: bytes, expire: int = 0) -> Any: ...
    def delete(self, key: str) -> Any: ...


class _AsyncCache(Protocol):
    """What the store uses of :class:`~resilience.clients.memcache.AsyncMemcache`."""

    async def add(self, key: str, value: bytes, expire: int = 0) -> bool: ...
    async def get(self, key: str) -> Any: ...
    async def set(self, key: str, value: bytes, expire: int = 0) -> Any: ...
    async def delete(self, key: str) -> Any: ...


class MemorySeenStore:
    """A bounded in-memory TTL store for one consumer process (tests, single workers).

    Args:
        max_keys: keys kept; past it the oldest entry is evicted (counted in
            ``evicted``): size it above the message rate times the window, or the
            effective window shrinks.
        clock: the time source (seconds).
    """

    def __init__(self, max_keys: int = 1_000_000, clock: object = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.max_keys = max_keys
        self.evicted = 0
        self._clock = clock
        self._keys: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def claim(self, key: str, ttl: float) -> Claim:
        now = self._now()
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None and entry[1] > now:
                return "done" if entry[0] == _DONE else "pending"
            self._put(key, _PENDING, now + ttl)
            return "new"

    def done(self, key: str, ttl: float) -> None:
        with self._lock:
            self._put(key, _DONE, self._now() + ttl)

    def release(self, key: str) -> None:
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None and entry[0] == _PENDING:
                del self._keys[key]

    def _put(self, key: str, state: bytes, expires: float) -> None:
        self._keys.pop(key, None)
        self._keys[key] = (state, expires)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._keys)


def _mkey(prefix: str, key: str) -> str:
    raw = prefix + key
    if len(raw.encode()) <= 200 and raw.isprintable() and not any(c.isspace() for c in raw):
        return raw
    return prefix + hashlib.sha256(key.encode()).hexdigest()


def _seconds(ttl: float) -> int:
    return max(1, math.ceil(ttl))  # memcached expiries are whole seconds (<= 30 days)


class MemcacheSeenStore:
    """Seen keys in memcached through the project's own client (``add`` with a TTL).

    Shared by every consumer of a channel. Each call is bounded by the memcached
    client's deadline; a failure raises (the consumer requeues the message).

    Args:
        cache: a :class:`~resilience.clients.memcache.Memcache`.
        prefix: prepended to every key (keys too long or with spaces are hashed).
    """

    def __init__(self, cache: _Cache, prefix: str = "nsq:seen:") -> None:
        self.cache, self.prefix = cache, prefix

    def claim(self, key: str, ttl: float) -> Claim:
        k = _mkey(self.prefix, key)
        if self.cache.add(k, _PENDING, _seconds(ttl)):
            return "new"
        return "done" if self.cache.get(k) == _DONE else "pending"

    def done(self, key: str, ttl: float) -> None:
        self.cache.set(_mkey(self.prefix, key), _DONE, _seconds(ttl))

    def release(self, key: str) -> None:
        self.cache.delete(_mkey(self.prefix, key))


class AsyncMemcacheSeenStore:
    """:class:`MemcacheSeenStore` on :class:`~resilience.clients.memcache.AsyncMemcache`."""

    def __init__(self, cache: _AsyncCache, prefix: str = "nsq:seen:") -> None:
        self.cache, self.prefix = cache, prefix

    async def claim(self, key: str, ttl: float) -> Claim:
        k = _mkey(self.prefix, key)
        if await self.cache.add(k, _PENDING, _seconds(ttl)):
            return "new"
        return "done" if await self.cache.get(k) == _DONE else "pending"

    async def done(self, key: str, ttl: float) -> None:
        await self.cache.set(_mkey(self.prefix, key), _DONE, _seconds(ttl))

    async def release(self, key: str) -> None:
        await self.cache.delete(_mkey(self.prefix, key))
