"""The asyncio memcached wrapper: the same ring, breakers and pipeline, never blocking.

::

    cache = AsyncMemcache(["10.0.0.1:11211", "10.0.0.2:11211"], timeout=0.05)
    await cache.set("user:1", b"...")
    await cache.get("user:1")
    await cache.aclose()

It speaks the memcached text protocol itself on an asyncio transport (``_aio``):
running pymemcache in a thread pool would block a thread per call and could not be
cancelled. Everything else is shared with :class:`~resilience.clients.memcache.Memcache`
(``_common``): options and environment, key placement, a breaker per node,
retry policy, bulkheads, fail-open reads, events. Each attempt is bounded by its
deadline (a timer per connection, ``_aio.Conn.arm``; the connect also within
``connect_timeout``): past it, the request fails with TimeoutError and its connection
is aborted. A connection whose request did not complete is closed, never reused. A
connection error on a pooled connection (the server restarted) closes the node's idle
connections and, for an idempotent operation, tries once more on a fresh one inside the
same attempt (:meth:`ConnPool.stale`; as in the sync client).

Values are bytes (str is stored UTF-8 encoded) with flags 0; there is no serde. An
illegal key or value raises ValueError before any I/O and never counts against a node.
One instance belongs to the event loop that first uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from resilience.clients._errormap import ErrorMap
from resilience.clients._hedge import acall_hedged, deadline_at
from resilience.clients.memcache._aio import (
    Conn,
    ConnPool,
    ProtocolError,
    ReplyError,
    ServerError,
    check_key,
    encode_value,
)
from resilience.clients.memcache._common import _MISS, MemcacheBase
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    ResilienceError,
)

__all__ = ["AsyncMemcache"]

T = TypeVar("T")

ERRORS = ErrorMap([
    # Used from a second event loop (ConnPool.checkout): the caller's mistake.
    (RuntimeError, None, "used from another event loop"),
    (TimeoutError, BackendTimeoutError, "timed out"),
    (asyncio.IncompleteReadError, BackendUnavailableError, "connection closed by the server"),
    (ConnectionError, BackendUnavailableError, "connection failed"),
    (ServerError, BackendError, "server error"),
    ((ProtocolError, ReplyError), BackendProtocolError, "unexpected reply"),
    (OSError, BackendUnavailableError, "socket error"),
])
"""asyncio/protocol exception -> resilience error, most specific first."""

_STORE = {b"STORED": True, b"NOT_STORED": False}


class AsyncMemcache(MemcacheBase["tuple[ConnPool, ...]"]):
    """An asyncio memcached client that never hangs; arguments as for ``Memcache``
    (minus ``serde``). Construction opens nothing; use ``await aclose()`` or
    ``async with``."""

    # ---- the client contract (resilience.clients._base) ------------------------------

    def _error_map(self) -> ErrorMap:
        return ERRORS

    def _build_driver(self) -> tuple[ConnPool, ...]:
        return tuple(ConnPool(h, p, self.options.pool_size) for h, p in self._addresses)

    def _close_driver(self, pools: tuple[ConnPool, ...]) -> None:
        for pool in pools:
            pool.close()

    async def _aattempt(self, pools: tuple[ConnPool, ...], index: int,
                        fn: Callable[[Conn], Awaitable[T]], remaining: float, op: str) -> T:
        # The request is bounded by its connection's deadline timer (Conn.arm: past the
        # deadline its wait fails with TimeoutError and the connection is aborted),
        # much cheaper than asyncio.timeout per attempt. A connection whose request did
        # not complete is closed, never reused.
        pool = pools[index]
        conn = pool.take()
        loop = pool.loop
        assert loop is not None
        deadline = loop.time() + remaining
        reused = conn is not None
        if conn is None:
            conn = await pool.connect(min(self.options.connect_timeout, remaining))
        conn.arm(deadline)
        try:
            try:
                result = await fn(conn)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                # A pooled connection to a dead process (server restarted): once more
                # on a new one, inside this attempt, if the operation is idempotent
                # (the request may have reached a server that died after reading it).
                if not (reused and pool.stale(exc) and self.idempotent.get(op, False)):
                    raise
                pool.discard(conn)
                conn = await pool.connect(
                    min(self.options.connect_timeout, deadline - loop.time()))
                conn.arm(deadline)
                result = await fn(conn)
        except BaseException:
            pool.discard(conn)
            raise
        conn.disarm()
        pool.checkin(conn)
        return result

    async def _ahealth_probe(self, index: int, timeout: float) -> None:
        # ``version`` on a fresh connection of its own (not pooled), bounded by
        # ``timeout`` (the prober also cancels it then); raises if no answer.
        host, port = self._addresses[index]
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            transport, conn = await loop.create_connection(lambda: Conn(loop), host, port)
            try:
                reply = await conn.command(b"version")
            finally:
                transport.close()
        if not reply.startswith(b"VERSION"):
            raise ReplyError(reply)

    def _key(self, key: str | bytes) -> tuple[bytes, int]:
        raw = check_key(key, self._key_prefix)
        return raw, self._index(key)

    # ---- operations --------------------------------------------------------------

    async def get(self, key: str | bytes, default: Any = None, *,
                  timeout: float | None = None) -> Any:
        """The value of ``key`` (bytes), or ``default`` on a miss (or failure with
        fail_open). Raises ResilienceError on failure, ValueError for a bad key."""
        raw, index = self._key(key)
        # fn returns fetch's coroutine itself: no coroutine frame of its own per call.
        found = await self._acall("get", index, lambda c: c.fetch(b"get", [raw]), timeout)
        if found is _MISS:  # fail_open's fallback
            return default
        hit = found.get(raw)
        return default if hit is None else hit[0]

    async def _hedged_get(self, key: str | bytes, default: Any = None, *,
                          timeout: float | None = None) -> Any:
        # get() with hedging on (docs/hedging.md): the hedge is a second request on
        # another connection to the key's node; the loser's task is cancelled.
        hedge = self._hedge
        assert hedge is not None
        raw, index = self._key(key)

        def fn(c: Conn) -> Awaitable[Any]:
            return c.fetch(b"get", [raw])

        at = deadline_at(self._clock.monotonic(),
                         self.options.timeout if timeout is None else timeout)
        found = await acall_hedged(
            hedge, lambda _: self._acall("get", index, fn, timeout),
            lambda _: self._acall("get/hedge", index, fn), at, self.events, self.service,
            "get", self._endpoints[index])
        if found is _MISS:
            return default
        hit = found.get(raw)
        return default if hit is None else hit[0]

    async def gets(self, key: str | bytes, *,
                   timeout: float | None = None) -> tuple[bytes | None, int | None]:
        """``(value, cas_token)`` of ``key``; ``(None, None)`` on a miss."""
        raw, index = self._key(key)
        found = await self._acall("gets", index, lambda c: c.fetch(b"gets", [raw]), timeout)
        if isinstance(found, tuple):  # fail_open's fallback: (None, None)
            return found
        hit: tuple[bytes | None, int | None] = found.get(raw, (None, None))
        return hit

    async def get_many(self, keys: Iterable[str | bytes], *,
                       timeout: float | None = None) -> dict[str | bytes, bytes]:
        """Values of the present ``keys``. Nodes are asked concurrently, each within the
        whole deadline. A failed node (unless fail_open) raises its error after all
        nodes answered, with ``.partial`` (values found) and ``.failed_keys``."""

        def reader(group: dict[bytes, str | bytes]) -> Callable[[Conn], Awaitable[Any]]:
            async def fn(c: Conn) -> dict[str | bytes, bytes]:
                found = await c.fetch(b"get", list(group))
                return {group[k]: v for k, (v, _) in found.items() if k in group}
            return fn

        found: dict[str | bytes, bytes] = {}
        await self._fan_out("get_many", keys, reader, found.update, found, timeout)
        return found

    async def set_many(self, values: Mapping[str | bytes, str | bytes], expire: int = 0, *,
                       timeout: float | None = None) -> list[str | bytes]:
        """Store every value (acknowledged), nodes concurrently; return the keys not
        stored. A failed node raises after all answered (``.partial``: keys the others
        did not store, ``.failed_keys``: keys of the failed node, state unknown)."""
        data = {key: encode_value(value) for key, value in values.items()}

        def writer(group: dict[bytes, str | bytes]) -> Callable[[Conn], Awaitable[Any]]:
            async def fn(c: Conn) -> list[str | bytes]:
                # Pipelined: every command first, then every reply, in order.
                c.write(b"".join(
                    b"set %s 0 %d %d\r\n%s\r\n" % (raw, int(expire), len(data[k]), data[k])
                    for raw, k in group.items()))
                not_stored = []
                for key in group.values():
                    reply = await c.read_line()
                    if reply not in _STORE:
                        raise ProtocolError(f"unexpected reply to set: {reply[:40]!r}")
                    if not _STORE[reply]:
                        not_stored.append(key)
                return not_stored
            return fn

        not_stored: list[str | bytes] = []
        await self._fan_out("set_many", data, writer, not_stored.extend, not_stored, timeout)
        return not_stored

    async def delete_many(self, keys: Iterable[str | bytes], *,
                          timeout: float | None = None) -> bool:
        """Delete every key (acknowledged), nodes concurrently. True once all answered;
        a failed node raises after all answered, with ``.failed_keys``."""

        def deleter(group: dict[bytes, str | bytes]) -> Callable[[Conn], Awaitable[Any]]:
            async def fn(c: Conn) -> None:
                c.write(b"".join(b"delete %s\r\n" % raw for raw in group))
                for _ in group:
                    reply = await c.read_line()
                    if reply not in (b"DELETED", b"NOT_FOUND"):
                        raise ProtocolError(f"unexpected reply to delete: {reply[:40]!r}")
            return fn

        await self._fan_out("delete_many", keys, deleter, lambda _: None, [], timeout)
        return True

    async def _fan_out(
        self,
        op: str,
        keys: Iterable[str | bytes],
        make: Callable[[dict[bytes, str | bytes]], Callable[[Conn], Awaitable[Any]]],
        merge: Callable[[Any], None],
        partial: Any,
        timeout: float | None,
    ) -> None:
        """One guarded call per node, concurrently; ``merge`` each result (into
        ``partial``); raise the first failure (after all nodes answered) with
        ``.partial`` and ``.failed_keys``."""
        groups: dict[int, dict[bytes, str | bytes]] = {}
        for key in keys:
            raw, index = self._key(key)
            groups.setdefault(index, {})[raw] = key
        results: list[Any]
        if len(groups) == 1:  # one node: no tasks to spawn (gather costs ~10 µs)
            ((i, g),) = groups.items()
            try:
                results = [await self._acall(op, i, make(g), timeout)]
            except ResilienceError as err:
                results = [err]
        else:
            results = await asyncio.gather(
                *(self._acall(op, i, make(g), timeout) for i, g in groups.items()),
                return_exceptions=True,
            )
        first: ResilienceError | None = None
        failed: list[str | bytes] = []
        for group, result in zip(groups.values(), results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, ResilienceError):
                    raise result
                first = first or result
                failed.extend(group.values())
            else:
                merge(result)
        if first is not None:
            first.partial = partial
            first.failed_keys = tuple(failed)
            raise first

    async def _store(self, verb: bytes, op: str, key: str | bytes, value: str | bytes,
                     expire: int, timeout: float | None, cas: int | None = None) -> Any:
        raw, index = self._key(key)
        data = encode_value(value)
        line = b"%s %s 0 %d %d" % (verb, raw, int(expire), len(data))
        if cas is not None:
            line += b" %d" % int(cas)

        async def fn(c: Conn) -> bool | None:
            reply = await c.command(line, data)
            if reply in _STORE:
                return _STORE[reply]
            if cas is not None and reply in (b"EXISTS", b"NOT_FOUND"):
                return False if reply == b"EXISTS" else None
            raise ProtocolError(f"unexpected reply to {op}: {reply[:40]!r}")

        return await self._acall(op, index, fn, timeout)

    async def set(self, key: str | bytes, value: str | bytes, expire: int = 0, *,
                  timeout: float | None = None) -> bool:
        """Store ``value``; True once memcached acknowledged it."""
        return bool(await self._store(b"set", "set", key, value, expire, timeout))

    async def add(self, key: str | bytes, value: str | bytes, expire: int = 0, *,
                  timeout: float | None = None) -> bool:
        """Store only if absent (never retried)."""
        return bool(await self._store(b"add", "add", key, value, expire, timeout))

    async def replace(self, key: str | bytes, value: str | bytes, expire: int = 0, *,
                      timeout: float | None = None) -> bool:
        """Store only if present."""
        return bool(await self._store(b"replace", "replace", key, value, expire, timeout))

    async def cas(self, key: str | bytes, value: str | bytes, cas: int, expire: int = 0, *,
                  timeout: float | None = None) -> bool | None:
        """Store if unchanged since ``gets``: True, False (changed) or None (absent)."""
        result: bool | None = await self._store(b"cas", "cas", key, value, expire, timeout, cas)
        return result

    async def _simple(self, op: str, key: str | bytes, line: bytes,
                      replies: dict[bytes, Any], timeout: float | None,
                      number: bool = False) -> Any:
        raw, index = self._key(key)
        line = line.replace(b"{key}", raw)

        async def fn(c: Conn) -> Any:
            reply = await c.command(line)
            if reply in replies:
                return replies[reply]
            if number and reply.isdigit():
                return int(reply)
            raise ProtocolError(f"unexpected reply to {op}: {reply[:40]!r}")

        return await self._acall(op, index, fn, timeout)

    async def delete(self, key: str | bytes, *, timeout: float | None = None) -> bool:
        """Delete ``key``: True if it existed."""
        return bool(await self._simple("delete", key, b"delete {key}",
                                       {b"DELETED": True, b"NOT_FOUND": False}, timeout))

    async def touch(self, key: str | bytes, expire: int = 0, *,
                    timeout: float | None = None) -> bool:
        """Reset the expiry of ``key``: True if it exists."""
        return bool(await self._simple("touch", key, b"touch {key} %d" % int(expire),
                                       {b"TOUCHED": True, b"NOT_FOUND": False}, timeout))

    async def incr(self, key: str | bytes, value: int = 1, *,
                   timeout: float | None = None) -> int | None:
        """Add ``value`` to a counter: the new value, or None if absent (never retried)."""
        result: int | None = await self._simple(
            "incr", key, b"incr {key} %d" % int(value), {b"NOT_FOUND": None}, timeout, True)
        return result

    async def decr(self, key: str | bytes, value: int = 1, *,
                   timeout: float | None = None) -> int | None:
        """Subtract ``value`` (floored at 0): the new value, or None (never retried)."""
        result: int | None = await self._simple(
            "decr", key, b"decr {key} %d" % int(value), {b"NOT_FOUND": None}, timeout, True)
        return result
