"""What the sync and asyncio memcached wrappers share: options, ring, breakers, operations.

Everything here is I/O-free and driver-free: resolving the options, the ring (placement), a
breaker per node (from a registry keyed ``host:port``), one retry policy for the whole
dependency, one bulkhead per node, and the precomputed pipeline
:class:`~resilience.core.pipeline.Operation` of every operation on every node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from resilience.clients._base import IdempotencyTable, idempotency_table
from resilience.clients.memcache._options import MemcacheOptions
from resilience.clients.memcache._ring import make_ring
from resilience.core.breaker import BreakerRegistry, CircuitBreaker
from resilience.core.bulkhead import make_bulkhead
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.fallback import Fallback
from resilience.core.pipeline import Operation
from resilience.core.retry import RetryPolicy
from resilience.errors import ConfigError

__all__ = ["IDEMPOTENT", "READS", "SERVICE", "MemcacheBase"]

SERVICE = "memcache"

IDEMPOTENT: IdempotencyTable = idempotency_table({
    "get": True,
    "gets": True,
    "get_many": True,
    "gets_many": True,
    "set": True,          # the same value twice leaves the same state
    "set_many": True,
    "replace": True,      # as set, for a key that exists
    "delete": True,       # a repeat may report "not found": the state is the same
    "delete_many": True,
    "touch": True,
    "version": True,
    "stats": True,
    # Not idempotent: a retry after a lost reply changes the outcome or the state.
    "add": False,         # the retry sees our own first write and reports NOT_STORED
    "cas": False,         # the retry sees our own first write and reports EXISTS
    "incr": False,        # counts twice
    "decr": False,        # counts twice
    "append": False,      # appends twice
    "prepend": False,     # prepends twice
    "flush_all": True,
})
"""Which operations a retry may repeat (contract 6)."""

READS = frozenset({"get", "gets", "get_many", "gets_many"})
"""Operations that return a miss instead of failing when ``fail_open`` is set."""


class _CallerError(Exception):
    """Carries a caller's bug (illegal key) out of the pipeline without it counting."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _parse_server(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    return host.strip("[]"), int(port)


class MemcacheBase:
    """Options, ring, breakers and operations of a memcached wrapper (no I/O).

    See :class:`~resilience.clients.memcache.Memcache` for the arguments.
    """

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        key_prefix: bytes | str = b"",
        events: EventBus | None = None,
        breakers: BreakerRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        **options: Any,
    ) -> None:
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        elif servers is not None:
            servers = list(servers)
            if not servers:
                raise ConfigError("servers=[]: expected at least one host:port")
        opts = MemcacheOptions.from_env(
            name=name, environ=environ,
            servers=tuple(servers) if servers is not None else None, **options,
        )
        if isinstance(key_prefix, str):
            key_prefix = key_prefix.encode()
        self.options = opts
        self._endpoints = tuple(opts.servers)
        self._addresses = tuple(_parse_server(s) for s in self._endpoints)
        self._ring = (
            make_ring(opts.placement, self._endpoints) if len(self._endpoints) > 1 else None
        )
        self._key_prefix = key_prefix
        self._clock = clock
        self.events = events if events is not None else EventBus()
        registry = breakers if breakers is not None else BreakerRegistry(opts.breaker)
        self._breakers = tuple(registry.get(e) for e in self._endpoints)
        for b in self._breakers:  # state changes become events (contract 11)
            self.events.watch_breaker(b, SERVICE)
        # One retry policy (and so one retry budget) for the whole dependency; one
        # bulkhead per node, so a hung node cannot take the permits of healthy ones.
        self._retry = RetryPolicy(opts.retry)
        if opts.retry.attempts > 1:
            # The core imports tenacity on the first retry; that import (tornado and
            # asyncio with it) takes 40-100 ms here and would land inside the first
            # failing call's deadline. Pay it now, at construction, instead.
            import tenacity  # noqa: F401
        self._ops: tuple[dict[str, Operation], ...] = tuple(
            {name: self._operation(name, flag, bulkhead) for name, flag in IDEMPOTENT.items()}
            for bulkhead in (make_bulkhead(opts.bulkhead) for _ in self._endpoints)
        )

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The nodes, ``host:port``, in configuration order."""
        return self._endpoints

    def node_for(self, key: str | bytes) -> str:
        """The ``host:port`` of the node that owns ``key``."""
        return self._endpoints[self._index(key)]

    def breaker(self, endpoint: str) -> CircuitBreaker:
        """The circuit breaker of one node (``host:port``).

        Raises:
            KeyError: ``endpoint`` is not one of this client's nodes.
        """
        try:
            return self._breakers[self._endpoints.index(endpoint)]
        except ValueError:
            raise KeyError(f"{endpoint!r} is not a node of {self!r}") from None

    def _operation(self, name: str, idempotent: bool, bulkhead: Any) -> Operation:
        fallback = None
        if self.options.fail_open and name in READS:
            fallback = Fallback.value(_MISSES[name])
        return Operation(
            name, service=SERVICE, timeout=self.options.timeout, idempotent=idempotent,
            retry=self._retry, bulkhead=bulkhead, events=self.events, fallback=fallback,
            clock=self._clock, is_failure=_is_failure,
        )

    def _extra_operation(self, op: str, index: int) -> Operation:
        """The operation of a ``run()`` name outside the table: never retried."""
        ops = self._ops[index]
        operation = ops[op] = self._operation(op, False, next(iter(ops.values())).bulkhead)
        return operation

    def _index(self, key: str | bytes) -> int:
        ring = self._ring
        if ring is None:
            return 0
        return ring.index(key.encode() if isinstance(key, str) else key)


def _is_failure(exc: Exception) -> bool:
    # A caller's bug says nothing about the node: the pipeline records a success.
    return not isinstance(exc, _CallerError)


_MISS: Any = object()  # get()'s internal miss marker, never returned
_MISSES: dict[str, object] = {"get": _MISS, "gets": (None, None), "get_many": {},
                              "gets_many": {}}


