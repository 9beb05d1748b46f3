"""How each subject of ``resilience bench goodput`` reads its datastore.

A reader is ``key -> value or None`` (sync) or ``key -> awaitable value or None``
(async); it raises on any failure, and the service then serves its fallback. Every
subject of a datastore reads the same stored key (memcached) or node (ZooKeeper); the
endpoints over NSQ (a publish), Elasticsearch, OpenSearch (a search) and Cassandra (a
SELECT) are in :mod:`resilience.bench.goodput_stores`:

* ``raw-default``: the driver as its docs show it, no timeouts;
* ``raw-tuned``: the driver with every timeout it offers set to ``BUDGET``;
* ``wrapper``: the resilience client with ``BUDGET`` as its timeout, defaults otherwise;
* ``fallback``: the control, which never reads and always takes the fallback path.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from resilience.bench.goodput_stores import STORES, seed_store, start_store, store_reader

__all__ = ["ASYNC_DATASTORES", "BUDGET", "DATASTORES", "SUBJECTS", "async_reader", "seed",
           "start_server", "sync_reader"]

SUBJECTS = ("raw-default", "raw-tuned", "wrapper", "fallback")
DATASTORES = ("memcached", "zookeeper", *STORES)
# kazoo has no asyncio API to set the wrapper against; the async services of the others
# are not written yet.
ASYNC_DATASTORES = ("memcached",)
BUDGET = 0.1  # seconds: the tuned raw client's timeouts and the wrapper's budget
_START = 10.0  # seconds a kazoo session may take to start when the service starts


class _AlwaysFails(Exception):
    """What the control's read raises: it takes the fallback path on every request."""


_FAIL = _AlwaysFails("always-fallback control")


def _control(key: str) -> bytes | None:
    raise _FAIL


def _check(datastore: str, subject: str) -> None:
    if datastore not in DATASTORES:
        raise ValueError(f"unknown datastore {datastore!r}; choose from {', '.join(DATASTORES)}")
    if subject not in SUBJECTS:
        raise ValueError(f"unknown subject {subject!r}; choose from {', '.join(SUBJECTS)}")


def sync_reader(datastore: str, subject: str, address: str) -> Callable[[str], bytes | None]:
    """The reader of a sync service; ``address`` is ``host:port``."""
    _check(datastore, subject)
    if subject == "fallback":
        return _control
    if datastore == "zookeeper":
        return _zookeeper_reader(subject, address)
    if datastore in STORES:
        return store_reader(datastore, subject, address, BUDGET)
    host, _, port = address.rpartition(":")
    if subject == "wrapper":
        from resilience.clients.memcache import Memcache

        cache = Memcache([address], timeout=BUDGET, connect_timeout=BUDGET, environ={})
        return lambda key: cache.get(key)
    from pymemcache.client.base import Client

    kwargs: dict[str, Any] = {"no_delay": True}
    if subject == "raw-tuned":
        kwargs.update(connect_timeout=BUDGET, timeout=BUDGET)
    local = threading.local()  # pymemcache's Client is not thread-safe: one per thread

    def read(key: str) -> bytes | None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client((host, int(port)), **kwargs)
        return client.get(key)  # type: ignore[no-any-return]

    return read


def _zookeeper_reader(subject: str, address: str) -> Callable[[str], bytes | None]:
    """kazoo (one thread-safe client for the service, its session started now) or the
    wrapper, reading the data of node ``key``."""
    if subject == "wrapper":
        from resilience.clients.zookeeper import ZooKeeper

        zk = ZooKeeper(address, timeout=BUDGET, environ={})

        def wrapped(path: str) -> bytes | None:
            found = zk.get(path)
            return None if found is None else found[0]

        return wrapped
    from kazoo.client import KazooClient

    if subject == "raw-default":
        kz = KazooClient(hosts=address)
        kz.start(timeout=_START)
        return lambda path: kz.get(path)[0]
    tuned = KazooClient(hosts=address, timeout=BUDGET)  # the session timeout (clamped up)
    tuned.start(timeout=_START)
    return lambda path: tuned.get_async(path).get(timeout=BUDGET)[0]


def async_reader(datastore: str, subject: str, address: str
                 ) -> Callable[[str], Awaitable[bytes | None]]:
    """The reader of an async service: aiomcache with its defaults, aiomcache under
    ``asyncio.wait_for(BUDGET)``, or :class:`~resilience.clients.memcache.AsyncMemcache`."""
    _check(datastore, subject)
    if datastore not in ASYNC_DATASTORES:
        raise ValueError(f"datastore {datastore!r} has no async service; "
                         f"async: {', '.join(ASYNC_DATASTORES)}")
    if subject == "fallback":
        async def control(key: str) -> bytes | None:
            raise _FAIL
        return control
    host, _, port = address.rpartition(":")
    if subject == "wrapper":
        from resilience.clients.memcache import AsyncMemcache

        cache = AsyncMemcache([address], timeout=BUDGET, connect_timeout=BUDGET, environ={})
        return lambda key: cache.get(key)
    import aiomcache

    client = aiomcache.Client(host, int(port))
    if subject == "raw-default":
        return lambda key: client.get(key.encode())

    async def tuned(key: str) -> bytes | None:
        return await asyncio.wait_for(client.get(key.encode()), BUDGET)

    return tuned


def start_server(name: str, work: Path) -> tuple[Any, str]:
    """A fresh harness server holding the value every subject reads, and its key."""
    if name in STORES:
        return start_store(name, work)
    if name == "memcached":
        from resilience.bench.memcached import KEY, _store
        from resilience.servers.memcached import Memcached

        mc = Memcached(work / name, name="memcached-goodput")
        mc.start(timeout=15.0)
        _store(mc.host, mc.port, [KEY])
        return mc, KEY
    from resilience.bench.zookeeper import NODE, VALUE
    from resilience.servers.zookeeper import ZooKeeper

    zk = ZooKeeper(work / name, name="zookeeper-goodput")
    zk.start(timeout=60.0)
    create_node(f"{zk.host}:{zk.port}", NODE, VALUE)
    return zk, NODE


def create_node(address: str, path: str, value: bytes) -> None:
    from kazoo.client import KazooClient

    kz = KazooClient(hosts=address)
    kz.start(timeout=15.0)
    try:
        kz.ensure_path(path)
        kz.set(path, value)
    finally:
        kz.stop()
        kz.close()


def seed(datastore: str, server: Any) -> str:
    """Store the value in a server given by the caller; its key."""
    if datastore in STORES:
        return seed_store(datastore, server)
    if datastore == "memcached":
        from resilience.bench.memcached import KEY, _store

        _store(server.host, server.port, [KEY])
        return KEY
    from resilience.bench.zookeeper import NODE, VALUE

    create_node(f"{server.host}:{server.port}", NODE, VALUE)
    return NODE
