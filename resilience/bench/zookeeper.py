"""The ZooKeeper plugin of the benchmark: kazoo raw (defaults, tuned) and wrapped.

Subjects make one ``get`` of a stored node per call. ``raw-default`` is
``KazooClient(hosts)`` with ``start()`` on first use and the sync ``get()`` (kazoo's
documented way: no timeout on the call; ``start`` waits up to 15 s). ``raw-tuned`` sets
every timeout kazoo has to the budget: ``KazooClient(timeout=budget)`` (the session
timeout, clamped up by the server, and the TCP connect timeout), ``start(timeout=budget)``
and ``get_async().get(timeout=budget)``. The wrapper is
:class:`resilience.clients.zookeeper.ZooKeeper` with that budget and its defaults.

The ``node-loss`` rows run on a 3-member ensemble (``start_cluster``) with member 0
frozen: ``node-loss`` subjects list member 0 first and do not shuffle the hosts, so
their session starts on the member that freezes; ``node-loss-others`` subjects start on
member 1.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resilience.bench.model import OverheadRow
from resilience.bench.plugin import RunningServer, Subject

__all__ = ["PLUGIN", "ZooKeeperBench"]

NODE = "/bench-key"
VALUE = b"v" * 64


def _hosts(nodes: Sequence[tuple[str, int]], target: int = 0) -> str:
    """The hosts string with ``nodes[target]`` first (its session starts there)."""
    ordered = [nodes[target], *(n for i, n in enumerate(nodes) if i != target)]
    return ",".join(f"{h}:{p}" for h, p in ordered)


class RawSubject:
    """kazoo with its defaults (``budget`` None) or every timeout at the budget."""

    def __init__(self, name: str, nodes: Sequence[tuple[str, int]], budget: float | None,
                 target: int = 0):
        from kazoo.client import KazooClient

        self.name = name
        self._budget = budget
        kwargs: dict[str, Any] = {} if budget is None else {"timeout": budget}
        self._kz = KazooClient(hosts=_hosts(nodes, target), randomize_hosts=False, **kwargs)
        self._started = False

    def call(self) -> object:
        kz = self._kz
        if not self._started:
            if self._budget is None:
                kz.start()
            else:
                kz.start(timeout=self._budget)
            self._started = True
        if self._budget is None:
            return kz.get(NODE)
        return kz.get_async(NODE).get(timeout=self._budget)

    def abort(self) -> None:
        # Wake a blocked sync call: fail every queued and pending request.
        from kazoo.exceptions import ConnectionClosedError

        kz = self._kz
        with contextlib.suppress(Exception):
            while kz._queue:
                _, result = kz._queue.popleft()
                if result is not None:
                    result.set_exception(ConnectionClosedError("aborted"))
        with contextlib.suppress(Exception):
            sock = kz._connection._socket
            if sock is not None:
                sock.close()

    def breaker_open(self) -> bool:
        return False

    def close(self) -> None:
        import threading

        self.abort()
        # kazoo's stop() may wait 10 s for its connection thread: not on the bench's clock.
        threading.Thread(target=_stop, args=(self._kz,), daemon=True).start()


def _stop(kz: Any) -> None:
    with contextlib.suppress(Exception):
        kz.stop()
        kz.close()


class WrapperSubject:
    """The resilience wrapper with ``budget`` as the call timeout."""

    def __init__(self, nodes: Sequence[tuple[str, int]], budget: float, target: int = 0):
        from resilience.clients.zookeeper import ZooKeeper
        from resilience.core.breaker import BreakerState

        self.name = "wrapper"
        self._zk = ZooKeeper(_hosts(nodes, target), timeout=budget, randomize_hosts=False,
                             environ={})
        self._open_states = (BreakerState.OPEN, BreakerState.FORCED_OPEN)

    def call(self) -> object:
        return self._zk.get(NODE)

    def abort(self) -> None:
        self._zk.close()

    def breaker_open(self) -> bool:
        breaker = self._zk.breaker(self._zk.endpoints[0])
        return breaker.state(time.monotonic()) in self._open_states

    def close(self) -> None:
        self._zk.close()


class ZooKeeperBench:
    """The :class:`~resilience.bench.plugin.Datastore` for ZooKeeper."""

    name = "zookeeper"

    def start_server(self, work_dir: str, *, host: str = "127.0.0.1",
                     netns: str | None = None, targets: Sequence[int] = (0,)) -> RunningServer:
        from resilience.servers.zookeeper import ZooKeeper

        server = ZooKeeper(Path(work_dir), name="zookeeper-bench", host=host, netns=netns)
        server.start(timeout=30.0)
        try:
            _store(f"{server.host}:{server.port}")
        except BaseException:
            server.stop()
            raise
        return server

    def subject(self, kind: str, nodes: Sequence[tuple[str, int]], budget: float,
                target: int = 0) -> Subject:
        if kind == "raw-default":
            return RawSubject(kind, nodes, None, target)
        if kind == "raw-tuned":
            return RawSubject(kind, nodes, budget, target)
        if kind == "wrapper":
            return WrapperSubject(nodes, budget, target)
        raise ValueError(f"unknown subject {kind!r}")

    def start_cluster(self, work_dir: str, nodes: int) -> list[RunningServer]:
        """A started ensemble of ``nodes`` members holding the node (node-loss rows)."""
        from resilience.servers.zookeeper import ensemble

        cluster = ensemble(Path(work_dir), nodes)
        cluster.start(60.0)
        try:
            _store(cluster.hosts)
        except BaseException:
            cluster.stop()
            raise
        return list(cluster.members)

    def overhead(self, host: str, port: int, calls: int) -> list[OverheadRow]:
        return _overhead(f"{host}:{port}", calls)


def _store(hosts: str) -> None:
    from kazoo.client import KazooClient

    kz = KazooClient(hosts=hosts)
    kz.start(timeout=15.0)
    try:
        kz.ensure_path(NODE)
        kz.set(NODE, VALUE)
    finally:
        kz.stop()
        kz.close()


def _peers(hosts: str) -> dict[str, Callable[[], object]]:
    import pybreaker
    from kazoo.client import KazooClient

    from resilience.clients.zookeeper import ZooKeeper

    raw = KazooClient(hosts=hosts)
    raw.start(timeout=15.0)
    zk = ZooKeeper(hosts, timeout=1.0, environ={})
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1)
    gen = zk.id_generator("/bench-ids")
    gen.claim(timeout=5.0)
    return {
        "raw kazoo": lambda: raw.get_async(NODE).get(timeout=1.0),
        "wrapper": lambda: zk.get(NODE),
        "pybreaker + kazoo": lambda: breaker.call(
            lambda: raw.get_async(NODE).get(timeout=1.0)),
        "wrapper id_generator.next_id": gen.next_id,
    }


def _overhead(hosts: str, calls: int, per_round: int = 100) -> list[OverheadRow]:
    """Healthy-path µs per ``get`` of each subject, in interleaved rounds; IDs too."""
    peers = _peers(hosts)
    names = list(peers)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for fn in peers.values():
        for _ in range(100):
            fn()
    for _ in range(max(5, calls // (per_round * len(names)))):
        for name in names:
            fn = peers[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                fn()
            wall[name].append((time.perf_counter() - start) / per_round * 1e6)
            cpu[name].append((time.process_time() - start_cpu) / per_round * 1e6)
    base, base_cpu = wall["raw kazoo"], cpu["raw kazoo"]
    rows = []
    for name in names:
        ratio = statistics.median(v / b for v, b in zip(wall[name], base, strict=True))
        added = statistics.median(v - b for v, b in zip(cpu[name], base_cpu, strict=True))
        op = "next_id" if "next_id" in name else "get"
        rows.append(OverheadRow("zookeeper", op, name, statistics.median(wall[name]),
                                min(wall[name]), max(wall[name]), ratio,
                                statistics.median(cpu[name]), added))
    return rows


PLUGIN = ZooKeeperBench()
