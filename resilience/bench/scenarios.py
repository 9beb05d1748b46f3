"""Fault scenarios of the benchmark, for any TCP datastore.

The ids are the fault modes of docs/architecture.md#fault-modes (``latency`` and
``node-loss`` are split in two).

A scenario opens a *site*: an address the subjects connect to, with ``inject()`` and
``clear()`` to turn its fault on and off, and ``close()`` to tear it down. The runner
builds each subject, warms it with one healthy call when the scenario is ``warm`` (a
running service has open connections: the established-connection faults need one),
injects, measures, clears.

==========================  =========================================================
refused                     a port nothing listens on
reject                      iptables REJECT (ICMP port unreachable), netns, root
connect-blackhole           iptables DROP in a netns (root); else a listener whose
                            accept queue is full (no root)
established-blackhole       iptables DROP of ESTABLISHED packets, netns, root
frozen                      the server is SIGSTOPped
latency-above / -below      proxy latency of 3x / 0.3x the budget
reset                       proxy resets every connection
slow-drip                   proxy slicer: one byte per 20 ms
garbage                     proxy XORs every byte of the replies
node-loss                   three nodes, one frozen: keys on the frozen node
node-loss-others            three nodes, one frozen: keys on a surviving node
flapping                    the server is frozen and thawed every 300 ms
==========================  =========================================================

With several nodes the raw subjects are the driver's own multi-node client (for
pymemcache, ``HashClient``), so the rows show what it does with a dead node.
"""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from resilience.bench.plugin import Datastore, RunningServer

__all__ = ["SCENARIOS", "Scenario", "Site", "dispose", "select"]


class Site(Protocol):
    nodes: list[tuple[str, int]]  # what subjects connect to
    target: int  # the node whose keys the subjects read

    def inject(self) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Env:
    """What a scenario may use: the datastore plugin, the call budget, a scratch dir."""

    datastore: Datastore
    budget: float
    work_dir: str


@dataclass(frozen=True, slots=True)
class Scenario:
    """One fault mode: ``open(env)`` returns a :class:`Site`; ``unavailable()`` says why
    it cannot run here (None when it can)."""

    id: str
    title: str
    warm: bool
    open: Callable[[Env], Site]
    unavailable: Callable[[], str | None] = lambda: None
    pace: float = 0.0  # seconds between calls, for faults that change over time


