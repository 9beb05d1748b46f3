"""The datastore plugin interface of the failure-latency benchmark.

A datastore plugs in with one :class:`Datastore` object registered under its name in
:data:`DATASTORES` (a module path, imported only when that datastore is benchmarked, so
``resilience bench --datastores memcached`` never imports cassandra-driver). It knows
three things the generic runner cannot:

1. how to start its server(s) through the harness (``start_server``), on loopback or
   inside a network namespace the fault toolkit created (firewall faults need that);
2. how to build each *subject* against an address (``subject``): the raw driver with
   its defaults, the raw driver with its best timeout settings for a budget, and the
   resilience wrapper with that budget. A subject makes one representative call (a
   read) per ``call()``;
3. how to measure the healthy-path overhead (``overhead``), optional.

A datastore whose nodes only work together (a ZooKeeper ensemble) may also offer
``start_cluster(work_dir, nodes) -> list[RunningServer]``: the node-loss scenarios then
start one cluster instead of independent nodes.

Everything about faults (proxy toxics, iptables rules, SIGSTOP) is generic TCP and lives
in :mod:`resilience.bench.scenarios`; a datastore needs nothing fault-specific.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from resilience.bench.model import OverheadRow

__all__ = ["DATASTORES", "SUBJECTS", "Datastore", "RunningServer", "Subject", "load"]

SUBJECTS = ("raw-default", "raw-tuned", "wrapper")
"""Subjects every datastore provides, in report order."""

DATASTORES: dict[str, str] = {
    "memcached": "resilience.bench.memcached:PLUGIN",
    "zookeeper": "resilience.bench.zookeeper:PLUGIN",
    "nsq": "resilience.bench.nsq:PLUGIN",
    "nsq-http": "resilience.bench.nsq:HTTP_PLUGIN",
    "elasticsearch": "resilience.bench.search:ELASTICSEARCH",
    "opensearch": "resilience.bench.search:OPENSEARCH",
    "cassandra": "resilience.bench.cassandra:PLUGIN",
}
"""Datastore name -> ``module:attribute`` of its :class:`Datastore` object."""


@runtime_checkable
class Subject(Protocol):
    """One way of calling the datastore (raw driver or wrapper), bound to one address."""

    name: str

    def call(self) -> object:
        """Make one representative call; raise what the client raises."""

    def abort(self) -> None:
        """Wake a ``call()`` blocked in another thread (shut its sockets down).

        The runner calls it when a call passes the cap, so no thread stays blocked.
        """

    def breaker_open(self) -> bool:
        """Whether the subject's circuit breaker is open (False when it has none)."""

    def close(self) -> None:
        """Release every connection."""


class RunningServer(Protocol):
    """A started server as the scenarios need it."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


@runtime_checkable
class Datastore(Protocol):
    """What a datastore contributes to the benchmark."""

    name: str

    def start_server(
        self,
        work_dir: str,
        *,
        host: str = "127.0.0.1",
        netns: str | None = None,
        targets: Sequence[int] = (0,),
    ) -> RunningServer:
        """Start one server, wait until it answers, and store the keys of ``targets``.

        Args:
            work_dir: a fresh directory for its data and logs.
            host: the address the server listens on.
            netns: the name of an existing network namespace to run the server in
                (the harness's ``Server(netns=...)``), with ``host`` one of its
                addresses; None runs it here.
            targets: the node indexes whose subjects' keys this server must hold (a
                subject built with ``target=t`` reads a key stored only on servers
                started with ``t`` in ``targets``).
        """

    def subject(self, kind: str, nodes: Sequence[tuple[str, int]], budget: float,
                target: int = 0) -> Subject:
        """Build the subject ``kind`` (one of :data:`SUBJECTS`) for the ``nodes``.

        ``budget`` is the time budget of one call for ``raw-tuned`` and ``wrapper``.
        With several nodes the raw subjects use the driver's own multi-node client and
        ``call()`` reads a key that the subject's own hashing puts on ``nodes[target]``.
        """

    def overhead(self, host: str, port: int, calls: int) -> list[OverheadRow]:
        """Healthy-path µs per call of each subject and of the peer libraries."""


def load(name: str) -> Datastore:
    """Import and return the plugin registered as ``name``.

    Raises:
        ValueError: no datastore of that name is registered.
    """
    try:
        target = DATASTORES[name]
    except KeyError:
        raise ValueError(
            f"unknown datastore {name!r}; choose from {', '.join(sorted(DATASTORES))}"
        ) from None
    module_name, _, attr = target.partition(":")
    plugin = getattr(importlib.import_module(module_name), attr)
    if not isinstance(plugin, Datastore):
        raise TypeError(f"{target} is not a resilience.bench.plugin.Datastore")
    return plugin
