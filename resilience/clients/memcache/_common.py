"""What the sync and asyncio memcached clients share on top of the client base.

The base (:mod:`resilience.clients._base`) gives options, a breaker and a bulkhead per
node, retries, the lazy driver and error mapping; this adds memcached's own parts, all
I/O-free and driver-free: the idempotency table, the ``servers`` argument, the ring
that places a key on its node (libmemcached's ketama, or pymemcache's rendezvous), and
fail-open reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from resilience.clients._base import ClientBase
from resilience.clients._errormap import IdempotencyTable, idempotency_table
from resilience.clients.memcache._options import MemcacheOptions
from resilience.clients.memcache._ring import make_ring
from resilience.core.breaker import BreakerRegistry
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.events import EventBus
from resilience.core.fallback import Fallback
from resilience.core.hedge import HedgePolicy
from resilience.errors import ConfigError

__all__ = ["IDEMPOTENT", "READS", "SERVICE", "MemcacheBase"]

D = TypeVar("D")

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
"""Which operations a retry may repeat (docs/architecture.md#safe-retries)."""

READS = frozenset({"get", "gets", "get_many", "gets_many"})
"""Operations that return a miss instead of failing when ``fail_open`` is set."""


def _parse_server(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    return host.strip("[]"), int(port)


class MemcacheBase(ClientBase[D]):
    """What the sync and async memcached clients share: nodes, ring, fail-open reads.

    See :class:`~resilience.clients.memcache.Memcache` for the arguments.
    """

    service = SERVICE
    options_class = MemcacheOptions
    idempotent = IDEMPOTENT
    # Every attempt is a pymemcache call on a socket that ends by the deadline it is
    # handed: no nested call reads the ambient deadline, so the pipeline need not set
    # it (run() sets it itself around the caller's function).
    ambient_deadline = False
    options: MemcacheOptions

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
        opts: MemcacheOptions = self._resolve(
            name, environ, {"servers": tuple(servers) if servers is not None else None,
                            **options})
        self._key_prefix = key_prefix.encode() if isinstance(key_prefix, str) else key_prefix
        self._addresses = tuple(_parse_server(s) for s in opts.servers)
        self._ring = make_ring(opts.placement, opts.servers) if len(opts.servers) > 1 else None
        super().__init__(opts.servers, opts, events=events, breakers=breakers, clock=clock)
        # Hedged gets (opt-in): the clients swap in their hedged get, so with hedging
        # off the read path is untouched.
        self._hedge = HedgePolicy(opts.hedge, clock) if opts.hedge.enabled else None
        if self._hedge is not None:
            self.get = self._hedged_get  # type: ignore[attr-defined]

    def node_for(self, key: str | bytes) -> str:
        """The ``host:port`` of the node that owns ``key``."""
        return self._endpoints[self._index(key)]

    def _fallback(self, op: str) -> Fallback[Any] | None:
        if self.options.fail_open and op in READS:
            return Fallback.value(_MISSES[op])
        return None

    def _index(self, key: str | bytes) -> int:
        ring = self._ring
        if ring is None:
            return 0
        return ring.index(key.encode() if isinstance(key, str) else key)


_MISS: Any = object()  # get()'s internal miss marker, never returned
_MISSES: dict[str, object] = {"get": _MISS, "gets": (None, None), "get_many": {},
                              "gets_many": {}}


