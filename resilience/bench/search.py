"""The Elasticsearch and OpenSearch plugins of the benchmark: raw (defaults, tuned), wrapped.

Subjects make one ``get`` of a stored document per call. ``raw-default`` is the driver
as its docs show it (``Elasticsearch(url)``: 10 s request timeout, 3 retries;
``OpenSearch(url)``: the same); ``raw-tuned`` sets every timeout to the budget and turns
the driver's retries off; the wrapper is :mod:`resilience.clients.elasticsearch` /
:mod:`resilience.clients.opensearch` with that budget and its default breaker and retry.

A JVM takes 5-13 s to start, so the servers on loopback are started once per node
index and shared by the rows (a row's "stop" only thaws it); they stop when the process
exits. Servers inside a network namespace are started per row, as for memcached.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resilience.bench.model import OverheadRow
from resilience.bench.overhead import quartiles
from resilience.bench.plugin import RunningServer, Subject

__all__ = ["ELASTICSEARCH", "OPENSEARCH", "SearchBench"]

INDEX = "bench"
DOC = {"title": "x" * 300, "n": 1}  # long enough for the slow drip to take seconds


def _raw(name: str, urls: list[str], budget: float | None) -> Any:
    """The raw driver client: defaults, or every timeout at ``budget`` and retries off."""
    if name == "elasticsearch":
        from elasticsearch import Elasticsearch

        if budget is None:
            return Elasticsearch(urls)
        return Elasticsearch(urls, request_timeout=budget, max_retries=0,
                             retry_on_status=(), retry_on_timeout=False)
    from opensearchpy import OpenSearch

    if budget is None:
        return OpenSearch(urls)
    return OpenSearch(urls, timeout=budget, max_retries=0, retry_on_status=(),
                      retry_on_timeout=False)


def _pools(name: str, raw: Any) -> list[Any]:
    if name == "elasticsearch":
        return [node.pool for node in raw.transport.node_pool.all()]
    return [conn.pool for conn in raw.transport.connection_pool.connections]


class RawSubject:
    """The raw driver; its pools record the connections they open (at connect only, so a
    call pays nothing), so ``abort`` can shut a hung call's socket down."""

    def __init__(self, name: str, kind: str, urls: list[str], budget: float | None) -> None:
        self.name = kind
        self._client = _raw(name, urls, budget)
        self._conns: list[Any] = []
        for pool in _pools(name, self._client):
            make = pool._new_conn

            def tracked(make: Callable[[], Any] = make) -> Any:
                conn = make()
                self._conns.append(conn)
                return conn

            pool._new_conn = tracked

    def call(self) -> object:
        return self._client.get(index=INDEX, id="1")

    def abort(self) -> None:
        for conn in list(self._conns):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def breaker_open(self) -> bool:
        return False

    def close(self) -> None:
        self.abort()
        self._client.close()


def _reachable(node: tuple[str, int]) -> bool:
    """Whether a TCP connect to ``node`` succeeds within 0.2 s (not a blackhole, not
    refused)."""
    try:
        socket.create_connection(node, timeout=0.2).close()
    except OSError:
        return False
    return True


class WrapperSubject:
    """The resilience wrapper with ``budget`` as timeout and connect cap."""

    def __init__(self, name: str, nodes: Sequence[tuple[str, int]], budget: float,
                 target: int) -> None:
        from resilience.core.breaker import BreakerState

        self.name = "wrapper"
        cls = _wrapper_class(name)
        urls = [f"http://{h}:{p}" for h, p in nodes]
        self._client = cls(urls, timeout=budget, connect_timeout=budget, environ={})
        self._endpoint = self._client.endpoints[target]
        self._open_states = (BreakerState.OPEN, BreakerState.FORCED_OPEN)
        if _reachable(nodes[target]):
            # A JVM just thawed (the previous row froze it) can take longer than the
            # budget to answer the first request: warm up with a generous budget, as the
            # raw subjects' first call gets their 10 s or retries. Not measured.
            with contextlib.suppress(Exception):
                self._client.get(index=INDEX, id="1", timeout=5.0)

    def call(self) -> object:
        return self._client.get(index=INDEX, id="1")

    def abort(self) -> None:
        self._client.close()

    def breaker_open(self) -> bool:
        breaker = self._client.breaker(self._endpoint)
        return breaker.state(time.monotonic()) in self._open_states

    def close(self) -> None:
        self._client.close()


def _wrapper_class(name: str) -> Any:
    if name == "elasticsearch":
        from resilience.clients.elasticsearch import Elasticsearch

        return Elasticsearch
    from resilience.clients.opensearch import OpenSearch

    return OpenSearch


class _Shared:
    """A loopback server kept for the next rows: stop and kill only thaw it."""

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def host(self) -> str:
        return str(self.node.host)

    @property
    def port(self) -> int:
        return int(self.node.port)

    def freeze(self) -> None:
        self.node.freeze()

    def thaw(self) -> None:
        self.node.thaw()

    def stop(self, timeout: float = 10.0) -> None:
        self.node.thaw()

    def kill(self) -> None:
        self.node.thaw()