class _Site:
    """A site whose fault is fixed (no inject/clear), around one address."""

    def __init__(self, host: str, port: int, closers: list[Callable[[], Any]]) -> None:
        self.host, self.port, self._closers = host, port, closers
        self.nodes = [(host, port)]
        self.target = 0

    def inject(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def close(self) -> None:
        for fn in reversed(self._closers):
            fn()


def dispose(server: RunningServer) -> None:
    """Stop a benchmark server at once: SIGKILL when the harness offers it (a server
    started for one row keeps nothing worth a graceful stop), else a normal stop."""
    kill = getattr(server, "kill", None)
    if callable(kill):
        kill()
    else:
        server.stop()


def _server(env: Env) -> RunningServer:
    return env.datastore.start_server(tempfile.mkdtemp(dir=env.work_dir))


def _refused(env: Env) -> Site:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return _Site("127.0.0.1", port, [])


class _NetnsSite(_Site):
    def __init__(self, env: Env, rule: str) -> None:
        from resilience.faults.netns import Namespace

        self._ns = Namespace()
        ns = self._ns
        try:
            self._server = env.datastore.start_server(
                tempfile.mkdtemp(dir=env.work_dir), host=ns.ns_ip, netns=ns.name)
        except BaseException:
            ns.close()
            raise
        super().__init__(ns.ns_ip, self._server.port, [ns.close, lambda: dispose(self._server)])
        self._rule_kind = rule
        self._rule: Any = None

    def inject(self) -> None:
        fw = self._ns.firewall
        if self._rule_kind == "reject":
            self._rule = fw.reject(self.port)
        elif self._rule_kind == "drop":
            self._rule = fw.drop(self.port)
        else:
            self._rule = fw.drop_established(self.port)

    def clear(self) -> None:
        if self._rule is not None:
            self._rule.remove()
            self._rule = None


def _netns_reason() -> str | None:
    from resilience.faults.netns import unavailable_reason

    return unavailable_reason()


def _connect_blackhole(env: Env) -> Site:
    if _netns_reason() is None:
        return _NetnsSite(env, "drop")
    from resilience.faults.blackhole import ConnectBlackhole

    hole = ConnectBlackhole().start()
    host, port = hole.address
    return _Site(host, port, [hole.stop])


class _FrozenSite(_Site):
    def __init__(self, env: Env) -> None:
        self._server = _server(env)
        super().__init__(self._server.host, self._server.port, [lambda: dispose(self._server)])

    def inject(self) -> None:
        self._server.freeze()

    def clear(self) -> None:
        self._server.thaw()

    def close(self) -> None:
        self.clear()
        super().close()


class _ProxySite(_Site):
    def __init__(self, env: Env, toxic: Callable[[], Any]) -> None:
        from resilience.faults.proxy import FaultProxy

        self._server = _server(env)
        self._proxy = FaultProxy((self._server.host, self._server.port), seed=1).start()
        self._toxic = toxic
        host, port = self._proxy.address
        super().__init__(host, port, [lambda: dispose(self._server), self._proxy.stop])

    def inject(self) -> None:
        self._proxy.add(self._toxic())

    def clear(self) -> None:
        self._proxy.clear()


class _NodeLossSite:
    """Three nodes; ``inject`` freezes the first. ``target`` 0 reads its keys, 1 reads
    keys of a surviving node. A datastore whose nodes must form one cluster (a Cassandra
    ring, a ZooKeeper ensemble) offers ``start_cluster(work_dir, nodes)``; otherwise each
    node is started alone."""

    def __init__(self, env: Env, target: int) -> None:
        self.servers: list[RunningServer] = []
        start_cluster = getattr(env.datastore, "start_cluster", None)
        try:
            if start_cluster is not None:
                self.servers = list(start_cluster(tempfile.mkdtemp(dir=env.work_dir), 3))
            for i in range(len(self.servers), 3):
                self.servers.append(env.datastore.start_server(
                    tempfile.mkdtemp(dir=env.work_dir), targets=(i,)))
        except BaseException:
            self.close()
            raise
        self.nodes = [(s.host, s.port) for s in self.servers]
        self.target = target

    def inject(self) -> None:
        self.servers[0].freeze()

    def clear(self) -> None:
        self.servers[0].thaw()

    def close(self) -> None:
        for server in self.servers:
            server.thaw()
            dispose(server)


class _FlappingSite(_Site):
    """Frozen and thawed in turns every ``period`` seconds while injected (bounded by
    ``clear``, which the runner always calls)."""

    def __init__(self, env: Env, period: float = 0.3) -> None:
        self._server = _server(env)
        super().__init__(self._server.host, self._server.port, [lambda: dispose(self._server)])
        self._period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _flap(self) -> None:
        frozen = True
        self._server.freeze()
        while not self._stop.wait(self._period):
            frozen = not frozen
            (self._server.freeze if frozen else self._server.thaw)()
        self._server.thaw()

    def inject(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._flap, name="bench-flap", daemon=True)
        self._thread.start()

    def clear(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._server.thaw()

    def close(self) -> None:
        self.clear()
        super().close()


def _proxy(make: Callable[[Env], Any]) -> Callable[[Env], Site]:
    return lambda env: _ProxySite(env, lambda: make(env))


def _toxics() -> Any:
    from resilience.faults import toxics

    return toxics


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("refused", "nothing listens", False, _refused),
    Scenario("reject", "iptables REJECT (ICMP)", False,
             lambda env: _NetnsSite(env, "reject"), _netns_reason),
    Scenario("connect-blackhole", "SYNs dropped", False, _connect_blackhole),
    Scenario("established-blackhole", "iptables DROP ESTABLISHED", True,
             lambda env: _NetnsSite(env, "established"), _netns_reason),
    Scenario("frozen", "server SIGSTOPped", True, _FrozenSite),
    Scenario("latency-above", "replies 3x the budget late", True,
             _proxy(lambda env: _toxics().Latency(latency_ms=env.budget * 3000))),
    Scenario("latency-below", "replies 0.3x the budget late", True,
             _proxy(lambda env: _toxics().Latency(latency_ms=env.budget * 300))),
    Scenario("reset", "reset mid-reply", True,
             _proxy(lambda env: _toxics().Reset(after_bytes=1))),
    Scenario("slow-drip", "one byte per 20 ms", True,
             _proxy(lambda env: _toxics().Slicer(average_size=1, delay_us=20_000))),
    Scenario("garbage", "reply bytes corrupted", True,
             _proxy(lambda env: _toxics().Garbage(ratio=1.0))),
    Scenario("node-loss", "1 of 3 frozen, its keys", True, lambda env: _NodeLossSite(env, 0)),
    Scenario("node-loss-others", "1 of 3 frozen, other keys", True,
             lambda env: _NodeLossSite(env, 1)),
    Scenario("flapping", "frozen/thawed every 300 ms", True, _FlappingSite, pace=0.05),
)


def select(ids: list[str] | None) -> list[Scenario]:
    """The scenarios named in ``ids`` (all when None), in the canonical order.

    Raises:
        ValueError: an unknown id (the message lists the known ones).
    """
    known = {s.id: s for s in SCENARIOS}
    if not ids:
        return list(SCENARIOS)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}; choose from {', '.join(known)}")
    return [s for s in SCENARIOS if s.id in ids]
