"""The goodput readers of NSQ, Elasticsearch, OpenSearch and Cassandra (sync services),
and how their servers are started and seeded (docs/bench.md#goodput).

What each endpoint does, as a real service would:

* ``nsq``: *publish an event* (64 bytes to topic ``bench``). A service that cannot
  publish queues the event locally and answers ``202 Accepted``; here the read
  returns ``b"OK"`` once nsqd acknowledged (``X-Source: hit``) and raises otherwise
  (``fallback``: the event would be queued locally). raw-default is pynsq's ``Writer``
  on its own tornado thread, each request waiting for the publish callback with no
  bound; raw-tuned waits at most ``BUDGET`` (pynsq has no timeout of its own for a
  publish); the wrapper is :class:`resilience.clients.nsq.Publisher` over TCP.
* ``elasticsearch`` / ``opensearch``: *search* (a ``term`` query on the one stored
  document), the fallback being an empty result. raw-default is ``Elasticsearch(url)``
  / ``OpenSearch(url)`` (10 s request timeout, 3 retries); raw-tuned sets the request
  timeout to ``BUDGET`` and turns retries off; the wrapper is the resilience client.
* ``cassandra``: ``SELECT v FROM bench.kv WHERE k = 'key'``, the fallback a default
  row. raw-default is ``Cluster([node]).connect()`` (10 s request timeout); raw-tuned
  sets every driver timeout to ``BUDGET``; the wrapper is
  :class:`resilience.clients.cassandra.Cassandra`.

Every client is built (and connected) once per service process, before it listens,
as a running service has it; one warm-up call with a generous bound goes first so the
healthy phase does not start with a cold JVM path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["STORES", "seed_store", "start_store", "store_reader"]

STORES = ("nsq", "opensearch", "elasticsearch", "cassandra")
_WARM = 5.0  # seconds the one warm-up call of a JVM client may take
_QUERY = {"query": {"term": {"n": 1}}}

Reader = Callable[[str], bytes | None]


def store_reader(datastore: str, subject: str, address: str, budget: float) -> Reader:
    """The sync reader of ``subject`` (not the control) against ``address``."""
    if datastore == "nsq":
        return _nsq(subject, address, budget)
    if datastore in ("elasticsearch", "opensearch"):
        return _search(datastore, subject, address, budget)
    if datastore == "cassandra":
        return _cassandra(subject, address, budget)
    raise ValueError(f"unknown datastore {datastore!r}; choose from {', '.join(STORES)}")


def _nsq(subject: str, address: str, budget: float) -> Reader:
    from resilience.bench.nsq import BODY, TOPIC

    if subject == "wrapper":
        from resilience.clients.nsq import Publisher

        pub = Publisher([address], timeout=budget, connect_timeout=budget, environ={})

        def publish(topic: str) -> bytes | None:
            pub.publish(topic, BODY)
            return b"OK"

        with contextlib.suppress(Exception):
            pub.publish(TOPIC, BODY)  # the connection, as a running service has it
        return publish
    from resilience.bench.nsq import _TornadoWriter

    writer = _TornadoWriter(address)  # thread-safe: every pub goes to its IOLoop
    wait = None if subject == "raw-default" else budget
    return lambda topic: writer.pub(wait)  # type: ignore[return-value]


def _search(name: str, subject: str, address: str, budget: float) -> Reader:
    from resilience.bench.search import _raw, _wrapper_class

    url = f"http://{address}"
    query = _QUERY if name == "elasticsearch" else {"body": _QUERY}
    if subject == "wrapper":
        client = _wrapper_class(name)([url], timeout=budget, connect_timeout=budget,
                                      environ={})
        with contextlib.suppress(Exception):
            client.search(index="bench", timeout=_WARM, **query)
    else:
        client = _raw(name, [url], None if subject == "raw-default" else budget)
        with contextlib.suppress(Exception):
            warm = (client.options(request_timeout=_WARM) if name == "elasticsearch"
                    else client)
            warm.search(index="bench", **query)

    def search(index: str) -> bytes | None:
        hits = client.search(index=index, **query)["hits"]["hits"]
        return b"found" if hits else None

    return search


def _cassandra(subject: str, address: str, budget: float) -> Reader:
    from resilience.bench.cassandra import READ

    host, _, port = address.rpartition(":")
    if subject == "wrapper":
        from resilience.clients.cassandra import Cassandra

        db = Cassandra([address], timeout=budget, environ={})
        with contextlib.suppress(Exception):
            db.execute(READ, timeout=_WARM).one()
        read: Callable[[], Any] = lambda: db.execute(READ).one()  # noqa: E731
    else:
        from resilience.bench.cassandra import RawSubject

        # Connects now; a request without a session (its Cluster failed) connects anew.
        read = RawSubject(subject, [(host, int(port))],
                          None if subject == "raw-default" else budget).call
        with contextlib.suppress(Exception):
            read()

    def select(key: str) -> bytes | None:
        row = read()
        return None if row is None else str(row[0]).encode()

    return select


def start_store(name: str, work: Path) -> tuple[Any, str]:
    """A fresh harness server for ``name`` holding what the endpoint reads; the key
    (topic, index or table row) the service is given, and the address to read."""
    if name == "nsq":
        from resilience.servers.nsq import Nsqd

        nsqd = Nsqd(work / name, name="nsqd-goodput")
        nsqd.start(timeout=15.0)
        return nsqd, seed_store(name, nsqd)
    node: Any
    if name == "cassandra":
        from resilience.servers.cassandra import Cassandra

        node = Cassandra(work / name, name="cassandra-goodput")
        node.start(timeout=120.0)
    elif name == "elasticsearch":
        from resilience.servers.elasticsearch import ElasticsearchNode

        node = ElasticsearchNode(work / name, heap_mb=256).start(180)
    else:
        from resilience.servers.opensearch import OpenSearchNode

        node = OpenSearchNode(work / name, heap_mb=256).start(180)
    try:
        key = seed_store(name, node)
        _warm_server(name, f"{node.host}:{node.port}", key)
        return node, key
    except BaseException:
        node.kill()
        raise


def _warm_server(name: str, address: str, key: str, seconds: float = 10.0,
                 threads: int = 8) -> None:
    """Calls from a few threads for ``seconds``, so the JVM has compiled the read path
    before the healthy phase: a cold node answered under the runs' load in ~90 ms
    (p50), near the 100 ms budget, and the wrapper's breaker opened while it was healthy.
    """
    import threading
    import time

    read = store_reader(name, "raw-tuned", address, _WARM)
    end = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                read(key)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 2 * _WARM)


def seed_store(name: str, server: Any) -> str:
    """Store what the endpoint reads in ``server``; the key the service is given."""
    if name == "nsq":
        from resilience.bench.nsq import TOPIC

        return TOPIC  # nsqd creates the topic on the first publish
    if name == "cassandra":
        from resilience.bench.cassandra import _setup

        _setup([(server.host, server.port)], 1)
        return "key"
    from resilience.bench.search import INDEX, _seed

    _seed(name, f"http://{server.host}:{server.port}")
    return INDEX
