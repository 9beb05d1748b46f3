"""The Cassandra plugin of the benchmark: cassandra-driver raw (defaults, tuned) and wrapped.

Subjects read one row per call (``SELECT v FROM bench.kv WHERE k = 'key'``).
``raw-default`` is ``Cluster(contact_points).connect()`` exactly as the driver's docs
show it (protocol negotiated down from DSE_V2, 5 s connect timeout, 10 s request
timeout, the default retry policy); ``raw-tuned`` sets every timeout the driver has to the
budget (``connect_timeout``, ``control_connection_timeout``, the profile's
``request_timeout``) and pins the protocol; the wrapper is
:class:`resilience.clients.cassandra.Cassandra` with that budget and its defaults. Every
subject opens its session when built, when the node is reachable (a running service
has one), and a subject without a session connects inside its next call.

One single node serves every loopback scenario, and one 3-node ring (replication
factor 3, reads at ONE) both node-loss rows: a Cassandra start costs 5-10 s here, so
the nodes are shared and killed when the process exits. The netns scenarios start their
own node inside the namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resilience.bench.model import OverheadRow
from resilience.bench.overhead import interleave
from resilience.bench.plugin import RunningServer, Subject

__all__ = ["PLUGIN", "CassandraBench"]

READ = "SELECT v FROM bench.kv WHERE k = 'key'"
PREPARED = "SELECT v FROM bench.kv WHERE k = ?"


def _setup(points: list[tuple[str, int]], replication: int) -> None:
    from resilience.servers.cassandra import driver_cluster

    cluster = driver_cluster(points, 30.0)
    try:
        session = cluster.connect()
        session.execute("CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': "
                        f"'SimpleStrategy', 'replication_factor': {replication}}}")
        session.execute("CREATE TABLE IF NOT EXISTS bench.kv (k text PRIMARY KEY, v int)")
        session.execute("INSERT INTO bench.kv (k, v) VALUES ('key', 1)")
    finally:
        cluster.shutdown()


class _Shared:
    """A shared node as a scenario sees it: ``kill``/``stop`` only thaw it (the plugin
    kills it when the process exits)."""

    def __init__(self, node: Any) -> None:
        self._node = node

    @property
    def host(self) -> str:
        return str(self._node.host)

    @property
    def port(self) -> int:
        return int(self._node.port)

    def freeze(self) -> None:
        self._node.freeze()

    def thaw(self) -> None:
        self._node.thaw()

    def stop(self, timeout: float = 10.0) -> None:
        self._node.thaw()

    def kill(self) -> None:
        self._node.thaw()


class RawSubject:
    """cassandra-driver with its defaults (``budget`` None) or every timeout at it."""

    def __init__(self, name: str, nodes: Sequence[tuple[str, int]], budget: float | None) -> None:
        self.name = name
        self._nodes = list(nodes)
        self._budget = budget
        self._cluster: Any = None
        self._session: Any = None
        with contextlib.suppress(Exception):
            self._connect()

    def _connect(self) -> Any:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile

        if self._budget is None:
            self._cluster = Cluster(contact_points=self._nodes)
        else:
            b = self._budget
            profile = ExecutionProfile(request_timeout=b)
            self._cluster = Cluster(contact_points=self._nodes, protocol_version=5,
                                    connect_timeout=b, control_connection_timeout=b,
                                    execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        self._session = self._cluster.connect()
        return self._session

    def call(self) -> object:
        session = self._session
        if session is None or self._cluster.is_shutdown:
            session = self._connect()  # raw: a new Cluster (a failed one is shut down)
        return session.execute(READ).one()

    def abort(self) -> None:
        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            cluster.shutdown()

    def breaker_open(self) -> bool:
        return False

    def close(self) -> None:
        self.abort()


class WrapperSubject:
    """The resilience wrapper with ``budget`` as its call budget."""

    def __init__(self, nodes: Sequence[tuple[str, int]], budget: float) -> None:
        from resilience.clients.cassandra import Cassandra
        from resilience.core.breaker import BreakerState

        self.name = "wrapper"
        self._db = Cassandra([f"{h}:{p}" for h, p in nodes], timeout=budget, environ={})
        self._open = (BreakerState.OPEN, BreakerState.FORCED_OPEN)
        with contextlib.suppress(Exception):
            self._db._driver.get().get(10.0)  # the session, as a running service has it

    def call(self) -> object:
        return self._db.execute(READ).one()

    def abort(self) -> None:
        self._db.close()

    def breaker_open(self) -> bool:
        now = time.monotonic()
        breakers = [self._db.breaker(e) for e in self._db.endpoints]
        hosts = breakers[1:] or breakers
        return breakers[0].state(now) in self._open or all(
            b.state(now) in self._open for b in hosts)

    def close(self) -> None:
        self._db.close()


class CassandraBench:
    """The :class:`~resilience.bench.plugin.Datastore` for Cassandra."""

    name = "cassandra"

    def __init__(self) -> None:
        self._single: Any = None
        self._ring: Any = None
        atexit.register(self._kill_shared)

    def _kill_shared(self) -> None:
        for shared in (self._single, self._ring):
            if shared is not None:
                shared.kill()
        self._single = self._ring = None

    def start_server(self, work_dir: str, *, host: str = "127.0.0.1", netns: str | None = None,
                     targets: Sequence[int] = (0,)) -> RunningServer:
        from resilience.servers.cassandra import Cassandra

        if netns is None and host == "127.0.0.1":
            if self._single is None:
                node = Cassandra(Path(work_dir), name="cassandra-bench")
                node.start(timeout=120.0)
                _setup([(node.host, node.port)], 1)
                self._single = node
            return _Shared(self._single)
        node = Cassandra(Path(work_dir), name="cassandra-bench-ns", host=host, netns=netns)
        node.start(timeout=120.0)
        try:
            _setup([(node.host, node.port)], 1)
        except BaseException:
            node.kill()
            raise
        return node

    def start_cluster(self, work_dir: str, nodes: int) -> list[RunningServer]:
        """The shared ring (replication factor 3): its members, the first one to freeze."""
        from resilience.servers.cassandra import ring

        if self._ring is None:
            members = ring(Path(work_dir), nodes=nodes)
            members.start()
            _setup(members.endpoints, nodes)
            self._ring = members
        return [_Shared(m) for m in self._ring.members]

    def subject(self, kind: str, nodes: Sequence[tuple[str, int]], budget: float,
                target: int = 0) -> Subject:
        if kind == "raw-default":
            return RawSubject(kind, nodes, None)
        if kind == "raw-tuned":
            return RawSubject(kind, nodes, budget)
        if kind == "wrapper":
            return WrapperSubject(nodes, budget)
        raise ValueError(f"unknown subject {kind!r}")

    def overhead(self, host: str, port: int, calls: int) -> list[OverheadRow]:
        return _overhead(host, port, calls)


def _peers(host: str, port: int) -> dict[str, Callable[[], object]]:
    """Subject -> a prepared single-row SELECT through it (each its own session)."""
    import pybreaker
    from cassandra.cluster import Cluster

    from resilience.clients.cassandra import Cassandra

    # The driver's default policies (token aware, DC aware round robin), protocol pinned.
    raw_cluster = Cluster([(host, port)], protocol_version=5)
    raw = raw_cluster.connect()
    raw_get = raw.prepare(PREPARED)
    pyb_cluster = Cluster([(host, port)], protocol_version=5)
    pyb = pyb_cluster.connect()
    pyb_get = pyb.prepare(PREPARED)
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1)
    db = Cassandra([f"{host}:{port}"], timeout=1.0, environ={})
    db_get = db.prepare(PREPARED, timeout=10.0)
    _CLOSE.extend([raw_cluster.shutdown, pyb_cluster.shutdown, db.close])
    return {
        "raw cassandra-driver": lambda: raw.execute(raw_get, ("key",)).one(),
        "wrapper": lambda: db.execute(db_get, ("key",)).one(),
        "pybreaker + cassandra-driver": lambda: breaker.call(pyb.execute, pyb_get,
                                                             ("key",)).one(),
    }


_CLOSE: list[Callable[[], object]] = []


def _overhead(host: str, port: int, calls: int, per_round: int = 50) -> list[OverheadRow]:
    """Healthy-path µs per call of each subject in interleaved rounds: wall time against
    the raw driver's, and the client CPU added per call (this process's CPU time: the
    driver's reactor thread included)."""
    peers = _peers(host, port)
    try:
        cycles = max(5, calls // (per_round * len(peers)))
        return interleave("cassandra", "prepared select", peers, cycles, per_round,
                          cpu_clock=time.process_time)
    finally:
        while _CLOSE:
            _CLOSE.pop()()


PLUGIN = CassandraBench()
