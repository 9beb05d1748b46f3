"""What the soak runs against: one :class:`Target` per datastore.

A target is a real server (started through the benchmark's datastore plugin, which
also stores the row, node or document the calls read), a fault proxy in front of it,
a sync and an asyncio resilience client connected through the proxy, the one call the
load makes with each, and the faults a schedule switches:

==========  ===============================================================
frozen      the server process is SIGSTOPped (``thaw`` = SIGCONT)
latency     proxy latency of 3x the call budget on every reply
reset       proxy resets every connection after its first byte
==========  ===============================================================

NSQ publishes instead of reading: every acknowledged publish is entered in an
:class:`~resilience.soak.ledger.Ledger`, and a de-duplicating consumer subscribed to
nsqd directly (not through the proxy: the faults are the publisher's) checks it off.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from resilience.faults.schedule import CallbackFault, Fault, ToxicFault
from resilience.soak.ledger import Ledger

__all__ = ["DATASTORES", "FAULTS", "Target", "open_target"]

DATASTORES = ("memcached", "zookeeper", "nsq", "cassandra", "elasticsearch", "opensearch")
"""Every datastore the soak knows, in report order."""

FAULTS = ("frozen", "latency", "reset")
"""Fault names of every target (see the module docstring)."""

TOPIC = "soak"
BODY = b"s" * 64


@dataclass
class Target:
    """One datastore under soak; see the module docstring."""

    name: str
    budget: float
    sync_client: Any
    async_client: Any
    sync_call: Callable[[float | None], object]
    async_call: Callable[[float | None], Awaitable[object]]
    faults: dict[str, Fault]
    closers: list[Callable[[], Any]] = field(default_factory=list)
    ledger: Ledger | None = None

    def open_breakers(self) -> list[str]:
        """``"sync host:port half_open"`` for every breaker of both clients not closed."""
        from resilience.core.breaker import BreakerState

        now = time.monotonic()
        found = []
        for mode, client in (("sync", self.sync_client), ("async", self.async_client)):
            for endpoint in client.endpoints:
                state = client.breaker(endpoint).state(now)
                if state is not BreakerState.CLOSED:
                    found.append(f"{mode} {endpoint} {state.value}")
        return found

    def breaker_snapshots(self) -> dict[str, dict[str, Any]]:
        """``{"sync host:port": breaker snapshot}`` for every breaker of both clients
        (state, probes in flight, generation: the diagnosis of one that stays open)."""
        now = time.monotonic()
        return {f"{mode} {endpoint}": client.breaker(endpoint).snapshot(now)
                for mode, client in (("sync", self.sync_client), ("async", self.async_client))
                for endpoint in client.endpoints}

    def breakers_closed(self) -> bool:
        """Whether every breaker of both clients is closed now."""
        return not self.open_breakers()

    def has_health_probe(self) -> bool:
        """Whether the sync client checks an open endpoint in the background (then the
        breaker closes soon after a heal; without one it waits out its open interval)."""
        from resilience.clients._base import ClientBase

        cls = type(self.sync_client)
        return bool(cls._health_probe is not ClientBase._health_probe
                    or cls._ahealth_probe is not ClientBase._ahealth_probe)

    def close(self) -> None:
        """Remove every fault, close the sync client and stop the proxy and server
        (the async client is closed on its loop by the runner)."""
        for fault in self.faults.values():
            with contextlib.suppress(Exception):
                fault.remove()
        with contextlib.suppress(Exception):
            self.sync_client.close()
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()


def _clients(name: str, address: str, budget: float) -> tuple[Any, Any, Any, Any]:
    """(sync client, async client, sync call, async call) of ``name`` at ``address``."""
    opts: dict[str, Any] = {"timeout": budget, "environ": {}}
    s: Any
    a: Any
    if name == "memcached":
        from resilience.clients.memcache import AsyncMemcache, Memcache

        s, a = Memcache([address], **opts), AsyncMemcache([address], **opts)
        return (s, a, lambda t: s.get("bench:key", timeout=t),
                lambda t: a.get("bench:key", timeout=t))
    if name == "zookeeper":
        from resilience.clients.zookeeper import AsyncZooKeeper, ZooKeeper

        s, a = ZooKeeper(address, **opts), AsyncZooKeeper(address, **opts)
        return s, a, lambda t: s.get("/bench-key", timeout=t), lambda t: a.get(
            "/bench-key", timeout=t)
    if name == "nsq":
        from resilience.clients.nsq import AsyncPublisher, Publisher

        s, a = Publisher([address], keys=True, **opts), AsyncPublisher([address], keys=True,
                                                                      **opts)
        return (s, a, lambda t: s.publish(TOPIC, BODY, timeout=t),
                lambda t: a.publish(TOPIC, BODY, timeout=t))
    if name == "cassandra":
        from resilience.bench.cassandra import READ
        from resilience.clients.cassandra import AsyncCassandra, Cassandra

        s, a = Cassandra([address], **opts), AsyncCassandra([address], **opts)
        return s, a, lambda t: s.execute(READ, timeout=t), lambda t: a.execute(READ, timeout=t)
    if name in ("elasticsearch", "opensearch"):
        from resilience.clients import elasticsearch, opensearch

        module: Any = elasticsearch if name == "elasticsearch" else opensearch
        prefix = "Elasticsearch" if name == "elasticsearch" else "OpenSearch"
        url = f"http://{address}"
        s = getattr(module, prefix)([url], **opts)
        a = getattr(module, f"Async{prefix}")([url], **opts)
        return (s, a, lambda t: s.get(index="bench", id="1", timeout=t),
                lambda t: a.get(index="bench", id="1", timeout=t))
    raise ValueError(f"unknown datastore {name!r}; choose from {', '.join(DATASTORES)}")


def open_target(name: str, work_dir: str, budget: float) -> Target:
    """Start ``name``'s server (bounded by the plugin's start timeout), put a fault proxy
    in front of it and build its clients (which open nothing until their first call).

    Raises:
        ValueError: ``name`` is not one of :data:`DATASTORES`.
    """
    if name not in DATASTORES:
        raise ValueError(f"unknown datastore {name!r}; choose from {', '.join(DATASTORES)}")
    from resilience.bench.plugin import load
    from resilience.bench.scenarios import dispose
    from resilience.faults import toxics
    from resilience.faults.proxy import FaultProxy

    plugin = load(name)
    server = plugin.start_server(tempfile.mkdtemp(prefix=f"soak-{name}-", dir=work_dir))
    closers: list[Callable[[], Any]] = [lambda: dispose(server), lambda: _release(plugin, server)]
    try:
        proxy = FaultProxy((server.host, server.port), seed=1).start()
        closers.append(proxy.stop)
        address = f"{proxy.host}:{proxy.port}"
        s, a, scall, acall = _clients(name, address, budget)
        faults: dict[str, Fault] = {
            "frozen": CallbackFault(server.freeze, server.thaw),
            "latency": ToxicFault(proxy, toxics.Latency(latency_ms=budget * 3000)),
            "reset": ToxicFault(proxy, toxics.Reset(after_bytes=1)),
        }
        target = Target(name, budget, s, a, scall, acall, faults, closers)
        if name == "nsq":
            target.ledger = ledger = Ledger()
            consumer = _consumer(f"{server.host}:{server.port}", ledger)
            closers.append(lambda: consumer.close(drain=2.0))
            target.sync_call = _acked(scall, ledger)
            target.async_call = _aacked(acall, ledger)
        return target
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        raise


def _release(plugin: Any, server: Any) -> None:
    """Stop a JVM the plugin shares between benchmark rows (its ``kill`` only thaws it,
    and it would otherwise live until the process exits, holding its heap), and drop
    the plugin's reference so a later start makes a new one."""
    node = getattr(server, "node", None) or getattr(server, "_node", None)
    if node is None:
        return
    node.stop()
    for attr in ("_single",):  # the Cassandra plugin's cached node
        if getattr(plugin, attr, None) is node:
            setattr(plugin, attr, None)


def _consumer(address: str, ledger: Ledger) -> Any:
    from resilience.clients.nsq import Consumer, MemorySeenStore

    def handle(msg: Any) -> None:
        ledger.consumed(msg.key)

    # The seen-store window (50 000 keys) is far above the messages in flight, and keeps
    # an hour-long soak's memory flat.
    return Consumer(handle, topic=TOPIC, channel="soak", nsqd=[address],
                    seen_store=MemorySeenStore(max_keys=50_000), environ={}).start()


def _acked(call: Callable[[float | None], Any], ledger: Ledger) -> Callable[[float | None], Any]:
    def publish(timeout: float | None) -> Any:
        key = call(timeout)
        ledger.acked(key)
        return key

    return publish


def _aacked(call: Callable[[float | None], Awaitable[Any]],
            ledger: Ledger) -> Callable[[float | None], Awaitable[Any]]:
    async def publish(timeout: float | None) -> Any:
        key = await call(timeout)
        ledger.acked(key)
        return key

    return publish
