"""The memcached wrapper: pymemcache behind deadlines, a breaker per node, retries.

::

    cache = Memcache(["10.0.0.1:11211", "10.0.0.2:11211"], timeout=0.05)
    cache.set("user:1", b"...")          # acknowledged write (noreply=False)
    cache.get("user:1")                   # bytes or None; never hangs past 50 ms

One node or many. Keys map to nodes as libmemcached's ketama places them (or, with
``placement="pymemcache"``, as pymemcache's HashClient does; :mod:`._ring`); each node
has its own circuit breaker (keyed ``host:port`` in the breaker registry) and its own pool
of pymemcache ``base.Client`` objects (:mod:`._node`). A failing or hanging node
opens its breaker after a few calls; from then on its keys fail fast with
CircuitOpenError (or read as misses with ``fail_open``) while other nodes serve normally.
After the open interval one probe goes through; a success closes the breaker and the
node's traffic returns. Keys never move to another node (see the ring's docstring).

pymemcache's HashClient and RetryingClient are not used: HashClient turns a dead node's
errors into silent misses and RetryingClient multiplies the time a call takes.

Every socket operation of a call is bounded by the call's remaining budget: the connect
by ``min(connect_timeout, remaining)``, each send and receive by what remains of the
deadline (not per read: a slowly dripping reply cannot run on).

A connection error (not a timeout) on a pooled connection means the node's process
went away since (killed, restarted): the node's idle connections are all closed, and an
idempotent operation tries once more on a fresh connection inside the same attempt (the
breaker sees one outcome); a non-idempotent one is not repeated (the request may have
reached a server that died before replying). See :meth:`NodePool.stale`.

Errors (docs/architecture.md#one-error-tree), mapped most specific first, the driver's
exception as ``__cause__``: a socket timeout -> BackendTimeoutError; refused, reset, closed
connection, other socket errors -> BackendUnavailableError; a reply that is not the
protocol -> BackendProtocolError; ``SERVER_ERROR`` -> BackendError. An illegal key or
value (``MemcacheIllegalInputError``: too long, spaces, not bytes) is the caller's bug:
it raises :class:`ValueError` at once, is not retried and does not count against the
node's breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from operator import attrgetter, methodcaller
from typing import TYPE_CHECKING, Any, TypeVar

from resilience.clients._errormap import ErrorMap
from resilience.clients._hedge import call_hedged, deadline_at, guard
from resilience.clients.memcache import _multi
from resilience.clients.memcache._common import _MISS, MemcacheBase
from resilience.clients.memcache._fanout import FanOut
from resilience.core.deadline import deadline
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
)

if TYPE_CHECKING:
    from resilience.clients.memcache._node import NodePool

__all__ = ["Memcache", "error_map"]

T = TypeVar("T")
_monotonic = time.monotonic
_sock = attrgetter("sock")  # a pymemcache Client's socket, shut down to cancel a hedge


@cache
def error_map() -> ErrorMap:
    """Driver exception -> resilience error, most specific first.

    Built on first use, so importing this module imports no driver (``resilience
    config`` imports every client module). A rule mapping to None marks the caller's
    bug: raised as ValueError, not counted against the node.
    """
    from pymemcache.exceptions import (
        MemcacheClientError,
        MemcacheIllegalInputError,
        MemcacheServerError,
        MemcacheUnexpectedCloseError,
        MemcacheUnknownError,
    )

    return ErrorMap([
        (MemcacheIllegalInputError, None, "illegal input"),
        (TimeoutError, BackendTimeoutError, "timed out"),
        (MemcacheUnexpectedCloseError, BackendUnavailableError,
         "connection closed by the server"),
        (ConnectionError, BackendUnavailableError, "connection failed"),
        ((MemcacheUnknownError, MemcacheClientError, ValueError, IndexError, KeyError),
         BackendProtocolError, "unexpected reply"),
        (MemcacheServerError, BackendError, "server error"),
        (OSError, BackendUnavailableError, "socket error"),
    ])



class Memcache(MemcacheBase["tuple[NodePool, ...]"]):
    """A memcached client that never hangs; see the module docstring.

    Args:
        servers: ``host:port`` nodes (a string with commas, or a list); default from
            RESILIENCE_MEMCACHE_SERVERS.
        name: a named instance: RESILIENCE_MEMCACHE_<NAME>_* variables apply.
        environ: the environment to read (``os.environ`` when None).
        serde: a pymemcache serializer (default: values are bytes or str).
        key_prefix: prepended to every key by pymemcache.
        events: the event bus to emit on (rejections, failures, retries, state
            changes, fallbacks); a private silent one by default.
        breakers: a breaker registry to share (keyed ``host:port``); a new one with
            this client's breaker options by default.
        clock: time source of the pipeline and breakers (a fake clock in tests);
            socket timeouts always use the real monotonic clock.
        **options: any :class:`~resilience.config.MemcacheOptions` field by its flat
            name (``timeout``, ``connect_timeout``, ``fail_open``, ``pool_size``,
            ``placement``, ``breaker_failure_rate``, ``retry_attempts``...), durations in seconds.

    Raises:
        ConfigError: a bad argument or variable, named in the message.

    Construction validates and stores; it opens no connection. The first call
    connects, under its own deadline. Safe to share between threads; after a fork the
    child builds fresh connections.
    """

    driver_modules = ("pymemcache",)

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        serde: Any = None,
        key_prefix: bytes | str = b"",
        **kwargs: Any,
    ) -> None:
        super().__init__(servers, key_prefix=key_prefix, **kwargs)
        self._client_kwargs: dict[str, Any] = {"no_delay": True, "key_prefix": self._key_prefix}
        self._connect_timeout = self.options.connect_timeout
        if serde is not None:
            self._client_kwargs["serde"] = serde
        self._fanout = FanOut(len(self._addresses))  # no thread until used

    # ---- the client contract (resilience.clients._base) ------------------------------

    def _error_map(self) -> ErrorMap:
        return error_map()

    def _build_driver(self) -> tuple[NodePool, ...]:
        from resilience.clients.memcache._node import NodePool

        size = self.options.pool_size
        return tuple(NodePool(h, p, size, self._client_kwargs) for h, p in self._addresses)

    def _close_driver(self, nodes: tuple[NodePool, ...]) -> None:
        for node in nodes:
            node.close()

    def _attempt(self, nodes: tuple[NodePool, ...], index: int, fn: Callable[[Any], T],
                 remaining: float, op: str) -> T:
        # The checkout and, on success, NodePool.checkin, inlined (the hot path: two
        # frames were 1.0k of the 17k instructions the wrapper adds to a get); see
        # NodePool's docstring. A client whose call raised is closed, never reused: its
        # stream may be out of step. A failed connect already dropped its client.
        node = nodes[index]
        start = _monotonic()
        try:
            client = node.idle.pop()
        except IndexError:
            client = node.connect(start + remaining, self._connect_timeout)
        else:
            client.sock.deadline = start + remaining
        try:
            result = fn(client)
        except BaseException as exc:
            rule = self._errors.rule(exc)
            if rule is not None and rule[1] is None:
                # A caller's mistake (an illegal key): pymemcache refused it before
                # sending anything, so the connection is still in step; keep it.
                node.checkin(client)
                raise
            node.discard(client)
            if node.stale(client, exc, start) and self.idempotent.get(op, False):
                return self._on_fresh(node, fn, start + remaining)
            raise
        if not node.closed and client.sock is not None and len(node.idle) < node.size:
            node.idle.append(client)
        else:
            client.close()
        return result

    def _health_probe(self, index: int, timeout: float) -> None:
        # ``version`` on a fresh connection (a pooled one may be stuck behind the
        # outage), every socket operation bounded by ``timeout``; raises if no answer.
        from pymemcache.client.base import Client

        client = Client(self._addresses[index], connect_timeout=timeout, timeout=timeout,
                        no_delay=True)
        try:
            client.version()
        finally:
            client.close()

    def _on_fresh(self, node: NodePool, fn: Callable[[Any], T], deadline: float) -> T:
        # The pooled connection was dead (server restarted): once more, on a new one,
        # inside the same attempt (the breaker sees one outcome). Only for idempotent
        # operations: a request may have reached a server that died before replying.
        client = node.connect(deadline, self._connect_timeout)
        try:
            result = fn(client)
        except BaseException:
            node.discard(client)
            raise
        node.checkin(client)
        return result

    def close(self) -> None:
        """As :meth:`ClientBase.close`, and stop the multi-key fan-out threads."""
        super().close()
        self._fanout.close()

    def _caller_error(self, exc: BaseException, op: str) -> BaseException:
        return ValueError(f"memcache {op}: {exc}")

    # ---- operations --------------------------------------------------------------

    def get(self, key: str | bytes, default: Any = None, *, timeout: float | None = None) -> Any:
        """The value of ``key``, or ``default`` on a miss (or on failure with fail_open).

        Raises:
            ResilienceError: the call failed or was rejected (unless fail_open).
            ValueError: an illegal key.
        """
        ring = self._ring  # _index inlined: get and set are the hot calls
        index = 0 if ring is None else ring.index(key.encode() if isinstance(key, str) else key)
        # A lambda, not operator.methodcaller: methodcaller is created and called through
        # tp_call, and its call enters the driver's Python from C (a new interpreter
        # frame); the lambda's call stays in the interpreter. Measured with callgrind:
        # 0.44k fewer instructions per get (benchmarks/instructions.py).
        value = self._call("get", index, lambda c: c.get(key, _MISS), timeout)
        return default if value is _MISS else value

    def _hedged_get(self, key: str | bytes, default: Any = None, *,
                    timeout: float | None = None) -> Any:
        # get() with hedging on (docs/hedging.md): the hedge is a second request on
        # another connection to the same node (the key lives on that node alone), so it
        # beats a stalled connection, not a slow node.
        hedge = self._hedge
        assert hedge is not None
        index = self._index(key)
        fn = methodcaller("get", key, _MISS)
        at = deadline_at(self._clock.monotonic(),
                         self.options.timeout if timeout is None else timeout)
        value = call_hedged(
            hedge,
            lambda t: self._call("get", index, guard(t, fn, _sock), timeout),
            lambda t: self._call("get/hedge", index, guard(t, fn, _sock)),
            at, self.events, self.service, "get", self._endpoints[index])
        return default if value is _MISS else value

    def gets(self, key: str | bytes, *, timeout: float | None = None) -> tuple[Any, Any]:
        """``(value, cas_token)`` of ``key``; ``(None, None)`` on a miss."""
        result: tuple[Any, Any] = self._on("gets", key, lambda c: c.gets(key), timeout)
        return result

    def set(self, key: str | bytes, value: Any, expire: int = 0, *,
            timeout: float | None = None) -> bool:
        """Store ``value``; acknowledged by the server (True), never fire-and-forget."""
        ring = self._ring
        index = 0 if ring is None else ring.index(key.encode() if isinstance(key, str) else key)
        stored: bool = self._call("set", index,
                                  lambda c: c.set(key, value, expire, False), timeout)
        return stored

    def add(self, key: str | bytes, value: Any, expire: int = 0, *,
            timeout: float | None = None) -> bool:
        """Store only if absent: True if stored, False if the key exists. Never retried."""
        result: bool = self._on(
            "add", key, lambda c: c.add(key, value, expire, noreply=False), timeout
        )
        return result

    def replace(self, key: str | bytes, value: Any, expire: int = 0, *,
                timeout: float | None = None) -> bool:
        """Store only if present: True if stored, False if the key is absent."""
        result: bool = self._on(
            "replace", key, lambda c: c.replace(key, value, expire, noreply=False), timeout
        )
        return result

    def cas(self, key: str | bytes, value: Any, cas: Any, expire: int = 0, *,
            timeout: float | None = None) -> bool | None:
        """Store if unchanged since ``gets``: True stored, False changed, None absent."""
        result: bool | None = self._on(
            "cas", key, lambda c: c.cas(key, value, cas, expire, noreply=False), timeout
        )
        return result

    def delete(self, key: str | bytes, *, timeout: float | None = None) -> bool:
        """Delete ``key``: True if it existed. A retried delete may report False."""
        result: bool = self._on("delete", key, lambda c: c.delete(key, noreply=False), timeout)
        return result

    def incr(self, key: str | bytes, value: int = 1, *,
             timeout: float | None = None) -> int | None:
        """Add ``value`` to a counter; its new value, or None if absent. Never retried."""
        result: int | None = self._on(
            "incr", key, lambda c: c.incr(key, value, noreply=False), timeout
        )
        return result

    def decr(self, key: str | bytes, value: int = 1, *,
             timeout: float | None = None) -> int | None:
        """Subtract ``value`` (floored at 0); the new value, or None. Never retried."""
        result: int | None = self._on(
            "decr", key, lambda c: c.decr(key, value, noreply=False), timeout
        )
        return result

    def touch(self, key: str | bytes, expire: int = 0, *, timeout: float | None = None) -> bool:
        """Reset the expiry of ``key``: True if it exists."""
        result: bool = self._on(
            "touch", key, lambda c: c.touch(key, expire, noreply=False), timeout
        )
        return result

    def _on(self, op: str, key: str | bytes, fn: Callable[[Any], Any],
            timeout: float | None) -> Any:
        return self._call(op, self._index(key), fn, timeout)

    def run(self, op: str, key: str | bytes, fn: Callable[[Any], T], *,
            timeout: float | None = None) -> T:
        """Run ``fn(client)`` (any pymemcache ``Client`` method) on the node owning ``key``.

        ``op`` names the operation for errors, events and the idempotency table; an
        operation missing from :data:`IDEMPOTENT` is treated as not idempotent (never
        retried). Example: ``cache.run("append", key, lambda c: c.append(key, b"x",
        noreply=False))``. ``fn`` runs under the call's deadline as the ambient one.
        """
        with deadline(self.options.timeout if timeout is None else timeout,
                      clock=self._clock):  # the pipeline reads it on this clock
            return self._call(op, self._index(key), fn, timeout)

    # Multi-key operations: _multi.py groups keys by node, _fanout.py asks the nodes.

    def get_many(self, keys: Iterable[Any], *, timeout: float | None = None) -> dict[Any, Any]:
        """Values of the present ``keys``; see :func:`._multi.get_many`."""
        return _multi.get_many(self, keys, timeout=timeout)

    def gets_many(self, keys: Iterable[Any], *,
                  timeout: float | None = None) -> dict[Any, tuple[Any, Any]]:
        """``(value, cas)`` of the present ``keys``; see :func:`._multi.gets_many`."""
        return _multi.gets_many(self, keys, timeout=timeout)

    def set_many(self, values: Mapping[Any, Any], expire: int = 0, *,
                 timeout: float | None = None) -> list[Any]:
        """Store every value; keys not stored. See :func:`._multi.set_many`."""
        return _multi.set_many(self, values, expire, timeout=timeout)

    def delete_many(self, keys: Iterable[Any], *, timeout: float | None = None) -> bool:
        """Delete every key; see :func:`._multi.delete_many`."""
        return _multi.delete_many(self, keys, timeout=timeout)
