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

Errors (contract 7), mapped most specific first, the driver's exception as
``__cause__``: a socket timeout -> BackendTimeoutError; refused, reset, closed
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
from typing import TYPE_CHECKING, Any, TypeVar

from resilience.clients._base import ErrorMap, LazyDriver
from resilience.clients.memcache import _multi
from resilience.clients.memcache._common import (
    _MISS,
    IDEMPOTENT,
    READS,
    SERVICE,
    MemcacheBase,
    _CallerError,
)
from resilience.core.pipeline import call
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    ResilienceError,
)

if TYPE_CHECKING:
    from resilience.clients.memcache._node import NodePool

__all__ = ["IDEMPOTENT", "READS", "Memcache", "error_map"]

T = TypeVar("T")
_monotonic = time.monotonic


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



class Memcache(MemcacheBase):
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
        self._nodes: LazyDriver[tuple[NodePool, ...]] = LazyDriver(
            self._build_nodes, _close_nodes, service=SERVICE
        )

    def _build_nodes(self) -> tuple[NodePool, ...]:
        from resilience.clients.memcache._node import NodePool

        error_map()  # build the table now, not inside the first failing call
        size = self.options.pool_size
        return tuple(NodePool(h, p, size, self._client_kwargs) for h, p in self._addresses)

    def close(self) -> None:
        """Close every connection; calls in flight end at once with an error.

        Later calls raise BackendUnavailableError.
        """
        self._nodes.close()

    def __enter__(self) -> Memcache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Memcache {','.join(self._endpoints)} timeout={self.options.timeout}>"

    # ---- the one path every operation takes --------------------------------------

    def _call(
        self, op: str, index: int, fn: Callable[[Any], T], timeout: float | None
    ) -> T:
        """Run ``fn(client)`` on node ``index`` through the pipeline."""
        node = self._nodes.get()[index]
        connect_timeout = self._connect_timeout

        def attempt(remaining: float) -> T:
            client = None
            try:
                client = node.checkout(_monotonic() + remaining, connect_timeout)
                result = fn(client)
            except BaseException as exc:
                raise self._attempt_error(node, client, exc, op, index)  # noqa: B904
            node.checkin(client)
            return result

        try:
            return call(self._ops[index].get(op) or self._extra_operation(op, index),
                        self._breakers[index], attempt, timeout)
        except _CallerError as err:
            raise ValueError(f"memcache {op}: {err.exc}") from err.exc

    def _attempt_error(self, node: NodePool, client: Any, exc: BaseException, op: str,
                       index: int) -> BaseException:
        """The error an attempt raises for ``exc`` (its cause); drops ``client``.

        ``client`` is None when checking out (connecting) failed: the pool already
        dropped it. A client whose call raised is closed, never reused (its stream may
        be out of step). On a closed wrapper every failure reads "client is closed".
        """
        endpoint = self._endpoints[index]
        if client is not None:
            node.discard(client)
            if self._nodes.closed:
                err: BaseException = BackendUnavailableError(
                    "client is closed", service=SERVICE, endpoint=endpoint, operation=op)
                err.__cause__ = exc
                return err
        err = _mapped(exc, op, endpoint)
        if err is not exc:
            err.__cause__ = exc
        return err

    # ---- operations --------------------------------------------------------------

    def get(self, key: str | bytes, default: Any = None, *, timeout: float | None = None) -> Any:
        """The value of ``key``, or ``default`` on a miss (or on failure with fail_open).

        Raises:
            ResilienceError: the call failed or was rejected (unless fail_open).
            ValueError: an illegal key.
        """
        # get and set are `_call` unrolled: one closure and two frames fewer per call,
        # about 0.3 µs of a 25 µs loopback round trip. Keep the three in step.
        ring = self._ring
        index = 0 if ring is None else ring.index(key.encode() if isinstance(key, str) else key)
        node = self._nodes.get()[index]
        connect_timeout = self._connect_timeout

        def attempt(remaining: float) -> Any:
            client = None
            try:
                client = node.checkout(_monotonic() + remaining, connect_timeout)
                value = client.get(key, _MISS)
            except BaseException as exc:
                raise self._attempt_error(node, client, exc, "get", index)  # noqa: B904
            node.checkin(client)
            return value

        try:
            value = call(self._ops[index]["get"], self._breakers[index], attempt, timeout)
        except _CallerError as err:
            raise ValueError(f"memcache get: {err.exc}") from err.exc
        return default if value is _MISS else value

    def gets(self, key: str | bytes, *, timeout: float | None = None) -> tuple[Any, Any]:
        """``(value, cas_token)`` of ``key``; ``(None, None)`` on a miss."""
        result: tuple[Any, Any] = self._on("gets", key, lambda c: c.gets(key), timeout)
        return result

    def set(self, key: str | bytes, value: Any, expire: int = 0, *,
            timeout: float | None = None) -> bool:
        """Store ``value``; acknowledged by the server (True), never fire-and-forget."""
        ring = self._ring  # `_call` unrolled, as in get
        index = 0 if ring is None else ring.index(key.encode() if isinstance(key, str) else key)
        node = self._nodes.get()[index]
        connect_timeout = self._connect_timeout

        def attempt(remaining: float) -> bool:
            client = None
            try:
                client = node.checkout(_monotonic() + remaining, connect_timeout)
                stored: bool = client.set(key, value, expire, False)
            except BaseException as exc:
                raise self._attempt_error(node, client, exc, "set", index)  # noqa: B904
            node.checkin(client)
            return stored

        try:
            return call(self._ops[index]["set"], self._breakers[index], attempt, timeout)
        except _CallerError as err:
            raise ValueError(f"memcache set: {err.exc}") from err.exc

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
        noreply=False))``.
        """
        return self._call(op, self._index(key), fn, timeout)

    # Multi-key operations: the fan-out over nodes lives in _multi.py.

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


def _mapped(exc: BaseException, op: str, endpoint: str) -> BaseException:
    if isinstance(exc, ResilienceError):
        return exc
    table = error_map()
    rule = table.rule(exc)
    if rule is not None and rule[1] is None:
        return _CallerError(exc)
    return table.translate(exc, service=SERVICE, endpoint=endpoint, operation=op)


def _close_nodes(nodes: tuple[NodePool, ...]) -> None:
    for node in nodes:
        node.close()