class SearchBench:
    """The :class:`~resilience.bench.plugin.Datastore` of Elasticsearch or OpenSearch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._shared: dict[int, Any] = {}

    def _node(self, data_dir: Path, host: str, netns: str | None) -> Any:
        if self.name == "elasticsearch":
            from resilience.servers.elasticsearch import ElasticsearchNode

            return ElasticsearchNode(data_dir, host=host, netns=netns, heap_mb=256)
        from resilience.servers.opensearch import OpenSearchNode

        return OpenSearchNode(data_dir, host=host, netns=netns, heap_mb=256)

    def start_server(self, work_dir: str, *, host: str = "127.0.0.1",
                     netns: str | None = None, targets: Sequence[int] = (0,)) -> RunningServer:
        if netns is None and host == "127.0.0.1":
            key = targets[0] if targets else 0
            node = self._shared.get(key)
            if node is None or not node.is_running():
                node = self._node(Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-")),
                                  host, None).start(180)
                atexit.register(node.stop)
                self._shared[key] = node
                _seed(self.name, node.url)
            node.thaw()
            return _Shared(node)
        node = self._node(Path(work_dir), host, netns).start(180)
        try:
            _seed(self.name, node.url)
        except BaseException:
            node.kill()
            raise
        return node  # type: ignore[no-any-return]

    def subject(self, kind: str, nodes: Sequence[tuple[str, int]], budget: float,
                target: int = 0) -> Subject:
        urls = [f"http://{h}:{p}" for h, p in nodes]
        if kind == "raw-default":
            return RawSubject(self.name, kind, urls, None)
        if kind == "raw-tuned":
            return RawSubject(self.name, kind, urls, budget)
        if kind == "wrapper":
            return WrapperSubject(self.name, nodes, budget, target)
        raise ValueError(f"unknown subject {kind!r}")

    def overhead(self, host: str, port: int, calls: int) -> list[OverheadRow]:
        return _overhead(self.name, f"http://{host}:{port}", calls)


def _seed(name: str, url: str) -> None:
    raw = _raw(name, [url], 30.0)
    try:
        settings = {"number_of_replicas": 0, "number_of_shards": 1}
        if not raw.indices.exists(index=INDEX):
            if name == "elasticsearch":
                raw.indices.create(index=INDEX, settings=settings)
            else:
                raw.indices.create(index=INDEX, body={"settings": settings})
        doc = {"document": DOC} if name == "elasticsearch" else {"body": DOC}
        raw.index(index=INDEX, id="1", refresh=True, **doc)
    finally:
        raw.close()


def _peers(name: str, url: str, made: list[Any]) -> dict[str, dict[str, Callable[[], object]]]:
    """Subject -> operation -> a callable doing that healthy call (clients into ``made``)."""
    import pybreaker

    raw = _raw(name, [url], 1.0)
    pyb_raw = _raw(name, [url], 1.0)
    wrapper = _wrapper_class(name)([url], timeout=1.0, environ={})
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1)
    made += [raw, pyb_raw, wrapper]
    query = ({"query": {"term": {"n": 1}}} if name == "elasticsearch"
             else {"body": {"query": {"term": {"n": 1}}}})

    def ops(client: Any, wrap: Callable[..., Any] | None = None) -> dict[str, Any]:
        if wrap is None:
            return {"get": lambda: client.get(index=INDEX, id="1"),
                    "search": lambda: client.search(index=INDEX, **query)}
        return {"get": lambda: wrap(client.get, index=INDEX, id="1"),
                "search": lambda: wrap(client.search, index=INDEX, **query)}

    return {f"raw {name}": ops(raw), "wrapper": ops(wrapper),
            f"pybreaker + {name}": ops(pyb_raw, breaker.call)}


def _overhead(name: str, url: str, calls: int, per_round: int = 50) -> list[OverheadRow]:
    """Healthy-path µs per call of each subject, in short interleaved rounds grouped in
    cycles where every subject takes every position once; ``x raw`` and *CPU added* are
    medians over cycles of the per-cycle comparison with the raw driver (as memcached's).

    Every cycle builds the clients anew: a JVM server answers each keep-alive connection
    on its own thread, and where that thread runs biases a connection's cost by tens of
    µs (measured: +-25 µs between two identical raw clients), so one connection per
    subject for the whole run would measure where connections landed, not clients.
    """
    names: list[str] = []
    n = 3
    cycles = max(5, calls // (per_round * n))
    rows: list[OverheadRow] = []
    for op in ("get", "search"):
        wall: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        rounds: dict[str, list[float]] = {}
        for _ in range(cycles):
            made: list[Any] = []
            peers = _peers(name, url, made)
            names = list(peers)
            for fns in peers.values():
                for _ in range(20):
                    fns[op]()
            w = dict.fromkeys(names, 0.0)
            c = dict.fromkeys(names, 0.0)
            for r in range(n):
                for subject in names[r:] + names[:r]:
                    fn = peers[subject][op]
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for _ in range(per_round):
                        fn()
                    took = time.perf_counter() - start
                    c[subject] += time.process_time() - start_cpu
                    w[subject] += took
                    rounds.setdefault(subject, []).append(took / per_round * 1e6)
            for subject in names:
                wall.setdefault(subject, []).append(w[subject])
                cpu.setdefault(subject, []).append(c[subject] / (n * per_round) * 1e6)
            for client in made:
                client.close()
        base, base_cpu = wall[names[0]], cpu[names[0]]
        for subject in names:
            per_call = [x / (n * per_round) * 1e6 for x in wall[subject]]
            ratio = statistics.median(v / b for v, b in zip(wall[subject], base, strict=True))
            added = [x - b for x, b in zip(cpu[subject], base_cpu, strict=True)]
            lo, hi = quartiles(added)
            rows.append(OverheadRow(name, op, subject, statistics.median(per_call),
                                    min(rounds[subject]), max(rounds[subject]), ratio,
                                    statistics.median(cpu[subject]), statistics.median(added),
                                    lo, hi))
    return rows


ELASTICSEARCH = SearchBench("elasticsearch")
OPENSEARCH = SearchBench("opensearch")
