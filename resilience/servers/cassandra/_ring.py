"""Several Cassandra nodes on one address, each on its own ports: a ring for node-loss tests.

Every node is a seed and has a fixed token (evenly spread over the Murmur3 range), so
none bootstraps and all start in parallel (3 nodes: ~15 s with load average 7, ~380 MB
RSS each). Since Cassandra 4.0 a node is identified by address *and* storage port, and
cassandra-driver learns each peer's native port from ``system.peers_v2``, so 127.0.0.1
serves the whole ring and a fault aimed at one node's port hits only that node.

The ring is ready when every node answers and lists all the others in
``system.peers_v2``, so a keyspace created right after ``start()`` spans the ring.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from resilience.servers._base import Cluster, ServerError
from resilience.servers._ports import free_port
from resilience.servers.cassandra._node import START_TIMEOUT, Cassandra, driver_cluster

__all__ = ["CassandraRing", "ring", "tokens"]


def tokens(nodes: int) -> list[int]:
    """``nodes`` Murmur3 tokens spread evenly over [-2**63, 2**63)."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    return [-(2**63) + i * (2**64 // nodes) for i in range(nodes)]


class CassandraRing(Cluster):
    """A Cassandra cluster of :class:`Cassandra` members started together."""

    members: list[Cassandra]  # type: ignore[assignment]

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """(host, native port) of every member: contact points for cassandra-driver."""
        return [(m.host, m.port) for m in self.members]

    def driver_cluster(self, timeout: float = 5.0, **kwargs: Any) -> Any:
        """A cassandra-driver ``Cluster`` with every member as a contact point, not connected."""
        return driver_cluster(self.endpoints, timeout, **kwargs)

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start every member in parallel, then wait until each sees all the others.

        Raises:
            ServerError: a member did not start, or the ring did not form in ``timeout``
                seconds (then every member is stopped).
        """
        began = time.monotonic()
        self.start_parallel(self.members, timeout)
        self.wait_ring(max(1.0, timeout - (time.monotonic() - began)))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every member in parallel: SIGTERM, SIGKILL after ``timeout`` s.

        Nodes shutting down together can wait on each other's messaging service until the
        SIGKILL (seen here: one of two stuck in "Waiting for messaging service to
        quiesce"), so the grace is short by default; the batch commit log keeps every
        acknowledged write through a SIGKILL.
        """
        super().stop(timeout)

    def wait_ring(self, timeout: float) -> None:
        """Wait until every member lists the other members in ``system.peers_v2``.

        Raises:
            ServerError: not formed within ``timeout`` seconds (every member is stopped).
        """
        end = time.monotonic() + timeout
        missing: dict[str, int] = {}
        while time.monotonic() < end:
            missing = {m.name: self._peers_missing(m) for m in self.members}
            if not any(missing.values()):
                return
            time.sleep(0.5)
        self.stop()
        raise ServerError(self.name, f"ring not formed after {timeout:.0f} s: {missing}")

    def _peers_missing(self, member: Cassandra) -> int:
        cluster = member.driver_cluster(timeout=2.0)
        try:
            rows = cluster.connect().execute("SELECT peer_port FROM system.peers_v2").all()
        except Exception:  # a member still settling: count it as missing them all
            return len(self.members) - 1
        finally:
            cluster.shutdown()
        seen = {int(r.peer_port) for r in rows}
        return sum(1 for m in self.members if m is not member and m.ports["storage"] not in seen)


def ring(data_dir: Path, nodes: int = 3, **kwargs: Any) -> CassandraRing:
    """A ring of ``nodes`` Cassandra nodes on free ports under ``data_dir``, not started.

    ``kwargs`` go to every :class:`Cassandra` (``heap_mb``, ``yaml``, ``jvm_options``).
    """
    token_list = tokens(nodes)  # validates nodes
    storage: Sequence[int] = [free_port() for _ in range(nodes)]
    seeds = [f"127.0.0.1:{port}" for port in storage]
    members = [
        Cassandra(
            Path(data_dir) / f"node{i + 1}",
            name=f"cassandra-{i + 1}",
            storage_port=storage[i],
            seeds=seeds,
            initial_token=token,
            **kwargs,
        )
        for i, token in enumerate(token_list)
    ]
    return CassandraRing("cassandra-ring", members)
